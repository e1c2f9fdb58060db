# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys

import pytest

from ansible_collections.lifeboat.backup.plugins.module_utils import _store_dir
from ansible_collections.lifeboat.backup.plugins.module_utils._common import utcnow
from ansible_collections.lifeboat.backup.plugins.modules import backup_info
from ansible_collections.lifeboat.backup.tests.unit.plugins.helpers import at, make_set, run_module

NOW = at("20261110T000000Z")
DAY = 86400.0


def set_id_ago(seconds, set_type="full", now=None):
    when = (now or NOW) - datetime.timedelta(seconds=seconds)
    return when.strftime("%Y%m%dT%H%M%SZ") + "-" + set_type


@pytest.fixture
def store(tmp_path):
    store = _store_dir.DirStore({"path": str(tmp_path / "store")})
    make_set(store, "db1", "app", set_id_ago(3 * DAY), duration=0)
    make_set(store, "db1", "app", set_id_ago(3600, "incremental"), parent=set_id_ago(3 * DAY), duration=0)
    make_set(store, "db2", "app", set_id_ago(3 * DAY), duration=0)
    writer = store.begin("db2", "app", set_id_ago(60))
    with writer.open("dump.pgc") as handle:
        handle.write(b"half")
    make_set(store, "db2", "crm", set_id_ago(2 * DAY), duration=0)
    with open(os.path.join(store.location("db2", "crm", set_id_ago(2 * DAY)), "manifest.json"), "w") as handle:
        handle.write("[]")
    return store


@pytest.mark.parametrize(
    "host, source, rpo, expected",
    [
        (None, None, DAY, {"db1/app": ("ok", 3600.0), "db2/app": ("violated", 3 * DAY)}),
        (None, None, None, {"db1/app": ("unknown", 3600.0), "db2/app": ("unknown", 3 * DAY)}),
        ("db1", None, 3599.0, {"db1/app": ("violated", 3600.0)}),
        ("db1", "app", 3600.0, {"db1/app": ("ok", 3600.0)}),
        ("db1", "crm", DAY, {"db1/crm": ("missing", None)}),
        ("db2", "crm", DAY, {"db2/crm": ("missing", None)}),   # its only set is invalid
        (None, "app", 4 * DAY, {"db1/app": ("ok", 3600.0), "db2/app": ("ok", 3 * DAY)}),
    ],
)
def test_report_rpo(store, host, source, rpo, expected):
    result = backup_info.report(store, host, source, rpo, NOW)
    assert dict((k, (v["status"], v["age_s"])) for k, v in result["rpo_status"].items()) == expected
    for value in result["rpo_status"].values():
        assert value["rpo_s"] == rpo


def test_report_contents(store):
    result = backup_info.report(store, None, None, DAY, NOW)
    assert [(s["host"], s["source"], s["set_id"]) for s in result["sets"]] == [
        ("db1", "app", set_id_ago(3 * DAY)),
        ("db1", "app", set_id_ago(3600, "incremental")),
        ("db2", "app", set_id_ago(3 * DAY)),
    ]
    assert result["latest"]["db1/app"]["set_id"] == set_id_ago(3600, "incremental")
    assert result["latest"]["db1/app"]["age_s"] == 3600.0
    assert result["latest"]["db1/app"]["parent_set_id"] == set_id_ago(3 * DAY)
    assert result["partials"] == [{"host": "db2", "source": "app", "name": set_id_ago(60) + ".partial"}]
    assert [(i["host"], i["source"], i["set_id"]) for i in result["invalid"]] == [("db2", "crm", set_id_ago(2 * DAY))]
    assert "is not a JSON object" in result["invalid"][0]["error"]


def test_main_lists_and_reports(monkeypatch, tmp_path):
    store = _store_dir.DirStore({"path": str(tmp_path / "store")})
    now = utcnow()
    make_set(store, "db1", "app", set_id_ago(3 * DAY, now=now), duration=0)
    make_set(store, "db2", "app", set_id_ago(600, now=now), duration=0)
    args = dict(store=dict(kind="dir", path=store.root), rpo="1d")
    warned = []
    monkeypatch.setattr(backup_info.AnsibleModule, "warn", lambda self, warning: warned.append(warning))
    outcome = run_module(monkeypatch, tmp_path, backup_info, args, check_mode=True)
    assert not outcome.failed, outcome.result
    result = outcome.result
    assert result["changed"] is False
    assert result["store"] == {"kind": "dir", "path": store.root}
    assert len(result["sets"]) == 2
    assert result["rpo_status"]["db1/app"]["status"] == "violated"
    assert result["rpo_status"]["db2/app"]["status"] == "ok"
    # Not failing on it, the violation is still a warning, visible at the default verbosity.
    assert warned == ["RPO 1d is not met by db1/app."]

    failing = run_module(monkeypatch, tmp_path, backup_info, dict(args, fail_on_rpo_violation=True))
    assert failing.failed
    assert failing.result["msg"] == "RPO 1d is not met by db1/app."
    assert failing.result["rpo_status"]["db1/app"]["status"] == "violated"

    missing = run_module(monkeypatch, tmp_path, backup_info,
                         dict(args, host="db3", source="app", fail_on_rpo_violation=True))
    assert missing.failed
    assert missing.result["msg"] == "RPO 1d is not met by db3/app."
    assert missing.result["rpo_status"] == {"db3/app": {"status": "missing", "age_s": None, "rpo_s": DAY}}


