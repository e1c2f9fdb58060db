# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The local pieces of a point-in-time restore: the data directory rules, cleanup, the server's reason."""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile

import pytest

from ansible_collections.lifeboat.backup.plugins.module_utils import _pitr
from ansible_collections.lifeboat.backup.plugins.module_utils._common import LifeboatError
from ansible_collections.lifeboat.backup.plugins.module_utils._runner import Runner


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


# ------------------------------------------------------------------ pg_verifybackup on the restored data directory

PG_BIN = "/usr/lib/postgresql/15/bin"
REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..", ".."))


@pytest.fixture(scope="module")
def base_tar():
    """A real tar-format base backup (pg_basebackup -Ft -X fetch, with its backup_manifest) of a throwaway cluster."""
    work = tempfile.mkdtemp(prefix="lifeboat-verify-", dir="/tmp")
    os.chmod(work, 0o711)  # the postgres user runs the cluster inside
    harness = [sys.executable, os.path.join(REPO, "scripts", "pgcluster.py")]
    pg_dir = os.path.join(work, "pg")
    try:
        facts = json.loads(subprocess.run(harness + ["start", "--dir", pg_dir], check=True, capture_output=True,
                                          text=True).stdout)
        tar_path = os.path.join(work, "base.tar")
        with open(tar_path, "wb") as out:
            subprocess.run(["runuser", "-u", "postgres", "--", os.path.join(PG_BIN, "pg_basebackup"), "-h",
                            facts["socket_dir"], "-p", str(facts["port"]), "-U", "postgres", "-D", "-", "-Ft",
                            "-X", "fetch", "--checkpoint=fast"], stdout=out, check=True, cwd="/")
        subprocess.run(harness + ["stop", "--dir", pg_dir, "--remove"], check=True, capture_output=True)
        yield tar_path
    finally:
        subprocess.run(harness + ["stop", "--dir", pg_dir, "--remove"], check=False, capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


class FakeJob(object):
    """The one RestoreJob call consume makes: read(member, name, consumer) hands it the payload's bytes."""

    def __init__(self, tar_path):
        self.tar_path = tar_path

    def read(self, member, name, consumer):
        with open(self.tar_path, "rb") as stream:
            return consumer(stream)


def engine_for(data_dir):
    options = dict(target={"latest": True}, window={}, data_dir=str(data_dir), port=1, socket_dir="/tmp",
                   os_user="postgres")
    engine = _pitr.PitrRestore(None, Runner(), options)
    engine.bin_dir = PG_BIN
    engine.state = _pitr.check_data_dir(str(data_dir))
    return engine


MEMBER = {"set_id": "20261201T050000Z-full", "files": [{"name": "base.tar"}]}


def rewrite_tar(source, dest, change):
    """Copy tar ``source`` to ``dest``, passing each (member, data) through ``change`` (None drops it)."""
    with tarfile.open(source) as src, tarfile.open(dest, "w") as out:
        for member in src.getmembers():
            data = src.extractfile(member).read() if member.isfile() else None
            changed = change(member, data)
            if changed is None:
                continue
            member, data = changed
            out.addfile(member, io.BytesIO(data) if data is not None else None)


def test_consume_verifies_the_restored_data_directory(base_tar, tmp_path):
    engine = engine_for(tmp_path / "data")
    engine.consume(FakeJob(base_tar), MEMBER)
    assert engine.verified is True
    assert os.path.isfile(str(tmp_path / "data" / "backup_manifest"))


def test_a_file_that_differs_from_the_manifest_stops_the_restore(base_tar, tmp_path):
    def flip(member, data):
        if member.name == "PG_VERSION":
            data = data.replace(b"15", b"51")  # same size, other bytes: only the checksum tells
        return member, data

    rewrite_tar(base_tar, str(tmp_path / "bad.tar"), flip)
    engine = engine_for(tmp_path / "data")
    with pytest.raises(LifeboatError) as failed:
        engine.consume(FakeJob(str(tmp_path / "bad.tar")), MEMBER)
    message = str(failed.value)
    assert message.startswith("The data directory restored from base backup %s does not match its backup_manifest "
                              "(pg_verifybackup: " % MEMBER["set_id"]), message
    assert "PG_VERSION" in message and message.endswith("; recovery was not started.")
    assert "\n" not in message


def test_missing_wal_in_the_base_backup_stops_the_restore(base_tar, tmp_path):
    rewrite_tar(base_tar, str(tmp_path / "nowal.tar"),
                lambda member, data: None if member.name.startswith("pg_wal/0") else (member, data))
    engine = engine_for(tmp_path / "data")
    with pytest.raises(LifeboatError, match="does not match its backup_manifest .pg_verifybackup: .*WAL"):
        engine.consume(FakeJob(str(tmp_path / "nowal.tar")), MEMBER)


def test_a_base_backup_without_a_manifest_is_not_verified(base_tar, tmp_path):
    rewrite_tar(base_tar, str(tmp_path / "plain.tar"),
                lambda member, data: None if member.name == "backup_manifest" else (member, data))
    engine = engine_for(tmp_path / "data")
    engine.consume(FakeJob(str(tmp_path / "plain.tar")), MEMBER)
    assert engine.verified is False
