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
from ansible_collections.lifeboat.backup.plugins.module_utils import _stores
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
    store = _stores.DirStore(str(tmp_path / "store"))
    make_set(store, "db1", "app", FULL)
    make_set(store, "db1", "app", INC1, parent=FULL)
    make_set(store, "db2", "app", FULL)
    # A crashed run: a .partial directory, never a backup even with a manifest inside.
    crashed = store.begin("db1", "app", "20261105T000000Z-full")
    with crashed.open("dump.pgc") as handle:
        handle.write(b"half")
    shutil.copy(os.path.join(store.set_path("db1", "app", FULL), "manifest.json"), crashed.path)
    # A set directory whose manifest is broken: reported as invalid.
    make_set(store, "db1", "app", "20261106T000000Z-full")
    with open(os.path.join(store.set_path("db1", "app", "20261106T000000Z-full"), "manifest.json"), "w") as handle:
        handle.write("{ truncated")
    # A set copied to another source: the manifest names the wrong place.
    shutil.copytree(store.set_path("db1", "app", FULL), store.set_path("db1", "moved", FULL))
    # A set directory without a manifest is incomplete: neither listed nor invalid.
    os.makedirs(store.set_path("db1", "app", "20261107T000000Z-full"))
    # Junk is ignored.
    os.makedirs(os.path.join(store.root, ".trash", "x"))
    with open(os.path.join(store.root, "db1", "README"), "w") as handle:
        handle.write("not a source")

    found, invalid, partials = _catalog.scan(store)
    assert [(m["host"], m["source"], m["set_id"]) for m in found] == [
        ("db1", "app", FULL), ("db1", "app", INC1), ("db2", "app", FULL)]
    assert sorted((i["host"], i["source"], i["set_id"]) for i in invalid) == [
        ("db1", "app", "20261106T000000Z-full"), ("db1", "moved", FULL)]
    errors = dict((i["source"], i["error"]) for i in invalid)
    assert "is not valid JSON" in errors["app"]
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
