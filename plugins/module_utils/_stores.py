# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils is PRIVATE to this collection. It may change without notice.

"""Stores hold backup sets. One interface; the ``dir`` store is a local path.

Layout::

    <root>/<host>/<source>/<set_id>/manifest.json   complete set (manifest written last)
    <root>/<host>/<source>/<set_id>.partial/        work in progress or a crashed run
    <root>/<host>/<source>/.lock                    one writer per source
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import socket

from ansible_collections.lifeboat.backup.plugins.module_utils._common import (
    LifeboatError,
    format_ts,
    parse_ts,
    utcnow,
)
from ansible_collections.lifeboat.backup.plugins.module_utils import _manifest

PARTIAL_SUFFIX = ".partial"
LOCK_NAME = ".lock"
CHUNK = 1024 * 1024
DIR_MODE = 0o700
FILE_MODE = 0o600


class StoreError(LifeboatError):
    """The store cannot be read or written."""


class LockedError(StoreError):
    """Another live writer holds the source's lock."""


def describe_os_error(exc, what):
    """One sentence for an OSError met while touching ``what``."""
    if exc.errno == errno.ENOSPC:
        return "No space left on the device holding %s; free space or choose another store." % what
    if exc.errno == errno.EDQUOT:
        return "Disk quota exceeded while writing %s; raise the quota or choose another store." % what
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "Permission denied on %s; run as a user that may write there." % what
    if exc.errno == errno.EROFS:
        return "%s is on a read-only file system." % what
    return "%s: %s." % (what, exc.strerror or exc)


def _fsync_dir(path):
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def makedirs_private(path):
    """Create ``path`` and any missing parents with mode 0700 (os.makedirs applies it to the leaf only)."""
    missing = []
    current = path
    while current and not os.path.isdir(current):
        missing.append(current)
        parent = os.path.dirname(current)
        if parent == current:
            break
        current = parent
    for directory in reversed(missing):
        try:
            os.mkdir(directory, DIR_MODE)
        except FileExistsError:
            pass


def hash_file(fileobj, chunk=CHUNK):
    """Return (size, sha256 hex) of an open binary file, read in bounded chunks."""
    digest = hashlib.sha256()
    size = 0
    while True:
        block = fileobj.read(chunk)
        if not block:
            break
        size += len(block)
        digest.update(block)
    return size, digest.hexdigest()


def _process_start_ticks(pid):
    """The kernel start time of ``pid`` (guards against pid reuse), or None."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as handle:
            stat = handle.read().decode("ascii", "replace")
    except OSError:
        return None
    # comm may contain spaces and parentheses: split after the last ')'.
    fields = stat[stat.rfind(")") + 2:].split()
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def lock_holder_state(info, node, now):
    """'live' or a reason the lock is stale, for the lock file contents ``info``."""
    try:
        pid = int(info["pid"])
        holder_node = str(info["node"])
        expires = parse_ts(info["expires_at"])
    except (KeyError, TypeError, ValueError):
        return "the lock file is unreadable"
    if holder_node == node:
        if not _pid_alive(pid):
            return "its process %d is gone" % pid
        ticks = info.get("start_ticks")
        if ticks is not None and _process_start_ticks(pid) not in (None, ticks):
            return "its process %d is gone (the pid was reused)" % pid
        return "live"
    if expires <= now:
        return "it expired at %s" % info["expires_at"]
    return "live"


class SourceLock:
    """Exclusive lock on one source of one store, held by this process."""

    def __init__(self, path, set_id=None, ttl=86400.0, now=None):
        self.path = path
        self.set_id = set_id
        self.ttl = ttl
        self.now = now or utcnow
        self.stale = None
        self.held = False

    def _info(self):
        now = self.now()
        return {
            "pid": os.getpid(),
            "node": socket.gethostname(),
            "start_ticks": _process_start_ticks(os.getpid()),
            "started_at": format_ts(now),
            "expires_at": format_ts(now.fromtimestamp(now.timestamp() + self.ttl, now.tzinfo)),
            "set_id": self.set_id,
        }

    def _write_temp(self):
        """The lock's contents in a private temp file, complete before it is linked into place."""
        tmp = "%s.%d.tmp" % (self.path, os.getpid())
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
        with os.fdopen(fd, "w") as handle:
            json.dump(self._info(), handle)
            handle.flush()
            os.fsync(handle.fileno())
        return tmp

    def acquire(self):
        for dummy in range(20):
            try:
                tmp = self._write_temp()
                try:
                    # link() fails if the lock exists: creation and contents are one atomic step,
                    # so no contender ever sees an empty lock file.
                    os.link(tmp, self.path)
                finally:
                    os.unlink(tmp)
            except FileExistsError:
                self._handle_existing()
                continue
            except OSError as exc:
                raise StoreError(describe_os_error(exc, "the lock file %s" % self.path))
            self.held = True
            return self
        raise LockedError("Could not take the lock %s: it keeps changing hands." % self.path)

    def update(self, set_id):
        """Record the set being written in the held lock (replaced atomically)."""
        self.set_id = set_id
        if self.held:
            try:
                os.rename(self._write_temp(), self.path)
            except OSError as exc:
                raise StoreError(describe_os_error(exc, "the lock file %s" % self.path))

    def _handle_existing(self):
        try:
            with open(self.path, "r") as handle:
                info = json.load(handle)
        except FileNotFoundError:
            return
        except (OSError, ValueError):
            info = {}
        if not isinstance(info, dict):
            info = {}
        state = lock_holder_state(info, socket.gethostname(), self.now())
        if state == "live":
            raise LockedError(
                "Another backup of this source is running (pid %s on %s since %s, lock %s); "
                "wait for it to finish." % (info.get("pid"), info.get("node"), info.get("started_at"), self.path)
            )
        # Stale: move it aside atomically so that only one contender takes over.
        aside = "%s.stale-%d" % (self.path, os.getpid())
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return
        try:
            with open(aside, "r") as handle:
                moved = json.load(handle)
        except (OSError, ValueError):
            moved = {}
        if moved != info and isinstance(moved, dict) and moved:
            # A contender replaced the stale lock meanwhile: put its lock back.
            try:
                os.link(aside, self.path)
            except OSError:
                pass
            os.unlink(aside)
            return
        try:
            os.unlink(aside)
        except OSError:
            pass
        self.stale = {
            "reason": state,
            "pid": info.get("pid"),
            "node": info.get("node"),
            "started_at": info.get("started_at"),
            "set_id": info.get("set_id"),
        }

    def release(self):
        if self.held:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
            self.held = False

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc_info):
        self.release()
        return False


