# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""backup_copy through AnsibleModule: options, check mode, idempotency, failure sentences."""

from __future__ import annotations

import json
import os

import pytest

from ansible_collections.lifeboat.backup.plugins.module_utils import _store_dir
from ansible_collections.lifeboat.backup.plugins.modules import backup_copy
from ansible_collections.lifeboat.backup.tests.unit.plugins.helpers import make_set, run_module

FULL = "20261101T000000Z-full"
INC = "20261102T000000Z-incremental"
OTHER = "20261103T000000Z-full"


@pytest.fixture
def stores(tmp_path):
    src = _store_dir.DirStore({"path": str(tmp_path / "src")})
    make_set(src, "db1", "app", FULL, files={"dump.pgc": b"full data", "toc.dat": b"toc"})
    make_set(src, "db1", "app", INC, parent=FULL, files={"dump.pgc": b"incremental data"})
    make_set(src, "db2", "crm", OTHER)
    return src, _store_dir.DirStore({"path": str(tmp_path / "dst")})


def args(stores, **extra):
    src, dst = stores
    return dict(store=dict(path=src.root), dest_store=dict(kind="dir", path=dst.root), **extra)


def names(entries):
    return ["%s/%s/%s" % (e["host"], e["source"], e["set_id"]) for e in entries]


def test_check_run_real_run_rerun_and_check_rerun(monkeypatch, tmp_path, stores):
    src, dst = stores
    check = run_module(monkeypatch, tmp_path, backup_copy, args(stores), check_mode=True)
    assert not check.failed, check.result
    assert check.result["changed"] is True
    assert names(check.result["copied"]) == ["db1/app/" + FULL, "db1/app/" + INC, "db2/crm/" + OTHER]
    assert not os.path.exists(dst.root)

    real = run_module(monkeypatch, tmp_path, backup_copy, args(stores))
    assert not real.failed, real.result
    assert real.result["changed"] is True
    assert real.result["copied"] == check.result["copied"]
    assert real.result["bytes"] == len(b"full data") + len(b"toc") + len(b"incremental data") + len(
        b"payload of " + OTHER.encode())
    assert real.result["store"] == {"kind": "dir", "path": src.root}
    assert real.result["dest_store"] == {"kind": "dir", "path": dst.root}
    assert (real.result["removed_partials"], real.result["stale_locks"]) == ([], [])
    for host, source, set_id in (("db1", "app", FULL), ("db1", "app", INC), ("db2", "crm", OTHER)):
        assert dst.read_manifest_bytes(host, source, set_id) == src.read_manifest_bytes(host, source, set_id)
        assert dst.verify_set(dst.read_manifest(host, source, set_id)) == []
    assert os.stat(dst.root).st_mode & 0o777 == 0o700

    for check_mode in (False, True):
        again = run_module(monkeypatch, tmp_path, backup_copy, args(stores), check_mode=check_mode)
        assert not again.failed, again.result
        assert again.result["changed"] is False
        assert again.result["copied"] == []
        assert len(again.result["skipped"]) == 3


def test_one_set_by_id_with_its_parent(monkeypatch, tmp_path, stores):
    outcome = run_module(monkeypatch, tmp_path, backup_copy, args(stores, host="db1", source="app", set_id=INC))
    assert not outcome.failed, outcome.result
    assert names(outcome.result["copied"]) == ["db1/app/" + FULL, "db1/app/" + INC]
    assert stores[1].hosts() == ["db1"]


