# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Retention planning: table tests of each rule and hypothesis properties over random histories."""

from __future__ import annotations

import datetime
import os
import tempfile

import pytest

from ansible_collections.lifeboat.backup.plugins.module_utils import _catalog
from ansible_collections.lifeboat.backup.plugins.module_utils import _retention
from ansible_collections.lifeboat.backup.plugins.module_utils._retention import PolicyError, check_policy
from ansible_collections.lifeboat.backup.tests.unit.plugins.helpers import at, make_manifest

hypothesis = pytest.importorskip("hypothesis")
hypothesis.configuration.set_hypothesis_home_dir(os.path.join(tempfile.gettempdir(), "lifeboat-unit-hypothesis"))
from hypothesis import given, settings, strategies as st  # noqa: E402 pylint: disable=wrong-import-position

UTC = datetime.timezone.utc
PROPS = settings(max_examples=150, deadline=None, database=None)


def sid(when, kind):
    return when.strftime("%Y%m%dT%H%M%SZ") + "-" + kind


def actions(result):
    return dict((e["set_id"], e["action"]) for e in result["sets"])


def kept(result):
    return sorted(e["set_id"] for e in result["sets"] if e["action"] == "keep")


def daily_fulls(start, days):
    return [make_manifest(sid(start + datetime.timedelta(days=i), "full")) for i in range(days)]


# ------------------------------------------------------------------ policy checks

@pytest.mark.parametrize("policy, sentence", [
    ({"keep_daily": -1}, "keep_daily in the policy must be zero or more, not -1."),
    ({"keep_daily": "seven"}, "keep_daily in the policy must be a whole number, not 'seven'."),
    ({"keep_daily": True}, "keep_daily in the policy must be a whole number, not True."),
    ({"keep_daily": 1.5}, "keep_daily in the policy must be a whole number, not 1.5."),
    ({}, "The policy keeps nothing: give at least one of keep_last, keep_hourly, keep_daily, keep_weekly, "
         "keep_monthly, keep_yearly above zero, or keep_within."),
    ({"keep_daily": 0, "min_keep": 3}, "The policy keeps nothing"),
    ({"keep_dayly": 7}, "The policy has unknown rule(s) keep_dayly"),
    ({"keep_within": "soon"}, "keep_within in the policy must be a duration"),
    ("7 daily", "The policy must be a dictionary"),
])
def test_bad_policies_one_sentence(policy, sentence):
    with pytest.raises(PolicyError) as info:
        check_policy(policy)
    assert str(info.value).startswith(sentence)
    assert "\n" not in str(info.value)


def test_policy_normalised():
    assert check_policy({"keep_daily": "7", "keep_within": "2d", "min_keep": 2}) == {
        "keep_last": None, "keep_hourly": None, "keep_daily": 7, "keep_weekly": None, "keep_monthly": None,
        "keep_yearly": None, "min_keep": 2, "keep_within_s": 172800.0}


# ------------------------------------------------------------------ rules

def test_keep_last_and_newest():
    sets = daily_fulls(at("20261101T030000Z"), 10)
    result = _retention.plan_source(sets, check_policy({"keep_last": 3}), now=at("20261111T000000Z"))
    assert kept(result) == sorted(m["set_id"] for m in sets[-3:])
    newest = [e for e in result["sets"] if e["set_id"] == sets[-1]["set_id"]][0]
    assert "it is the newest complete set" in newest["reasons"]
    assert [e["set_id"] for e in result["sets"] if e["action"] == "delete"] == [m["set_id"] for m in sets[:-3]][::-1]


def test_daily_takes_newest_of_each_day():
    sets = [make_manifest(sid(at("20261101T000000Z", h * 3600 * 6), "full")) for h in range(12)]  # 4 a day, 3 days
    result = _retention.plan_source(sets, check_policy({"keep_daily": 2}), now=at("20261104T000000Z"))
    assert kept(result) == ["20261102T180000Z-full", "20261103T180000Z-full"]


