# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import datetime
import os
import shutil

import pytest

from ansible_collections.lifeboat.backup.plugins.module_utils import _catalog
from ansible_collections.lifeboat.backup.plugins.module_utils import _store_dir
from ansible_collections.lifeboat.backup.plugins.module_utils._catalog import ChainError, NoSetError
from ansible_collections.lifeboat.backup.plugins.module_utils._common import LifeboatError
from ansible_collections.lifeboat.backup.tests.unit.plugins.helpers import FakeStore, make_manifest, make_set

UTC = datetime.timezone.utc

FULL = "20261101T000000Z-full"
INC1 = "20261102T000000Z-incremental"
INC2 = "20261103T000000Z-incremental"
DIFF = "20261104T000000Z-differential"
FULL2 = "20261108T000000Z-full"


def ts(text):
    return datetime.datetime.strptime(text, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)


@pytest.fixture
def chain():
    """One source with full <- inc <- inc, a differential on the full, and a newer full."""
    return {
        FULL: make_manifest(FULL),
        INC1: make_manifest(INC1, parent=FULL),
        INC2: make_manifest(INC2, parent=INC1),
        DIFF: make_manifest(DIFF, parent=FULL),
        FULL2: make_manifest(FULL2),
    }


# ------------------------------------------------------------------ scan

def test_scan_fake_store():
    sets = [
        make_manifest("20261102T000000Z-full", host="db2", source="app"),
        make_manifest("20261101T000000Z-full", host="db1", source="app"),
        make_manifest("20261103T000000Z-full", host="db1", source="app"),
        make_manifest("20261101T000000Z-full", host="db1", source="crm"),
    ]
    store = FakeStore(
        sets,
        partials={("db1", "app"): ["20261104T000000Z-full.partial"]},
        broken={("db1", "crm"): {"20261105T000000Z-full": "The manifest is not valid JSON."}},
    )
    found, invalid, partials = _catalog.scan(store)
    assert [(m["host"], m["source"], m["set_id"]) for m in found] == [
        ("db1", "app", "20261101T000000Z-full"),
        ("db1", "app", "20261103T000000Z-full"),
        ("db1", "crm", "20261101T000000Z-full"),
        ("db2", "app", "20261102T000000Z-full"),
    ]
    assert invalid == [{"host": "db1", "source": "crm", "set_id": "20261105T000000Z-full",
                        "error": "The manifest is not valid JSON."}]
    assert partials == [{"host": "db1", "source": "app", "name": "20261104T000000Z-full.partial"}]


@pytest.mark.parametrize(
    "host, source, expected",
    [
        ("db1", None, [("db1", "app"), ("db1", "crm")]),
        ("db1", "crm", [("db1", "crm")]),
        (None, "app", [("db1", "app"), ("db2", "app")]),
        ("db3", None, []),
    ],
)
def test_scan_filters(host, source, expected):
    store = FakeStore([
        make_manifest(FULL, host="db1", source="app"),
        make_manifest(FULL, host="db1", source="crm"),
        make_manifest(FULL, host="db2", source="app"),
    ])
    found, dummy, dummy2 = _catalog.scan(store, host, source)
    assert sorted(set((m["host"], m["source"]) for m in found)) == expected
    # Only the filtered sources were read.
    assert all((h, s) in expected for h, s, dummy3 in store.reads)


