# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Every reader of a store (info, verify, restore, backup) against a store written by an attacker.

The bar: one clear sentence or a report, no traceback, no hang, results that
stay small, nothing touched outside the store.
"""

from __future__ import annotations

import json
import os

import pytest

from ansible_collections.lifeboat.backup.plugins.modules import backup_info
from ansible_collections.lifeboat.backup.plugins.modules import backup_verify
from ansible_collections.lifeboat.backup.plugins.modules import postgresql_backup
from ansible_collections.lifeboat.backup.plugins.modules import postgresql_restore
from ansible_collections.lifeboat.backup.tests.unit.plugins.helpers import run_module

SOCKET = "/nonexistent/lifeboat-socket-dir"
RESULT_LIMIT = 64 * 1024


pytestmark = pytest.mark.usefixtures("no_hang")  # tests/unit/plugins/conftest.py
NO_HANG_SECONDS = 60  # whole module runs, over ssh too, on a loaded machine; a hang still fails


def common(pg, store_path):
    return dict(store=dict(kind="dir", path=store_path), host="db1", login_unix_socket=SOCKET, pg_bin_dir=pg.bin_dir)


def good_set(monkeypatch, tmp_path, pg, store_path, source="app"):
    outcome = run_module(monkeypatch, tmp_path, postgresql_backup,
                         dict(common(pg, store_path), db="app", source=source, compression="none"))
    assert not outcome.failed, outcome.result
    return outcome.result


def small(result):
    text = json.dumps(result, default=str)
    assert len(text) < RESULT_LIMIT, "result of %d bytes" % len(text)
    return text


def one_sentence(msg):
    assert msg and "\n" not in msg and "Traceback" not in msg
    return msg


HOSTILE = ["fifo_payload", "link_payload", "dev_zero_payload", "fifo_manifest", "link_manifest", "huge_manifest",
           "garbage_manifest", "deep_manifest", "link_set", "file_set"]


def plant(kind, made, outside):
    """Turn the good set ``made`` into the hostile case ``kind``."""
    base = made["path"]
    payload = os.path.join(base, made["files"][0]["name"])
    manifest = os.path.join(base, "manifest.json")
    if kind == "fifo_payload":
        os.unlink(payload)
        os.mkfifo(payload)
    elif kind == "link_payload":
        os.unlink(payload)
        os.symlink(str(outside / "secret"), payload)
    elif kind == "dev_zero_payload":
        os.unlink(payload)
        os.symlink("/dev/zero", payload)
    elif kind == "fifo_manifest":
        os.unlink(manifest)
        os.mkfifo(manifest)
    elif kind == "link_manifest":
        os.unlink(manifest)
        os.symlink("/dev/zero", manifest)
    elif kind == "huge_manifest":
        with open(manifest, "ab") as handle:
            handle.truncate(100 * 1024 * 1024)
    elif kind == "garbage_manifest":
        with open(manifest, "wb") as handle:
            handle.write(b"\xff\xfe{\x00" * 1000 + b"\x1b[31m")
    elif kind == "deep_manifest":
        with open(manifest, "wb") as handle:
            handle.write(b"[" * 200000 + b"]" * 200000)
    elif kind == "link_set":
        aside = base + ".moved"
        os.rename(base, aside)
        os.symlink(aside, base)
    elif kind == "file_set":
        import shutil
        shutil.rmtree(base)
        with open(base, "w") as handle:
            handle.write("not a set")


@pytest.fixture
def outside(tmp_path):
    path = tmp_path / "outside"
    path.mkdir()
    (path / "secret").write_bytes(b"not yours")
    return path


@pytest.mark.parametrize("kind", HOSTILE)
def test_info_reports_and_stays_small(monkeypatch, tmp_path, pg, store_path, outside, kind):
    made = good_set(monkeypatch, tmp_path, pg, store_path)
    plant(kind, made, outside)
    outcome = run_module(monkeypatch, tmp_path, backup_info, dict(store=dict(kind="dir", path=store_path)))
    assert not outcome.failed, outcome.result
    small(outcome.result)
    if kind.endswith("_payload"):
        assert len(outcome.result["sets"]) == 1  # info reads manifests only
    else:
        assert outcome.result["sets"] == []
        assert outcome.result["invalid"], outcome.result
    assert (outside / "secret").read_bytes() == b"not yours"


@pytest.mark.parametrize("kind", HOSTILE)
def test_verify_fails_with_one_sentence(monkeypatch, tmp_path, pg, store_path, outside, kind):
    made = good_set(monkeypatch, tmp_path, pg, store_path)
    plant(kind, made, outside)
    outcome = run_module(monkeypatch, tmp_path, backup_verify, dict(store=dict(kind="dir", path=store_path)))
    assert outcome.failed
    one_sentence(outcome.result["msg"])
    small(outcome.result)


@pytest.mark.parametrize("kind", HOSTILE)
def test_restore_refuses_with_one_sentence(monkeypatch, tmp_path, pg, store_path, outside, kind):
    made = good_set(monkeypatch, tmp_path, pg, store_path)
    plant(kind, made, outside)
    outcome = run_module(monkeypatch, tmp_path, postgresql_restore,
                         dict(common(pg, store_path), source="app", target_db="app_copy"))
    assert outcome.failed
    one_sentence(outcome.result["msg"])
    small(outcome.result)
    assert pg.restored() == []


@pytest.mark.parametrize("kind", HOSTILE)
def test_backup_is_not_blocked(monkeypatch, tmp_path, pg, store_path, outside, kind):
    made = good_set(monkeypatch, tmp_path, pg, store_path)
    plant(kind, made, outside)
    again = good_set(monkeypatch, tmp_path, pg, store_path)
    assert again["set_id"] != made["set_id"]
    assert (outside / "secret").read_bytes() == b"not yours"


# ------------------------------------------------------------------ the same store read over ssh

@pytest.fixture(scope="module")
def ssh_server():
    """The private sshd (scripts/harness/sshd.py) for this file's ssh cases, stopped after them."""
    from ansible_collections.lifeboat.backup.tests.unit.plugins.module_utils import ssh_harness
    ssh_harness.server()
    yield ssh_harness
    ssh_harness.stop()


@pytest.mark.parametrize("kind", HOSTILE)
def test_info_and_verify_over_ssh(monkeypatch, tmp_path, pg, store_path, outside, kind, ssh_server):
    """The ssh kind reads the dir layout on the server with the dir kind's rules: same reports, same sentences."""
    made = good_set(monkeypatch, tmp_path, pg, store_path)
    plant(kind, made, outside)
    store = ssh_server.spec(store_path)
    outcome = run_module(monkeypatch, tmp_path, backup_info, dict(store=store))
    assert not outcome.failed, outcome.result
    small(outcome.result)
    if kind.endswith("_payload"):
        assert len(outcome.result["sets"]) == 1
    else:
        assert outcome.result["sets"] == []
        assert outcome.result["invalid"], outcome.result
    outcome = run_module(monkeypatch, tmp_path, backup_verify, dict(store=store))
    assert outcome.failed
    one_sentence(outcome.result["msg"])
    text = small(outcome.result)
    assert store["private_key"].splitlines()[1] not in text
    assert (outside / "secret").read_bytes() == b"not yours"
