# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Copying sets between stores (_copy): planning, chains, orphans, conflicts, idempotency, check mode.

Every test runs for each pair of kinds in store_kinds.FACTORIES (source, destination),
so a new kind is tested as both ends of a copy.
"""

from __future__ import annotations

import datetime
import errno
import hashlib
import itertools
import json
import os
import shutil
import stat
import tempfile
import tracemalloc

import pytest

from ansible_collections.lifeboat.backup.plugins.module_utils import _copy
from ansible_collections.lifeboat.backup.plugins.module_utils import _files
from ansible_collections.lifeboat.backup.plugins.module_utils import _jobs
from ansible_collections.lifeboat.backup.plugins.module_utils import _manifest
from ansible_collections.lifeboat.backup.plugins.module_utils import _stores
from ansible_collections.lifeboat.backup.plugins.module_utils._common import LifeboatError
from ansible_collections.lifeboat.backup.tests.unit.plugins.helpers import make_manifest, make_set
from ansible_collections.lifeboat.backup.tests.unit.plugins.module_utils import store_kinds
from ansible_collections.lifeboat.backup.tests.unit.plugins.module_utils.test_files import make_tree

F1 = "20261101T000000Z-full"
I1 = "20261102T000000Z-incremental"
I2 = "20261103T000000Z-incremental"
D1 = "20261104T000000Z-differential"
F2 = "20261105T000000Z-full"
GONE = "20261001T000000Z-full"
FUTURE = "20991231T235959Z-full"

# The ssh kind costs an ssh connection per operation (docs/stores.md, a minute per test here):
# its copies both ways are run by the store_ssh integration target, its contract by the
# contract suite.
PAIRS = sorted(pair for pair in itertools.product(sorted(store_kinds.FACTORIES), repeat=2) if "ssh" not in pair)


class End(object):
    """One end of a copy: a store and a way to tamper with its files behind its back."""

    def __init__(self, kind, tmp_path, name):
        base = tmp_path / name
        base.mkdir()
        self.kind = kind
        self.store, self.tamper = store_kinds.FACTORIES[kind](base)


@pytest.fixture(params=PAIRS, ids=["%s-to-%s" % pair for pair in PAIRS])
def ends(request, tmp_path):
    return End(request.param[0], tmp_path, "src"), End(request.param[1], tmp_path, "dst")


@pytest.fixture
def src(ends):
    return ends[0].store


@pytest.fixture
def dst(ends):
    return ends[1].store


def chain(store, host="db1", source="app"):
    """A full set and two incrementals on top of it."""
    make_set(store, host, source, F1, files={"dump.pgc": b"full " * 1000, "toc.dat": b"toc"})
    make_set(store, host, source, I1, parent=F1, files={"dump.pgc": b"inc one"})
    make_set(store, host, source, I2, parent=I1, files={"dump.pgc": b"inc two"})


def copy(src, dst, check_mode=False, verify_source=True, **selection):
    return _copy.execute(src, dst, _copy.plan_copy(src, dst, **selection), verify_source=verify_source,
                         check_mode=check_mode)


def ids(entries):
    return [(e["host"], e["source"], e["set_id"]) for e in entries]


def assert_same_set(src, dst, host, source, set_id):
    """The destination holds the set with the source's manifest bytes and sound files."""
    raw = src.read_manifest_bytes(host, source, set_id)
    assert dst.read_manifest_bytes(host, source, set_id) == raw
    manifest = dst.read_manifest(host, source, set_id)
    assert dst.verify_set(manifest) == []


def nothing_left(store, host="db1", source="app"):
    listing = store.listing(host, source)
    return listing.partials == [] and listing.strays == []


# ------------------------------------------------------------------ copying and idempotency

