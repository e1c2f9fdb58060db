# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A dir store written by an attacker: links, FIFOs, devices, stray entries, planted lock links, shared roots.

Every case must end in one clear error or a report, never a hang, a traceback
or a touch outside the store. Each test runs under a timeout alarm so that a
blocking open of a FIFO fails the test instead of hanging the suite.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import stat

import pytest

from ansible_collections.lifeboat.backup.plugins.module_utils import _catalog
from ansible_collections.lifeboat.backup.plugins.module_utils import _manifest
from ansible_collections.lifeboat.backup.plugins.module_utils import _store_dir
from ansible_collections.lifeboat.backup.plugins.module_utils import _stores
from ansible_collections.lifeboat.backup.plugins.module_utils._common import LifeboatError
from ansible_collections.lifeboat.backup.tests.unit.plugins.helpers import make_set

SET_ID = "20261126T031500Z-full"
UTC = datetime.timezone.utc


pytestmark = pytest.mark.usefixtures("no_hang")  # tests/unit/plugins/conftest.py


@pytest.fixture
def store(tmp_path):
    return _store_dir.DirStore({"path": str(tmp_path / "store")})


@pytest.fixture
def outside(tmp_path):
    """A directory outside the store with a secret file: nothing may read, change or remove it."""
    path = tmp_path / "outside"
    path.mkdir()
    (path / "secret").write_bytes(b"not yours")
    (path / "dump.pgc").write_bytes(b"planted")
    return path


def source_dir(store):
    return os.path.join(store.root, "db1", "app")


def assert_untouched(outside):
    assert sorted(os.listdir(str(outside))) == ["dump.pgc", "secret"]
    assert (outside / "secret").read_bytes() == b"not yours"


def test_symlinked_payload_is_refused_not_followed(store, outside):
    manifest = make_set(store, "db1", "app", SET_ID, files={"dump.pgc": b"planted"})
    path = os.path.join(source_dir(store), SET_ID, "dump.pgc")
    os.unlink(path)
    os.symlink(str(outside / "dump.pgc"), path)
    with pytest.raises(_stores.UnsafeEntryError, match="symbolic link"):
        store.open_payload("db1", "app", SET_ID, "dump.pgc")
    problems = store.verify_set(manifest)
    assert [(p["name"], p["problem"]) for p in problems] == [("dump.pgc", "unreadable")]
    assert "symbolic link" in problems[0]["detail"]


@pytest.mark.parametrize("target", ["/dev/zero", "/dev/urandom"])
def test_payload_linked_to_a_device_is_refused_at_once(store, target):
    manifest = make_set(store, "db1", "app", SET_ID)
    path = os.path.join(source_dir(store), SET_ID, "dump.pgc")
    os.unlink(path)
    os.symlink(target, path)
    problems = store.verify_set(manifest)
    assert problems[0]["problem"] == "unreadable"


def test_fifo_payload_is_refused_without_blocking(store):
    manifest = make_set(store, "db1", "app", SET_ID)
    path = os.path.join(source_dir(store), SET_ID, "dump.pgc")
    os.unlink(path)
    os.mkfifo(path)
    with pytest.raises(_stores.UnsafeEntryError, match="not a regular file"):
        store.open_payload("db1", "app", SET_ID, "dump.pgc")
    assert store.verify_set(manifest)[0]["problem"] == "unreadable"


def test_fifo_manifest_is_reported_not_waited_on(store):
    make_set(store, "db1", "app", SET_ID)
    path = os.path.join(source_dir(store), SET_ID, "manifest.json")
    os.unlink(path)
    os.mkfifo(path)
    listing = store.listing("db1", "app")
    assert listing.sets == []
    assert listing.strays == [{"name": SET_ID, "problem": "manifest is not a regular file (other)"}]
    sets, invalid, dummy = _catalog.scan(store)
    assert sets == [] and invalid[0]["set_id"] == SET_ID


def test_symlinked_manifest_is_not_a_set(store, outside, tmp_path):
    other = _store_dir.DirStore({"path": str(tmp_path / "other")})
    make_set(other, "db1", "app", SET_ID)
    make_set(store, "db1", "app", SET_ID)
    path = os.path.join(source_dir(store), SET_ID, "manifest.json")
    os.unlink(path)
    os.symlink(os.path.join(other.root, "db1", "app", SET_ID, "manifest.json"), path)
    assert store.set_ids("db1", "app") == []
    assert store.listing("db1", "app").strays[0]["problem"] == "manifest is not a regular file (link)"
    with pytest.raises(LifeboatError):
        store.read_manifest("db1", "app", SET_ID)


