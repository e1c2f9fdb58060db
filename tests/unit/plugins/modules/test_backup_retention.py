# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""backup_retention over real dir stores and a moto S3 server, with the clock injected."""

from __future__ import annotations

import datetime
import os

import pytest

from ansible_collections.lifeboat.backup.plugins.module_utils import _jobs
from ansible_collections.lifeboat.backup.plugins.module_utils import _retention
from ansible_collections.lifeboat.backup.plugins.module_utils import _store_dir
from ansible_collections.lifeboat.backup.plugins.module_utils import _store_kinds
from ansible_collections.lifeboat.backup.plugins.modules import backup_retention
from ansible_collections.lifeboat.backup.tests.unit.plugins.helpers import at, make_set, run_module
from ansible_collections.lifeboat.backup.tests.unit.plugins.module_utils import moto_harness

DAY = 86400


def sid(when, kind):
    return when.strftime("%Y%m%dT%H%M%SZ") + "-" + kind


def week_of_sets(store, host="db1", source="app", start="20261101T030000Z", days=8):
    """A full every 7 days, an incremental on each other day: full, inc x6, full."""
    made = []
    parent = None
    for day in range(days):
        when = at(start, day * DAY)
        kind = "full" if day % 7 == 0 else "incremental"
        set_id = sid(when, kind)
        made.append(make_set(store, host, source, set_id, parent=parent if kind != "full" else None))
        parent = set_id
    return made


def clock(monkeypatch, when):
    monkeypatch.setattr(backup_retention, "utcnow", lambda: when)


def ids(items):
    return [i["set_id"] for i in items]


def test_plan_check_real_idempotent(monkeypatch, tmp_path, store_path):
    store = _store_dir.DirStore({"path": store_path})
    made = week_of_sets(store)
    clock(monkeypatch, at("20261109T000000Z"))
    args = {"store": {"path": store_path}, "policy": {"keep_last": 1}}
    check = run_module(monkeypatch, tmp_path, backup_retention, args, check_mode=True)
    assert not check.failed and check.result["changed"] is True
    # keep_last 1 keeps the newest full; the first full's whole chain goes, children first.
    doomed = ids(made[:7])[::-1]
    assert ids(check.result["deleted"]) == doomed
    assert store.set_ids("db1", "app") == ids(made)  # check mode deleted nothing
    real = run_module(monkeypatch, tmp_path, backup_retention, args)
    assert real.result["changed"] is True and ids(real.result["deleted"]) == doomed
    assert store.set_ids("db1", "app") == [made[7]["set_id"]]
    assert sorted(os.listdir(store.location("db1", "app"))) == sorted([made[7]["set_id"], "objects"])
    assert store.list_objects("db1", "app") == []  # the deletion journal is cleared
    again = run_module(monkeypatch, tmp_path, backup_retention, args)
    assert again.result["changed"] is False and again.result["deleted"] == []
    again_check = run_module(monkeypatch, tmp_path, backup_retention, args, check_mode=True)
    assert again_check.result["changed"] is False


def test_chain_kept_with_reasons(monkeypatch, tmp_path, store_path):
    store = _store_dir.DirStore({"path": store_path})
    made = week_of_sets(store, days=7)  # one full and six incrementals
    clock(monkeypatch, at("20261108T000000Z"))
    outcome = run_module(monkeypatch, tmp_path, backup_retention,
                         {"store": {"path": store_path}, "policy": {"keep_daily": 2}})
    assert outcome.result["deleted"] == []  # every older set is a parent of the newest
    plan = dict((e["set_id"], e["reasons"]) for e in outcome.result["plan"])
    assert plan[made[0]["set_id"]] == ["set %s depends on it" % made[1]["set_id"]]