def test_every_missing_set_is_copied_and_a_rerun_changes_nothing(src, dst):
    chain(src)
    make_set(src, "db1", "crm", F2)
    make_set(src, "db2", "app", F1)
    result = copy(src, dst)
    assert result["changed"] is True
    assert ids(result["copied"]) == [("db1", "app", F1), ("db1", "app", I1), ("db1", "app", I2),
                                     ("db1", "crm", F2), ("db2", "app", F1)]
    assert result["copied"][1] == dict(host="db1", source="app", set_id=I1, type="incremental", bytes=len(b"inc one"))
    assert result["bytes"] == sum(src.read_manifest(e["host"], e["source"], e["set_id"])["bytes"]
                                  for e in result["copied"])
    assert (result["skipped"], result["conflicts"], result["refused"]) == ([], [], [])
    for host, source, set_id in ids(result["copied"]):
        assert_same_set(src, dst, host, source, set_id)
    assert nothing_left(dst)

    again = copy(src, dst)
    assert again["changed"] is False
    assert again["copied"] == []
    assert again["bytes"] == 0
    assert ids(again["skipped"]) == sorted(ids(result["copied"]))
    assert (again["conflicts"], again["refused"]) == ([], [])


def test_check_mode_lists_what_would_be_copied_and_writes_nothing(src, dst):
    chain(src)
    planned = copy(src, dst, check_mode=True)
    assert planned["changed"] is True
    assert ids(planned["copied"]) == [("db1", "app", F1), ("db1", "app", I1), ("db1", "app", I2)]
    assert planned["bytes"] == sum(src.read_manifest("db1", "app", s)["bytes"] for s in (F1, I1, I2))
    assert "removed_partials" not in planned
    assert dst.hosts() == []
    assert dst.listing("db1", "app").sets == []

    real = copy(src, dst)
    assert real["copied"] == planned["copied"]
    rerun_check = copy(src, dst, check_mode=True)
    assert rerun_check["changed"] is False
    assert rerun_check["copied"] == []
    assert len(rerun_check["skipped"]) == 3


def test_filters_select_host_and_source(src, dst):
    chain(src)
    make_set(src, "db1", "crm", F2)
    make_set(src, "db2", "app", F1)
    assert ids(copy(src, dst, host="db1", source="crm")["copied"]) == [("db1", "crm", F2)]
    assert ids(copy(src, dst, host="db2")["copied"]) == [("db2", "app", F1)]
    assert ids(copy(src, dst, source="app")["copied"]) == [("db1", "app", F1), ("db1", "app", I1), ("db1", "app", I2)]
    assert copy(src, dst)["changed"] is False


def test_an_empty_source_copies_nothing(src, dst):
    result = copy(src, dst)
    assert result["changed"] is False
    assert (result["copied"], result["skipped"], result["refused"]) == ([], [], [])


def test_the_manifest_bytes_are_copied_as_they_are(ends):
    """A manifest is never re-serialised: whatever bytes the source holds (a signature covers them) arrive."""
    src, dst = ends[0].store, ends[1].store
    data = b"payload"
    manifest = make_manifest(F1, files={"dump.pgc": data})
    raw = b"{\n" + json.dumps(manifest, separators=(",", ":"), sort_keys=False).encode()[1:] + b"\n\n"
    assert raw != _manifest.dumps(manifest)
    writer = src.begin("db1", "app", F1)
    sink = writer.open("dump.pgc")
    sink.write(data)
    sink.close()
    writer.commit(raw, ["dump.pgc"])
    assert ids(copy(src, dst)["copied"]) == [("db1", "app", F1)]
    assert dst.read_manifest_bytes("db1", "app", F1) == raw


def test_a_future_dated_set_is_copied_like_any_other(src, dst):
    make_set(src, "db1", "app", F1)
    make_set(src, "db1", "app", FUTURE)
    make_set(src, "db1", "app", I1, parent=F1)
    result = copy(src, dst)
    assert ids(result["copied"]) == [("db1", "app", F1), ("db1", "app", I1), ("db1", "app", FUTURE)]
    assert_same_set(src, dst, "db1", "app", FUTURE)
    assert copy(src, dst)["changed"] is False


# ------------------------------------------------------------------ chains

def test_one_set_by_id_brings_its_missing_parents_first(src, dst):
    chain(src)
    make_set(src, "db1", "app", F2)
    result = copy(src, dst, host="db1", source="app", set_id=I2)
    assert ids(result["copied"]) == [("db1", "app", F1), ("db1", "app", I1), ("db1", "app", I2)]
    assert dst.listing("db1", "app").sets == [F1, I1, I2]


def test_a_parent_already_at_the_destination_is_not_copied_again(src, dst):
    chain(src)
    copy(src, dst, host="db1", source="app", set_id=F1)
    result = copy(src, dst, host="db1", source="app", set_id=I1)
    assert ids(result["copied"]) == [("db1", "app", I1)]
    result = copy(src, dst, host="db1", source="app", set_id=I1)
    assert result["changed"] is False
    assert ids(result["skipped"]) == [("db1", "app", I1)]