@pytest.mark.parametrize("level", ["host", "source", "set"])
def test_symlinked_directories_are_never_entered(store, outside, tmp_path, level):
    other = _store_dir.DirStore({"path": str(tmp_path / "other")})
    make_set(other, "db1", "app", SET_ID)
    os.makedirs(os.path.join(store.root, "db1", "app"), mode=0o700)
    os.chmod(store.root, 0o700)
    if level == "host":
        os.rmdir(os.path.join(store.root, "db1", "app"))
        os.rmdir(os.path.join(store.root, "db1"))
        os.symlink(os.path.join(other.root, "db1"), os.path.join(store.root, "db1"))
    elif level == "source":
        os.rmdir(os.path.join(store.root, "db1", "app"))
        os.symlink(os.path.join(other.root, "db1", "app"), os.path.join(store.root, "db1", "app"))
    else:
        os.symlink(os.path.join(other.root, "db1", "app", SET_ID), os.path.join(store.root, "db1", "app", SET_ID))
    sets, invalid, dummy = _catalog.scan(store)
    assert sets == []
    if level == "set":
        assert invalid[0]["set_id"] == SET_ID and "not a plain directory (link)" in invalid[0]["error"]
    with pytest.raises(LifeboatError):
        store.read_manifest("db1", "app", SET_ID)
    # a backup into it refuses instead of writing through the link
    if level != "set":
        with pytest.raises(_stores.UnsafeEntryError):
            store.begin("db1", "app", "20261127T000000Z-full")
        assert os.listdir(os.path.join(other.root, "db1", "app")) == [SET_ID]


def test_stray_entries_are_reported_and_never_block(store):
    make_set(store, "db1", "app", SET_ID)
    base = source_dir(store)
    with open(os.path.join(base, "20261127T000000Z-full"), "w") as handle:
        handle.write("a file where a set should be")
    os.symlink("/etc", os.path.join(base, "20261128T000000Z-full"))
    os.mkdir(os.path.join(base, "20261129T000000Z-full"))
    os.mkfifo(os.path.join(base, "20261130T000000Z-full.partial"))
    bad = b"20261201T000000Z-full\xff"
    os.mkdir(os.path.join(base.encode(), bad))
    listing = store.listing("db1", "app")
    assert listing.sets == [SET_ID]
    problems = dict((s["name"], s["problem"]) for s in listing.strays)
    assert problems == {
        "20261127T000000Z-full": "not a plain directory (file)",
        "20261128T000000Z-full": "not a plain directory (link)",
        "20261129T000000Z-full": "no manifest (incomplete)",
        "20261130T000000Z-full.partial": "not a plain directory (other)",
    }
    # remove_partials leaves what is not a plain directory alone, and never follows the link
    assert store.remove_partials("db1", "app") == []
    assert os.path.isdir("/etc")
    # a new set is still written, under an id that collides with none of them
    writer = store.begin("db1", "app", "20261202T000000Z-full")
    writer.abort()


def test_partial_that_is_a_link_is_not_deleted_through(store, outside):
    os.makedirs(source_dir(store), mode=0o700)
    os.chmod(store.root, 0o700)
    os.symlink(str(outside), os.path.join(source_dir(store), SET_ID + ".partial"))
    listing = store.listing("db1", "app")
    assert listing.partials == []
    assert listing.strays == [{"name": SET_ID + ".partial", "problem": "not a plain directory (link)"}]
    assert store.remove_partials("db1", "app") == []
    assert_untouched(outside)


def test_planted_lock_temp_link_does_not_redirect_the_write(store, outside):
    os.makedirs(source_dir(store), mode=0o700)
    os.chmod(store.root, 0o700)
    # the lock's temporary name for this pid, planted as a link to a file outside
    os.symlink(str(outside / "secret"), os.path.join(source_dir(store), ".lock.%d.tmp" % os.getpid()))
    with store.lock("db1", "app"):
        pass
    assert_untouched(outside)


def test_lock_that_is_a_link_or_fifo_is_refused(store, outside):
    os.makedirs(source_dir(store), mode=0o700)
    os.chmod(store.root, 0o700)
    os.symlink(str(outside / "secret"), os.path.join(source_dir(store), ".lock"))
    with pytest.raises(_stores.UnsafeEntryError, match="not a regular file"):
        store.lock("db1", "app").acquire()
    os.unlink(os.path.join(source_dir(store), ".lock"))
    os.mkfifo(os.path.join(source_dir(store), ".lock"))
    with pytest.raises(_stores.UnsafeEntryError):
        store.lock("db1", "app").acquire()
    assert_untouched(outside)


def test_huge_lock_file_is_not_read_whole(store):
    os.makedirs(source_dir(store), mode=0o700)
    os.chmod(store.root, 0o700)
    with open(os.path.join(source_dir(store), ".lock"), "wb") as handle:
        handle.truncate(10 * 1024 * 1024 * 1024)  # sparse 10 GiB
    with store.lock("db1", "app") as lock:
        assert lock.stale["reason"] == "the lock file is unreadable"