def test_a_corrupt_set_fails_the_task_naming_the_file_after_copying_the_rest(monkeypatch, tmp_path, stores):
    src, dst = stores
    with open(os.path.join(src.location("db1", "app", FULL), "toc.dat"), "wb") as handle:
        handle.write(b"TOC")
    outcome = run_module(monkeypatch, tmp_path, backup_copy, args(stores))
    assert outcome.failed
    result = outcome.result
    assert result["msg"] == (
        "1 set(s) copied, 2 not copied: db1/app/%s: it failed verification at the source (toc.dat: SHA-256 mismatch); "
        "db1/app/%s: its parent db1/app/%s was not copied." % (FULL, INC, FULL))
    assert result["changed"] is True
    assert names(result["copied"]) == ["db2/crm/" + OTHER]
    assert dst.listing("db1", "app").sets == []
    assert dst.listing("db1", "app").partials == []

    report = run_module(monkeypatch, tmp_path, backup_copy, args(stores, fail_on_error=False, verify_source=False))
    assert not report.failed
    assert report.result["changed"] is False
    assert [e["reason"] for e in report.result["refused"]] == [
        "its file toc.dat at the source does not match its manifest (SHA-256 mismatch)",
        "its parent db1/app/%s was not copied" % FULL]


def test_a_conflict_fails_the_task_and_is_never_overwritten(monkeypatch, tmp_path, stores):
    src, dst = stores
    make_set(dst, "db2", "crm", OTHER, files={"dump.pgc": b"not the same"})
    before = dst.read_manifest_bytes("db2", "crm", OTHER)
    outcome = run_module(monkeypatch, tmp_path, backup_copy, args(stores))
    assert outcome.failed
    assert outcome.result["msg"].endswith(
        "not copied: db2/crm/%s: the destination holds a set of that id with a different manifest; "
        "it is never overwritten." % OTHER)
    assert names(outcome.result["conflicts"]) == ["db2/crm/" + OTHER]
    assert dst.read_manifest_bytes("db2", "crm", OTHER) == before


@pytest.mark.parametrize("extra, words", [
    (dict(set_id=FULL), "missing parameter(s) required by 'set_id': source, host"),
    (dict(host="db1", source="app", set_id="20261231T000000Z-full"),
     "Set db1/app/20261231T000000Z-full is not in the source store (or is incomplete)."),
])
def test_selection_errors_are_one_sentence(monkeypatch, tmp_path, stores, extra, words):
    outcome = run_module(monkeypatch, tmp_path, backup_copy, args(stores, **extra))
    assert outcome.failed
    assert words in outcome.result["msg"]
    assert "\n" not in outcome.result["msg"]


def test_the_same_store_twice_is_refused(monkeypatch, tmp_path, stores):
    src = stores[0]
    outcome = run_module(monkeypatch, tmp_path, backup_copy,
                         dict(store=dict(path=src.root), dest_store=dict(path=src.root + "/")))
    assert outcome.failed
    assert outcome.result["msg"] == "store and dest_store are the same store (%s); copy to another one." % src.root


def test_a_missing_source_store_is_refused(monkeypatch, tmp_path):
    outcome = run_module(monkeypatch, tmp_path, backup_copy,
                         dict(store=dict(path=str(tmp_path / "nope")), dest_store=dict(path=str(tmp_path / "dst"))))
    assert outcome.failed
    assert outcome.result["msg"] == "The store %s does not exist." % (tmp_path / "nope")
    assert not os.path.exists(str(tmp_path / "dst"))


def test_dest_store_is_required_and_checked_like_store(monkeypatch, tmp_path, stores):
    outcome = run_module(monkeypatch, tmp_path, backup_copy, dict(store=dict(path=stores[0].root)))
    assert outcome.failed
    assert "dest_store" in outcome.result["msg"]
    outcome = run_module(monkeypatch, tmp_path, backup_copy,
                         dict(store=dict(path=stores[0].root), dest_store=dict(kind="dir")))
    assert outcome.failed
    assert "path" in outcome.result["msg"]


def test_the_result_is_plain_json(monkeypatch, tmp_path, stores):
    outcome = run_module(monkeypatch, tmp_path, backup_copy, args(stores))
    text = json.dumps(outcome.result)
    assert "manifest" not in json.loads(text)
    assert set(outcome.result) == {"changed", "copied", "skipped", "conflicts", "refused", "strays", "bytes",
                                   "duration_s", "removed_partials", "stale_locks", "store", "dest_store"}