def test_a_parent_kept_only_at_the_destination_completes_the_chain(src, dst):
    """The source's retention removed the full set after it was copied: its incrementals still copy."""
    make_set(src, "db1", "app", F1)
    copy(src, dst)
    make_set(src, "db1", "app", I1, parent=F1)
    src.delete_set("db1", "app", F1)
    result = copy(src, dst)
    assert ids(result["copied"]) == [("db1", "app", I1)]
    assert ids(result["skipped"]) == []
    assert result["refused"] == []


def test_a_set_whose_parent_is_in_neither_store_is_refused_naming_it(src, dst):
    make_set(src, "db1", "app", I1, parent=GONE)
    make_set(src, "db1", "app", I2, parent=I1)
    make_set(src, "db1", "app", F2)
    result = copy(src, dst)
    assert ids(result["copied"]) == [("db1", "app", F2)]
    reasons = dict((e["set_id"], e["reason"]) for e in result["refused"])
    orphan = "it would be an orphan: its chain needs db1/app/%s, which is in neither store" % GONE
    assert reasons == {I1: orphan, I2: orphan}
    assert dst.listing("db1", "app").sets == [F2]
    assert nothing_left(dst)


def test_one_orphan_by_id_is_refused_without_copying_its_parent(src, dst):
    make_set(src, "db1", "app", I1, parent=GONE)
    make_set(src, "db1", "app", I2, parent=I1)
    result = copy(src, dst, host="db1", source="app", set_id=I2)
    assert result["copied"] == []
    assert [(e["set_id"], GONE in e["reason"]) for e in result["refused"]] == [(I2, True)]
    assert dst.listing("db1", "app").sets == []


def test_a_differential_set_needs_a_full_parent(src, dst):
    make_set(src, "db1", "app", F1)
    make_set(src, "db1", "app", I1, parent=F1)
    make_set(src, "db1", "app", D1, parent=I1)
    result = copy(src, dst)
    assert ids(result["copied"]) == [("db1", "app", F1), ("db1", "app", I1)]
    assert [(e["set_id"], e["reason"]) for e in result["refused"]] == [
        (D1, "it is a differential set whose parent %s is not a full set" % I1)]


def test_a_parent_with_an_unusable_manifest_refuses_its_children(ends):
    (src, tamper_src), dst = (ends[0].store, ends[0].tamper), ends[1].store
    chain(src)
    tamper_src("db1", "app", I1, "manifest.json", b"{not json")
    result = copy(src, dst)
    assert ids(result["copied"]) == [("db1", "app", F1)]
    reasons = dict((e["set_id"], e["reason"]) for e in result["refused"])
    assert sorted(reasons) == [I1, I2]
    assert reasons[I1].startswith("its manifest at the source is not usable: ")
    assert reasons[I2].startswith("its chain needs db1/app/%s, which cannot be copied (its manifest" % I1)
    assert dst.listing("db1", "app").sets == [F1]


def test_a_chain_that_loops_cannot_exist(src, dst):
    """A parent must be older than its set (manifest v2), so a loop is refused before it reaches a store."""
    with pytest.raises(_manifest.ManifestError, match="not older than the set"):
        make_set(src, "db1", "app", I1, parent=I2)
    assert copy(src, dst)["copied"] == []


def test_a_long_chain_is_walked_without_recursion(tmp_path):
    """Incremental forever: a chain deeper than Python's recursion limit (planning alone; memory stores)."""
    src = store_kinds.FACTORIES["memory"](tmp_path)[0]
    dst = store_kinds.FACTORIES["memory"](tmp_path)[0]
    start = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
    set_ids = [_manifest.make_set_id(start + datetime.timedelta(minutes=n), "incremental" if n else "full")
               for n in range(1100)]
    for index, set_id in enumerate(set_ids):
        make_set(src, "db1", "app", set_id, parent=set_ids[index - 1] if index else None, files={"d": b"x"})
    plan = _copy.plan_copy(src, dst, host="db1", source="app", set_id=set_ids[-1])
    assert [m["set_id"] for m in plan.copy] == set_ids


# ------------------------------------------------------------------ conflicts