@pytest.mark.parametrize(
    "args, msg",
    [
        (dict(store=dict(kind="dir", path="/nonexistent/lifeboat-store")),
         "The store /nonexistent/lifeboat-store does not exist."),
        (dict(store=dict(kind="dir", path="STORE"), rpo="a while"),
         "rpo must be a duration like 30m, 12h, 7d or 1d12h, not 'a while'."),
        (dict(store=dict(kind="dir", path="relative")), "The dir store path must be an absolute path, not 'relative'."),
    ],
)
def test_main_errors(monkeypatch, tmp_path, args, msg):
    os.makedirs(str(tmp_path / "store"))
    if args["store"]["path"] == "STORE":
        args = dict(args, store=dict(kind="dir", path=str(tmp_path / "store")))
    outcome = run_module(monkeypatch, tmp_path, backup_info, args)
    assert outcome.failed
    assert outcome.result["msg"] == msg


def test_report_caps_the_set_list_and_summarises_every_source(store):
    full = backup_info.report(store, None, None, DAY, NOW)
    assert full["set_count"] == 3 and full["truncated"] is False
    capped = backup_info.report(store, None, None, DAY, NOW, max_sets=2)
    # The newest two sets of the store (a tie on time goes to the later host), in (host, source, time) order.
    assert [(s["host"], s["set_id"]) for s in capped["sets"]] == [
        ("db1", set_id_ago(3600, "incremental")),
        ("db2", set_id_ago(3 * DAY)),
    ]
    assert capped["set_count"] == 3 and capped["truncated"] is True
    assert capped["latest"] == full["latest"] and capped["rpo_status"] == full["rpo_status"]
    none = backup_info.report(store, None, None, DAY, NOW, max_sets=0)
    assert none["sets"] == [] and none["truncated"] is True
    sources = none["sources"]
    assert sources["db1/app"]["count"] == 2
    assert sources["db1/app"]["oldest"] == set_id_ago(3 * DAY)
    assert sources["db1/app"]["newest"] == set_id_ago(3600, "incremental")
    assert sources["db1/app"]["future"] == 0
    assert sources["db2/app"]["partials"] == 1
    assert sources["db2/crm"] == {"count": 0, "bytes": 0, "oldest": None, "newest": None,
                                  "future": 0, "invalid": 1, "partials": 0}


def test_main_refuses_a_negative_max_sets(monkeypatch, tmp_path):
    store = _store_dir.DirStore({"path": str(tmp_path / "store")})
    make_set(store, "db1", "app", set_id_ago(600, now=utcnow()), duration=0)
    outcome = run_module(monkeypatch, tmp_path, backup_info,
                         dict(store=dict(kind="dir", path=store.root), max_sets=-2))
    assert outcome.failed
    assert outcome.result["msg"] == "max_sets must be -1 (every set), 0 (none) or a positive number, not -2."


# Runs backup_info over a dir store in a fresh interpreter, then prints which AWS libraries got imported.
_NO_BOTO_PROBE = """
import io, json, runpy, sys
args_path = sys.argv[1]
sys.argv = ["backup_info", args_path]
out = io.StringIO()
real_stdout, sys.stdout = sys.stdout, out
try:
    runpy.run_module("ansible_collections.lifeboat.backup.plugins.modules.backup_info", run_name="__main__")
except SystemExit:
    pass
sys.stdout = real_stdout
print(json.dumps({"result": json.loads(out.getvalue()),
                  "imported": sorted(n for n in ("boto3", "botocore", "urllib3") if n in sys.modules)}))
"""


def test_a_dir_store_run_imports_no_aws_library(tmp_path):
    """Importing backup_info and scanning a dir store never imports boto3, botocore or urllib3 (about 0.3 s)."""
    store = _store_dir.DirStore({"path": str(tmp_path / "store")})
    make_set(store, "db1", "app", set_id_ago(600, now=utcnow()), duration=0)
    args = tmp_path / "args.json"
    args.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": {"store": {"kind": "dir", "path": store.root}, "rpo": "1d",
                                                        "_ansible_tmpdir": str(tmp_path)}}))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    proc = subprocess.run([sys.executable, "-c", _NO_BOTO_PROBE, str(args)], env=env, capture_output=True,
                          text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["result"]["set_count"] == 1 and not report["result"].get("failed"), report["result"]
    assert report["result"]["rpo_status"]["db1/app"]["status"] == "ok"
    assert report["imported"] == []


def test_main_lists_the_newest_100_sets_by_default(monkeypatch, tmp_path):
    store = _store_dir.DirStore({"path": str(tmp_path / "store")})
    now = utcnow()
    ids = [set_id_ago(3600 * (i + 1), now=now) for i in range(101)]
    for set_id in ids:
        make_set(store, "db1", "app", set_id, duration=0)
    outcome = run_module(monkeypatch, tmp_path, backup_info, dict(store=dict(kind="dir", path=store.root)))
    assert not outcome.failed, outcome.result
    result = outcome.result
    assert [s["set_id"] for s in result["sets"]] == sorted(ids)[1:]
    assert result["set_count"] == 101 and result["truncated"] is True
    assert result["sources"]["db1/app"]["count"] == 101 and result["sources"]["db1/app"]["oldest"] == min(ids)
    assert result["latest"]["db1/app"]["set_id"] == max(ids)