def test_scan_dir_store(tmp_path):
    store = _store_dir.DirStore({"path": str(tmp_path / "store")})
    make_set(store, "db1", "app", FULL)
    make_set(store, "db1", "app", INC1, parent=FULL)
    make_set(store, "db2", "app", FULL)
    # A crashed run: a .partial directory, never a backup even with a manifest inside.
    crashed = store.begin("db1", "app", "20261105T000000Z-full")
    with crashed.open("dump.pgc") as handle:
        handle.write(b"half")
    shutil.copy(os.path.join(store.location("db1", "app", FULL), "manifest.json"),
                store.location("db1", "app", "20261105T000000Z-full.partial"))
    # A set directory whose manifest is broken: reported as invalid.
    make_set(store, "db1", "app", "20261106T000000Z-full")
    with open(os.path.join(store.location("db1", "app", "20261106T000000Z-full"), "manifest.json"), "w") as handle:
        handle.write("{ truncated")
    # A set copied to another source: the manifest names the wrong place.
    shutil.copytree(store.location("db1", "app", FULL), store.location("db1", "moved", FULL))
    # A set directory without a manifest is incomplete: not listed, reported.
    os.makedirs(store.location("db1", "app", "20261107T000000Z-full"))
    # Junk is ignored.
    os.makedirs(os.path.join(store.root, ".trash", "x"))
    with open(os.path.join(store.root, "db1", "README"), "w") as handle:
        handle.write("not a source")

    found, invalid, partials = _catalog.scan(store)
    assert [(m["host"], m["source"], m["set_id"]) for m in found] == [
        ("db1", "app", FULL), ("db1", "app", INC1), ("db2", "app", FULL)]
    assert sorted((i["host"], i["source"], i["set_id"]) for i in invalid) == [
        ("db1", "app", "20261106T000000Z-full"), ("db1", "app", "20261107T000000Z-full"), ("db1", "moved", FULL)]
    errors = dict((i["set_id"], i["error"]) for i in invalid)
    assert "is not valid JSON" in errors["20261106T000000Z-full"]
    assert "no manifest" in errors["20261107T000000Z-full"]
    errors = dict((i["source"], i["error"]) for i in invalid)
    assert "moved or edited" in errors["moved"]
    assert partials == [{"host": "db1", "source": "app", "name": "20261105T000000Z-full.partial"}]


# ------------------------------------------------------------------ grouping, freshness

def test_by_source_and_latest_per_source():
    sets = [
        make_manifest("20261103T000000Z-full", host="db1", source="app"),
        make_manifest("20261101T000000Z-full", host="db1", source="app"),
        make_manifest("20261102T000000Z-incremental", host="db1", source="app", parent="20261101T000000Z-full"),
        make_manifest("20261101T000000Z-full", host="db2", source="app"),
        make_manifest("20261109T000000Z-full", host="db1", source="crm"),
    ]
    groups = _catalog.by_source(sets)
    assert sorted(groups) == ["db1/app", "db1/crm", "db2/app"]
    assert [m["set_id"] for m in groups["db1/app"]] == [
        "20261101T000000Z-full", "20261102T000000Z-incremental", "20261103T000000Z-full"]
    latest = _catalog.latest_per_source(sets)
    assert dict((k, v["set_id"]) for k, v in latest.items()) == {
        "db1/app": "20261103T000000Z-full",
        "db1/crm": "20261109T000000Z-full",
        "db2/app": "20261101T000000Z-full",
    }
    assert _catalog.latest_per_source([]) == {}


def test_latest_uses_end_time_then_set_id():
    # A long full that started first but ended last is the newest complete set.
    long_full = make_manifest("20261101T000000Z-full", duration=3 * 3600)
    short_full = make_manifest("20261101T010000Z-full", duration=60)
    assert _catalog.latest_per_source([long_full, short_full])["db1/app"] is long_full
    same_a = make_manifest("20261101T000000Z-full", duration=60)
    same_b = make_manifest("20261101T000000Z-full-2", duration=60)
    assert _catalog.latest_per_source([same_b, same_a])["db1/app"] is same_b


@pytest.mark.parametrize(
    "max_age, now, expected",
    [
        (None, "20261108T000200Z", None),
        (3600, "20261108T000200Z", FULL2),        # FULL2 ended 00:01:00: age 60 s
        (60, "20261108T000200Z", None),           # age == max_age is not fresh
        (61, "20261108T000200Z", FULL2),
        (3600, "20261109T000000Z", None),
        (7 * 86400, "20261109T000000Z", FULL2),
        (0, "20261108T000100Z", None),
    ],
)
def test_fresh_set(chain, max_age, now, expected):
    result = _catalog.fresh_set(list(chain.values()), max_age, ts(now))
    assert (result["set_id"] if result else None) == expected