def test_a_different_set_under_the_same_id_is_a_conflict_never_overwritten(src, dst):
    chain(src)
    make_set(dst, "db1", "app", I1, parent=F1, files={"dump.pgc": b"another inc one"})
    before = dst.read_manifest_bytes("db1", "app", I1)
    for check_mode in (True, False):
        result = copy(src, dst, check_mode=check_mode)
        assert ids(result["copied"]) == [("db1", "app", F1)]
        assert result["conflicts"] == [dict(host="db1", source="app", set_id=I1, reason=(
            "the destination holds a set of that id with a different manifest; it is never overwritten"))]
        assert result["refused"] == [dict(host="db1", source="app", set_id=I2, reason=(
            "its chain needs db1/app/%s, which differs between the two stores" % I1))]
    assert dst.read_manifest_bytes("db1", "app", I1) == before
    assert dst.listing("db1", "app").sets == [F1, I1]


def test_an_unusable_entry_at_the_destination_is_a_conflict(tmp_path):
    src = store_kinds.FACTORIES["memory"](tmp_path)[0]
    dst = store_kinds.FACTORIES["dir"](tmp_path)[0]
    make_set(src, "db1", "app", F1)
    os.makedirs(os.path.join(dst.location("db1", "app", F1)), mode=0o700)
    os.chmod(dst.location(), 0o700)
    result = copy(src, dst)
    assert result["copied"] == []
    assert [(e["set_id"], e["reason"]) for e in result["conflicts"]] == [
        (F1, "the destination holds an entry of that name that is not a complete set (no manifest (incomplete)); "
             "it is never overwritten")]
    assert os.listdir(dst.location("db1", "app", F1)) == []


def test_strays_at_the_source_are_reported_not_copied(tmp_path):
    src = store_kinds.FACTORIES["dir"](tmp_path)[0]
    dst = store_kinds.FACTORIES["memory"](tmp_path)[0]
    make_set(src, "db1", "app", F1)
    with open(src.location("db1", "app", F2), "w") as handle:
        handle.write("not a set")
    result = copy(src, dst)
    assert ids(result["copied"]) == [("db1", "app", F1)]
    assert result["strays"] == [dict(host="db1", source="app", name=F2, problem="not a plain directory (file)")]
    assert result["refused"] == []


# ------------------------------------------------------------------ a corrupt source is never propagated

@pytest.mark.parametrize("verify_source", [True, False])
@pytest.mark.parametrize("damage, words", [
    (lambda data: data[:-1] + bytes([data[-1] ^ 1]), "SHA-256"),
    (lambda data: data[:10], "size"),
])
def test_a_corrupt_source_set_is_refused_naming_the_file(ends, verify_source, damage, words):
    (src, tamper_src), dst = (ends[0].store, ends[0].tamper), ends[1].store
    chain(src)
    good = src.open_payload("db1", "app", F1, "dump.pgc").read()
    tamper_src("db1", "app", F1, "dump.pgc", damage(good))
    result = copy(src, dst, verify_source=verify_source)
    assert result["copied"] == []
    reasons = dict((e["set_id"], e) for e in result["refused"])
    assert sorted(reasons) == [F1, I1, I2]
    assert "dump.pgc" in reasons[F1]["reason"]
    if verify_source:
        assert reasons[F1]["reason"].startswith("it failed verification at the source (dump.pgc: %s" % words)
        assert [p["name"] for p in reasons[F1]["problems"]] == ["dump.pgc"]
    else:
        assert reasons[F1]["reason"].startswith("its file dump.pgc at the source ")
    assert reasons[I1]["reason"] == "its parent db1/app/%s was not copied" % F1
    assert reasons[I2]["reason"] == "its parent db1/app/%s was not copied" % I1
    assert dst.listing("db1", "app").sets == []
    assert nothing_left(dst)
    assert result["changed"] is False


def test_an_unlisted_file_at_the_source_fails_verification(ends):
    (src, tamper_src), dst = (ends[0].store, ends[0].tamper), ends[1].store
    make_set(src, "db1", "app", F1)
    tamper_src("db1", "app", F1, "extra.bin", b"planted")
    result = copy(src, dst)
    assert [e["reason"] for e in result["refused"]] == ["it failed verification at the source (extra.bin: unlisted)"]
    assert dst.listing("db1", "app").sets == []


