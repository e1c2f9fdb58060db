# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The store contract (docs/stores.md), run against every kind in store_kinds.FACTORIES."""

from __future__ import annotations

import datetime
import hashlib
import io
import json
import time

import pytest

from ansible_collections.lifeboat.backup.plugins.module_utils import _manifest
from ansible_collections.lifeboat.backup.plugins.module_utils import _stores
from ansible_collections.lifeboat.backup.plugins.module_utils._common import LifeboatError
from ansible_collections.lifeboat.backup.tests.unit.plugins.module_utils import store_kinds

UTC = datetime.timezone.utc
SET_ID = "20261126T031500Z-full"
NOW = datetime.datetime(2026, 11, 26, 3, 15, 0, tzinfo=UTC)


@pytest.fixture(params=sorted(store_kinds.FACTORIES))
def kind(request, tmp_path):
    return store_kinds.FACTORIES[request.param](tmp_path)


@pytest.fixture
def store(kind):
    return kind[0]


def manifest_for(set_id, files, host="db1", source="app", parent=None):
    set_type = _manifest.SET_ID_RE.match(set_id).group(2)
    manifest = _manifest.new_manifest(set_id, host, source, "postgresql", "pg_dump", set_type, parent)
    for name, data in files.items():
        _manifest.add_file(manifest, name, len(data), hashlib.sha256(data).hexdigest())
    _manifest.finish(manifest, NOW, NOW + datetime.timedelta(seconds=5))
    return manifest


def write_set(store, set_id=SET_ID, files=None, host="db1", source="app", parent=None):
    files = files if files is not None else {"dump.pgc": b"payload " * 1000}
    manifest = manifest_for(set_id, files, host, source, parent)
    writer = store.begin(host, source, set_id)
    try:
        for name, data in files.items():
            sink = writer.open(name)
            sink.write(data)
            sink.close()
        writer.commit(_manifest.dumps(manifest), list(files))
    finally:
        writer.abort()
    return manifest


def read_all(reader):
    with reader:
        return reader.read()


def test_empty_store_lists_nothing(store):
    assert store.hosts() == []
    assert store.sources("db1") == []
    listing = store.listing("db1", "app")
    assert (listing.sets, listing.partials, listing.strays) == ([], [], [])
    assert store.list_objects("db1", "app") == []


def test_committed_set_is_listed_and_read_back(store):
    data = bytes(range(256)) * 5000
    manifest = write_set(store, files={"dump.pgc": data, "toc.dat": b"toc"})
    assert store.hosts() == ["db1"]
    assert store.sources("db1") == ["app"]
    assert store.set_ids("db1", "app") == [SET_ID]
    assert store.read_manifest("db1", "app", SET_ID) == manifest
    assert read_all(store.open_payload("db1", "app", SET_ID, "dump.pgc")) == data
    assert sorted(store.payload_names("db1", "app", SET_ID)) == ["dump.pgc", "toc.dat"]
    assert store.verify_set(manifest) == []


def test_streamed_reads_in_chunks(store):
    data = b"x" * (3 * 1024 * 1024 + 17)
    write_set(store, files={"big.bin": data})
    reader = store.open_payload("db1", "app", SET_ID, "big.bin")
    digest = hashlib.sha256()
    with reader:
        while True:
            block = reader.read(65536)
            if not block:
                break
            assert len(block) <= 65536
            digest.update(block)
    assert digest.hexdigest() == hashlib.sha256(data).hexdigest()


def test_a_set_is_invisible_until_commit_and_abort_leaves_nothing(store):
    writer = store.begin("db1", "app", SET_ID)
    sink = writer.open("dump.pgc")
    sink.write(b"half")
    sink.close()
    assert store.set_ids("db1", "app") == []
    assert store.listing("db1", "app").partials == [SET_ID + _stores.PARTIAL_SUFFIX]
    writer.abort()
    listing = store.listing("db1", "app")
    assert (listing.sets, listing.partials) == ([], [])


def test_commit_refuses_when_files_differ(store):
    writer = store.begin("db1", "app", SET_ID)
    try:
        sink = writer.open("a.bin")
        sink.write(b"a")
        sink.close()
        manifest = manifest_for(SET_ID, {"a.bin": b"a", "b.bin": b"b"})
        with pytest.raises(_stores.StoreError):
            writer.commit(_manifest.dumps(manifest), ["a.bin", "b.bin"])
    finally:
        writer.abort()
    assert store.set_ids("db1", "app") == []


def test_crashed_writer_leaves_a_partial_that_remove_partials_clears(store):
    writer = store.begin("db1", "app", SET_ID)
    sink = writer.open("dump.pgc")
    sink.write(b"crash")
    # no commit, no abort: the process died here
    assert store.set_ids("db1", "app") == []
    removed = store.remove_partials("db1", "app")
    assert removed == [SET_ID + _stores.PARTIAL_SUFFIX]
    assert store.listing("db1", "app").partials == []
    del sink, writer


def test_two_sets_and_delete_one(store):
    write_set(store, "20261101T000000Z-full")
    write_set(store, "20261102T000000Z-incremental", parent="20261101T000000Z-full")
    write_set(store, "20261101T000000Z-full", source="crm")
    store.delete_set("db1", "app", "20261101T000000Z-full")
    assert store.set_ids("db1", "app") == ["20261102T000000Z-incremental"]
    assert store.set_ids("db1", "crm") == ["20261101T000000Z-full"]
    with pytest.raises((_manifest.ManifestError, FileNotFoundError, _stores.StoreError)):
        store.read_manifest("db1", "app", "20261101T000000Z-full")


