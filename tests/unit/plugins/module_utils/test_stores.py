# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import datetime
import errno
import hashlib
import io
import json
import os
import shutil
import socket
import stat
import subprocess

import pytest

from ansible_collections.lifeboat.backup.plugins.module_utils import _manifest
from ansible_collections.lifeboat.backup.plugins.module_utils import _stores
from ansible_collections.lifeboat.backup.plugins.module_utils._common import LifeboatError, format_ts
from ansible_collections.lifeboat.backup.plugins.module_utils._stores import LockedError, StoreError
from ansible_collections.lifeboat.backup.tests.unit.plugins.helpers import make_set

UTC = datetime.timezone.utc
SET_ID = "20261126T031500Z-full"
NOW = datetime.datetime(2026, 11, 26, 3, 15, 0, tzinfo=UTC)


@pytest.fixture
def store(tmp_path):
    return _stores.DirStore(str(tmp_path / "store"))


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def manifest_for(set_id, files, host="db1", source="app"):
    manifest = _manifest.new_manifest(set_id, host, source, "postgresql", "pg_dump")
    for name, data in files.items():
        _manifest.add_file(manifest, name, len(data), hashlib.sha256(data).hexdigest())
    _manifest.finish(manifest, NOW, NOW + datetime.timedelta(seconds=5))
    return manifest


def dead_pid():
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


# ------------------------------------------------------------------ SetWriter

def test_set_writer_commit_is_atomic(store):
    files = {"dump.pgc.zst": b"x" * 1000, "globals.sql.zst": b"roles"}
    writer = store.begin("db1", "app", SET_ID)
    source_dir = store.source_path("db1", "app")
    assert writer.path == os.path.join(source_dir, SET_ID + ".partial")
    for name, data in files.items():
        with writer.open(name) as handle:
            handle.write(data)
    # Before the commit: only the .partial directory, which is never listed as a set.
    assert os.listdir(source_dir) == [SET_ID + ".partial"]
    assert store.set_ids("db1", "app") == []
    assert store.partials("db1", "app") == [SET_ID + ".partial"]
    assert not os.path.exists(os.path.join(writer.path, "manifest.json"))

    manifest = manifest_for(SET_ID, files)
    final = writer.commit(manifest)

    assert final == store.set_path("db1", "app", SET_ID) == os.path.join(source_dir, SET_ID)
    assert os.listdir(source_dir) == [SET_ID]
    assert sorted(os.listdir(final)) == ["dump.pgc.zst", "globals.sql.zst", "manifest.json"]
    assert store.set_ids("db1", "app") == [SET_ID]
    assert store.partials("db1", "app") == []
    assert store.read_manifest("db1", "app", SET_ID) == manifest
    with open(os.path.join(final, "manifest.json"), "rb") as handle:
        assert handle.read() == _manifest.dumps(manifest)
    assert mode(final) == 0o700
    assert mode(source_dir) == 0o700
    for name in os.listdir(final):
        assert mode(os.path.join(final, name)) == 0o600, name
    assert store.verify_set(manifest) == []
    # abort after a commit leaves the set alone.
    writer.abort()
    assert store.set_ids("db1", "app") == [SET_ID]


@pytest.mark.parametrize(
    "on_disk, listed",
    [
        ({"a": b"1", "b": b"2"}, {"a": b"1"}),                 # unlisted file on disk
        ({"a": b"1"}, {"a": b"1", "b": b"2"}),                 # listed file missing
        ({"a": b"1"}, {"c": b"1"}),                            # different name
        ({"a": b"1", "manifest.json": b"{}"}, {"a": b"1"}),    # a stray manifest in the partial dir
    ],
)
def test_commit_refuses_when_files_differ(store, on_disk, listed):
    writer = store.begin("db1", "app", SET_ID)
    for name, data in on_disk.items():
        with writer.open(name) as handle:
            handle.write(data)
    with pytest.raises(StoreError) as info:
        writer.commit(manifest_for(SET_ID, listed))
    assert "Refusing to commit" in str(info.value)
    assert "differ from the manifest" in str(info.value)
    assert store.set_ids("db1", "app") == []
    assert not os.path.exists(store.set_path("db1", "app", SET_ID))
    writer.abort()
    assert os.listdir(store.source_path("db1", "app")) == []