def test_crash_mid_delete_finished_by_next_run(monkeypatch, tmp_path, store_path):
    store = _store_dir.DirStore({"path": store_path})
    made = week_of_sets(store)
    real_delete = _store_dir.DirStore.delete_set
    calls = []

    def crashing_delete(self, host, source, set_id):
        calls.append(set_id)
        if len(calls) == 3:
            # Die after hiding the set, before its payload is gone.
            os.rename(self.location(host, source, set_id), self.location(host, source, set_id) + ".deleting")
            raise KeyboardInterrupt("killed")
        return real_delete(self, host, source, set_id)

    monkeypatch.setattr(_store_dir.DirStore, "delete_set", crashing_delete)
    with pytest.raises(KeyboardInterrupt):
        _retention.apply_source(store, "db1", "app", _retention.check_policy({"keep_last": 1}),
                                at("20261109T000000Z"))
    half = calls[2]
    assert half not in store.set_ids("db1", "app")  # never looks complete
    assert store.listing("db1", "app").partials == [half + ".deleting"]
    monkeypatch.setattr(_store_dir.DirStore, "delete_set", real_delete)
    clock(monkeypatch, at("20261109T000000Z"))
    outcome = run_module(monkeypatch, tmp_path, backup_retention,
                         {"store": {"path": store_path}, "policy": {"keep_last": 1}})
    assert outcome.result["changed"] is True
    assert outcome.result["deletions_finished"] == [{"host": "db1", "source": "app", "set_id": half}]
    assert outcome.result["leftovers_removed"] == [{"host": "db1", "source": "app", "name": half + ".deleting"}]
    assert store.set_ids("db1", "app") == [made[7]["set_id"]]
    assert store.listing("db1", "app").partials == [] and store.list_objects("db1", "app") == []


def test_failed_backup_blocks_until_a_newer_set(monkeypatch, tmp_path, store_path):
    store = _store_dir.DirStore({"path": store_path})
    made = week_of_sets(store)

    class Boom(object):
        def produce(self, ctx):
            raise _jobs.LifeboatError("pg_dump failed.")

    boom = Boom()

    job = _jobs.BackupJob(store, "db1", "app", "postgresql", "pg_dump", now=lambda: at("20261109T030000Z"))
    with pytest.raises(_jobs.LifeboatError):
        job.run(boom)
    clock(monkeypatch, at("20261109T040000Z"))
    args = {"store": {"path": store_path}, "policy": {"keep_last": 1}}
    outcome = run_module(monkeypatch, tmp_path, backup_retention, args)
    assert outcome.result["changed"] is False and outcome.result["deleted"] == []
    assert outcome.result["blocked"]["db1/app"].startswith(
        "The newest attempt did not complete: the backup attempt 20261109T030000Z-full failed")
    failing = run_module(monkeypatch, tmp_path, backup_retention, dict(args, fail_when_blocked=True))
    assert failing.failed and failing.result["msg"].startswith("Retention deleted nothing for db1/app:")
    # A newer complete set lifts the block, and the old failure record is pruned.
    make_set(store, "db1", "app", "20261110T030000Z-full")
    clock(monkeypatch, at("20261110T040000Z"))
    outcome = run_module(monkeypatch, tmp_path, backup_retention, args)
    assert outcome.result["blocked"] == {}
    assert len(outcome.result["deleted"]) == len(made)
    assert outcome.result["objects_pruned"] == [
        {"host": "db1", "source": "app", "name": "attempts/20261109T030000Z-full.failed"}]


