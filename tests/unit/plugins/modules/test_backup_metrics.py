# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""backup_metrics: the textfile it writes parses strictly (and with promtool) and says what the stores hold."""

from __future__ import annotations

import datetime
import json
import os
import shutil
import stat
import subprocess

import pytest
import yaml

from ansible_collections.lifeboat.backup.plugins.module_utils import _metrics
from ansible_collections.lifeboat.backup.plugins.module_utils import _store_dir
from ansible_collections.lifeboat.backup.plugins.module_utils import _store_kinds
from ansible_collections.lifeboat.backup.plugins.module_utils._common import format_ts, utcnow
from ansible_collections.lifeboat.backup.plugins.modules import backup_metrics
from ansible_collections.lifeboat.backup.tests.unit.plugins import promtext
from ansible_collections.lifeboat.backup.tests.unit.plugins.helpers import make_set, run_module
from ansible_collections.lifeboat.backup.tests.unit.plugins.module_utils import moto_harness

HOUR = 3600.0
DAY = 86400.0
PROMTOOL = shutil.which("promtool")  # Debian package prometheus, installed by scripts/setup.sh


def set_id_ago(now, seconds, set_type="full"):
    return (now - datetime.timedelta(seconds=seconds)).strftime("%Y%m%dT%H%M%SZ") + "-" + set_type


def stamp_ago(now, seconds):
    return format_ts(now - datetime.timedelta(seconds=seconds))


def outcome(now, name="app", status="ok", **extra):
    one = dict(name=name, engine="postgresql", method="pg_dump", status=status, error=None,
               set_id=set_id_ago(now, 60), type="full", bytes=1234, duration_s=12.5,
               started=stamp_ago(now, 72.5), finished=stamp_ago(now, 60),
               copies={"primary": {"set_id": set_id_ago(now, 60), "verified": True, "error": None}},
               rpo="26h", rpo_breach=False)
    one.update(extra)
    return one


@pytest.fixture
def fleet(tmp_path):
    """Three dir stores: primary with a new set, secondary one day behind, offsite three days behind."""
    now = utcnow().replace(microsecond=0)
    paths = dict((role, str(tmp_path / role)) for role in _metrics.STORE_ROLES)
    stores = dict((role, _store_dir.DirStore({"path": path})) for role, path in paths.items())
    make_set(stores["primary"], "db1", "app", set_id_ago(now, 2 * DAY), duration=0)
    make_set(stores["primary"], "db1", "app", set_id_ago(now, 60), duration=0)
    make_set(stores["secondary"], "db1", "app", set_id_ago(now, 2 * DAY), duration=0)
    make_set(stores["secondary"], "db1", "app", set_id_ago(now, DAY), duration=0)
    make_set(stores["offsite"], "db1", "app", set_id_ago(now, 3 * DAY), duration=0)
    return now, paths, stores


def args(tmp_path, paths, sources, **extra):
    one = dict(path=str(tmp_path / "textfile" / "lifeboat.prom"), host="db1", sources=sources,
               stores=dict((role, {"kind": "dir", "path": path}) for role, path in paths.items()))
    one.update(extra)
    return one