def test_commit_refuses_invalid_manifest(store):
    writer = store.begin("db1", "app", SET_ID)
    with writer.open("a") as handle:
        handle.write(b"1")
    manifest = manifest_for(SET_ID, {"a": b"1"})
    manifest["bytes"] = 2
    with pytest.raises(_manifest.ManifestError):
        writer.commit(manifest)
    assert store.set_ids("db1", "app") == []


def test_staging_dir_is_dropped_before_commit(store):
    writer = store.begin("db1", "app", SET_ID)
    staging = writer.staging_dir("staging")
    assert mode(staging) == 0o700
    os.makedirs(os.path.join(staging, "dump", "deep"))
    with open(os.path.join(staging, "dump", "toc.dat"), "wb") as handle:
        handle.write(b"toc")
    with writer.open("dump.dir.tar") as handle:
        handle.write(b"tar")
    final = writer.commit(manifest_for(SET_ID, {"dump.dir.tar": b"tar"}))
    assert sorted(os.listdir(final)) == ["dump.dir.tar", "manifest.json"]


def test_abort_removes_partial(store):
    writer = store.begin("db1", "app", SET_ID)
    with writer.open("a") as handle:
        handle.write(b"1")
    writer.staging_dir("staging")
    writer.abort()
    assert not os.path.exists(writer.path)
    assert store.partials("db1", "app") == []
    assert store.set_ids("db1", "app") == []


def test_open_refuses_existing_file(store):
    writer = store.begin("db1", "app", SET_ID)
    writer.open("a").close()
    with pytest.raises(StoreError, match="File exists"):
        writer.open("a")


def test_begin_refuses_existing_partial(store):
    store.begin("db1", "app", SET_ID)
    with pytest.raises(StoreError):
        store.begin("db1", "app", SET_ID)


def test_commit_refuses_to_replace_a_complete_set(store):
    make_set(store, "db1", "app", SET_ID, files={"a": b"old"})
    writer = _stores.SetWriter(store, "db1", "app", SET_ID).create()
    with writer.open("a") as handle:
        handle.write(b"new")
    with pytest.raises(StoreError):
        writer.commit(manifest_for(SET_ID, {"a": b"new"}))
    with store.open_file("db1", "app", SET_ID, "a") as handle:
        assert handle.read() == b"old"


def test_remove_partials(store):
    make_set(store, "db1", "app", SET_ID)
    for set_id in ("20261127T000000Z-full", "20261128T000000Z-incremental"):
        writer = store.begin("db1", "app", set_id)
        with writer.open("x") as handle:
            handle.write(b"half")
    assert store.remove_partials("db1", "app") == [
        "20261127T000000Z-full.partial", "20261128T000000Z-incremental.partial"]
    assert os.listdir(store.source_path("db1", "app")) == [SET_ID]
    assert store.remove_partials("db1", "app") == []


# ------------------------------------------------------------------ DirStore read side

def test_listing_ignores_junk(store):
    make_set(store, "db1", "app", SET_ID)
    make_set(store, "db2", "crm", SET_ID)
    os.makedirs(os.path.join(store.root, ".hidden", "app"))
    os.makedirs(os.path.join(store.root, "db1", "-weird"))
    with open(os.path.join(store.root, "notes.txt"), "w") as handle:
        handle.write("x")
    base = store.source_path("db1", "app")
    os.makedirs(os.path.join(base, "not-a-set"))
    os.makedirs(os.path.join(base, "20261127T000000Z-full.deleting"))
    os.makedirs(os.path.join(base, "20261128T000000Z-full"))  # no manifest: incomplete
    assert store.hosts() == ["db1", "db2"]
    assert store.sources("db1") == ["app"]
    assert store.sources("db2") == ["crm"]
    assert store.sources("nohost") == []
    assert store.set_ids("db1", "app") == [SET_ID]
    assert store.set_ids("db1", "nosource") == []