def test_wait_for_the_offsite_copy(monkeypatch, tmp_path, store_path):
    store = _store_dir.DirStore({"path": store_path})
    offsite_path = str(tmp_path / "offsite")
    offsite = _store_dir.DirStore({"path": offsite_path})
    made = week_of_sets(store)
    for manifest in made[:7]:
        make_set(offsite, "db1", "app", manifest["set_id"], parent=manifest["parent_set_id"])
    clock(monkeypatch, at("20261109T000000Z"))
    args = {"store": {"path": store_path}, "policy": {"keep_last": 1}, "wait_for": [{"path": offsite_path}]}
    outcome = run_module(monkeypatch, tmp_path, backup_retention, args)
    assert outcome.result["deleted"] == []
    assert outcome.result["blocked"]["db1/app"] == (
        "The newest set %s has not reached %s yet; nothing is deleted until it is copied there."
        % (made[7]["set_id"], offsite.location("db1", "app")))
    make_set(offsite, "db1", "app", made[7]["set_id"])
    outcome = run_module(monkeypatch, tmp_path, backup_retention, args)
    assert len(outcome.result["deleted"]) == 7


def test_hold_label_objects_and_leftovers(monkeypatch, tmp_path, store_path):
    store = _store_dir.DirStore({"path": store_path})
    made = week_of_sets(store, days=1, start="20261101T030000Z")
    held = make_set(store, "db1", "app", "20261102T030000Z-full")
    # Label it as held by rewriting its manifest (labels are written by the backup job).
    path = os.path.join(store.location("db1", "app", held["set_id"]), "manifest.json")
    held["labels"] = {"hold": "audit 2026"}
    from ansible_collections.lifeboat.backup.plugins.module_utils import _manifest
    with open(path, "wb") as handle:
        handle.write(_manifest.dumps(held))
    newest = make_set(store, "db1", "app", "20261103T030000Z-full")
    for name in ("wal/000000010000000000000001", "wal/000000010000000000000007", "wal/000000010000000000000009"):
        store.put_object("db1", "app", name, __import__("io").BytesIO(b"segment"))
    # The newest set names the WAL it needs from.
    newest["position"] = {"objects_prefix": "wal/", "objects_from": "000000010000000000000007"}
    with open(os.path.join(store.location("db1", "app", newest["set_id"]), "manifest.json"), "wb") as handle:
        handle.write(_manifest.dumps(newest))
    os.mkdir(os.path.join(store.location("db1", "app"), "20261101T120000Z-full.partial"))
    clock(monkeypatch, at("20261105T000000Z"))
    outcome = run_module(monkeypatch, tmp_path, backup_retention,
                         {"store": {"path": store_path}, "policy": {"keep_last": 1}})
    assert ids(outcome.result["deleted"]) == [made[0]["set_id"]]
    plan = dict((e["set_id"], e) for e in outcome.result["plan"])
    assert plan[held["set_id"]]["reasons"] == ["it carries the hold label (audit 2026)"]
    assert [o["name"] for o in outcome.result["objects_pruned"]] == ["wal/000000010000000000000001"]
    assert [o["name"] for o in outcome.result["leftovers_removed"]] == ["20261101T120000Z-full.partial"]


@pytest.mark.parametrize("policy, sentence", [
    ({"keep_daily": -1}, "keep_daily in the policy must be zero or more, not -1."),
    ({"keep_daily": 0}, "The policy keeps nothing: give at least one of keep_last"),
    ({"keep_within": "a while"}, "keep_within in the policy must be a duration"),
])
def test_bad_policy_one_sentence(monkeypatch, tmp_path, store_path, policy, sentence):
    outcome = run_module(monkeypatch, tmp_path, backup_retention, {"store": {"path": store_path}, "policy": policy})
    assert outcome.failed and outcome.result["msg"].startswith(sentence) and "\n" not in outcome.result["msg"]


def test_missing_store_one_sentence(monkeypatch, tmp_path):
    missing = str(tmp_path / "nowhere")
    outcome = run_module(monkeypatch, tmp_path, backup_retention,
                         {"store": {"path": missing}, "policy": {"keep_last": 1}})
    assert outcome.failed and outcome.result["msg"] == "The store %s does not exist." % missing


# ------------------------------------------------------------------ S3 (moto server)

def s3_args(server, bucket, **extra):
    store = dict(kind="s3", bucket=bucket, prefix="backups", **server.connection())
    store.update(extra)
    return store