@pytest.mark.parametrize(
    "now, expected",
    [("20261101T000100Z", 0.0), ("20261101T010100Z", 3600.0), ("20261031T000000Z", 0.0)],
)
def test_age_seconds(now, expected):
    assert _catalog.age_seconds(make_manifest(FULL), ts(now)) == expected


# ------------------------------------------------------------------ select_set

@pytest.mark.parametrize(
    "set_id, before, expected",
    [
        (INC1, None, INC1),
        (FULL, None, FULL),
        (None, None, FULL2),
        (None, "20261104T000100Z", DIFF),      # DIFF ended exactly then: included
        (None, "20261104T000059Z", INC2),
        (None, "20261102T120000Z", INC1),
        (None, "20261101T000100Z", FULL),
        (INC2, "20261101T000000Z", INC2),      # an explicit id wins over before
    ],
)
def test_select_set(chain, set_id, before, expected):
    result = _catalog.select_set(list(chain.values()), set_id=set_id, before=ts(before) if before else None)
    assert result["set_id"] == expected


@pytest.mark.parametrize(
    "set_id, before, fragment",
    [
        ("20261231T000000Z-full", None, "Set 20261231T000000Z-full is not in the store"),
        (None, "20261101T000059Z", "no complete set for this source that ended before 2026-11-01T00:00:59"),
    ],
)
def test_select_set_none(chain, set_id, before, fragment):
    with pytest.raises(NoSetError) as info:
        _catalog.select_set(list(chain.values()), set_id=set_id, before=ts(before) if before else None)
    assert fragment in str(info.value)


def test_select_set_empty():
    with pytest.raises(NoSetError, match="holds no complete set for this source"):
        _catalog.select_set([])
    assert issubclass(NoSetError, LifeboatError)


# ------------------------------------------------------------------ restore_chain

@pytest.mark.parametrize(
    "target, expected",
    [
        (FULL, [FULL]),
        (INC1, [FULL, INC1]),
        (INC2, [FULL, INC1, INC2]),
        (DIFF, [FULL, DIFF]),
        (FULL2, [FULL2]),
    ],
)
def test_restore_chain(chain, target, expected):
    result = _catalog.restore_chain(list(chain.values()), chain[target])
    assert [m["set_id"] for m in result] == expected


def test_restore_chain_incremental_on_differential(chain):
    inc = make_manifest("20261105T000000Z-incremental", parent=DIFF)
    result = _catalog.restore_chain(list(chain.values()) + [inc], inc)
    assert [m["set_id"] for m in result] == [FULL, DIFF, inc["set_id"]]


def test_restore_chain_ignores_other_sources(chain):
    inc = make_manifest(INC1, source="crm", parent=FULL)
    # crm has no FULL of its own: app's FULL with the same id must not be used.
    with pytest.raises(ChainError, match="its parent %s is missing or incomplete" % FULL):
        _catalog.restore_chain(list(chain.values()) + [inc], inc)


@pytest.mark.parametrize(
    "drop, target, fragment",
    [
        (FULL, INC1, "Set %s cannot be restored: its parent %s is missing or incomplete." % (INC1, FULL)),
        (FULL, INC2, "Set %s cannot be restored: its parent %s is missing or incomplete." % (INC1, FULL)),
        (INC1, INC2, "Set %s cannot be restored: its parent %s is missing or incomplete." % (INC2, INC1)),
        (FULL, DIFF, "Set %s cannot be restored: its parent %s is missing or incomplete." % (DIFF, FULL)),
    ],
)
def test_restore_chain_missing_parent(chain, drop, target, fragment):
    sets = [m for key, m in chain.items() if key != drop]
    with pytest.raises(ChainError) as info:
        _catalog.restore_chain(sets, chain[target])
    assert str(info.value) == fragment