def test_a_grown_file_is_refused_without_reading_it_all(ends):
    (src, tamper_src), dst = (ends[0].store, ends[0].tamper), ends[1].store
    make_set(src, "db1", "app", F1, files={"dump.pgc": b"small"})
    tamper_src("db1", "app", F1, "dump.pgc", b"small" + b"x" * (8 * 1024 * 1024))
    read = []
    opened = src.open_payload

    class Counting(object):
        def __init__(self, reader):
            self.reader = reader

        def readinto(self, buffer):
            count = self.reader.readinto(buffer)
            read.append(count)
            return count

        def close(self):
            self.reader.close()

    src.open_payload = lambda *args: Counting(opened(*args))
    result = copy(src, dst, verify_source=False, host="db1", source="app", set_id=F1)
    assert [e["reason"] for e in result["refused"]] == [
        "its file dump.pgc at the source is larger than its manifest says (5 bytes)"]
    assert sum(read) <= _copy.CHUNK + 5
    assert nothing_left(dst)


def test_a_set_changed_at_the_source_after_planning_is_refused(ends):
    (src, tamper_src), dst = (ends[0].store, ends[0].tamper), ends[1].store
    make_set(src, "db1", "app", F1)
    plan = _copy.plan_copy(src, dst)
    other = make_manifest(F1, files={"dump.pgc": b"other"})
    tamper_src("db1", "app", F1, "manifest.json", _manifest.dumps(other))
    result = _copy.execute(src, dst, plan)
    assert [e["reason"] for e in result["refused"]] == [
        "its manifest at the source changed while the copy was planned; run the copy again"]
    assert dst.listing("db1", "app").sets == []


# ------------------------------------------------------------------ the destination side

class FailingWrites(object):
    """Wrap a destination so that its sinks fail with ENOSPC after ``after`` bytes."""

    def __init__(self, store, after=0):
        self.store = store
        self.after = after
        self.aborted = []
        original = store.begin

        def begin(host, source, set_id):
            writer = original(host, source, set_id)
            opened = writer.open

            def open_sink(name):
                sink = opened(name)
                real_write, real_abort = sink.write, sink.abort
                written = [0]

                def write(data):
                    written[0] += len(data)
                    if written[0] > self.after:
                        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                    return real_write(data)

                def abort():
                    self.aborted.append(name)
                    real_abort()
                sink.write, sink.abort = write, abort
                return sink
            writer.open = open_sink
            return writer
        store.begin = begin


def test_a_full_destination_leaves_nothing_that_looks_like_a_set(src, dst):
    chain(src)
    failing = FailingWrites(dst, after=100)
    result = copy(src, dst)
    assert result["copied"] == []
    reasons = dict((e["set_id"], e["reason"]) for e in result["refused"])
    assert reasons[F1].startswith("writing dump.pgc at the destination failed: No space left")
    assert reasons[I1] == "its parent db1/app/%s was not copied" % F1
    assert set(failing.aborted) == {"dump.pgc"}
    assert dst.listing("db1", "app").sets == []
    assert nothing_left(dst)


def test_a_locked_destination_refuses_that_source_only(src, dst):
    chain(src)
    make_set(src, "db1", "crm", F2)
    with dst.lock("db1", "app"):
        result = copy(src, dst)
    assert ids(result["copied"]) == [("db1", "crm", F2)]
    assert sorted(e["set_id"] for e in result["refused"]) == [F1, I1, I2]
    assert all(e["reason"].startswith("the destination is locked: Another backup of this source is running")
               for e in result["refused"])
    assert ids(copy(src, dst)["copied"]) == [("db1", "app", F1), ("db1", "app", I1), ("db1", "app", I2)]


def test_leftovers_of_a_crashed_copy_are_removed_then_the_set_is_copied(src, dst):
    make_set(src, "db1", "app", F1)
    crashed = dst.begin("db1", "app", F1)
    crashed.open("dump.pgc").write(b"half")
    result = copy(src, dst)
    assert result["removed_partials"] == [dict(host="db1", source="app", name=F1 + _stores.PARTIAL_SUFFIX)]
    assert ids(result["copied"]) == [("db1", "app", F1)]
    assert_same_set(src, dst, "db1", "app", F1)
    del crashed


