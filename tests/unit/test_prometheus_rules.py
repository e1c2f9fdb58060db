# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The example alert rules (examples/prometheus/): promtool checks and unit-tests them, and they fire on
the series that backup_metrics really writes."""

from __future__ import annotations

import datetime
import os
import re
import shutil
import subprocess

import yaml

from ansible_collections.lifeboat.backup.plugins.module_utils import _metrics
from ansible_collections.lifeboat.backup.plugins.module_utils import _store_dir
from ansible_collections.lifeboat.backup.plugins.module_utils._common import format_ts, utcnow
from ansible_collections.lifeboat.backup.tests.unit.plugins import promtext
from ansible_collections.lifeboat.backup.tests.unit.plugins.helpers import make_set

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RULES_DIR = os.path.join(ROOT, "examples", "prometheus")
RULES = os.path.join(RULES_DIR, "lifeboat-alerts.yml")
PROMTOOL = shutil.which("promtool")  # Debian package prometheus, installed by scripts/setup.sh
DAY = 86400.0


def promtool(*args, cwd=RULES_DIR):
    assert PROMTOOL, "promtool is missing: run scripts/setup.sh (apt package prometheus)"
    proc = subprocess.run([PROMTOOL] + list(args), cwd=cwd, capture_output=True, text=True, timeout=120, check=False)
    return proc.returncode, proc.stdout + proc.stderr


def test_rules_pass_promtool_check():
    rc, out = promtool("check", "rules", RULES)
    assert rc == 0, out
    assert "SUCCESS: 7 rules found" in out


def test_rules_pass_their_promtool_unit_tests():
    rc, out = promtool("test", "rules", "lifeboat-alerts.test.yml")
    assert rc == 0, out


def test_rules_name_only_metrics_the_module_writes():
    with open(RULES) as handle:
        rules = yaml.safe_load(handle)["groups"][0]["rules"]
    names = set()
    for rule in rules:
        names.update(re.findall(r"\blifeboat_[a-z_]+", rule["expr"]))
    assert names and names <= set(_metrics.FAMILY_HELP), names - set(_metrics.FAMILY_HELP)
    assert sorted(r["alert"] for r in rules) == sorted([
        "LifeboatBackupOlderThanRPO", "LifeboatBackupFailed", "LifeboatOffsiteCopyLagging", "LifeboatStoreFillingUp",
        "LifeboatStoreFullInAWeek", "LifeboatStoreUnreadable", "LifeboatMetricsStale"])


def test_rules_fire_on_what_the_module_writes(tmp_path):
    """Real stores, real samples: a failed source, an RPO breach and an offsite copy a day behind fire."""
    now = utcnow().replace(microsecond=0)

    def ago(seconds):
        return (now - datetime.timedelta(seconds=seconds)).strftime("%Y%m%dT%H%M%SZ") + "-full"
    stores = {"primary": _store_dir.DirStore({"path": str(tmp_path / "primary")}),
              "offsite": _store_dir.DirStore({"path": str(tmp_path / "offsite")})}
    make_set(stores["primary"], "db1", "app", ago(60), duration=0)
    make_set(stores["offsite"], "db1", "app", ago(DAY), duration=0)
    make_set(stores["offsite"], "db1", "app", ago(2 * DAY), duration=0)
    outcomes = [
        dict(name="app", engine="postgresql", method="pg_dump", status="ok", bytes=10, duration_s=1.0,
             finished=format_ts(now - datetime.timedelta(seconds=60)), rpo="26h", rpo_breach=False,
             copies={"primary": {"verified": True}, "offsite": {"verified": False, "error": "timeout"}}),
        dict(name="crm", engine="mysql", method="mysqldump", status="failed", error="Connection refused.",
             rpo="26h", rpo_breach=True, copies={}),
    ]
    samples, errors = _metrics.collect("db1", outcomes, stores, now)
    text = samples.render()
    families = promtext.parse(text)
    series = []
    for name, family in families.items():
        for labels, value in family["samples"]:
            labels = dict(labels, instance="db1:9100", job="node")
            label_text = ",".join('%s="%s"' % (k, _metrics.escape_label_value(v)) for k, v in sorted(labels.items()))
            series.append({"series": "%s{%s}" % (name, label_text), "values": "%sx90" % _metrics.format_value(value)})
    common = {"instance": "db1:9100", "job": "node", "host": "db1"}
    test = {
        "rule_files": [RULES],
        "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            "input_series": series,
            "alert_rule_test": [
                {"eval_time": "80m", "alertname": "LifeboatBackupFailed",
                 "exp_alerts": [{"exp_labels": dict(common, severity="warning", source="crm"), "exp_annotations": {
                     "summary": "Last backup of crm on db1 failed",
                     "description": "The last backup attempt of crm on db1 failed; the job's summary (or the webhook "
                                    "message) says why."}}]},
                {"eval_time": "80m", "alertname": "LifeboatBackupOlderThanRPO",
                 "exp_alerts": [{"exp_labels": dict(common, severity="critical", source="crm"), "exp_annotations": {
                     "summary": "Backup of crm on db1 is older than its RPO",
                     "description": "The newest complete backup of crm on db1 does not meet its recovery point "
                                    "objective."}}]},
                {"eval_time": "80m", "alertname": "LifeboatOffsiteCopyLagging",
                 "exp_alerts": [{"exp_labels": dict(common, severity="warning", source="app"), "exp_annotations": {
                     "summary": "Offsite copy of app on db1 is lagging",
                     "description": "The newest offsite set of app on db1 is 23h 59m 0s older than the newest "
                                    "primary set."}}]},
                {"eval_time": "80m", "alertname": "LifeboatStoreUnreadable", "exp_alerts": []},
            ],
        }],
    }
    path = tmp_path / "generated.test.yml"
    path.write_text(yaml.safe_dump(test))
    rc, out = promtool("test", "rules", str(path), cwd=str(tmp_path))
    assert rc == 0, out