def test_retention_over_s3(monkeypatch, tmp_path):
    server = moto_harness.server()
    bucket = server.new_bucket()
    spec = s3_args(server, bucket)
    store = _store_kinds.open_store(spec)
    made = week_of_sets(store)
    clock(monkeypatch, at("20261109T000000Z"))
    args = {"store": spec, "policy": {"keep_last": 1}}
    check = run_module(monkeypatch, tmp_path, backup_retention, args, check_mode=True)
    assert ids(check.result["deleted"]) == ids(made[:7])[::-1]
    assert store.set_ids("db1", "app") == ids(made)
    real = run_module(monkeypatch, tmp_path, backup_retention, args)
    assert real.result["changed"] is True
    assert store.set_ids("db1", "app") == [made[7]["set_id"]]
    keys = [o["Key"] for o in server.client().list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert not [k for k in keys if made[0]["set_id"] in k]
    again = run_module(monkeypatch, tmp_path, backup_retention, args)
    assert again.result["changed"] is False


def test_s3_half_deleted_set_finished(monkeypatch, tmp_path):
    """On S3 a half-deleted set is a prefix without manifest; the journal lets the next run finish it at once."""
    server = moto_harness.server()
    bucket = server.new_bucket()
    spec = s3_args(server, bucket)
    store = _store_kinds.open_store(spec)
    made = week_of_sets(store, days=2, start="20261108T030000Z")
    made += [make_set(store, "db1", "app", "20261110T030000Z-full")]
    doomed = made[1]["set_id"]
    # What a run killed inside delete_set leaves: the journal mark, the manifest gone, a payload left.
    store.put_object("db1", "app", _retention.JOURNAL_PREFIX + doomed, __import__("io").BytesIO(b"{}"))
    key = "backups/db1/app/%s/manifest.json" % doomed
    server.client().delete_object(Bucket=bucket, Key=key)
    assert store.listing("db1", "app").partials == [doomed + ".partial"]
    clock(monkeypatch, at("20261110T040000Z"))  # the leftover is younger than leftovers_older_than
    outcome = run_module(monkeypatch, tmp_path, backup_retention, {"store": spec, "policy": {"keep_last": 1}})
    assert outcome.result["deletions_finished"] == [{"host": "db1", "source": "app", "set_id": doomed}]
    assert store.listing("db1", "app").partials == []
    assert store.set_ids("db1", "app") == [made[2]["set_id"]]


def test_s3_object_lock_keeps_and_refuses_deletion(monkeypatch, tmp_path):
    server = moto_harness.server()
    bucket = server.new_bucket(ObjectLockEnabledForBucket=True)
    spec = s3_args(server, bucket, object_lock_mode="GOVERNANCE", object_lock_days=30)
    store = _store_kinds.open_store(spec)
    assert "immutability" in store.capabilities
    made = week_of_sets(store, days=2, start="20261108T030000Z")
    plain = _store_kinds.open_store(s3_args(server, bucket))  # writes without a lock
    newer = make_set(plain, "db1", "app", "20261120T030000Z-full")
    newest = make_set(plain, "db1", "app", "20261121T030000Z-full")
    clock(monkeypatch, datetime.datetime.now(datetime.timezone.utc))
    outcome = run_module(monkeypatch, tmp_path, backup_retention, {"store": spec, "policy": {"keep_last": 1}})
    plan = dict((e["set_id"], e) for e in outcome.result["plan"])
    for manifest in made:
        assert plan[manifest["set_id"]]["action"] == "keep"
        assert plan[manifest["set_id"]]["reasons"][0].startswith("it is under Object Lock (GOVERNANCE) until ")
    assert ids(outcome.result["deleted"]) == [newer["set_id"]]
    assert plan[newest["set_id"]]["action"] == "keep"
    # The lock itself: deleting a locked version is refused by the endpoint, even with the writer's keys.
    client = server.client()
    key = "backups/db1/app/%s/manifest.json" % made[0]["set_id"]
    version = client.head_object(Bucket=bucket, Key=key)["VersionId"]
    with pytest.raises(Exception) as info:
        client.delete_object(Bucket=bucket, Key=key, VersionId=version)
    assert "AccessDenied" in str(info.value) or "locked" in str(info.value).lower()
    assert client.head_object(Bucket=bucket, Key=key, VersionId=version)["ObjectLockMode"] == "GOVERNANCE"


def test_s3_wrong_bucket_and_credentials(monkeypatch, tmp_path):
    server = moto_harness.server()
    spec = s3_args(server, "lb-no-such-bucket-here")
    outcome = run_module(monkeypatch, tmp_path, backup_retention, {"store": spec, "policy": {"keep_last": 1}})
    assert outcome.failed and "\n" not in outcome.result["msg"]
    assert "lb-no-such-bucket-here" in outcome.result["msg"]


def test_wait_for_fragment_keeps_the_store_fragment_text():
    import yaml
    from ansible_collections.lifeboat.backup.plugins.doc_fragments import _store, _wait_for
    wait_for = yaml.safe_load(_wait_for.ModuleDocFragment.DOCUMENTATION)["options"]["wait_for"]
    store = yaml.safe_load(_store.ModuleDocFragment.DOCUMENTATION)["options"]["store"]
    assert wait_for["suboptions"] == store["suboptions"]
    assert sorted(wait_for["suboptions"]) == sorted(_store_kinds.store_options())


def test_s3_aborted_upload_cleaned_after_threshold(monkeypatch, tmp_path):
    server = moto_harness.server()
    bucket = server.new_bucket()
    spec = s3_args(server, bucket)
    store = _store_kinds.open_store(spec)
    week_of_sets(store, days=2, start="20261108T030000Z")
    newest = make_set(store, "db1", "app", "20261112T030000Z-full")
    # A run killed mid-upload on the 10th: an incomplete multipart upload and no manifest.
    server.client().create_multipart_upload(Bucket=bucket, Key="backups/db1/app/20261110T030000Z-full/dump.pgc")
    name = "20261110T030000Z-full/dump.pgc.upload"
    assert name in store.listing("db1", "app").partials
    args = {"store": spec, "policy": {"keep_last": 5}, "leftovers_older_than": "3d"}
    clock(monkeypatch, at("20261112T040000Z"))  # two days old: kept back
    young = run_module(monkeypatch, tmp_path, backup_retention, args)
    assert young.result["changed"] is False
    assert [(k["name"], k["reason"]) for k in young.result["leftovers_kept"]] == [
        (name, "it is younger than leftovers_older_than")]
    clock(monkeypatch, at("20261114T040000Z"))  # four days old: removed
    old = run_module(monkeypatch, tmp_path, backup_retention, args)
    assert old.result["changed"] is True
    assert [k["name"] for k in old.result["leftovers_removed"]] == [name]
    assert server.client().list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    assert store.set_ids("db1", "app")[-1] == newest["set_id"]


def test_mark_left_before_the_set_was_hidden(monkeypatch, tmp_path, store_path):
    """A run that died after writing the journal mark but before hiding the set: the next run deletes it."""
    store = _store_dir.DirStore({"path": store_path})
    made = week_of_sets(store)
    store.put_object("db1", "app", _retention.JOURNAL_PREFIX + made[6]["set_id"], __import__("io").BytesIO(b"{}"))
    clock(monkeypatch, at("20261109T000000Z"))
    outcome = run_module(monkeypatch, tmp_path, backup_retention,
                         {"store": {"path": store_path}, "policy": {"keep_last": 1}})
    assert not outcome.failed, outcome.result.get("msg")
    assert len(outcome.result["deleted"]) == 7
    assert store.set_ids("db1", "app") == [made[7]["set_id"]] and store.list_objects("db1", "app") == []