def test_a_set_another_run_copied_meanwhile_is_skipped(src, dst):
    chain(src)
    plan = _copy.plan_copy(src, dst)
    copy(src, dst, host="db1", source="app", set_id=I1)
    result = _copy.execute(src, dst, plan)
    assert ids(result["copied"]) == [("db1", "app", I2)]
    assert ids(result["skipped"]) == [("db1", "app", F1), ("db1", "app", I1)]


def test_copying_streams_through_a_bounded_buffer(tmp_path):
    """Memory stays flat whatever the size: a 48 MiB set copies with a few MiB allocated."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    src = store_kinds.FACTORIES["dir"](tmp_path / "a")[0]
    dst = store_kinds.FACTORIES["dir"](tmp_path / "b")[0]
    size = 48 * 1024 * 1024
    manifest = make_manifest(F1, files={"dump.pgc": b""})
    writer = src.begin("db1", "app", F1)
    sink = writer.open("dump.pgc")
    digest = hashlib.sha256()
    block = os.urandom(1024 * 1024)
    for dummy in range(size // len(block)):
        sink.write(block)
        digest.update(block)
    sink.close()
    manifest["files"] = [{"name": "dump.pgc", "size": size, "sha256": digest.hexdigest(), "role": "payload",
                          "codec": {"compression": "none", "encryption": None}}]
    manifest["bytes"] = size
    writer.commit(_manifest.dumps(manifest), ["dump.pgc"])
    del block
    tracemalloc.start()
    try:
        result = copy(src, dst)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert ids(result["copied"]) == [("db1", "app", F1)]
    assert peak < 6 * 1024 * 1024, peak
    assert_same_set(src, dst, "db1", "app", F1)


# ------------------------------------------------------------------ selection errors and messages

def test_an_unknown_set_id_is_an_error(src, dst):
    make_set(src, "db1", "app", F1)
    with pytest.raises(LifeboatError, match=r"^Set db1/app/%s is not in the source store \(or is incomplete\)\.$" % I1):
        _copy.plan_copy(src, dst, host="db1", source="app", set_id=I1)


@pytest.mark.parametrize("selection, words", [
    (dict(set_id=F1), "needs host and source"),
    (dict(set_id=F1, host="db1"), "needs host and source"),
    (dict(set_id="latest", host="db1", source="app"), "is not a set id"),
    (dict(set_id=F1, host="../db1", source="app"), "not usable as a directory name"),
])
def test_a_bad_selection_is_one_sentence(src, dst, selection, words):
    with pytest.raises(LifeboatError, match=words):
        _copy.plan_copy(src, dst, **selection)


def test_the_failure_message_names_a_bounded_number_of_sets():
    result = dict(copied=[{}], conflicts=[], refused=[
        dict(host="db1", source="app", set_id="20261101T00000%dZ-full" % n, reason="it failed") for n in range(8)])
    message = _copy.failure_message(result)
    assert message.startswith("1 set(s) copied, 8 not copied: db1/app/20261101T000000Z-full: it failed; ")
    assert message.endswith("; and 3 more (see refused and conflicts).")
    assert message.count("it failed") == 5
    assert "\n" not in message


def test_a_parent_that_is_a_stray_at_the_source_is_named(tmp_path):
    src = store_kinds.FACTORIES["dir"](tmp_path)[0]
    dst = store_kinds.FACTORIES["memory"](tmp_path)[0]
    make_set(src, "db1", "app", I1, parent=F1)
    os.mkdir(src.location("db1", "app", F1), 0o700)
    result = copy(src, dst)
    assert result["copied"] == []
    assert result["refused"] == [
        dict(host="db1", source="app", set_id=F1, reason="it is not a usable set at the source: no manifest (incomplete)"),
        dict(host="db1", source="app", set_id=I1, reason=(
            "its chain needs db1/app/%s, which cannot be copied "
            "(it is not a usable set at the source: no manifest (incomplete))" % F1))]
    assert [s["name"] for s in result["strays"]] == [F1]


def test_a_set_the_caller_does_not_accept_is_refused_with_its_children(src, dst):
    chain(src)
    make_set(src, "db2", "app", F1)

    def accept(manifest):
        if manifest["set_id"] == I1:
            raise LifeboatError("Set %s is not signed." % manifest["set_id"])
    result = _copy.execute(src, dst, _copy.plan_copy(src, dst, accept=accept))
    assert ids(result["copied"]) == [("db1", "app", F1), ("db2", "app", F1)]
    assert [(e["set_id"], e["reason"]) for e in result["refused"]] == [
        (I1, "its manifest is not accepted: Set %s is not signed" % I1),
        (I2, "its chain needs db1/app/%s, which cannot be copied (its manifest is not accepted: Set %s is not signed)"
         % (I1, I1))]


# ------------------------------------------------------------------ tree payloads (rsync snapshots)

needs_rsync = pytest.mark.skipif(not shutil.which("rsync"), reason="needs rsync")


def snapshot_set(store, src, minute):
    """An rsync snapshot set of ``src`` (the real engine) in ``store``; its manifest."""
    def clock():
        return datetime.datetime(2026, 11, 1, 0, minute, tzinfo=datetime.timezone.utc)
    engine = _files.RsyncEngine(store, str(src), shutil.which("rsync"))
    job = _jobs.BackupJob(store, "h1", "tree", _files.ENGINE, _files.RSYNC_METHOD, set_type="full", now=clock)
    return job.run(engine)[0]


def tree_of(store, manifest):
    return os.path.join(store.location("h1", "tree", manifest["set_id"]), "tree")


def describe_tree(root):
    """Every entry below ``root``: type, mode, owner, mtime, content or target, and which entries share an inode."""
    found, inodes = {}, {}
    for base, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(base, name)
            rel = os.path.relpath(path, root)
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                what = os.readlink(path)
            elif stat.S_ISREG(st.st_mode):
                with open(path, "rb") as handle:
                    what = hashlib.sha256(handle.read()).hexdigest()
                inodes.setdefault(st.st_ino, []).append(rel)
            else:
                what = None
            found[rel] = (stat.S_IFMT(st.st_mode), st.st_mode & 0o7777, st.st_uid, st.st_gid, st.st_mtime_ns, what)
    return found, sorted(sorted(group) for group in inodes.values() if len(group) > 1)


@pytest.fixture
def trees(tmp_path):
    """A source tree, a dir store with one snapshot of it, and an empty dir store."""
    source = tmp_path / "tree"
    make_tree(source)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    src_store = store_kinds.dir_store(tmp_path / "a")[0]
    dst_store = store_kinds.dir_store(tmp_path / "b")[0]
    return source, src_store, dst_store, snapshot_set(src_store, source, 1)


@needs_rsync
def test_a_snapshot_tree_is_copied_verified_and_incremental_copies_share_inodes(trees):
    source, src, dst, first = trees
    listed = copy(src, dst, check_mode=True)
    assert ids(listed["copied"]) == [("h1", "tree", first["set_id"])] and not listed["refused"]
    assert dst.hosts() == []
    result = copy(src, dst)
    assert ids(result["copied"]) == [("h1", "tree", first["set_id"])] and result["changed"]
    assert_same_set(src, dst, "h1", "tree", first["set_id"])
    assert describe_tree(tree_of(dst, first)) == describe_tree(tree_of(src, first))
    assert describe_tree(tree_of(dst, first))[1] == [["data/f01", "data/f01.hard"]]

    (source / "data/f05").write_bytes(b"changed")
    second = snapshot_set(src, source, 2)
    result = copy(src, dst)
    assert ids(result["copied"]) == [("h1", "tree", second["set_id"])]
    assert_same_set(src, dst, "h1", "tree", second["set_id"])
    assert describe_tree(tree_of(dst, second)) == describe_tree(tree_of(src, second))
    old, new = tree_of(dst, first), tree_of(dst, second)
    assert os.stat(os.path.join(new, "data/f07")).st_ino == os.stat(os.path.join(old, "data/f07")).st_ino
    assert os.stat(os.path.join(new, "data/f05")).st_ino != os.stat(os.path.join(old, "data/f05")).st_ino

    again = copy(src, dst)
    assert not again["changed"] and again["copied"] == [] and len(again["skipped"]) == 2


@needs_rsync
def test_a_store_without_trees_refuses_a_snapshot_in_one_sentence_and_copies_the_rest(trees, tmp_path):
    dummy, src, dummy2, first = trees
    make_set(src, "db1", "app", F1, files={"dump.pgc": b"flat"})
    dst = store_kinds.memory_store(tmp_path)[0]
    result = copy(src, dst)
    assert ids(result["copied"]) == [("db1", "app", F1)]
    assert ids(result["refused"]) == [("h1", "tree", first["set_id"])]
    message = _copy.failure_message(result)
    assert "\n" not in message and message.endswith(".")
    assert "h1/tree/%s" % first["set_id"] in message and "a memory store" in message and "trees" in message
    assert dst.listing("h1", "tree").sets == [] and nothing_left(dst, "h1", "tree")


def hostile_link(tree):
    os.unlink(os.path.join(tree, "data/f07"))
    os.symlink("/etc/passwd", os.path.join(tree, "data/f07"))


def hostile_fifo(tree):
    os.mkfifo(os.path.join(tree, "data/zz.fifo"))


def hostile_altered(tree):
    path = os.path.join(tree, "data/f09")
    size = os.path.getsize(path)
    st = os.stat(path)
    with open(path, "r+b") as handle:
        handle.write(b"X" * size)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


@needs_rsync
@pytest.mark.parametrize("verify_source", [False, True], ids=["copy-checks", "verify-first"])
@pytest.mark.parametrize("damage, words", [
    (hostile_link, ["data/f07", "symlink where the lists name a file", "not followed"]),
    (hostile_fifo, ["data/zz.fifo", "FIFO", "not opened"]),
    (hostile_altered, ["data/f09", "SHA-256"]),
], ids=["link-out", "fifo", "altered"])
def test_a_hostile_source_tree_is_refused_in_one_sentence(trees, damage, words, verify_source):
    dummy, src, dst, first = trees
    damage(tree_of(src, first))
    result = copy(src, dst, verify_source=verify_source)
    assert result["copied"] == [] and ids(result["refused"]) == [("h1", "tree", first["set_id"])]
    message = _copy.failure_message(result)
    assert "\n" not in message and message.endswith(".")
    for word in words:
        assert word in message, message
    assert dst.listing("h1", "tree").sets == [] and nothing_left(dst, "h1", "tree")
    assert os.listdir(dst.location("h1", "tree")) == []  # no set, no partial, no tree kept to resume from


def scratch_dirs():
    """This user's local copies of fetched trees (the ssh kind's scratch directories)."""
    base = tempfile.gettempdir()
    return sorted(name for name in os.listdir(base) if name.startswith("lifeboat-tree-")
                  and os.lstat(os.path.join(base, name)).st_uid == os.getuid())


@needs_rsync
def test_snapshot_trees_copy_from_an_ssh_store_and_are_refused_towards_one(tmp_path):
    """ssh -> dir: the tree is fetched, checked against the index and rebuilt, and the fetched copy is gone
    afterwards; dir -> ssh: refused in one sentence (a copy cannot run rsync into the server), the rest copies."""
    from ansible_collections.lifeboat.backup.plugins.module_utils import _store_kinds
    from ansible_collections.lifeboat.backup.tests.unit.plugins.module_utils import ssh_harness
    source = tmp_path / "tree"
    make_tree(source)
    remote = tmp_path / "remote"
    remote.mkdir(mode=0o700)
    (tmp_path / "local").mkdir()
    ssh = _store_kinds.open_store(ssh_harness.spec(remote))
    local = store_kinds.dir_store(tmp_path / "local")[0]
    try:
        first = snapshot_set(ssh, source, 1)
        scratch_before = scratch_dirs()
        result = copy(ssh, local)
        assert ids(result["copied"]) == [("h1", "tree", first["set_id"])] and not result["refused"]
        assert local.verify_set(local.read_manifest("h1", "tree", first["set_id"])) == []
        on_server = os.path.join(str(remote), "h1", "tree", first["set_id"], "tree")
        assert describe_tree(tree_of(local, first)) == describe_tree(on_server)
        assert scratch_dirs() == scratch_before  # the fetched copy of the tree is gone

        make_set(local, "db1", "app", F1, files={"dump.pgc": b"flat"})
        second = snapshot_set(local, source, 2)
        back = copy(local, ssh)
        assert ids(back["copied"]) == [("db1", "app", F1)]
        assert ids(back["refused"]) == [("h1", "tree", second["set_id"])]
        message = _copy.failure_message(back)
        assert "\n" not in message and "an ssh store" in message and "local_trees" in message
        assert ssh.listing("h1", "tree").sets == [first["set_id"]]
    finally:
        ssh.close()