def test_empty_and_missing_store(tmp_path):
    store = _stores.DirStore(str(tmp_path / "nothing-here"))
    assert not store.exists()
    assert store.hosts() == []
    os.makedirs(store.root)
    assert store.exists()
    assert store.describe() == {"kind": "dir", "path": str(tmp_path / "nothing-here")}


def test_read_manifest_errors(store):
    make_set(store, "db1", "app", SET_ID)
    with pytest.raises(_manifest.ManifestError, match="is missing .*: the set is incomplete"):
        store.read_manifest("db1", "app", "20261127T000000Z-full")
    shutil.copytree(store.set_path("db1", "app", SET_ID), store.set_path("db1", "other", SET_ID))
    with pytest.raises(_manifest.ManifestError, match="names db1/app/%s: it was moved or edited" % SET_ID):
        store.read_manifest("db1", "other", SET_ID)


@pytest.mark.parametrize("host, source", [("../x", "app"), ("db1", ".."), ("db1", "a/b"), ("", "app")])
def test_paths_refuse_unsafe_names(store, host, source):
    with pytest.raises(LifeboatError, match="is not usable as a directory name"):
        store.source_path(host, source)


@pytest.mark.parametrize(
    "corrupt, expected",
    [
        ("delete", [{"name": "b.bin", "problem": "missing"}]),
        ("truncate", [{"name": "b.bin", "problem": "size", "expected": 6, "actual": 3}]),
        ("append", [{"name": "b.bin", "problem": "size", "expected": 6, "actual": 7}]),
        ("flip", [{"name": "b.bin", "problem": "sha256", "expected": hashlib.sha256(b"bbbbbb").hexdigest(),
                   "actual": hashlib.sha256(b"bbbbbc").hexdigest()}]),
        ("extra", [{"name": "stray.tmp", "problem": "unlisted"}]),
        ("extra-dir", [{"name": "stray-dir", "problem": "unlisted"}]),
    ],
)
def test_verify_set_names_problems(store, corrupt, expected):
    manifest = make_set(store, "db1", "app", SET_ID, files={"a.bin": b"aaa", "b.bin": b"bbbbbb"})
    base = store.set_path("db1", "app", SET_ID)
    target = os.path.join(base, "b.bin")
    if corrupt == "delete":
        os.unlink(target)
    elif corrupt == "truncate":
        os.truncate(target, 3)
    elif corrupt == "append":
        with open(target, "ab") as handle:
            handle.write(b"b")
    elif corrupt == "flip":
        with open(target, "r+b") as handle:
            handle.seek(5)
            handle.write(b"c")
    elif corrupt == "extra":
        with open(os.path.join(base, "stray.tmp"), "wb") as handle:
            handle.write(b"?")
    elif corrupt == "extra-dir":
        os.mkdir(os.path.join(base, "stray-dir"))
    assert store.verify_set(manifest) == expected


def test_verify_set_reports_several_problems(store):
    manifest = make_set(store, "db1", "app", SET_ID, files={"a.bin": b"aaa", "b.bin": b"bbb"})
    base = store.set_path("db1", "app", SET_ID)
    os.unlink(os.path.join(base, "a.bin"))
    with open(os.path.join(base, "b.bin"), "wb") as handle:
        handle.write(b"BBB")
    problems = store.verify_set(manifest)
    assert [(p["name"], p["problem"]) for p in problems] == [("a.bin", "missing"), ("b.bin", "sha256")]


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_verify_set_unreadable(store):  # pragma: no cover - depends on the user
    manifest = make_set(store, "db1", "app", SET_ID, files={"a.bin": b"aaa"})
    os.chmod(os.path.join(store.set_path("db1", "app", SET_ID), "a.bin"), 0)
    assert store.verify_set(manifest)[0]["problem"] == "unreadable"