def test_huge_manifest_is_refused_unread(store):
    make_set(store, "db1", "app", SET_ID)
    with open(os.path.join(source_dir(store), SET_ID, "manifest.json"), "wb") as handle:
        handle.truncate(64 * 1024 * 1024 * 1024)  # sparse 64 GiB
    with pytest.raises(_manifest.ManifestError, match="more than the limit"):
        store.read_manifest("db1", "app", SET_ID)


@pytest.mark.parametrize("mode", [0o770, 0o777, 0o1777, 0o702])
def test_shared_root_is_refused_unless_allowed(tmp_path, mode):
    root = tmp_path / "store"
    root.mkdir()
    os.chmod(str(root), mode)
    store = _store_dir.DirStore({"path": str(root)})
    with pytest.raises(_stores.StoreError, match="writable by group or others"):
        store.hosts()
    with pytest.raises(_stores.StoreError, match="allow_shared"):
        store.begin("db1", "app", SET_ID)
    shared = _store_dir.DirStore({"path": str(root), "allow_shared": True})
    assert shared.hosts() == []


def test_root_is_created_only_under_an_existing_parent(tmp_path):
    store = _store_dir.DirStore({"path": str(tmp_path / "mnt" / "backup" / "lifeboat")})
    with pytest.raises(_stores.StoreError, match="mount the backup disk"):
        store.begin("db1", "app", SET_ID)
    assert not os.path.exists(str(tmp_path / "mnt"))
    (tmp_path / "mnt" / "backup").mkdir(parents=True)
    writer = store.begin("db1", "app", SET_ID)
    writer.abort()
    assert stat.S_IMODE(os.stat(store.root).st_mode) == 0o700


def test_set_that_names_another_host_is_invalid(store):
    make_set(store, "db2", "app", SET_ID)
    os.makedirs(os.path.join(store.root, "db1", "app"), mode=0o700)
    os.rename(os.path.join(store.root, "db2", "app", SET_ID), os.path.join(source_dir(store), SET_ID))
    sets, invalid, dummy = _catalog.scan(store, "db1")
    assert sets == [] and "moved or edited" in invalid[0]["error"]


def test_non_utf8_names_are_escaped(store):
    make_set(store, "db1", "app", SET_ID)
    base = source_dir(store).encode()
    os.symlink(b"/etc", base + b"/20261127T000000Z-full.partial")
    os.mkdir(base + b"/20261128T000000Z-full\xff\x1b[31m")
    listing = store.listing("db1", "app")
    for stray in listing.strays:
        stray["name"].encode("utf-8")  # always encodable
        assert "\x1b" not in stray["name"]


def test_escape_bounds_and_cleans():
    assert _stores.escape("a\x1b[31mb\n") == "a\\x1b[31mb\\x0a"
    assert _stores.escape(b"x\xffy") == "x\\xffy"
    assert len(_stores.escape("x" * 5000)) <= 203
    assert _stores.escape("db1\udcff") == "db1\\xff"


def test_payload_swapped_for_a_larger_file_is_read_only_to_its_size(store):
    manifest = make_set(store, "db1", "app", SET_ID)
    path = os.path.join(source_dir(store), SET_ID, "dump.pgc")
    with open(path, "wb") as handle:
        handle.truncate(8 * 1024 * 1024 * 1024)  # sparse 8 GiB
    problems = store.verify_set(manifest)
    assert problems == [{"name": "dump.pgc", "problem": "size", "expected": manifest["files"][0]["size"],
                         "actual": "more"}]


def test_objects_never_follow_links(store, outside):
    import io
    os.makedirs(os.path.join(source_dir(store), "objects"), mode=0o700)
    os.chmod(store.root, 0o700)
    os.symlink(str(outside), os.path.join(source_dir(store), "objects", "wal"))
    with pytest.raises(_stores.UnsafeEntryError):
        store.put_object("db1", "app", "wal/000000010000000000000001", io.BytesIO(b"x"))
    os.symlink(str(outside / "secret"), os.path.join(source_dir(store), "objects", "state.snar"))
    with pytest.raises(_stores.UnsafeEntryError):
        store.open_object("db1", "app", "state.snar")
    with pytest.raises(_stores.UnsafeEntryError):
        store.delete_object("db1", "app", "state.snar")
    assert store.list_objects("db1", "app") == []
    assert_untouched(outside)


def test_hash_of_verify_matches_content(store):
    data = b"z" * 100
    manifest = make_set(store, "db1", "app", SET_ID, files={"a.bin": data})
    assert manifest["files"][0]["sha256"] == hashlib.sha256(data).hexdigest()
    assert store.verify_set(manifest) == []