def test_gfs_month_and_year_boundaries():
    ids = ["20251231T230000Z-full", "20260101T010000Z-full", "20260131T235959Z-full", "20260201T000000Z-full",
           "20261228T120000Z-full", "20270103T120000Z-full"]
    sets = [make_manifest(i) for i in ids]
    now = at("20270104T000000Z")
    monthly = kept(_retention.plan_source(sets, check_policy({"keep_monthly": 3}), now=now))
    assert monthly == ["20260201T000000Z-full", "20261228T120000Z-full", "20270103T120000Z-full"]
    yearly = kept(_retention.plan_source(sets, check_policy({"keep_yearly": 3}), now=now))
    assert yearly == ["20251231T230000Z-full", "20261228T120000Z-full", "20270103T120000Z-full"]
    # ISO weeks: 2026-12-28 (Monday) and 2027-01-03 (Sunday) are both in week 2026-W53.
    weekly = _retention.plan_source(sets, check_policy({"keep_weekly": 2}), now=now)
    assert kept(weekly) == ["20260201T000000Z-full", "20270103T120000Z-full"]
    assert _retention.bucket(at("20270103T120000Z"), "week") == "2026-W53"


def test_keep_within_and_min_keep():
    sets = daily_fulls(at("20261101T000000Z"), 10)
    result = _retention.plan_source(sets, check_policy({"keep_within": "3d"}), now=at("20261110T120000Z"))
    assert kept(result) == ["20261108T000000Z-full", "20261109T000000Z-full", "20261110T000000Z-full"]
    result = _retention.plan_source(sets, check_policy({"keep_last": 1, "min_keep": 4}), now=at("20261111T000000Z"))
    assert len(kept(result)) == 4


def test_chain_parents_kept_and_named():
    full = "20261101T000000Z-full"
    inc = ["20261102T000000Z-incremental", "20261103T000000Z-incremental"]
    sets = [make_manifest(full), make_manifest(inc[0], parent=full), make_manifest(inc[1], parent=inc[0])]
    result = _retention.plan_source(sets, check_policy({"keep_last": 1}), now=at("20261104T000000Z"))
    assert kept(result) == sorted([full] + inc)
    entry = [e for e in result["sets"] if e["set_id"] == full][0]
    assert entry["reasons"] == ["set %s depends on it" % inc[0]]


def test_broken_future_and_hold_are_kept():
    sets = [make_manifest("20261101T000000Z-full"),
            make_manifest("20261102T000000Z-incremental", parent="20261031T000000Z-full"),
            make_manifest("20261103T000000Z-full"),
            make_manifest("20261104T000000Z-full"),
            make_manifest("20261201T000000Z-full")]
    sets[0]["labels"] = {"hold": "legal case 42"}
    result = _retention.plan_source(sets, check_policy({"keep_last": 1}), now=at("20261105T000000Z"),
                                    locks={"20261103T000000Z-full": "it is under Object Lock (COMPLIANCE) until 2027"})
    assert actions(result) == {
        "20261101T000000Z-full": "keep", "20261102T000000Z-incremental": "keep",
        "20261103T000000Z-full": "keep", "20261104T000000Z-full": "keep", "20261201T000000Z-full": "keep"}
    reasons = dict((e["set_id"], e["reasons"]) for e in result["sets"])
    assert reasons["20261101T000000Z-full"] == ["it carries the hold label (legal case 42)"]
    assert "parent 20261031T000000Z-full is missing" in reasons["20261102T000000Z-incremental"][0]
    assert reasons["20261103T000000Z-full"] == ["it is under Object Lock (COMPLIANCE) until 2027"]
    assert "dated in the future" in reasons["20261201T000000Z-full"][0]


@pytest.mark.parametrize("leftovers, failures, blocked", [
    (["20261106T000000Z-full.partial"], [], True),
    (["20261106T000000Z-full/dump.pgc.upload"], [], True),
    ([], ["20261106T000000Z-incremental"], True),
    (["20261104T000000Z-full.partial"], [], False),      # older than the newest set: not the newest attempt
    (["20261106T000000Z-full.deleting"], [], False),     # a deletion to finish, not an attempt
    ([], ["20261103T000000Z-full"], False),
])
def test_failed_newest_attempt_blocks(leftovers, failures, blocked):
    sets = daily_fulls(at("20261101T000000Z"), 5)
    result = _retention.plan_source(sets, check_policy({"keep_last": 1}), now=at("20261107T000000Z"),
                                    leftovers=leftovers, failures=failures)
    assert bool(result["blocked"]) is blocked
    assert (len(kept(result)) == 5) is blocked