def test_hash_file_bounded_chunks():
    data = os.urandom(10000)
    assert _stores.hash_file(io.BytesIO(data), chunk=333) == (10000, hashlib.sha256(data).hexdigest())
    assert _stores.hash_file(io.BytesIO(b"")) == (0, hashlib.sha256(b"").hexdigest())


def test_delete_set(store):
    make_set(store, "db1", "app", SET_ID)
    make_set(store, "db1", "app", "20261127T000000Z-full")
    store.delete_set("db1", "app", SET_ID)
    assert store.set_ids("db1", "app") == ["20261127T000000Z-full"]
    assert os.listdir(store.source_path("db1", "app")) == ["20261127T000000Z-full"]
    with pytest.raises(StoreError) as info:
        store.delete_set("db1", "app", SET_ID)
    assert SET_ID in str(info.value)


# ------------------------------------------------------------------ open_store, errors

@pytest.mark.parametrize(
    "spec, fragment",
    [
        ({"kind": "dir", "path": "relative/path"}, "must be an absolute path, not 'relative/path'"),
        ({"kind": "dir", "path": ""}, "must be an absolute path"),
        ({"kind": "dir", "path": None}, "must be an absolute path, not None"),
        ({"kind": "dir"}, "must be an absolute path"),
        ({"kind": "s3", "bucket": "b"}, "Store kind 's3' is not supported; use one of: dir."),
        ({"kind": "ftp", "path": "/x"}, "Store kind 'ftp' is not supported"),
        ("/var/backups", "must be a dictionary"),
        (None, "must be a dictionary"),
    ],
)
def test_open_store_errors(spec, fragment):
    with pytest.raises(StoreError) as info:
        _stores.open_store(spec)
    assert fragment in str(info.value)


@pytest.mark.parametrize("spec", [{"kind": "dir", "path": "/srv/backups/"}, {"path": "/srv/backups"},
                                  {"kind": None, "path": "/srv//backups"}])
def test_open_store_dir(spec):
    store = _stores.open_store(spec)
    assert isinstance(store, _stores.DirStore)
    assert store.describe() == {"kind": "dir", "path": "/srv/backups"}


@pytest.mark.parametrize(
    "err, expected",
    [
        (errno.ENOSPC, "No space left on the device holding /srv/backups/db1; free space or choose another store."),
        (errno.EDQUOT, "Disk quota exceeded while writing /srv/backups/db1; raise the quota or choose another store."),
        (errno.EACCES, "Permission denied on /srv/backups/db1; run as a user that may write there."),
        (errno.EPERM, "Permission denied on /srv/backups/db1; run as a user that may write there."),
        (errno.EROFS, "/srv/backups/db1 is on a read-only file system."),
        (errno.ENOENT, "/srv/backups/db1: No such file or directory."),
    ],
)
def test_describe_os_error(err, expected):
    message = _stores.describe_os_error(OSError(err, os.strerror(err)), "/srv/backups/db1")
    assert message == expected
    # One sentence: a single full stop, at the end, no line break.
    assert message.count(".") == 1 and message.endswith(".") and "\n" not in message


# ------------------------------------------------------------------ locks

def write_lock(path, **info):
    with open(path, "w") as handle:
        json.dump(info, handle)


def lock_info(pid, node=None, expires=NOW + datetime.timedelta(hours=1), **extra):
    info = {"pid": pid, "node": node or socket.gethostname(), "started_at": format_ts(NOW),
            "expires_at": format_ts(expires), "set_id": SET_ID}
    info.update(extra)
    return info


def test_lock_acquire_release(tmp_path):
    path = str(tmp_path / ".lock")
    lock = _stores.SourceLock(path, set_id=SET_ID, ttl=3600, now=lambda: NOW)
    assert lock.acquire() is lock
    assert lock.held and lock.stale is None
    assert mode(path) == 0o600
    with open(path) as handle:
        info = json.load(handle)
    assert info["pid"] == os.getpid()
    assert info["node"] == socket.gethostname()
    assert info["set_id"] == SET_ID
    assert info["started_at"] == "2026-11-26T03:15:00.000Z"
    assert info["expires_at"] == "2026-11-26T04:15:00.000Z"
    assert info["start_ticks"] == _stores._process_start_ticks(os.getpid())
    lock.release()
    assert not os.path.exists(path)
    lock.release()  # idempotent