def test_restore_chain_differential_needs_full_parent(chain):
    diff = make_manifest("20261105T000000Z-differential", parent=INC1)
    with pytest.raises(ChainError, match="Differential set 20261105T000000Z-differential must have a full parent"):
        _catalog.restore_chain(list(chain.values()) + [diff], diff)


@pytest.mark.parametrize(
    "links",
    [
        # self loop
        {"20261105T000000Z-incremental": "20261105T000000Z-incremental"},
        # two-set loop
        {"20261105T000000Z-incremental": "20261106T000000Z-incremental",
         "20261106T000000Z-incremental": "20261105T000000Z-incremental"},
        # three-set loop
        {"20261105T000000Z-incremental": "20261106T000000Z-incremental",
         "20261106T000000Z-incremental": "20261107T000000Z-incremental",
         "20261107T000000Z-incremental": "20261105T000000Z-incremental"},
    ],
)
def test_restore_chain_loop(links):
    sets = [make_manifest(set_id, parent=parent) for set_id, parent in links.items()]
    with pytest.raises(ChainError, match="loops at"):
        _catalog.restore_chain(sets, sets[0])
    assert issubclass(ChainError, LifeboatError)


# ------------------------------------------------------------------ rpo_status, summary

@pytest.mark.parametrize(
    "latest, rpo, now, expected",
    [
        (True, 86400.0, "20261101T010100Z", {"status": "ok", "age_s": 3600.0, "rpo_s": 86400.0}),
        (True, 3600.0, "20261101T010100Z", {"status": "ok", "age_s": 3600.0, "rpo_s": 3600.0}),
        (True, 3599.0, "20261101T010100Z", {"status": "violated", "age_s": 3600.0, "rpo_s": 3599.0}),
        (True, None, "20261101T010100Z", {"status": "unknown", "age_s": 3600.0, "rpo_s": None}),
        (False, 3600.0, "20261101T010100Z", {"status": "missing", "age_s": None, "rpo_s": 3600.0}),
        (False, None, "20261101T010100Z", {"status": "unknown", "age_s": None, "rpo_s": None}),
        (True, 0.0, "20261101T000000Z", {"status": "ok", "age_s": 0.0, "rpo_s": 0.0}),
    ],
)
def test_rpo_status(latest, rpo, now, expected):
    manifest = make_manifest(FULL) if latest else None
    assert _catalog.rpo_status(manifest, rpo, ts(now)) == expected


def test_summary():
    manifest = make_manifest(INC1, parent=FULL, files={"a": b"12", "b": b"345"})
    manifest["labels"] = {"env": "prod"}
    manifest["compression"] = {"algorithm": "zstd", "level": 3}
    assert _catalog.summary(manifest, ts("20261102T000200Z")) == {
        "host": "db1", "source": "app", "set_id": INC1, "engine": "postgresql", "method": "pg_dump",
        "type": "incremental", "parent_set_id": FULL, "started_at": "2026-11-02T00:00:00.000Z",
        "ended_at": "2026-11-02T00:01:00.000Z", "duration_s": 60.0, "bytes": 5, "files": 2,
        "compression": "zstd", "encrypted": False, "labels": {"env": "prod"}, "age_s": 60.0, "future": False,
    }


# ------------------------------------------------------------------ sets dated in the future

def future_set(set_id=None, ended=None, host="db1", source="app", **kwargs):
    """A set whose set id (and times) lie in the future of NOW_F; ``ended`` overrides only ended_at."""
    manifest = make_manifest(set_id or "20261201T000000Z-full", host=host, source=source, **kwargs)
    if ended:
        manifest["ended_at"] = ended
    return manifest


NOW_F = ts("20261110T000000Z")
OLD = "20261101T000000Z-full"        # 9 days before NOW_F
RECENT = "20261109T230000Z-full"     # one hour before NOW_F