def test_future_set_does_not_hide_a_failed_attempt():
    sets = daily_fulls(at("20261101T000000Z"), 5) + [make_manifest("20270101T000000Z-full")]
    result = _retention.plan_source(sets, check_policy({"keep_last": 1}), now=at("20261107T000000Z"),
                                    failures=["20261106T000000Z-full"])
    assert result["blocked"] and len(kept(result)) == 6


def test_waiting_blocks():
    sets = daily_fulls(at("20261101T000000Z"), 5)
    result = _retention.plan_source(sets, check_policy({"keep_last": 1}), now=at("20261107T000000Z"),
                                    waiting="The newest set has not reached store s3://offsite yet.")
    assert result["blocked"].startswith("The newest set has not reached")
    assert len(kept(result)) == 5


def test_objects_needed_and_failure_records_pruned():
    keep = make_manifest("20261105T000000Z-full")
    keep["position"] = {"objects_prefix": "wal/", "objects_from": "000000010000000000000005"}
    names = ["wal/000000010000000000000003", "wal/000000010000000000000005", "wal/000000010000000000000009",
             "other/x", "attempts/20261101T000000Z-full.failed", "attempts/20261106T000000Z-full.failed"]
    assert _retention.prunable_objects(names, [keep], keep["set_id"]) == [
        "attempts/20261101T000000Z-full.failed", "wal/000000010000000000000003"]
    assert _retention.prunable_objects(["wal/1"], [make_manifest("20261105T000000Z-full")]) == []


def test_objects_keep_spares_names_that_sort_before_the_first_needed():
    """A timeline history file (00000002.history) sorts before the segments of its timeline: still needed."""
    keep = make_manifest("20261105T000000Z-full")
    keep["position"] = {"objects_prefix": "wal/", "objects_from": "000000020000000000000005",
                        "objects_keep": ".history"}
    names = ["wal/00000002.history.zst", "wal/00000002.history", "wal/000000020000000000000004.zst",
             "wal/000000020000000000000005.zst"]
    assert _retention.prunable_objects(names, [keep]) == ["wal/000000020000000000000004.zst"]
    del keep["position"]["objects_keep"]
    assert "wal/00000002.history.zst" in _retention.prunable_objects(names, [keep])


def test_catalog_reexports():
    assert _catalog.retention_plan is _retention.plan
    assert _catalog.check_policy is _retention.check_policy


# ------------------------------------------------------------------ properties

START = datetime.datetime(2025, 11, 20, tzinfo=UTC)


@st.composite
def histories(draw):
    """One source's history: random gaps (minutes to weeks) across month and year ends, random types."""
    count = draw(st.integers(min_value=0, max_value=40))
    when = START
    sets = []
    fulls_and_all = []
    for dummy in range(count):
        when += datetime.timedelta(minutes=draw(st.integers(min_value=1, max_value=60 * 24 * 20)))
        kind = draw(st.sampled_from(["full", "incremental", "differential"]) if sets else st.just("full"))
        set_id = sid(when, kind)
        parent = None
        if kind == "incremental":
            parent = draw(st.sampled_from(fulls_and_all))
        elif kind == "differential":
            fulls = [s for s in fulls_and_all if s.endswith("-full")]
            parent = draw(st.sampled_from(fulls)) if fulls else None
            if parent is None:
                kind, set_id = "full", sid(when, "full")
        sets.append(make_manifest(set_id, parent=parent))
        fulls_and_all.append(set_id)
    # Some sets vanish (damage), so broken chains appear too.
    lost = draw(st.sets(st.integers(min_value=0, max_value=max(count - 1, 0)), max_size=3)) if count and draw(
        st.booleans()) else set()
    sets = [m for i, m in enumerate(sets) if i not in lost]
    failed = None
    if draw(st.booleans()):
        failed = sid(when + datetime.timedelta(minutes=draw(st.integers(min_value=1, max_value=600))), "incremental")
    now = when + datetime.timedelta(hours=draw(st.integers(min_value=1, max_value=24 * 60)))
    return sets, failed, now