def test_lock_context_manager_releases_on_error(tmp_path):
    path = str(tmp_path / ".lock")
    with pytest.raises(RuntimeError):
        with _stores.SourceLock(path) as lock:
            assert lock.held and os.path.exists(path)
            raise RuntimeError("boom")
    assert not os.path.exists(path)


def test_second_lock_while_held_is_refused(tmp_path):
    path = str(tmp_path / ".lock")
    with _stores.SourceLock(path, set_id=SET_ID):
        with pytest.raises(LockedError) as info:
            _stores.SourceLock(path).acquire()
        message = str(info.value)
        assert "pid %d on %s" % (os.getpid(), socket.gethostname()) in message
        assert path in message
        assert "wait for it to finish" in message
        assert os.path.exists(path)
    assert not os.path.exists(path)
    assert issubclass(LockedError, StoreError)


def test_dead_pid_lock_is_taken_over(tmp_path):
    path = str(tmp_path / ".lock")
    pid = dead_pid()
    write_lock(path, **lock_info(pid))
    lock = _stores.SourceLock(path, set_id=SET_ID)
    with lock:
        assert lock.stale == {"reason": "its process %d is gone" % pid, "pid": pid, "node": socket.gethostname(),
                              "started_at": format_ts(NOW), "set_id": SET_ID}
        with open(path) as handle:
            assert json.load(handle)["pid"] == os.getpid()
    assert os.listdir(str(tmp_path)) == []  # no .stale-<pid> leftover, lock released


def test_reused_pid_lock_is_taken_over(tmp_path):
    path = str(tmp_path / ".lock")
    ticks = _stores._process_start_ticks(os.getpid())
    write_lock(path, **lock_info(os.getpid(), start_ticks=ticks + 1))
    with _stores.SourceLock(path) as lock:
        assert lock.stale["reason"] == "its process %d is gone (the pid was reused)" % os.getpid()


@pytest.mark.parametrize(
    "expires, now, stale",
    [
        (NOW, NOW + datetime.timedelta(seconds=1), "it expired at 2026-11-26T03:15:00.000Z"),
        (NOW, NOW, "it expired at 2026-11-26T03:15:00.000Z"),
        (NOW + datetime.timedelta(seconds=1), NOW, None),
        (NOW + datetime.timedelta(days=1), NOW + datetime.timedelta(hours=23), None),
    ],
)
def test_other_node_lock_expiry(tmp_path, expires, now, stale):
    path = str(tmp_path / ".lock")
    write_lock(path, **lock_info(1, node="some-other-node.invalid", expires=expires))
    lock = _stores.SourceLock(path, now=lambda: now)
    if stale is None:
        with pytest.raises(LockedError, match="pid 1 on some-other-node.invalid"):
            lock.acquire()
        assert not lock.held
    else:
        with lock:
            assert lock.stale["reason"] == stale
            assert lock.stale["node"] == "some-other-node.invalid"


@pytest.mark.parametrize("content", ["", "not json", "{", '{"pid": 1}', '{"pid": "x", "node": "n", '
                                     '"expires_at": "2099-01-01T00:00:00Z"}', '{"pid": 1, "node": "n"}'])
def test_unreadable_lock_is_stale(tmp_path, content):
    _check_unreadable_lock(tmp_path, content)


@pytest.mark.parametrize("content", ["null", "[1, 2]", '"text"', "42"])
def test_unreadable_lock_that_is_not_an_object_is_stale(tmp_path, content):
    """BUG (plugins/module_utils/_stores.py SourceLock._handle_existing): a lock file holding valid JSON
    that is not an object is rightly judged stale by lock_holder_state, but building ``self.stale``
    then calls ``info.get(...)`` on a list/None/str/int and raises AttributeError (a traceback)
    instead of taking the lock over."""
    _check_unreadable_lock(tmp_path, content)


