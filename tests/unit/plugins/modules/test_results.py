# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What a module really prints: AnsibleModule's own exit_json/fail_json, not the test stand-ins.

A result's ``path`` is a set's directory. AnsibleModule would add that
directory's attributes (``size: 4096``, ``mode``, ``owner``, ...), which read
as facts about the backup; the modules must keep ``path`` and nothing else of it.
"""

from __future__ import annotations

import json
import os
import shutil

import pytest

from ansible_collections.lifeboat.backup.plugins.modules import backup_info
from ansible_collections.lifeboat.backup.plugins.modules import backup_verify
from ansible_collections.lifeboat.backup.plugins.modules import postgresql_backup
from ansible_collections.lifeboat.backup.plugins.modules import postgresql_restore
from ansible_collections.lifeboat.backup.tests.unit.plugins.helpers import _module_args

PATH_INFO_KEYS = ("size", "mode", "owner", "group", "uid", "gid", "state", "secontext")
SOCKET = "/nonexistent/lifeboat-socket-dir"


def printed(capsys, tmp_path, module, args, check_mode=False):
    """Run ``module.main()`` as Ansible would; return (rc, the JSON it printed)."""
    module_tmp = tmp_path / "module-tmp"
    module_tmp.mkdir(mode=0o700, exist_ok=True)
    args = dict(args, _ansible_tmpdir=str(module_tmp), _ansible_check_mode=check_mode)
    capsys.readouterr()
    with _module_args(args):
        with pytest.raises(SystemExit) as info:
            module.main()
    return info.value.code, json.loads(capsys.readouterr().out)


def common(pg, store_path):
    return dict(store=dict(kind="dir", path=store_path), host="db1", login_unix_socket=SOCKET, pg_bin_dir=pg.bin_dir,
                compression="none")


def assert_plain(result):
    assert result["path"]
    for key in PATH_INFO_KEYS:
        assert key not in result, "%s=%r came from the set directory" % (key, result[key])


def test_backup_result_has_path_but_no_directory_attributes(capsys, tmp_path, pg, store_path):
    rc, result = printed(capsys, tmp_path, postgresql_backup, dict(common(pg, store_path), db="app"))
    assert rc == 0 and result["changed"] is True
    assert os.path.isdir(result["path"])
    assert_plain(result)
    assert result["bytes"] == sum(f["size"] for f in result["files"])


def test_backup_check_mode_has_no_state_absent(capsys, tmp_path, pg, store_path):
    rc, result = printed(capsys, tmp_path, postgresql_backup, dict(common(pg, store_path), db="app"), check_mode=True)
    assert rc == 0 and not os.path.exists(result["path"])
    assert_plain(result)


@pytest.mark.skipif(not shutil.which("zstd"), reason="zstd is not installed")
def test_restore_results_success_and_failure(capsys, tmp_path, pg, store_path):
    printed(capsys, tmp_path, postgresql_backup, dict(common(pg, store_path), db="app", compression="zstd"))
    args = dict(common(pg, store_path), source="app", target_db="app_copy")
    del args["compression"]
    rc, result = printed(capsys, tmp_path, postgresql_restore, args)
    assert rc == 0 and result["changed"] is True
    assert_plain(result)
    pg.behave({"pg_restore": {"rc": 1, "stderr": "pg_restore: error: could not execute query: boom\n"}})
    rc, result = printed(capsys, tmp_path, postgresql_restore, args)
    assert rc == 1 and result["failed"] is True
    assert_plain(result)


def test_info_and_verify_results(capsys, tmp_path, pg, store_path):
    printed(capsys, tmp_path, postgresql_backup, dict(common(pg, store_path), db="app"))
    for module in (backup_info, backup_verify):
        rc, result = printed(capsys, tmp_path, module, dict(store=dict(kind="dir", path=store_path)))
        assert rc == 0
        for key in PATH_INFO_KEYS:
            assert key not in result