def test_lock_is_exclusive_and_released(store):
    first = store.lock("db1", "app")
    with first:
        assert first.held
        first.update(SET_ID)
        with pytest.raises(_stores.LockedError, match="Another backup of this source is running"):
            store.lock("db1", "app").acquire()
        # another source is independent
        with store.lock("db1", "crm"):
            pass
    assert not first.held
    with store.lock("db1", "app") as again:
        assert again.stale is None


def test_objects_are_put_if_absent(store):
    assert store.put_object("db1", "app", "wal/000000010000000000000001", io.BytesIO(b"seg1")) == "created"
    assert store.put_object("db1", "app", "wal/000000010000000000000001", io.BytesIO(b"seg1")) == "identical"
    with pytest.raises(_stores.ObjectExistsError, match="different content"):
        store.put_object("db1", "app", "wal/000000010000000000000001", io.BytesIO(b"other"))
    assert read_all(store.open_object("db1", "app", "wal/000000010000000000000001")) == b"seg1"
    store.put_object("db1", "app", "wal/000000010000000000000002", io.BytesIO(b"seg2"))
    store.put_object("db1", "app", "state.snar", io.BytesIO(b"s"))
    assert store.list_objects("db1", "app", "wal/") == ["wal/000000010000000000000001", "wal/000000010000000000000002"]
    assert store.list_objects("db1", "app") == ["state.snar", "wal/000000010000000000000001",
                                                "wal/000000010000000000000002"]
    store.delete_object("db1", "app", "state.snar")
    assert store.list_objects("db1", "app", "state") == []
    # objects are not sets
    assert store.set_ids("db1", "app") == []


def test_an_object_has_the_size_and_time_the_store_reports(store):
    name = "wal/000000010000000000000001"
    before = time.time()
    store.put_object("db1", "app", name, io.BytesIO(b"seg1"))
    after = time.time()
    info = store.stat_object("db1", "app", name)
    assert info["size"] == 4
    # S3's LastModified has whole seconds; the server's clock is this machine's.
    assert before - 2 <= info["modified"] <= after + 2
    with pytest.raises(FileNotFoundError):
        store.stat_object("db1", "app", "wal/000000010000000000000002")
    with pytest.raises(FileNotFoundError):
        store.stat_object("db1", "app", name[:-1])  # a prefix of an object is not that object
    with pytest.raises(FileNotFoundError):
        store.stat_object("db9", "app", name)
    with pytest.raises(_stores.StoreError):
        store.stat_object("db1", "app", "../x")
    store.delete_object("db1", "app", name)
    with pytest.raises(FileNotFoundError):
        store.stat_object("db1", "app", name)


@pytest.mark.parametrize("name", ["", "/abs", "a/../b", "../x", "a//b", ".hidden", "a/b/c/d/e", "x\ny"])
def test_object_names_must_be_plain(store, name):
    with pytest.raises(_stores.StoreError):
        store.put_object("db1", "app", name, io.BytesIO(b"x"))


@pytest.mark.parametrize("host, source", [("../x", "app"), ("db1", ".."), ("db1", "a/b"), ("", "app")])
def test_unsafe_names_are_refused(store, host, source):
    with pytest.raises(LifeboatError):
        store.begin(host, source, SET_ID)


@pytest.mark.parametrize("data, problem", [
    (b"", "size"), (b"payload " * 999 + b"payloaX ", "sha256"), (b"payload " * 1001, "size")])
def test_verify_names_a_tampered_file(kind, data, problem):
    store, tamper = kind
    manifest = write_set(store)
    tamper("db1", "app", SET_ID, "dump.pgc", data)
    problems = store.verify_set(manifest)
    assert [(p["name"], p["problem"]) for p in problems] == [("dump.pgc", problem)]


def test_read_manifest_refuses_a_set_that_names_another_place(store):
    manifest = manifest_for(SET_ID, {"dump.pgc": b"x"}, host="db2")
    writer = store.begin("db1", "app", SET_ID)
    sink = writer.open("dump.pgc")
    sink.write(b"x")
    sink.close()
    writer.commit(_manifest.dumps(manifest), ["dump.pgc"])
    with pytest.raises(_manifest.ManifestError, match="moved or edited"):
        store.read_manifest("db1", "app", SET_ID)


def test_oversized_manifest_is_refused_unparsed(store):
    manifest = manifest_for(SET_ID, {"dump.pgc": b"x"})
    raw = json.dumps(manifest).encode() + b" " * (_stores.MAX_MANIFEST_BYTES + 10)
    writer = store.begin("db1", "app", SET_ID)
    sink = writer.open("dump.pgc")
    sink.write(b"x")
    sink.close()
    writer.commit(raw, ["dump.pgc"])
    with pytest.raises(_manifest.ManifestError, match="limit"):
        store.read_manifest("db1", "app", SET_ID)


def test_describe_and_location_are_plain(store):
    described = store.describe()
    assert described["kind"] == store.kind
    text = json.dumps(described)
    for secret in ("secret", "password", "token"):
        assert secret not in text.lower()
    assert SET_ID in store.location("db1", "app", SET_ID)
