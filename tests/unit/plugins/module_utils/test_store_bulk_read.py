# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The catalog's bulk manifest read (Store.read_manifests) answers exactly as one read_manifest per set.

The dir kind opens the source directory once for all of a source's sets and
reads each manifest with a buffer of its own size; neither may change what is
refused, or how: links, FIFOs, huge files, missing manifests and manifests
that name another place give the same error, set by set, and never stop the
others from being read.
"""

from __future__ import annotations

import os

import pytest

from ansible_collections.lifeboat.backup.plugins.module_utils import _catalog
from ansible_collections.lifeboat.backup.plugins.module_utils import _manifest
from ansible_collections.lifeboat.backup.plugins.module_utils import _store_dir
from ansible_collections.lifeboat.backup.plugins.module_utils import _stores
from ansible_collections.lifeboat.backup.plugins.module_utils._common import LifeboatError
from ansible_collections.lifeboat.backup.tests.unit.plugins.module_utils import store_kinds
from ansible_collections.lifeboat.backup.tests.unit.plugins.module_utils.test_store_contract import write_set

# The ssh kind makes one ssh connection per operation (about 0.5 s here): give it time.
NO_HANG_SECONDS = 60

IDS = ["20261101T000000Z-full", "20261102T000000Z-full", "20261103T000000Z-full", "20261104T000000Z-full"]


pytestmark = pytest.mark.usefixtures("no_hang")  # tests/unit/plugins/conftest.py


def one_by_one(store, host, source, set_ids):
    out = []
    for set_id in set_ids:
        try:
            out.append((set_id, store.read_manifest(host, source, set_id), None))
        except LifeboatError as exc:
            out.append((set_id, None, (type(exc), str(exc))))
    return out


def in_bulk(store, host, source, set_ids):
    return [(set_id, manifest, None if error is None else (type(error), str(error)))
            for set_id, manifest, error in store.read_manifests(host, source, set_ids)]


@pytest.mark.parametrize("kind", sorted(store_kinds.FACTORIES))
def test_bulk_read_equals_single_reads(kind, tmp_path):
    store, dummy = store_kinds.FACTORIES[kind](tmp_path)
    written = [write_set(store, set_id=set_id) for set_id in IDS]
    missing = "20261105T000000Z-full"
    ids = IDS + [missing]
    bulk = in_bulk(store, "db1", "app", ids)
    assert bulk == one_by_one(store, "db1", "app", ids)
    assert [m for dummy, m, dummy2 in bulk[:4]] == written
    assert bulk[4][2][0] is _manifest.ManifestError and "is missing" in bulk[4][2][1]
    # a source that does not exist: every id answers "missing", nothing raises
    assert [e[0] for dummy, dummy2, e in in_bulk(store, "db9", "app", IDS[:2])] == [_manifest.ManifestError] * 2
    assert in_bulk(store, "db9", "app", IDS[:2]) == one_by_one(store, "db9", "app", IDS[:2])


def test_dir_bulk_read_refuses_each_hostile_set_like_a_single_read(tmp_path):
    store = _store_dir.DirStore({"path": str(tmp_path / "store")})
    for set_id in IDS:
        write_set(store, set_id=set_id)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "manifest.json").write_bytes(_manifest.dumps(_manifest_of(store, IDS[0])))
    src = os.path.join(store.root, "db1", "app")
    # 1: the set directory is a link to a copy of a valid set outside the store
    linked = "20261110T000000Z-full"
    os.symlink(str(outside), os.path.join(src, linked))
    # 2: the manifest is a FIFO
    os.unlink(os.path.join(src, IDS[1], "manifest.json"))
    os.mkfifo(os.path.join(src, IDS[1], "manifest.json"))
    # 3: the manifest is far over the limit (sparse)
    with open(os.path.join(src, IDS[2], "manifest.json"), "r+b") as handle:
        handle.truncate(_stores.MAX_MANIFEST_BYTES + 1)
    # 4: the manifest is a link to a valid manifest outside
    os.unlink(os.path.join(src, IDS[3], "manifest.json"))
    os.symlink(str(outside / "manifest.json"), os.path.join(src, IDS[3], "manifest.json"))
    ids = IDS + [linked]
    bulk = in_bulk(store, "db1", "app", ids)
    assert bulk == one_by_one(store, "db1", "app", ids)
    assert bulk[0][1] is not None and bulk[0][2] is None
    assert bulk[1][2][0] is _stores.UnsafeEntryError and "not a regular file" in bulk[1][2][1]
    assert bulk[2][2][0] is _manifest.ManifestError and "more than the limit" in bulk[2][2][1]
    assert bulk[3][2][0] is _stores.UnsafeEntryError and "symbolic link" in bulk[3][2][1]
    assert bulk[4][2][0] is _stores.UnsafeEntryError and "symbolic link" in bulk[4][2][1]
    # the catalog reports the same, and still finds the sound set
    sets, invalid, dummy = _catalog.scan(store)
    assert [m["set_id"] for m in sets] == [IDS[0]]
    assert sorted(i["set_id"] for i in invalid) == sorted(IDS[1:] + [linked])


def test_manifest_growing_past_the_limit_while_read_is_refused(tmp_path, monkeypatch):
    """read_bounded reads what fstat announced plus one byte; more behind it is read on and refused past the limit."""
    store = _store_dir.DirStore({"path": str(tmp_path / "store")})
    write_set(store, set_id=IDS[0])
    path = os.path.join(store.root, "db1", "app", IDS[0], "manifest.json")
    real_fstat = os.fstat

    def stale_fstat(fd):
        st = real_fstat(fd)
        if os.path.samestat(st, os.stat(path)):
            with open(path, "ab") as handle:  # the file grows after it was measured
                handle.write(b" " * (_stores.MAX_MANIFEST_BYTES + 10))
        return st
    monkeypatch.setattr(os, "fstat", stale_fstat)
    with pytest.raises(_manifest.ManifestError, match="more than the limit"):
        store.read_manifest("db1", "app", IDS[0])


def test_manifest_read_whole_through_short_reads(tmp_path, monkeypatch):
    """A file system that returns less than asked (a network mount) still gives the whole manifest."""
    store = _store_dir.DirStore({"path": str(tmp_path / "store")})
    manifest = write_set(store, set_id=IDS[0])
    real_read = os.read
    monkeypatch.setattr(os, "read", lambda fd, count: real_read(fd, min(count, 7)))
    assert store.read_manifest("db1", "app", IDS[0]) == manifest
    assert in_bulk(store, "db1", "app", IDS[:1]) == [(IDS[0], manifest, None)]


def _manifest_of(store, set_id):
    return store.read_manifest("db1", "app", set_id)
