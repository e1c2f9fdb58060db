# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The local pieces of a point-in-time restore: the data directory rules, cleanup, the server's reason."""

from __future__ import annotations

import os
import socket

import pytest

from ansible_collections.lifeboat.backup.plugins.module_utils import _pitr
from ansible_collections.lifeboat.backup.plugins.module_utils._common import LifeboatError


def test_data_dir_must_be_absent_or_empty(tmp_path):
    assert _pitr.check_data_dir(str(tmp_path / "new")) == "absent"
    (tmp_path / "empty").mkdir()
    assert _pitr.check_data_dir(str(tmp_path / "empty")) == "empty"
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "PG_VERSION").write_text("15\n")
    with pytest.raises(LifeboatError, match="data_dir .* is not empty; a point-in-time restore goes into an empty or new"):
        _pitr.check_data_dir(str(tmp_path / "full"))
    (tmp_path / "hidden").mkdir()
    (tmp_path / "hidden" / ".x").write_text("")
    with pytest.raises(LifeboatError, match="is not empty"):
        _pitr.check_data_dir(str(tmp_path / "hidden"))
    os.symlink(str(tmp_path / "empty"), str(tmp_path / "link"))
    with pytest.raises(LifeboatError, match="symbolic link"):
        _pitr.check_data_dir(str(tmp_path / "link"))
    (tmp_path / "file").write_text("")
    with pytest.raises(LifeboatError, match="not a directory"):
        _pitr.check_data_dir(str(tmp_path / "file"))
    with pytest.raises(LifeboatError, match="parent directory .* does not exist"):
        _pitr.check_data_dir(str(tmp_path / "no" / "such"))
    with pytest.raises(LifeboatError, match="absolute path"):
        _pitr.check_data_dir("relative/data")


def test_empty_directory_never_follows_links(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_text("keep")
    data = tmp_path / "data"
    (data / "base" / "1").mkdir(parents=True)
    (data / "base" / "1" / "123").write_text("x")
    (data / "PG_VERSION").write_text("15")
    os.symlink(str(outside), str(data / "pg_wal"))
    _pitr.empty_directory(str(data))
    assert os.listdir(str(data)) == []
    assert (outside / "keep").read_text() == "keep"


def test_log_failure_takes_the_servers_last_fatal_line(tmp_path):
    log = tmp_path / "log"
    log.write_text("LOG:  starting\nFATAL:  first\nLOG:  redo done\n"
                   "2026-12-01 04:08 UTC [1] FATAL:  recovery ended before configured recovery target was reached\n"
                   "LOG:  shut down\n")
    assert _pitr.log_failure(_pitr.last_lines(str(log))) == \
        "recovery ended before configured recovery target was reached"
    assert _pitr.log_failure(["LOG:  only this"]) == "LOG:  only this"
    assert _pitr.log_failure([]) == "no message in the server log"
    assert _pitr.last_lines(str(tmp_path / "missing")) == []


def test_port_in_use_sees_a_listener_and_a_lock_file(tmp_path):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    try:
        assert _pitr.port_in_use(port, str(tmp_path))
    finally:
        listener.close()
    assert not _pitr.port_in_use(port, str(tmp_path))
    (tmp_path / (".s.PGSQL.%d.lock" % port)).write_text("")
    assert _pitr.port_in_use(port, str(tmp_path))


def test_os_user_must_exist_and_not_be_root():
    with pytest.raises(LifeboatError, match="does not exist; set os_user"):
        _pitr.os_user_ids("no-such-user-lifeboat")
    with pytest.raises(LifeboatError, match="is root"):
        _pitr.os_user_ids("root")
