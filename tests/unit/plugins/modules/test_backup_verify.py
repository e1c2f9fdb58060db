# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import os

import pytest

from ansible_collections.lifeboat.backup.plugins.module_utils import _store_dir
from ansible_collections.lifeboat.backup.plugins.module_utils._common import LifeboatError
from ansible_collections.lifeboat.backup.plugins.modules import backup_verify
from ansible_collections.lifeboat.backup.tests.unit.plugins.helpers import make_set, run_module

GOOD = "20261101T000000Z-full"
BAD = "20261102T000000Z-full"
BROKEN = "20261103T000000Z-full"


@pytest.fixture
def store(tmp_path):
    store = _store_dir.DirStore({"path": str(tmp_path / "store")})
    make_set(store, "db1", "app", GOOD, files={"dump.pgc": b"good data"})
    make_set(store, "db1", "app", BAD, files={"dump.pgc": b"soon bad", "globals.sql": b"ok"})
    with open(os.path.join(store.location("db1", "app", BAD), "dump.pgc"), "r+b") as handle:
        handle.write(b"S")
    make_set(store, "db1", "app", BROKEN)
    with open(os.path.join(store.location("db1", "app", BROKEN), "manifest.json"), "w") as handle:
        handle.write("{")
    make_set(store, "db2", "crm", GOOD)
    return store


def test_verify_all(store):
    results = backup_verify.verify(store, None, None, None)
    summary = dict(((r["host"], r["source"], r["set_id"]), (r["ok"], [p["problem"] for p in r["problems"]]))
                   for r in results)
    assert summary == {
        ("db1", "app", GOOD): (True, []),
        ("db1", "app", BAD): (False, ["sha256"]),
        ("db1", "app", BROKEN): (False, ["invalid"]),
        ("db2", "crm", GOOD): (True, []),
    }
    bad = [r for r in results if r["set_id"] == BAD][0]
    assert bad["problems"][0]["name"] == "dump.pgc"


@pytest.mark.parametrize(
    "host, source, set_id, expected",
    [
        ("db1", "app", GOOD, [(GOOD, True)]),
        ("db1", "app", BAD, [(BAD, False)]),
        ("db1", "app", BROKEN, [(BROKEN, False)]),
        ("db2", None, None, [(GOOD, True)]),
    ],
)
def test_verify_filtered(store, host, source, set_id, expected):
    results = backup_verify.verify(store, host, source, set_id)
    assert [(r["set_id"], r["ok"]) for r in results] == expected


def test_verify_unknown_set(store):
    with pytest.raises(LifeboatError, match="Set db1/app/20990101T000000Z-full is not in the store"):
        backup_verify.verify(store, "db1", "app", "20990101T000000Z-full")


def test_main_fails_naming_bad_files(monkeypatch, tmp_path, store):
    outcome = run_module(monkeypatch, tmp_path, backup_verify, dict(store=dict(kind="dir", path=store.root)))
    assert outcome.failed
    result = outcome.result
    assert result["checked"] == 4
    assert result["ok"] is False
    assert result["bad_files"] == ["db1/app/%s/dump.pgc" % BAD, "db1/app/%s/manifest.json" % BROKEN]
    assert result["msg"].startswith("2 of 4 set(s) failed verification: db1/app/%s (dump.pgc: SHA-256 mismatch); "
                                    "db1/app/%s (manifest.json: invalid (" % (BAD, BROKEN))


def test_main_report_only(monkeypatch, tmp_path, store):
    outcome = run_module(monkeypatch, tmp_path, backup_verify,
                         dict(store=dict(kind="dir", path=store.root), fail_on_error=False), check_mode=True)
    assert not outcome.failed
    assert outcome.result["changed"] is False
    assert outcome.result["ok"] is False
    assert len(outcome.result["bad_files"]) == 2


def test_main_one_good_set(monkeypatch, tmp_path, store):
    outcome = run_module(monkeypatch, tmp_path, backup_verify,
                         dict(store=dict(kind="dir", path=store.root), host="db1", source="app", set_id=GOOD))
    assert not outcome.failed, outcome.result
    assert outcome.result["ok"] is True
    assert outcome.result["checked"] == 1
    assert outcome.result["bytes"] == len(b"good data")
    assert outcome.result["bad_files"] == []


def test_main_set_id_requires_host_and_source(monkeypatch, tmp_path, store):
    outcome = run_module(monkeypatch, tmp_path, backup_verify,
                         dict(store=dict(kind="dir", path=store.root), set_id=GOOD))
    assert outcome.failed
    assert "set_id" in outcome.result["msg"]


def test_main_missing_store(monkeypatch, tmp_path):
    outcome = run_module(monkeypatch, tmp_path, backup_verify,
                         dict(store=dict(kind="dir", path=str(tmp_path / "nope"))))
    assert outcome.failed
    assert outcome.result["msg"] == "The store %s does not exist." % (tmp_path / "nope")