class SetWriter:
    """Writes one set under ``<set_id>.partial`` and commits it atomically."""

    def __init__(self, store, host, source, set_id):
        self.store = store
        self.host = host
        self.source = source
        self.set_id = set_id
        self.final_path = store.set_path(host, source, set_id)
        self.path = self.final_path + PARTIAL_SUFFIX
        self.staging = []
        self.committed = False

    def create(self):
        try:
            makedirs_private(os.path.dirname(self.path))
            os.mkdir(self.path, DIR_MODE)
        except OSError as exc:
            raise StoreError(describe_os_error(exc, self.path))
        return self

    def file_path(self, name):
        return os.path.join(self.path, name)

    def open(self, name):
        try:
            fd = os.open(self.file_path(name), os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
        except OSError as exc:
            raise StoreError(describe_os_error(exc, self.file_path(name)))
        return os.fdopen(fd, "wb")

    def staging_dir(self, name):
        """A scratch directory inside the partial set, removed before the commit."""
        path = os.path.join(self.path, name)
        try:
            os.mkdir(path, DIR_MODE)
        except OSError as exc:
            raise StoreError(describe_os_error(exc, path))
        self.staging.append(path)
        return path

    def drop_staging(self):
        for path in self.staging:
            shutil.rmtree(path, ignore_errors=True)
        self.staging = []

    def commit(self, manifest):
        self.drop_staging()
        raw = _manifest.dumps(manifest)
        try:
            present = sorted(n for n in os.listdir(self.path))
            listed = sorted(f["name"] for f in manifest["files"])
            if present != listed:
                raise StoreError(
                    "Refusing to commit %s: the files on disk %s differ from the manifest %s."
                    % (self.path, present, listed)
                )
            for name in listed:
                fd = os.open(self.file_path(name), os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            tmp = self.file_path(_manifest.MANIFEST_NAME + ".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
            with os.fdopen(fd, "wb") as handle:
                handle.write(raw)
                handle.flush()
                os.fsync(handle.fileno())
            os.rename(tmp, self.file_path(_manifest.MANIFEST_NAME))
            _fsync_dir(self.path)
            os.rename(self.path, self.final_path)
            _fsync_dir(os.path.dirname(self.final_path))
        except OSError as exc:
            raise StoreError(describe_os_error(exc, self.path))
        self.committed = True
        return self.final_path

    def abort(self):
        if not self.committed:
            shutil.rmtree(self.path, ignore_errors=True)


class DirStore:
    """A store that is a directory on a local or mounted file system."""

    kind = "dir"

    def __init__(self, path):
        if not path or not os.path.isabs(path):
            raise StoreError("The dir store path must be an absolute path, not %r." % (path,))
        self.root = os.path.normpath(path)

    def describe(self):
        return {"kind": self.kind, "path": self.root}

    def exists(self):
        return os.path.isdir(self.root)

    def source_path(self, host, source):
        return os.path.join(self.root, _manifest.check_name(host, "host"), _manifest.check_name(source, "source"))

    def set_path(self, host, source, set_id):
        return os.path.join(self.source_path(host, source), set_id)

    def _listdir(self, path):
        try:
            return sorted(os.listdir(path))
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise StoreError(describe_os_error(exc, path))

    def hosts(self):
        return [n for n in self._listdir(self.root) if _manifest.NAME_RE.match(n) and os.path.isdir(os.path.join(self.root, n))]

    def sources(self, host):
        base = os.path.join(self.root, host)
        return [n for n in self._listdir(base) if _manifest.NAME_RE.match(n) and os.path.isdir(os.path.join(base, n))]

    def set_ids(self, host, source):
        """Ids of complete sets: directories holding a manifest, never ``.partial``."""
        base = self.source_path(host, source)
        found = []
        for name in self._listdir(base):
            if name.endswith(PARTIAL_SUFFIX) or not _manifest.SET_ID_RE.match(name):
                continue
            if os.path.isfile(os.path.join(base, name, _manifest.MANIFEST_NAME)):
                found.append(name)
        return found

    def partials(self, host, source):
        base = self.source_path(host, source)
        return [n for n in self._listdir(base) if n.endswith(PARTIAL_SUFFIX)]

    def read_manifest(self, host, source, set_id):
        path = os.path.join(self.set_path(host, source, set_id), _manifest.MANIFEST_NAME)
        where = "The manifest of set %s/%s/%s" % (host, source, set_id)
        try:
            with open(path, "rb") as handle:
                raw = handle.read()
        except FileNotFoundError:
            raise _manifest.ManifestError("%s is missing (%s): the set is incomplete." % (where, path))
        except OSError as exc:
            raise StoreError(describe_os_error(exc, path))
        data = _manifest.loads(raw, where)
        if (data["host"], data["source"], data["set_id"]) != (host, source, set_id):
            raise _manifest.ManifestError(
                "%s names %s/%s/%s: it was moved or edited." % (where, data["host"], data["source"], data["set_id"])
            )
        return data

    def open_file(self, host, source, set_id, name):
        path = os.path.join(self.set_path(host, source, set_id), name)
        try:
            return open(path, "rb")
        except OSError as exc:
            raise StoreError(describe_os_error(exc, path))

    def lock(self, host, source, set_id=None, ttl=86400.0):
        base = self.source_path(host, source)
        try:
            makedirs_private(base)
        except OSError as exc:
            raise StoreError(describe_os_error(exc, base))
        return SourceLock(os.path.join(base, LOCK_NAME), set_id=set_id, ttl=ttl)

    def begin(self, host, source, set_id):
        """Start a set; the caller must hold the source's lock."""
        return SetWriter(self, host, source, set_id).create()

    def remove_partials(self, host, source):
        """Drop leftovers of crashed runs; only call while holding the lock."""
        removed = []
        for name in self.partials(host, source):
            shutil.rmtree(os.path.join(self.source_path(host, source), name), ignore_errors=True)
            removed.append(name)
        return removed

    def delete_set(self, host, source, set_id):
        path = self.set_path(host, source, set_id)
        doomed = path + ".deleting"
        try:
            # Hide the manifest first so a half-deleted set never looks complete.
            os.rename(path, doomed)
            shutil.rmtree(doomed)
        except OSError as exc:
            raise StoreError(describe_os_error(exc, path))

    def verify_set(self, manifest):
        """Re-hash every payload file; return a list of problems (empty when sound)."""
        problems = []
        base = self.set_path(manifest["host"], manifest["source"], manifest["set_id"])
        listed = set()
        for entry in manifest["files"]:
            listed.add(entry["name"])
            path = os.path.join(base, entry["name"])
            try:
                with open(path, "rb") as handle:
                    size, digest = hash_file(handle)
            except FileNotFoundError:
                problems.append({"name": entry["name"], "problem": "missing"})
                continue
            except OSError as exc:
                problems.append({"name": entry["name"], "problem": "unreadable", "detail": exc.strerror})
                continue
            if size != entry["size"]:
                problems.append({"name": entry["name"], "problem": "size", "expected": entry["size"], "actual": size})
            elif digest != entry["sha256"]:
                problems.append({"name": entry["name"], "problem": "sha256", "expected": entry["sha256"], "actual": digest})
        for name in self._listdir(base):
            if name != _manifest.MANIFEST_NAME and name not in listed:
                problems.append({"name": name, "problem": "unlisted"})
        return problems


def open_store(spec):
    """Build a store from the ``store`` option (a dict with ``kind`` and kind-specific keys)."""
    if not isinstance(spec, dict):
        raise StoreError("The store option must be a dictionary such as {kind: dir, path: /var/backups/lifeboat}.")
    kind = spec.get("kind") or "dir"
    if kind == "dir":
        return DirStore(spec.get("path"))
    raise StoreError("Store kind %r is not supported; use one of: dir." % kind)