@pytest.mark.parametrize(
    "offset_s, expected",
    [(-3600, False), (0, False), (_catalog.FUTURE_TOLERANCE_S, False), (_catalog.FUTURE_TOLERANCE_S + 1, True),
     (86400 * 365, True)],
)
def test_is_future_tolerance(offset_s, expected):
    """A set counts as future once it ends more than FUTURE_TOLERANCE_S (5 minutes) after now."""
    manifest = make_manifest("20261109T000000Z-full")
    end = NOW_F + datetime.timedelta(seconds=offset_s)
    manifest["ended_at"] = end.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    assert _catalog.is_future(manifest, NOW_F) is expected
    assert _catalog.FUTURE_TOLERANCE_S == 300.0


@pytest.mark.parametrize("field", ["set_id", "started_at", "ended_at"])
def test_is_future_looks_at_every_time(field):
    manifest = make_manifest(OLD)
    if field == "set_id":
        manifest["set_id"] = "20991231T000000Z-full"
    else:
        manifest[field] = "2099-12-31T00:00:00.000Z"
    assert _catalog.is_future(manifest, NOW_F)
    assert _catalog.split_future([manifest, make_manifest(RECENT)], NOW_F) == ([make_manifest(RECENT)], [manifest])


def test_future_set_is_never_fresh():
    """BUG: age_seconds clamps a future set to age 0, so it was always 'fresh' and every later backup skipped."""
    sets = [make_manifest(OLD), future_set()]
    assert _catalog.fresh_set(sets, 30 * 86400, NOW_F)["set_id"] == OLD
    assert _catalog.fresh_set(sets, 3600, NOW_F) is None
    assert _catalog.fresh_set([future_set()], 10 ** 9, NOW_F) is None


def test_future_set_is_never_latest():
    sets = [make_manifest(OLD), make_manifest(RECENT), future_set()]
    assert _catalog.latest_per_source(sets, NOW_F)["db1/app"]["set_id"] == RECENT
    assert _catalog.latest_per_source([future_set()], NOW_F) == {}
    assert _catalog.select_set(sets, now=NOW_F)["set_id"] == RECENT
    assert _catalog.select_set(sets, before=ts("20261231T000000Z"), now=NOW_F)["set_id"] == RECENT
    # Named explicitly, it is what was asked for.
    assert _catalog.select_set(sets, set_id="20261201T000000Z-full", now=NOW_F)["set_id"] == "20261201T000000Z-full"
    with pytest.raises(NoSetError, match=r"no complete set for this source \(1 set\(s\) dated in the future"):
        _catalog.select_set([future_set()], now=NOW_F)


def test_future_set_cannot_hide_an_rpo_breach():
    """BUG: the newest set was a future one, so RPO read 'ok' while the real newest set was 9 days old."""
    sets = [make_manifest(OLD), future_set()]
    latest = _catalog.latest_per_source(sets, NOW_F)["db1/app"]
    assert _catalog.rpo_status(latest, 86400.0, NOW_F) == {"status": "violated", "age_s": 9 * 86400.0 - 60,
                                                           "rpo_s": 86400.0}
    # Handed a future set directly, rpo_status treats it as no set at all.
    assert _catalog.rpo_status(future_set(), 86400.0, NOW_F) == {"status": "missing", "age_s": None, "rpo_s": 86400.0}
    assert _catalog.rpo_status(future_set(), None, NOW_F)["status"] == "unknown"


def test_future_sets_are_reported():
    sets = [make_manifest(OLD), future_set(), future_set("20261110T000100Z-full", host="db2")]
    # db2's set ends two minutes ahead: within the tolerance, so not reported.
    assert _catalog.future_sets(sets, NOW_F) == [
        {"host": "db1", "source": "app", "set_id": "20261201T000000Z-full", "ended_at": "2026-12-01T00:01:00.000Z",
         "ahead_s": 21 * 86400.0 + 60},
    ]
    assert _catalog.summary(future_set(), NOW_F)["future"] is True
    assert _catalog.summary(future_set(), NOW_F)["age_s"] == 0.0
    assert _catalog.summary(make_manifest(OLD), NOW_F)["future"] is False


