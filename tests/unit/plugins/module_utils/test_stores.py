# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import datetime
import errno
import hashlib
import json
import os
import socket
import stat
import subprocess

import pytest

from ansible_collections.lifeboat.backup.plugins.module_utils import _manifest
from ansible_collections.lifeboat.backup.plugins.module_utils import _store_dir
from ansible_collections.lifeboat.backup.plugins.module_utils import _store_kinds
from ansible_collections.lifeboat.backup.plugins.module_utils import _stores
from ansible_collections.lifeboat.backup.plugins.module_utils._common import format_ts
from ansible_collections.lifeboat.backup.plugins.module_utils._stores import LockedError, StoreError

UTC = datetime.timezone.utc
SET_ID = "20261126T031500Z-full"
NOW = datetime.datetime(2026, 11, 26, 3, 15, 0, tzinfo=UTC)


@pytest.fixture
def store(tmp_path):
    return _store_dir.DirStore({"path": str(tmp_path / "store")})


def lock_path(tmp_path):
    """Where DirLock of db1/app in the store of ``tmp_path`` lives (its directory made 0700)."""
    base = tmp_path / "store" / "db1" / "app"
    os.makedirs(str(base), mode=0o700, exist_ok=True)
    os.chmod(str(tmp_path / "store"), 0o700)
    return str(base / ".lock")


def new_lock(tmp_path, now=None, ttl=86400.0):
    store = _store_dir.DirStore({"path": str(tmp_path / "store")})
    lock = _store_dir.DirLock(store, "db1", "app", ttl=ttl, now=now)
    return lock


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


# ------------------------------------------------------------------ open_store, errors

@pytest.mark.parametrize(
    "spec, fragment",
    [
        ({"kind": "dir", "path": "relative/path"}, "must be an absolute path, not 'relative/path'"),
        ({"kind": "dir", "path": ""}, "must be an absolute path"),
        ({"kind": "dir", "path": None}, "must be an absolute path, not None"),
        ({"kind": "dir"}, "must be an absolute path"),
        ({"kind": "dir", "path": "/x", "flavour": "b"}, "Store option flavour applies to store kind none, not dir"),
        ({"kind": "dir", "path": "/x", "bucket": "b"}, "Store option bucket applies to store kind s3, not dir"),
        ({"kind": "dir", "path": "/x", "aws_access_key_id": "k"},
         "Store option aws_access_key_id applies to store kind s3, not dir"),
        ({"kind": "ftp", "path": "/x"}, "Store kind 'ftp' is not supported"),
        ("/var/backups", "must be a dictionary"),
        (None, "must be a dictionary"),
    ],
)
def test_open_store_errors(spec, fragment):
    with pytest.raises(StoreError) as info:
        _store_kinds.open_store(spec)
    assert fragment in str(info.value)


@pytest.mark.parametrize("spec", [{"kind": "dir", "path": "/srv/backups/"}, {"path": "/srv/backups"},
                                  {"kind": None, "path": "/srv//backups"}])
def test_open_store_dir(spec):
    store = _store_kinds.open_store(spec)
    assert isinstance(store, _store_dir.DirStore)
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
    path = lock_path(tmp_path)
    lock = new_lock(tmp_path, ttl=3600, now=lambda: NOW)
    assert lock.acquire() is lock
    lock.update(SET_ID)
    assert lock.held and lock.stale is None
    assert mode(path) == 0o600
    with open(path) as handle:
        info = json.load(handle)
    assert info["pid"] == os.getpid()
    assert info["node"] == socket.gethostname()
    assert info["set_id"] == SET_ID
    assert info["started_at"] == "2026-11-26T03:15:00.000Z"
    assert info["expires_at"] == "2026-11-26T04:15:00.000Z"
    assert info["start_ticks"] == _stores.process_start_ticks(os.getpid())
    lock.release()
    assert not os.path.exists(path)
    lock.release()  # idempotent


def test_lock_context_manager_releases_on_error(tmp_path):
    path = lock_path(tmp_path)
    with pytest.raises(RuntimeError):
        with new_lock(tmp_path) as lock:
            assert lock.held and os.path.exists(path)
            raise RuntimeError("boom")
    assert not os.path.exists(path)


def test_second_lock_while_held_is_refused(tmp_path):
    path = lock_path(tmp_path)
    with new_lock(tmp_path):
        with pytest.raises(LockedError) as info:
            new_lock(tmp_path).acquire()
        message = str(info.value)
        assert "pid %d on %s" % (os.getpid(), socket.gethostname()) in message
        assert path in message
        assert "wait for it to finish" in message
        assert os.path.exists(path)
    assert not os.path.exists(path)
    assert issubclass(LockedError, StoreError)


def test_dead_pid_lock_is_taken_over(tmp_path):
    path = lock_path(tmp_path)
    pid = dead_pid()
    write_lock(path, **lock_info(pid))
    lock = new_lock(tmp_path)
    with lock:
        assert lock.stale == {"reason": "its process %d is gone" % pid, "pid": pid, "node": socket.gethostname(),
                              "started_at": format_ts(NOW), "set_id": SET_ID}
        with open(path) as handle:
            assert json.load(handle)["pid"] == os.getpid()
    assert os.listdir(os.path.dirname(path)) == []  # no .stale-<pid> leftover, lock released


def test_reused_pid_lock_is_taken_over(tmp_path):
    path = lock_path(tmp_path)
    ticks = _stores.process_start_ticks(os.getpid())
    write_lock(path, **lock_info(os.getpid(), start_ticks=ticks + 1))
    with new_lock(tmp_path) as lock:
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
    path = lock_path(tmp_path)
    write_lock(path, **lock_info(1, node="some-other-node.invalid", expires=expires))
    lock = new_lock(tmp_path, now=lambda: now)
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
    path = lock_path(tmp_path)
    with open(path, "w") as handle:
        handle.write(content)
    with new_lock(tmp_path) as lock:
        assert lock.stale["reason"] == "the lock file is unreadable"
        with open(path) as handle:
            assert json.load(handle)["pid"] == os.getpid()


def test_dir_store_lock(store, tmp_path):
    lock = store.lock("db1", "app", ttl=60)
    assert isinstance(lock, _store_dir.DirLock)
    with lock:
        path = os.path.join(store.location("db1", "app"), ".lock")
        assert os.path.exists(path)
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
                     "TICKS": _stores.process_start_ticks(os.getpid())}
    if isinstance(info, dict):
        info = dict((k, substitutions.get(v, v) if isinstance(v, str) else v) for k, v in info.items())
        for key, value in substitutions.items():
            expected = expected.replace(key, str(value))
    assert _stores.lock_holder_state(info, node, now) == expected


def test_process_start_ticks():
    assert isinstance(_stores.process_start_ticks(os.getpid()), int)
    assert _stores.process_start_ticks(dead_pid()) is None