def _check_unreadable_lock(tmp_path, content):
    path = str(tmp_path / ".lock")
    with open(path, "w") as handle:
        handle.write(content)
    with _stores.SourceLock(path) as lock:
        assert lock.stale["reason"] == "the lock file is unreadable"
        with open(path) as handle:
            assert json.load(handle)["pid"] == os.getpid()


def test_dir_store_lock(store):
    lock = store.lock("db1", "app", set_id=SET_ID, ttl=60)
    assert isinstance(lock, _stores.SourceLock)
    assert lock.path == os.path.join(store.source_path("db1", "app"), ".lock")
    assert os.path.isdir(store.source_path("db1", "app"))
    with lock:
        assert os.path.exists(lock.path)
        # The lock file is not a set and not a partial.
        assert store.set_ids("db1", "app") == [] and store.partials("db1", "app") == []
        with pytest.raises(LockedError):
            store.lock("db1", "app").acquire()


@pytest.mark.parametrize(
    "info, node, now, expected",
    [
        ({}, "me", NOW, "the lock file is unreadable"),
        (None, "me", NOW, "the lock file is unreadable"),
        ([], "me", NOW, "the lock file is unreadable"),
        ({"pid": "abc", "node": "me", "expires_at": "2026-11-26T03:15:00.000Z"}, "me", NOW,
         "the lock file is unreadable"),
        ({"pid": 1, "node": "me", "expires_at": "tomorrow"}, "me", NOW, "the lock file is unreadable"),
        ({"pid": 1, "node": "me"}, "me", NOW, "the lock file is unreadable"),
        ({"pid": "SELF", "node": "me", "expires_at": "2026-11-26T03:15:00.000Z"}, "me", NOW, "live"),
        # On this node the pid decides, not the expiry.
        ({"pid": "SELF", "node": "me", "expires_at": "2000-01-01T00:00:00.000Z"}, "me", NOW, "live"),
        ({"pid": "SELF", "node": "me", "expires_at": "2026-11-26T03:15:00.000Z", "start_ticks": "TICKS"},
         "me", NOW, "live"),
        ({"pid": "SELF", "node": "me", "expires_at": "2026-11-26T03:15:00.000Z", "start_ticks": -1},
         "me", NOW, "its process SELF is gone (the pid was reused)"),
        ({"pid": "DEAD", "node": "me", "expires_at": "2099-01-01T00:00:00.000Z"}, "me", NOW,
         "its process DEAD is gone"),
        # Another node: its pids mean nothing here, only the expiry counts.
        ({"pid": "DEAD", "node": "other", "expires_at": "2099-01-01T00:00:00.000Z"}, "me", NOW, "live"),
        ({"pid": "SELF", "node": "other", "expires_at": "2026-11-26T03:14:59.999Z"}, "me", NOW,
         "it expired at 2026-11-26T03:14:59.999Z"),
        ({"pid": 1, "node": "other", "expires_at": "2026-11-26T03:15:00.001Z"}, "me", NOW, "live"),
    ],
)
def test_lock_holder_state(info, node, now, expected):
    substitutions = {"SELF": os.getpid(), "DEAD": dead_pid() if "DEAD" in json.dumps(info) else None,
                     "TICKS": _stores._process_start_ticks(os.getpid())}
    if isinstance(info, dict):
        info = dict((k, substitutions.get(v, v) if isinstance(v, str) else v) for k, v in info.items())
        for key, value in substitutions.items():
            expected = expected.replace(key, str(value))
    assert _stores.lock_holder_state(info, node, now) == expected


def test_process_start_ticks():
    assert isinstance(_stores._process_start_ticks(os.getpid()), int)
    assert _stores._process_start_ticks(dead_pid()) is None