def parse_file(path):
    with open(path, "rb") as handle:
        data = handle.read()
    families = promtext.parse(data)
    proc = subprocess.run([PROMTOOL, "check", "metrics"], input=data, capture_output=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr.decode() + proc.stdout.decode()
    return families


def test_promtool_is_installed():
    """scripts/setup.sh installs the prometheus package, which ships promtool; the checks below need it."""
    assert PROMTOOL, "promtool is missing: run scripts/setup.sh (apt package prometheus)"


def test_a_run_writes_every_family(monkeypatch, tmp_path, fleet):
    now, paths, stores = fleet
    result = run_module(monkeypatch, tmp_path, backup_metrics, args(tmp_path, paths, [outcome(now)]))
    assert not result.failed, result.result
    path = result.result["path"]
    assert result.result["changed"] is True
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
    assert os.listdir(os.path.dirname(path)) == ["lifeboat.prom"]  # no temp file left behind
    families = parse_file(path)
    assert all(f["type"] == "gauge" for f in families.values())
    assert sorted(families) == sorted(result.result["families"])

    def v(name, **labels):
        return promtext.value(families, name, host="db1", **labels)
    finished = (now - datetime.timedelta(seconds=60)).timestamp()
    assert v("lifeboat_backup_last_success_timestamp_seconds", source="app") == finished
    assert v("lifeboat_backup_last_attempt_timestamp_seconds", source="app") == finished
    assert v("lifeboat_backup_last_attempt_status", source="app", status="ok") == 1
    assert v("lifeboat_backup_last_attempt_status", source="app", status="failed") == 0
    assert v("lifeboat_backup_last_attempt_failed", source="app") == 0
    assert v("lifeboat_backup_last_attempt_duration_seconds", source="app") == 12.5
    assert v("lifeboat_backup_last_set_bytes", source="app") == 1234
    assert v("lifeboat_backup_rpo_seconds", source="app") == 26 * HOUR
    assert v("lifeboat_backup_rpo_breach", source="app") == 0
    assert v("lifeboat_backup_copy_verified", source="app", store="primary") == 1
    assert v("lifeboat_backup_info", source="app", engine="postgresql", method="pg_dump") == 1
    # The newest copy per store: the age tells the offsite copy lags three days behind.
    for role, age in (("primary", 60), ("secondary", DAY), ("offsite", 3 * DAY)):
        assert v("lifeboat_backup_newest_copy_timestamp_seconds", source="app", store=role, kind="dir") == \
            (now - datetime.timedelta(seconds=age)).timestamp()
        assert abs(v("lifeboat_backup_newest_copy_age_seconds", source="app", store=role) - age) < 120
    # Store usage: the bytes of every set the store holds of the source.
    manifests = [stores["primary"].read_manifest("db1", "app", s) for s in stores["primary"].set_ids("db1", "app")]
    assert v("lifeboat_backup_store_sets", source="app", store="primary") == 2
    assert v("lifeboat_backup_store_bytes", source="app", store="primary") == sum(m["bytes"] for m in manifests)
    assert v("lifeboat_backup_store_sets", source="app", store="offsite") == 1
    st = os.statvfs(paths["primary"])
    assert 0 < v("lifeboat_backup_store_free_bytes", store="primary", kind="dir") <= st.f_blocks * st.f_frsize
    assert v("lifeboat_backup_store_size_bytes", store="primary") == st.f_blocks * st.f_frsize
    assert v("lifeboat_backup_store_up", store="offsite") == 1
    assert "lifeboat_backup_store_read_error" not in families
    assert result.result["errors"] == []
    # The result lists what was written.
    listed = [(m["name"], m["labels"]) for m in result.result["metrics"]]
    assert ("lifeboat_backup_rpo_breach", {"host": "db1", "source": "app"}) in listed
    assert len(listed) == sum(len(f["samples"]) for f in families.values())


def test_failed_source_and_rpo_breach(monkeypatch, tmp_path, fleet):
    """A failed attempt keeps the last success from the stores; with no verdict given the breach is worked out."""
    now, paths, dummy = fleet
    sources = [
        outcome(now, status="failed", error="The database app does not exist.", set_id=None, bytes=None,
                copies={}, rpo="1h", rpo_breach=None),
        outcome(now, name="crm", status="failed", error="Connection refused.", set_id=None, bytes=None, copies={},
                rpo="1d", rpo_breach=True),
    ]
    result = run_module(monkeypatch, tmp_path, backup_metrics, args(tmp_path, paths, sources))
    assert not result.failed, result.result
    families = parse_file(result.result["path"])

    def v(name, **labels):
        return promtext.value(families, name, host="db1", **labels)
    assert v("lifeboat_backup_last_attempt_failed", source="app") == 1
    assert v("lifeboat_backup_last_attempt_status", source="app", status="failed") == 1
    # The newest set any store holds of app ended a minute ago: older than the 1h RPO? No.
    assert v("lifeboat_backup_last_success_timestamp_seconds", source="app") == \
        (now - datetime.timedelta(seconds=60)).timestamp()
    assert v("lifeboat_backup_rpo_breach", source="app") == 0
    # crm has never been backed up: last success 0, the breach given by the role, no set in any store.
    assert v("lifeboat_backup_last_success_timestamp_seconds", source="crm") == 0
    assert v("lifeboat_backup_rpo_breach", source="crm") == 1
    assert v("lifeboat_backup_newest_copy_timestamp_seconds", source="crm", store="primary") == 0
    assert v("lifeboat_backup_store_sets", source="crm", store="primary") == 0
    assert result.result["failed_sources"] == [{"name": "app", "error": "The database app does not exist."},
                                               {"name": "crm", "error": "Connection refused."}]
    # The error sentence of a source is not a label: labels stay few and stable.
    assert "Connection refused" not in open(result.result["path"]).read()


def test_breach_worked_out_from_the_stores(tmp_path, fleet):
    now, dummy, stores = fleet
    late = now + datetime.timedelta(seconds=2 * HOUR)  # the newest set is now two hours old
    samples, dummy = _metrics.collect("db1", [outcome(now, status="failed", rpo="1h", rpo_breach=None)],
                                      stores, late)
    families = promtext.parse(samples.render())
    assert promtext.value(families, "lifeboat_backup_rpo_breach", source="app") == 1
    samples, dummy = _metrics.collect("db1", [outcome(now, status="failed", rpo="3h", rpo_breach=None)],
                                      stores, late)
    assert promtext.value(promtext.parse(samples.render()), "lifeboat_backup_rpo_breach", source="app") == 0


def test_check_mode_writes_nothing(monkeypatch, tmp_path, fleet):
    now, paths, dummy = fleet
    result = run_module(monkeypatch, tmp_path, backup_metrics, args(tmp_path, paths, [outcome(now)]), check_mode=True)
    assert not result.failed, result.result
    assert result.result["changed"] is True
    assert result.result["metrics"]
    assert not os.path.exists(str(tmp_path / "textfile"))


def test_rewrite_replaces_the_file(monkeypatch, tmp_path, fleet):
    now, paths, dummy = fleet
    target = tmp_path / "textfile" / "lifeboat.prom"
    target.parent.mkdir()
    target.write_text("old content\n")
    os.chmod(str(target), 0o600)
    before = os.stat(str(target)).st_ino
    result = run_module(monkeypatch, tmp_path, backup_metrics, args(tmp_path, paths, [outcome(now)]))
    assert not result.failed, result.result
    assert os.stat(str(target)).st_ino != before  # renamed over, never rewritten in place
    assert stat.S_IMODE(os.stat(str(target)).st_mode) == 0o644
    parse_file(str(target))


def test_without_store_usage_only_names_and_the_newest_manifest(tmp_path, fleet):
    now, dummy, stores = fleet
    read = []
    real = _store_dir.DirStore.read_manifest

    def counting(self, host, source, set_id):
        read.append((self.root, set_id))
        return real(self, host, source, set_id)

    original = _store_dir.DirStore.read_manifest
    _store_dir.DirStore.read_manifest = counting
    try:
        samples, errors = _metrics.collect("db1", [outcome(now)], stores, now, usage=False)
    finally:
        _store_dir.DirStore.read_manifest = original
    families = promtext.parse(samples.render())
    assert errors == []
    assert "lifeboat_backup_store_bytes" not in families
    assert promtext.value(families, "lifeboat_backup_store_sets", store="primary") == 2
    assert sorted(read) == sorted([(stores["primary"].root, set_id_ago(now, 60)),
                                   (stores["secondary"].root, set_id_ago(now, DAY)),
                                   (stores["offsite"].root, set_id_ago(now, 3 * DAY))])


@pytest.mark.parametrize("usage", [True, False])
def test_hostile_store_gives_counts_not_a_traceback(tmp_path, fleet, usage):
    """Broken, forged and future-dated sets are counted; the newest copy is the newest usable set."""
    now, dummy, stores = fleet
    primary = stores["primary"]
    good = set_id_ago(now, 60)
    # A newer set whose manifest is garbage, a FIFO manifest, one dated in a year, and a stray symlink.
    broken = make_set(primary, "db1", "app", set_id_ago(now, 30), duration=0)["set_id"]
    with open(os.path.join(primary.location("db1", "app", broken), "manifest.json"), "w") as handle:
        handle.write("{\"format\": ")
    fifo = make_set(primary, "db1", "app", set_id_ago(now, 20), duration=0)["set_id"]
    os.unlink(os.path.join(primary.location("db1", "app", fifo), "manifest.json"))
    os.mkfifo(os.path.join(primary.location("db1", "app", fifo), "manifest.json"))
    make_set(primary, "db1", "app", set_id_ago(now, -365 * DAY), duration=0)
    os.symlink("/etc", os.path.join(primary.location("db1", "app"), set_id_ago(now, 10)))
    samples, errors = _metrics.collect("db1", [outcome(now, status="failed", rpo_breach=None)], stores, now, usage)
    families = promtext.parse(samples.render())

    def v(name, **labels):
        return promtext.value(families, name, **labels)
    assert v("lifeboat_backup_newest_copy_timestamp_seconds", store="primary") == \
        (now - datetime.timedelta(seconds=60)).timestamp()
    assert v("lifeboat_backup_store_invalid_sets", store="primary") == 3
    assert v("lifeboat_backup_store_future_sets", store="primary") == 1
    assert v("lifeboat_backup_last_success_timestamp_seconds", source="app") == \
        (now - datetime.timedelta(seconds=60)).timestamp()
    assert good in primary.set_ids("db1", "app")
    assert errors == []


def test_unreadable_store_is_an_error_label(tmp_path, fleet):
    """A source name the store refuses, and a store that is not there: error samples, the rest written."""
    now, dummy, stores = fleet
    stores["secondary"] = _store_dir.DirStore({"path": str(tmp_path / "not-mounted")})
    hostile = 'a"b\\c\nd'
    samples, errors = _metrics.collect("db1", [outcome(now), outcome(now, name=hostile)], stores, now)
    text = samples.render()
    families = promtext.parse(text)
    proc = subprocess.run([PROMTOOL, "check", "metrics"], input=text.encode(), capture_output=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert promtext.value(families, "lifeboat_backup_store_up", store="secondary") == 0
    assert promtext.value(families, "lifeboat_backup_store_up", store="primary") == 1
    failures = [labels for labels, value in families["lifeboat_backup_store_read_error"]["samples"]]
    assert sorted(f["store"] for f in failures) == ["offsite", "primary"]
    assert all(f["source"] == hostile for f in failures)  # the label value round-trips through the escapes
    for failure in failures:
        assert failure["error"] and "\n" not in failure["error"] and "Traceback" not in failure["error"]
    assert promtext.value(families, "lifeboat_backup_store_sets", source="app", store="primary") == 2
    assert [e["store"] for e in errors if e["source"] is None] == ["secondary"]
    assert "does not exist" in errors[0]["error"]


@pytest.mark.parametrize("bad, message", [
    (dict(finished="yesterday"), "Source app.finished must be an ISO 8601 time"),
    (dict(started="2026-11-26T03:15:00"), "has no time zone"),
    (dict(rpo="soon"), "rpo must be a duration"),
    (dict(copies={"tape": {"verified": True}}), "Source app has a copy in store tape"),
    (dict(copies={"offsite": "yes"}), "Source app: the copy in store offsite must be a dict"),
])
def test_bad_outcomes_fail_with_one_sentence(monkeypatch, tmp_path, fleet, bad, message):
    now, paths, dummy = fleet
    result = run_module(monkeypatch, tmp_path, backup_metrics, args(tmp_path, paths, [outcome(now, **bad)]))
    assert result.failed
    assert message in result.result["msg"]
    assert "\n" not in result.result["msg"]
    assert not os.path.exists(str(tmp_path / "textfile"))


def test_duplicate_sources_and_unknown_keys_are_refused(monkeypatch, tmp_path, fleet):
    now, paths, dummy = fleet
    result = run_module(monkeypatch, tmp_path, backup_metrics, args(tmp_path, paths, [outcome(now), outcome(now)]))
    assert result.failed and "Source app appears twice" in result.result["msg"]
    result = run_module(monkeypatch, tmp_path, backup_metrics, args(tmp_path, paths, [outcome(now, stauts="ok")]))
    assert result.failed and "stauts" in result.result["msg"]


def test_path_that_is_a_directory(monkeypatch, tmp_path, fleet):
    now, paths, dummy = fleet
    result = run_module(monkeypatch, tmp_path, backup_metrics, args(tmp_path, paths, [outcome(now)],
                                                                    path=str(tmp_path)))
    assert result.failed and "is a directory" in result.result["msg"]


def test_no_stores_still_reports_the_run(monkeypatch, tmp_path):
    now = utcnow()
    result = run_module(monkeypatch, tmp_path, backup_metrics,
                        dict(path=str(tmp_path / "m.prom"), host="web1", sources=[outcome(now, name="www")]))
    assert not result.failed, result.result
    families = parse_file(result.result["path"])
    assert promtext.value(families, "lifeboat_backup_last_attempt_failed", host="web1", source="www") == 0


def test_s3_offsite_store_and_its_secret(monkeypatch, tmp_path, fleet):
    """An offsite bucket (moto) is read like any store; its secret key never reaches the result or the file."""
    now, paths, dummy = fleet
    server = moto_harness.server()
    bucket = server.new_bucket()
    connection = server.connection()
    offsite = _store_kinds.open_store(dict(connection, kind="s3", bucket=bucket))
    make_set(offsite, "db1", "app", set_id_ago(now, 2 * HOUR), duration=0)
    one = args(tmp_path, paths, [outcome(now)])
    one["stores"]["offsite"] = dict(connection, kind="s3", bucket=bucket, secret_key="s3cr3t-" + connection["secret_key"])
    result = run_module(monkeypatch, tmp_path, backup_metrics, one)
    assert not result.failed, result.result
    families = parse_file(result.result["path"])
    assert promtext.value(families, "lifeboat_backup_newest_copy_timestamp_seconds", store="offsite", kind="s3") == \
        (now - datetime.timedelta(seconds=2 * HOUR)).timestamp()
    assert promtext.value(families, "lifeboat_backup_store_up", store="offsite", kind="s3") == 1
    assert "lifeboat_backup_store_free_bytes" not in [m["name"] for m in result.result["metrics"]
                                                      if m["labels"].get("store") == "offsite"]
    assert "s3cr3t" not in json.dumps(result.result) + open(result.result["path"]).read()


def test_label_escapes_and_values():
    samples = _metrics.Samples()
    samples.add("lifeboat_backup_info", {"host": "h", "source": 'q"uote\\back\nline', "engine": "", "method": "x"}, 1)
    samples.add("lifeboat_backup_store_bytes", {"host": "h", "source": "s", "store": "primary", "kind": "dir"}, 2 ** 60)
    samples.add("lifeboat_backup_last_attempt_duration_seconds", {"host": "h", "source": "s"}, 0.1)
    text = samples.render()
    assert 'source="q\\"uote\\\\back\\nline"' in text
    families = promtext.parse(text)
    labels = families["lifeboat_backup_info"]["samples"][0][0]
    assert labels["source"] == 'q"uote\\back\nline'
    assert "lifeboat_backup_store_bytes{" in text and " 1152921504606846976\n" in text
    assert " 0.1\n" in text
    with pytest.raises(_metrics.MetricsError):
        samples.add("lifeboat_backup_no_such_family", {}, 1)


def test_strict_parser_refuses_what_prometheus_would_misread():
    good = "# HELP a_b x\n# TYPE a_b gauge\na_b{l=\"v\"} 1\n"
    assert promtext.parse(good)["a_b"]["samples"] == [({"l": "v"}, 1.0)]
    for bad in (good[:-1], good + "a_b{l=\"v\"} 2\n", good.replace("# TYPE a_b gauge\n", ""),
                good.replace('"v"', '"\\x"'), good.replace(" 1\n", " one\n"), good + "\n",
                "# HELP a_b x\n# TYPE a_b gauge\n# HELP c x\n# TYPE c gauge\nc 1\na_b 1\n"):
        with pytest.raises(promtext.ParseError):
            promtext.parse(bad)


def _fragment_suboptions(module_fragment, key):
    return yaml.safe_load(module_fragment.ModuleDocFragment.DOCUMENTATION)["options"][key]


def test_stores_fragment_keeps_the_store_fragment_text():
    from ansible_collections.lifeboat.backup.plugins.doc_fragments import _metrics_stores, _store
    store = _fragment_suboptions(_store, "store")["suboptions"]
    stores = _fragment_suboptions(_metrics_stores, "stores")["suboptions"]
    assert sorted(stores) == sorted(_metrics.STORE_ROLES)
    for role in _metrics.STORE_ROLES:
        text = json.dumps(store).replace("O(store.", "O(stores.%s." % role)
        assert stores[role]["suboptions"] == json.loads(text)
        assert sorted(stores[role]["suboptions"]) == sorted(_store_kinds.store_options())
    assert stores["primary"].get("required") is True
    assert not stores["offsite"].get("required")