policies = st.fixed_dictionaries({}, optional={
    "keep_last": st.integers(min_value=0, max_value=6),
    "keep_hourly": st.integers(min_value=0, max_value=6),
    "keep_daily": st.integers(min_value=0, max_value=6),
    "keep_weekly": st.integers(min_value=0, max_value=6),
    "keep_monthly": st.integers(min_value=0, max_value=6),
    "keep_yearly": st.integers(min_value=0, max_value=3),
    "keep_within": st.sampled_from(["1h", "1d", "10d"]),
    "min_keep": st.integers(min_value=0, max_value=5),
}).filter(lambda p: any(p.get(k) for k in _retention.COUNT_RULES) or p.get("keep_within"))


def run(history, policy, failed_as):
    sets, failed, now = history
    leftovers, failures = [], []
    if failed and failed_as == "partial":
        leftovers = [failed + ".partial"]
    elif failed:
        failures = [failed]
    return _retention.plan_source(sets, check_policy(policy), now=now, leftovers=leftovers, failures=failures)


@PROPS
@given(histories(), policies, st.sampled_from(["partial", "record"]))
def test_no_kept_set_loses_a_parent(history, policy, failed_as):
    result = run(history, policy, failed_as)
    present = dict((m["set_id"], m) for m in history[0])
    keep = set(kept(result))
    for set_id in keep:
        parent = present[set_id]["parent_set_id"]
        if parent in present:
            assert parent in keep, "%s kept but its parent %s deleted" % (set_id, parent)


@PROPS
@given(histories(), policies, st.sampled_from(["partial", "record"]))
def test_newest_complete_set_kept(history, policy, failed_as):
    sets, failed, now = history
    result = run(history, policy, failed_as)
    restorable = [m for m, chain in _catalog.usable_sets(sets, now)]
    if restorable:
        newest = max(restorable, key=lambda m: m["set_id"][:16])
        assert newest["set_id"] in kept(result)
    # Only restorable sets are ever deleted.
    ok = set(m["set_id"] for m in restorable)
    assert all(e["set_id"] in ok for e in result["sets"] if e["action"] == "delete")


@PROPS
@given(histories(), policies, st.sampled_from(["partial", "record"]))
def test_nothing_deleted_after_failed_attempt(history, policy, failed_as):
    sets, failed, now = history
    result = run(history, policy, failed_as)
    if failed:
        assert result["blocked"]
        assert all(e["action"] == "keep" for e in result["sets"])


@PROPS
@given(histories(), policies)
def test_applying_twice_deletes_nothing_more(history, policy):
    sets, dummy, now = history
    first = _retention.plan_source(sets, check_policy(policy), now=now)
    left = [m for m in sets if m["set_id"] in set(kept(first))]
    second = _retention.plan_source(left, check_policy(policy), now=now)
    assert [e for e in second["sets"] if e["action"] == "delete"] == []


@PROPS
@given(histories(), st.sampled_from(["keep_daily", "keep_weekly", "keep_monthly", "keep_yearly"]),
       st.integers(min_value=1, max_value=5))
def test_gfs_buckets(history, rule, count):
    """Each GFS rule keeps exactly the newest restorable set of each of its ``count`` newest buckets."""
    sets, dummy, now = history
    unit = dict(_retention.GFS_RULES)[rule]
    result = _retention.plan_source(sets, check_policy({rule: count}), now=now)
    restorable = [m for m, chain in _catalog.usable_sets(sets, now)]
    newest_in = {}
    for manifest in restorable:
        name = _retention.bucket(_retention._time(manifest["set_id"]), unit)
        if name not in newest_in or manifest["set_id"][:16] > newest_in[name][:16]:
            newest_in[name] = manifest["set_id"]
    expected = set(newest_in[b] for b in sorted(newest_in)[-count:])
    by_rule = set(e["set_id"] for e in result["sets"] if any(r.startswith(rule + " ") for r in e["reasons"]))
    assert by_rule == expected
    # Python's calendar is the oracle: the bucket is the year/month/ISO week of the UTC start time.
    for manifest in restorable:
        when = _retention._time(manifest["set_id"])
        name = _retention.bucket(when, unit)
        if unit == "month":
            assert name == when.strftime("%Y-%m")
        elif unit == "year":
            assert name == str(when.year)
        elif unit == "week":
            assert name == "%04d-W%02d" % tuple(when.isocalendar())[:2]