# ------------------------------------------------------------------ resolve_type

WEEK = 7 * 86400.0


def resolve(sets, requested, now, **kwargs):
    decision = _catalog.resolve_type(list(sets), requested, now=ts(now), **kwargs)
    parent = decision["parent"]["set_id"] if decision["parent"] else None
    base = decision["base"]["set_id"] if decision["base"] else None
    return decision["type"], parent, base


@pytest.mark.parametrize(
    "requested, kwargs, now, expected",
    [
        ("full", {}, "20261110T000000Z", ("full", None, None)),
        ("incremental", {}, "20261110T000000Z", ("incremental", FULL2, FULL2)),
        ("differential", {}, "20261110T000000Z", ("differential", FULL2, FULL2)),
        ("auto", {"full_every_s": WEEK}, "20261110T000000Z", ("incremental", FULL2, FULL2)),
        ("auto", {"full_every_s": WEEK, "between": "differential"}, "20261110T000000Z",
         ("differential", FULL2, FULL2)),
        ("auto", {"full_every_s": WEEK}, "20261115T000000Z", ("full", None, None)),      # FULL2 is 7 days old
        ("auto", {"full_every_s": WEEK}, "20261114T233000Z", ("full", None, None)),      # within the 1 h slack
        ("auto", {"full_every_s": WEEK}, "20261114T225900Z", ("incremental", FULL2, FULL2)),
        ("auto", {"full_every_s": 86400.0}, "20261109T000000Z", ("full", None, None)),
        ("auto", {"full_every_s": 100.0}, "20261108T000138Z", ("incremental", FULL2, FULL2)),  # 1 % slack: 99 s
        ("auto", {"full_every_s": 100.0}, "20261108T000139Z", ("full", None, None)),
    ],
)
def test_resolve_type(chain, requested, kwargs, now, expected):
    assert resolve(chain.values(), requested, now, **kwargs) == expected


def test_resolve_type_incremental_takes_the_newest_of_the_current_chain(chain):
    sets = [m for key, m in chain.items() if key != FULL2]
    # DIFF (day 4) is the newest set of FULL's chain: an incremental applies on it.
    assert resolve(sets, "incremental", "20261105T000000Z") == ("incremental", DIFF, FULL)
    assert resolve(sets, "differential", "20261105T000000Z") == ("differential", FULL, FULL)
    inc3 = make_manifest("20261109T000000Z-incremental", parent=FULL2)
    assert resolve(list(chain.values()) + [inc3], "incremental", "20261110T000000Z") == ("incremental", inc3["set_id"],
                                                                                         FULL2)
    assert resolve(list(chain.values()) + [inc3], "differential", "20261110T000000Z") == ("differential", FULL2,
                                                                                          FULL2)


def test_resolve_type_without_a_full(chain):
    for requested in ("incremental", "differential"):
        with pytest.raises(ChainError) as info:
            _catalog.resolve_type([], requested, now=ts("20261110T000000Z"))
        assert str(info.value) == (
            "A %s set needs a full set to build on and the store holds no usable one for this source "
            "(none, or only future-dated or broken ones); write a full set first, or use type auto." % requested)
    decision = _catalog.resolve_type([], "auto", WEEK, now=ts("20261110T000000Z"))
    assert (decision["type"], decision["parent"]) == ("full", None)
    assert decision["reason"] == "no usable full set exists for this source"
    # Orphans only (their full is gone): nothing to build on either.
    orphans = [chain[INC1], chain[INC2], chain[DIFF]]
    assert resolve(orphans, "auto", "20261110T000000Z", full_every_s=WEEK) == ("full", None, None)
    with pytest.raises(ChainError):
        resolve(orphans, "incremental", "20261110T000000Z")


def test_resolve_type_never_builds_on_a_future_set(chain):
    ahead = make_manifest("20261201T000000Z-full")
    ahead_inc = make_manifest("20261202T000000Z-incremental", parent=FULL2)
    sets = list(chain.values()) + [ahead, ahead_inc]
    assert resolve(sets, "incremental", "20261110T000000Z") == ("incremental", FULL2, FULL2)
    assert resolve(sets, "differential", "20261110T000000Z") == ("differential", FULL2, FULL2)
    # The only full is in the future: auto writes a full, incremental says why it cannot.
    assert resolve([ahead], "auto", "20261110T000000Z", full_every_s=WEEK) == ("full", None, None)
    with pytest.raises(ChainError, match="only future-dated or broken ones"):
        resolve([ahead], "incremental", "20261110T000000Z")


def test_resolve_type_skips_descendants_of_a_future_set():
    full = make_manifest("20261101T000000Z-full")
    # A full whose end time was forged into the future, and an incremental on it.
    forged = make_manifest("20261105T000000Z-full")
    forged["ended_at"] = "2030-01-01T00:00:00.000Z"
    child = make_manifest("20261106T000000Z-incremental", parent=forged["set_id"])
    assert resolve([full, forged, child], "incremental", "20261110T000000Z") == ("incremental", full["set_id"],
                                                                                 full["set_id"])


def test_resolve_type_skips_broken_chains(chain):
    sets = [m for key, m in chain.items() if key not in (FULL2, INC1)]   # INC2 lost its parent
    assert resolve(sets, "incremental", "20261105T000000Z") == ("incremental", DIFF, FULL)
    sets = [m for key, m in chain.items() if key not in (FULL2, INC1, DIFF)]
    assert resolve(sets, "incremental", "20261105T000000Z") == ("incremental", FULL, FULL)


def test_resolve_type_needs_a_parent_older_than_now(chain):
    """A set within the future tolerance (a clock stepped back) cannot be the parent of a set started now."""
    sets = list(chain.values())
    assert resolve(sets, "incremental", "20261108T000200Z") == ("incremental", FULL2, FULL2)
    assert resolve(sets, "incremental", "20261107T235900Z") == ("incremental", DIFF, FULL)


def test_resolve_type_filters_engine_and_method(chain):
    other = make_manifest("20261109T000000Z-full", engine="postgresql", method="pg_basebackup")
    sets = list(chain.values()) + [other]
    assert resolve(sets, "incremental", "20261110T000000Z") == ("incremental", other["set_id"], other["set_id"])
    assert resolve(sets, "incremental", "20261110T000000Z", method="pg_dump") == ("incremental", FULL2, FULL2)
    assert resolve(sets, "incremental", "20261110T000000Z", engine="postgresql", method="pg_basebackup") == (
        "incremental", other["set_id"], other["set_id"])
    with pytest.raises(ChainError):
        resolve(sets, "incremental", "20261110T000000Z", engine="mysql")


@pytest.mark.parametrize(
    "requested, kwargs, fragment",
    [
        ("snapshot", {}, "type must be one of full, incremental, differential, auto, not 'snapshot'."),
        ("auto", {}, "type auto needs full_every, a duration longer than zero (like 7d)."),
        ("auto", {"full_every_s": 0}, "type auto needs full_every"),
        ("auto", {"full_every_s": True}, "type auto needs full_every"),
        ("auto", {"full_every_s": "7d"}, "type auto needs full_every"),
        ("auto", {"full_every_s": WEEK, "between": "full"}, "between must be one of incremental, differential"),
    ],
)
def test_resolve_type_refuses(requested, kwargs, fragment):
    with pytest.raises(LifeboatError) as info:
        _catalog.resolve_type([], requested, now=ts("20261110T000000Z"), **kwargs)
    assert fragment in str(info.value)


def test_resolve_type_takes_one_source():
    sets = [make_manifest(FULL), make_manifest(FULL, source="crm")]
    with pytest.raises(LifeboatError, match="takes the sets of one source, not of db1/app, db1/crm"):
        _catalog.resolve_type(sets, "incremental", now=ts("20261110T000000Z"))
