# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils is PRIVATE to this collection. It may change without notice.

"""The ``dir`` store: a directory on a local or mounted file system.

Layout::

    <root>/<host>/<source>/<set_id>/manifest.json   complete set (manifest written last)
    <root>/<host>/<source>/<set_id>.partial/        work in progress or a crashed run
    <root>/<host>/<source>/<set_id>.deleting/       a deletion in progress
    <root>/<host>/<source>/.lock                    one writer per source
    <root>/<host>/<source>/objects/...              the object namespace
    <root>/<host>/<source>/.resume/<tree>/          the tree of an interrupted run, to resume from

Below the root nothing is reached by path: every step opens the next
directory relative to the previous one's descriptor with ``O_NOFOLLOW``, so a
symbolic link planted anywhere in the store is refused, never followed. Files
are opened ``O_NOFOLLOW | O_NONBLOCK`` and must be regular files, so a FIFO or
device is refused at once instead of blocking.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import socket
import stat
import threading
import time

from ansible_collections.lifeboat.backup.plugins.module_utils._common import LifeboatError, utcnow
from ansible_collections.lifeboat.backup.plugins.module_utils import _manifest
from ansible_collections.lifeboat.backup.plugins.module_utils import _stores
from ansible_collections.lifeboat.backup.plugins.module_utils._stores import (
    DELETING_SUFFIX,
    LOCK_NAME,
    MAX_LOCK_BYTES,
    OBJECTS_DIR,
    PARTIAL_SUFFIX,
    StoreError,
    UnsafeEntryError,
    describe_os_error,
    escape,
)

DIR_MODE = 0o700
FILE_MODE = 0o600
# While copying, ask the kernel to write back every FLUSH_EVERY bytes (in a thread).
FLUSH_EVERY = 64 * 1024 * 1024
O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
O_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
O_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
# Payload files are also read: the pipeline reads back what a tool wrote into them for the SHA-256.
O_CREATE_RW = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC

# Trees of interrupted runs, kept so that the next run resumes from them (rsync --link-dest).
RESUME_DIR = ".resume"
# put_object's temporary: .<object name part>.<pid>.tmp beside the object (never listed: not an object name).
TMP_OBJECT_RE = re.compile(r"^\.([A-Za-z0-9][A-Za-z0-9._+-]{0,254})\.([0-9]{1,10})\.tmp\Z")
# A temporary is removed when its writer is provably gone: its pid is not alive here and it was not
# written to for STALE_TMP_DEAD_S (a writer on another host sharing the store keeps its file fresh),
# or whatever its pid, when it was not written to for STALE_TMP_ANY_S (the pid was reused).
STALE_TMP_DEAD_S = 60.0
STALE_TMP_ANY_S = 86400.0
# An empty file in a partial set naming a tree the writer gave out (only those trees are kept to resume from).
TREE_MARK = ".tree."

OPTIONS = dict(
    path=dict(type="path"),
    allow_shared=dict(type="bool", default=False),
)


def _fsync_fd(fd):
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.EROFS):
            raise


class _Dir(object):
    """An open directory inside the store (a descriptor), closed on exit."""

    def __init__(self, fd, where, name=None):
        self.fd = fd
        # The path is for messages only: joined when first asked for.
        self._where = where
        self._name = name

    @property
    def where(self):
        if self._name is not None:
            self._where = os.path.join(self._where, self._name)
            self._name = None
        return self._where

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()
        return False

    def close(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def path(self, name=None):
        return os.path.join(self.where, name) if name else self.where

    def entry_type(self, name):
        """'dir', 'file', 'link', 'other' or None (absent), without following links."""
        try:
            st = os.stat(name, dir_fd=self.fd, follow_symlinks=False)
        except FileNotFoundError:
            return None
        return _type_of(st.st_mode)

    def names(self):
        try:
            return sorted(os.listdir(self.fd))
        except OSError as exc:
            raise StoreError(describe_os_error(exc, self.where))

    def typed_names(self):
        """Sorted (name, type) pairs, the type as in ``entry_type``, from the directory entries themselves.

        The kernel reports each entry's type with its name, so no entry is
        stat'ed (one is, without following links, where the file system does not
        say).
        """
        found = []
        try:
            with os.scandir(self.fd) as entries:
                for entry in entries:
                    found.append((entry.name, _entry_kind(entry)))
        except OSError as exc:
            raise StoreError(describe_os_error(exc, self.where))
        found.sort()
        return [item for item in found if item[1] is not None]

    def sub(self, name, create=False):
        """Open the subdirectory ``name`` (never through a link); create it (0700) if asked."""
        try:
            return _Dir(os.open(name, O_DIR, dir_fd=self.fd), self.where, name)
        except FileNotFoundError:
            if not create:
                raise
        except OSError as exc:
            raise self._unsafe(exc, name)
        try:
            os.mkdir(name, DIR_MODE, dir_fd=self.fd)
        except FileExistsError:
            pass
        except OSError as exc:
            raise StoreError(describe_os_error(exc, self.path(name)))
        try:
            return _Dir(os.open(name, O_DIR, dir_fd=self.fd), self.where, name)
        except OSError as exc:
            raise self._unsafe(exc, name)

    def _unsafe(self, exc, name):
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            kind = self.entry_type(name)
            what = {"link": "a symbolic link", "file": "a file", "other": "a special file"}.get(kind, "not a directory")
            return UnsafeEntryError("%s is %s, not a directory; the store never follows links, so it is refused."
                                    % (escape(self.path(name)), what))
        return StoreError(describe_os_error(exc, escape(self.path(name))))

    def open_file(self, name, limit=None):
        """Open a regular file for reading; a link, FIFO or device is refused at once."""
        fd, dummy = self._open_regular(name, limit)
        return os.fdopen(fd, "rb", buffering=0)

    def _open_regular(self, name, limit=None):
        """(descriptor, size) of the regular file ``name``, blocking reads; refused unread above ``limit``."""
        try:
            fd = os.open(name, O_READ, dir_fd=self.fd)
        except FileNotFoundError:
            raise
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise UnsafeEntryError("%s is a symbolic link; the store never follows links, so it is refused."
                                       % escape(self.path(name)))
            raise StoreError(describe_os_error(exc, escape(self.path(name))))
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise UnsafeEntryError("%s is not a regular file (a FIFO, device or directory); it is refused."
                                       % escape(self.path(name)))
            if limit is not None and st.st_size > limit:
                raise _manifest.ManifestError("%s is %d bytes, more than the limit of %d; it is refused unread."
                                              % (escape(self.path(name)), st.st_size, limit))
            os.set_blocking(fd, True)
            return fd, st.st_size
        except BaseException:
            os.close(fd)
            raise

    def read_bounded(self, name, limit):
        """The content of a regular file of at most ``limit`` bytes.

        Reads what fstat announced plus one byte, then on to the end in small
        blocks (a file that grows meanwhile is refused past ``limit``), so a
        small file costs a small buffer.
        """
        fd, size = self._open_regular(name, limit)
        chunks = []
        total = 0
        want = size + 1
        try:
            while total <= limit:
                block = os.read(fd, min(want, limit + 1 - total))
                if not block:
                    break
                chunks.append(block)
                total += len(block)
                want = 64 * 1024
        finally:
            os.close(fd)
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        if len(data) > limit:
            raise _manifest.ManifestError("%s is more than the limit of %d bytes; it is refused."
                                          % (escape(self.path(name)), limit))
        return data

    def create_file(self, name, flags=O_CREATE):
        try:
            return os.open(name, flags, FILE_MODE, dir_fd=self.fd)
        except OSError as exc:
            raise StoreError(describe_os_error(exc, escape(self.path(name))))

    def remove_tree(self, name):
        """Remove the directory ``name`` and its contents; never through a link."""
        kind = self.entry_type(name)
        if kind is None:
            return
        if kind != "dir":
            raise UnsafeEntryError("%s is not a plain directory; it is left alone." % escape(self.path(name)))
        shutil.rmtree(name, dir_fd=self.fd)

    def fsync(self):
        _fsync_fd(self.fd)


def fd_path(fd):
    """A path naming the open directory ``fd`` for a child process, resolved by the kernel, not through the store."""
    return "/proc/%d/fd/%d" % (os.getpid(), fd)


def _syncfs(fd):
    """Write back the file system of ``fd`` (all the files a tool wrote into a tree), else everything."""
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.syncfs(fd) == 0:
            return
    except (OSError, AttributeError):
        pass
    os.sync()


def keep_trees(source_dir, partial):
    """Move the trees (subdirectories) of partial set ``partial`` to ``.resume/``, replacing older ones."""
    try:
        with source_dir.sub(partial) as directory:
            entries = directory.typed_names()
            marked = set(n[len(TREE_MARK):] for n, kind in entries if kind == "file" and n.startswith(TREE_MARK))
            trees = [n for n, kind in entries if kind == "dir" and n in marked and _manifest.FILE_NAME_RE.match(n)]
            if not trees:
                return []
            with source_dir.sub(RESUME_DIR, create=True) as resume:
                for name in trees:
                    resume.remove_tree(name)
                    os.rename(name, name, src_dir_fd=directory.fd, dst_dir_fd=resume.fd)
                resume.fsync()
            return trees
    except (OSError, StoreError):
        return []


class TreeHandle(object):
    """An open tree directory named for a child process (``path``); ``close`` lets it go."""

    def __init__(self, directory):
        self.directory = directory
        self.path = fd_path(directory.fd)

    def close(self):
        self.directory.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()
        return False


class _Flusher(threading.Thread):
    """Pushes written data to disk while the copy goes on, so the final fsync is short."""

    def __init__(self, fd):
        super(_Flusher, self).__init__(name="lifeboat-flusher")
        self.daemon = True
        self.fd = fd
        self.wake = threading.Event()
        self.done = False
        self.error = None

    def run(self):
        while True:
            self.wake.wait()
            self.wake.clear()
            if self.done:
                return
            try:
                os.fdatasync(self.fd)
            except OSError as exc:
                self.error = exc
                return

    def finish(self):
        self.done = True
        self.wake.set()
        self.join()
        if self.error is not None:
            raise self.error


class DirSink(_stores.Sink):
    """A payload file in a partial set: written through, flushed as it grows, fsynced on close.

    ``fileno()`` hands the pipeline the file itself (open for reading and
    writing), so that the last tool of a pipeline can write it directly;
    ``note_written`` then keeps the write-back going as the file grows.
    """

    def __init__(self, fd, name, flush_every=FLUSH_EVERY):
        self.fd = fd
        self.name = name
        self.flush_every = flush_every
        self.written = 0
        self.kicked = 0
        self.flusher = None

    def write(self, data):
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self.fd, view):]
        finally:
            view.release()
        self.note_written(len(data))

    def fileno(self):
        if self.fd is None:
            raise ValueError("the sink %s is closed" % self.name)
        return self.fd

    def note_written(self, count):
        """``count`` more bytes are in the file (written here or by a tool through ``fileno``)."""
        self.written += count
        if self.written - self.kicked >= self.flush_every:
            self.kicked = self.written
            if self.flusher is None:
                self.flusher = _Flusher(self.fd)
                self.flusher.start()
            self.flusher.wake.set()

    def close(self):
        if self.fd is None:
            return
        try:
            if self.flusher is not None:
                self.flusher.finish()
            os.fsync(self.fd)
        finally:
            self._stop()

    def _stop(self):
        if self.flusher is not None and self.flusher.is_alive():
            self.flusher.done = True
            self.flusher.wake.set()
            self.flusher.join()
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def abort(self):
        try:
            self._stop()
        except OSError:
            pass


class DirSetWriter(_stores.SetWriter):
    """Writes one set under ``<set_id>.partial`` and renames it into place on commit."""

    def __init__(self, store, host, source, set_id):
        self.store = store
        self.set_id = set_id
        self.partial = set_id + PARTIAL_SUFFIX
        self.source_dir = store._source_dir(host, source, create=True)
        self.dir = None
        self.sinks = []
        self.trees = {}
        self.committed = False
        try:
            os.mkdir(self.partial, DIR_MODE, dir_fd=self.source_dir.fd)
            self.dir = self.source_dir.sub(self.partial)
        except OSError as exc:
            self.source_dir.close()
            raise StoreError(describe_os_error(exc, escape(self.source_dir.path(self.partial))))
        except BaseException:
            self.source_dir.close()
            raise

    def open(self, name):
        _stores.check_file_name(name)
        sink = DirSink(self.dir.create_file(name, O_CREATE_RW), self.dir.path(name))
        self.sinks.append(sink)
        return sink

    def tree(self, name):
        """``<set_id>.partial/<name>`` for a tool to create and fill in place (rsync makes it a copy of its source's
        root), and ``.resume/<name>`` when an interrupted run left one."""
        _stores.check_file_name(name)
        if name in self.trees:
            raise StoreError("The tree %s was already opened in this set." % escape(name))
        if "." not in self.trees:
            self.trees["."] = TreeHandle(self.dir.sub("."))
        os.close(self.dir.create_file(TREE_MARK + name))
        resume = None
        try:
            with self.source_dir.sub(RESUME_DIR) as kept:
                resume = TreeHandle(kept.sub(name))
        except FileNotFoundError:
            pass
        except (OSError, StoreError):
            resume = None  # a link or a file planted there is never used
        self.trees[name] = resume
        return _stores.TreeTarget(os.path.join(self.trees["."].path, name), resume.path if resume else None)

    def _close_trees(self):
        for handle in self.trees.values():
            if handle is not None:
                handle.close()

    def commit(self, raw_manifest, names):
        trees = [n for n in self.trees if n != "."]
        try:
            for name in trees:
                os.unlink(TREE_MARK + name, dir_fd=self.dir.fd)
            present = sorted(n for n in self.dir.names())
            if present != sorted(list(names) + trees):
                raise StoreError("Refusing to commit %s: the files on disk %s differ from the manifest %s."
                                 % (self.dir.where, present, sorted(list(names) + trees)))
            for name in names:
                with self.dir.open_file(name) as handle:
                    os.fsync(handle.fileno())
            if trees:
                _syncfs(self.dir.fd)
            tmp = _manifest.MANIFEST_NAME + ".tmp"
            fd = self.dir.create_file(tmp)
            with os.fdopen(fd, "wb") as handle:
                handle.write(raw_manifest)
                handle.flush()
                os.fsync(handle.fileno())
            os.rename(tmp, _manifest.MANIFEST_NAME, src_dir_fd=self.dir.fd, dst_dir_fd=self.dir.fd)
            self.dir.fsync()
            os.rename(self.partial, self.set_id, src_dir_fd=self.source_dir.fd, dst_dir_fd=self.source_dir.fd)
            self.source_dir.fsync()
        except OSError as exc:
            raise StoreError(describe_os_error(exc, self.dir.where))
        self.committed = True
        self._close_trees()
        for name in trees:  # the run finished: what it resumed from is no longer needed
            try:
                with self.source_dir.sub(RESUME_DIR) as kept:
                    kept.remove_tree(name)
            except (OSError, StoreError):
                pass
        self._close()

    def _close(self):
        self._close_trees()
        for sink in self.sinks:
            sink.abort()
        if self.dir is not None:
            self.dir.close()
            self.dir = None
        self.source_dir.close()

    def abort(self):
        if self.committed:
            return
        if self.dir is not None:
            for sink in self.sinks:
                sink.abort()
            self._close_trees()
            self.dir.close()
            self.dir = None
            if self.trees:
                keep_trees(self.source_dir, self.partial)
            try:
                self.source_dir.remove_tree(self.partial)
            except (OSError, StoreError):
                pass
        self.source_dir.close()


class DirLock(_stores.Lock):
    """``<source>/.lock``, created atomically with link(); files made O_EXCL | O_NOFOLLOW."""

    def __init__(self, store, host, source, ttl=86400.0, now=None):
        self.store = store
        self.host = host
        self.source = source
        self.ttl = ttl
        self.now = now or utcnow
        self.set_id = None
        self.stale = None
        self.held = False
        self.dir = None

    @property
    def where(self):
        return self.dir.path(LOCK_NAME) if self.dir else "the lock"

    def _write_temp(self):
        tmp = "%s.%d.tmp" % (LOCK_NAME, os.getpid())
        try:
            os.unlink(tmp, dir_fd=self.dir.fd)  # a leftover of this pid's earlier life (never followed)
        except FileNotFoundError:
            pass
        fd = self.dir.create_file(tmp)
        with os.fdopen(fd, "w") as handle:
            json.dump(_stores.lock_info(self.now(), self.ttl, self.set_id), handle)
            handle.flush()
            os.fsync(handle.fileno())
        return tmp

    def acquire(self):
        self.dir = self.store._source_dir(self.host, self.source, create=True)
        try:
            for dummy in range(20):
                try:
                    tmp = self._write_temp()
                    try:
                        # link() fails if the lock exists: creation and contents are one atomic step.
                        os.link(tmp, LOCK_NAME, src_dir_fd=self.dir.fd, dst_dir_fd=self.dir.fd, follow_symlinks=False)
                    finally:
                        os.unlink(tmp, dir_fd=self.dir.fd)
                except FileExistsError:
                    self._handle_existing()
                    continue
                except OSError as exc:
                    raise StoreError(describe_os_error(exc, escape(self.where)))
                self.held = True
                return self
            raise _stores.LockedError("Could not take the lock %s: it keeps changing hands." % escape(self.where))
        except BaseException:
            if not self.held:
                self.dir.close()
                self.dir = None
            raise

    def _read(self):
        try:
            raw = self.dir.read_bounded(LOCK_NAME, MAX_LOCK_BYTES)
            info = json.loads(raw.decode("utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, RecursionError, _manifest.ManifestError, StoreError):
            return {}
        return info if isinstance(info, dict) else {}

    def _handle_existing(self):
        kind = self.dir.entry_type(LOCK_NAME)
        if kind not in (None, "file"):
            raise UnsafeEntryError("The lock %s is not a regular file (%s); remove it by hand after checking the store."
                                   % (escape(self.where), kind))
        info = self._read()
        if info is None:
            return
        state = _stores.lock_holder_state(info, socket.gethostname(), self.now())
        if state == "live":
            raise _stores.LockedError(_stores.locked_message(info, escape(self.where)))
        # Stale: move it aside atomically so that only one contender takes over.
        aside = "%s.stale-%d" % (LOCK_NAME, os.getpid())
        try:
            os.rename(LOCK_NAME, aside, src_dir_fd=self.dir.fd, dst_dir_fd=self.dir.fd)
        except FileNotFoundError:
            return
        try:
            moved = json.loads(self.dir.read_bounded(aside, MAX_LOCK_BYTES).decode("utf-8"))
        except (OSError, ValueError, RecursionError, _manifest.ManifestError, StoreError):
            moved = {}
        if moved != info and isinstance(moved, dict) and moved:
            # A contender replaced the stale lock meanwhile: put its lock back.
            try:
                os.link(aside, LOCK_NAME, src_dir_fd=self.dir.fd, dst_dir_fd=self.dir.fd, follow_symlinks=False)
            except OSError:
                pass
            os.unlink(aside, dir_fd=self.dir.fd)
            return
        try:
            os.unlink(aside, dir_fd=self.dir.fd)
        except OSError:
            pass
        self.stale = _stores.stale_report(info, state)

    def update(self, set_id):
        self.set_id = set_id
        if self.held:
            try:
                tmp = self._write_temp()
                os.rename(tmp, LOCK_NAME, src_dir_fd=self.dir.fd, dst_dir_fd=self.dir.fd)
            except OSError as exc:
                raise StoreError(describe_os_error(exc, escape(self.where)))

    def release(self):
        if self.held:
            try:
                os.unlink(LOCK_NAME, dir_fd=self.dir.fd)
            except FileNotFoundError:
                pass
            self.held = False
        if self.dir is not None:
            self.dir.close()
            self.dir = None


class DirStore(_stores.Store):
    """A store that is a directory on a local or mounted file system."""

    kind = "dir"
    capabilities = frozenset(["trees", "local_trees", "hard_links"])

    def __init__(self, spec, runner=None):
        path = spec.get("path")
        if not path or not isinstance(path, str) or not os.path.isabs(path):
            raise StoreError("The dir store path must be an absolute path, not %s." % ("%r" % escape(path) if path is not None else "None"))
        self.root = os.path.normpath(path)
        self.allow_shared = bool(spec.get("allow_shared"))

    def describe(self):
        return {"kind": self.kind, "path": self.root}

    def location(self, host=None, source=None, set_id=None, name=None):
        parts = [self.root] + [p for p in (host, source, set_id, name) if p]
        return os.path.join(*parts)

    def exists(self):
        return os.path.isdir(self.root)

    # -------------------------------------------------------------- walking
    def _root_dir(self, create=False):
        """The root, checked: its parent exists, and only its owner may write to it."""
        parent = os.path.dirname(self.root)
        try:
            fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError:
            if not create:
                raise
            if not os.path.isdir(parent):
                raise StoreError("The parent directory %s of the dir store does not exist; mount the backup disk "
                                 "or create it first (the store is never created on an unmounted mount point)." % parent)
            try:
                os.mkdir(self.root, DIR_MODE)
            except FileExistsError:
                pass
            except OSError as exc:
                raise StoreError(describe_os_error(exc, self.root))
            fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            raise StoreError(describe_os_error(exc, "the dir store %s" % self.root))
        mode = os.fstat(fd).st_mode
        if mode & 0o022 and not self.allow_shared:
            os.close(fd)
            raise StoreError(
                "The dir store %s is writable by group or others (mode %04o), so anyone there could plant sets; "
                "run chmod go-w on it, or set allow_shared: true in the store options if that is intended."
                % (self.root, stat.S_IMODE(mode)))
        return _Dir(fd, self.root)

    def _walk(self, parts, create=False):
        current = self._root_dir(create=create)
        try:
            for part in parts:
                nxt = current.sub(part, create=create)
                current.close()
                current = nxt
        except BaseException:
            current.close()
            raise
        return current

    def _source_dir(self, host, source, create=False):
        return self._walk([_manifest.check_name(host, "host"), _manifest.check_name(source, "source")], create)

    def _set_dir(self, host, source, set_id):
        return self._walk([_manifest.check_name(host, "host"), _manifest.check_name(source, "source"),
                           _stores.check_set_id(set_id)])

    # -------------------------------------------------------------- listing
    def _plain_dirs(self, parts):
        try:
            with self._walk(parts) as directory:
                return [n for n, kind in directory.typed_names()
                        if kind == "dir" and _manifest.NAME_RE.match(n) and n not in (".", "..")]
        except FileNotFoundError:
            return []

    def hosts(self):
        return self._plain_dirs([])

    def sources(self, host):
        return self._plain_dirs([_manifest.check_name(host, "host")])

    def listing(self, host, source):
        try:
            directory = self._source_dir(host, source)
        except FileNotFoundError:
            return _stores.Listing()
        sets, partials, strays = [], [], []
        with directory:
            for name, kind in directory.typed_names():
                base = name
                for suffix in (PARTIAL_SUFFIX, DELETING_SUFFIX):
                    if name.endswith(suffix):
                        base = name[: -len(suffix)]
                if not _manifest.SET_ID_RE.match(base):
                    continue
                if kind != "dir":
                    strays.append({"name": escape(name), "problem": "not a plain directory (%s)" % kind})
                    continue
                if base != name:
                    partials.append(name)
                    continue
                manifest_kind = _entry_in(directory, name, _manifest.MANIFEST_NAME)
                if manifest_kind == "file":
                    sets.append(name)
                elif manifest_kind is None:
                    strays.append({"name": escape(name), "problem": "no manifest (incomplete)"})
                else:
                    strays.append({"name": escape(name), "problem": "manifest is not a regular file (%s)" % manifest_kind})
        return _stores.Listing(sets, partials, strays)

    # -------------------------------------------------------------- reading
    def read_manifest_bytes(self, host, source, set_id):
        where = "The manifest of set %s/%s/%s" % (host, source, set_id)
        try:
            with self._set_dir(host, source, set_id) as directory:
                return directory.read_bounded(_manifest.MANIFEST_NAME, _stores.MAX_MANIFEST_BYTES)
        except FileNotFoundError:
            raise _manifest.ManifestError("%s is missing (%s): the set is incomplete."
                                          % (where, self.location(host, source, set_id, _manifest.MANIFEST_NAME)))

    def read_manifests_bytes(self, host, source, set_ids):
        """The manifests of many sets of one source: the source directory is opened once, not once per set."""
        try:
            directory = self._source_dir(host, source)
        except FileNotFoundError:
            directory = None
        except _stores.StoreError as exc:
            for set_id in set_ids:
                yield set_id, None, exc
            return
        try:
            for set_id in set_ids:
                where = "The manifest of set %s/%s/%s" % (host, source, set_id)
                try:
                    if directory is None:
                        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT))
                    raw = _read_plain_manifest(directory.fd, _stores.check_set_id(set_id))
                    if raw is None:  # anything unusual: the careful path, for its message
                        with directory.sub(set_id) as set_dir:
                            raw = set_dir.read_bounded(_manifest.MANIFEST_NAME, _stores.MAX_MANIFEST_BYTES)
                except FileNotFoundError:
                    yield set_id, None, _manifest.ManifestError(
                        "%s is missing (%s): the set is incomplete."
                        % (where, self.location(host, source, set_id, _manifest.MANIFEST_NAME)))
                    continue
                except LifeboatError as exc:
                    yield set_id, None, exc
                    continue
                except OSError as exc:
                    yield set_id, None, StoreError(describe_os_error(exc, escape(where)))
                    continue
                yield set_id, raw, None
        finally:
            if directory is not None:
                directory.close()

    def open_payload(self, host, source, set_id, name):
        _stores.check_file_name(name)
        with self._set_dir(host, source, set_id) as directory:
            return directory.open_file(name)

    def payload_names(self, host, source, set_id):
        with self._set_dir(host, source, set_id) as directory:
            return [n for n in directory.names() if n != _manifest.MANIFEST_NAME]

    # -------------------------------------------------------------- writing
    def begin(self, host, source, set_id):
        _stores.check_set_id(set_id)
        return DirSetWriter(self, host, source, set_id)

    def tree_path(self, host, source, set_id, name):
        """A TreeHandle of tree ``name`` of a complete set (reached without following links), or None."""
        _stores.check_file_name(name)
        try:
            with self._set_dir(host, source, set_id) as directory:
                return TreeHandle(directory.sub(name))
        except (OSError, StoreError):
            return None

    def open_tree(self, host, source, set_id, name):
        _stores.check_file_name(name)
        with self._set_dir(host, source, set_id) as directory:
            tree = directory.sub(name)
            fd, tree.fd = tree.fd, None
            return fd

    def delete_set(self, host, source, set_id):
        with self._source_dir(host, source) as directory:
            doomed = set_id + DELETING_SUFFIX
            try:
                # Hide the set first so a half-deleted set never looks complete.
                if directory.entry_type(_stores.check_set_id(set_id)) != "dir":
                    raise UnsafeEntryError("Set %s/%s/%s is not a plain directory; it is left alone."
                                           % (host, source, escape(set_id)))
                os.rename(set_id, doomed, src_dir_fd=directory.fd, dst_dir_fd=directory.fd)
                directory.fsync()
                directory.remove_tree(doomed)
            except OSError as exc:
                raise StoreError(describe_os_error(exc, directory.path(set_id)))

    def remove_partials(self, host, source):
        """Drop leftovers of crashed runs (partial and half-deleted sets); only while holding the lock."""
        removed = []
        try:
            directory = self._source_dir(host, source)
        except FileNotFoundError:
            return removed
        with directory:
            for name in self.listing(host, source).partials:
                if name.endswith(PARTIAL_SUFFIX):
                    keep_trees(directory, name)
                try:
                    directory.remove_tree(name)
                except (OSError, StoreError):
                    continue
                removed.append(name)
        return removed

    def lock(self, host, source, ttl=86400.0):
        return DirLock(self, host, source, ttl)

    # -------------------------------------------------------------- objects
    def _object_dir(self, host, source, parts, create=False):
        return self._walk([_manifest.check_name(host, "host"), _manifest.check_name(source, "source"), OBJECTS_DIR]
                          + parts[:-1], create=create)

    def put_object(self, host, source, name, reader):
        parts = _stores.check_object_name(name)
        with self._object_dir(host, source, parts, create=True) as directory:
            base = parts[-1]
            tmp = ".%s.%d.tmp" % (base, os.getpid())
            try:
                os.unlink(tmp, dir_fd=directory.fd)
            except FileNotFoundError:
                pass
            fd = directory.create_file(tmp)
            digest = hashlib.sha256()
            try:
                with os.fdopen(fd, "wb") as handle:
                    while True:
                        block = reader.read(_stores.CHUNK)
                        if not block:
                            break
                        digest.update(block)
                        handle.write(block)
                    handle.flush()
                    os.fsync(handle.fileno())
                try:
                    os.link(tmp, base, src_dir_fd=directory.fd, dst_dir_fd=directory.fd, follow_symlinks=False)
                    outcome = "created"
                except FileExistsError:
                    with directory.open_file(base) as existing:
                        dummy, other = _stores.hash_reader(existing)
                    if other != digest.hexdigest():
                        raise _stores.ObjectExistsError(
                            "Object %s of %s/%s already exists with different content; it is never overwritten."
                            % (name, host, source))
                    outcome = "identical"
                directory.fsync()
                remove_stale_temporaries(directory, tmp)
                return outcome
            except OSError as exc:
                raise StoreError(describe_os_error(exc, directory.path(base)))
            finally:
                try:
                    os.unlink(tmp, dir_fd=directory.fd)
                except OSError:
                    pass

    def open_object(self, host, source, name):
        parts = _stores.check_object_name(name)
        with self._object_dir(host, source, parts) as directory:
            return directory.open_file(parts[-1])

    def stat_object(self, host, source, name):
        parts = _stores.check_object_name(name)
        with self._object_dir(host, source, parts) as directory:
            try:
                st = os.stat(parts[-1], dir_fd=directory.fd, follow_symlinks=False)
            except FileNotFoundError:
                raise
            except OSError as exc:
                raise StoreError(describe_os_error(exc, directory.path(parts[-1])))
            if not stat.S_ISREG(st.st_mode):
                raise UnsafeEntryError("Object %s is not a regular file; it is refused." % escape(name))
            return {"size": st.st_size, "modified": st.st_mtime}

    def list_objects(self, host, source, prefix=""):
        found = []
        try:
            top = self._walk([_manifest.check_name(host, "host"), _manifest.check_name(source, "source"), OBJECTS_DIR])
        except FileNotFoundError:
            return found
        stack = [(top, "")]
        while stack:
            directory, rel = stack.pop()
            with directory:
                for name in directory.names():
                    if not _stores.OBJECT_PART_RE.match(name):
                        continue
                    full = rel + name
                    kind = directory.entry_type(name)
                    if kind == "file" and full.startswith(prefix):
                        found.append(full)
                    elif kind == "dir" and full.count("/") < _stores.OBJECT_MAX_DEPTH - 1:
                        stack.append((directory.sub(name), full + "/"))
        return sorted(found)

    def delete_object(self, host, source, name):
        parts = _stores.check_object_name(name)
        try:
            with self._object_dir(host, source, parts) as directory:
                if directory.entry_type(parts[-1]) not in (None, "file"):
                    raise UnsafeEntryError("Object %s is not a regular file; it is left alone." % name)
                os.unlink(parts[-1], dir_fd=directory.fd)
        except FileNotFoundError:
            pass


def _pid_alive(pid):
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OSError, OverflowError):
        return True  # another user's process (EPERM), or a number no process can have: not provably dead
    return True


def remove_stale_temporaries(directory, own=None, now=None):
    """Remove put_object temporaries of dead writers from ``directory`` (an open object directory).

    Only regular files named like our temporaries (never a link, a directory or
    another name), only in this directory, never ``own``; best effort. Returns
    the names removed.
    """
    removed = []
    now = time.time() if now is None else now
    try:
        names = os.listdir(directory.fd)
    except OSError:
        return removed
    for name in names:
        if name[:1] != "." or name == own:
            continue
        match = TMP_OBJECT_RE.match(name)
        if match is None:
            continue
        try:
            st = os.stat(name, dir_fd=directory.fd, follow_symlinks=False)
        except OSError:
            continue
        if not stat.S_ISREG(st.st_mode):
            continue
        idle = now - st.st_mtime
        if idle > STALE_TMP_ANY_S or (idle > STALE_TMP_DEAD_S and not _pid_alive(int(match.group(2)))):
            try:
                os.unlink(name, dir_fd=directory.fd)  # unlink never follows a link
            except OSError:
                continue
            removed.append(name)
    return removed


def _entry_kind(entry):
    """The type of a scandir entry without following links: as ``_Dir.entry_type``; None once it is gone."""
    try:
        if entry.is_symlink():
            return "link"
        if entry.is_dir(follow_symlinks=False):
            return "dir"
        if entry.is_file(follow_symlinks=False):
            return "file"
    except FileNotFoundError:
        return None
    return "other"


def _read_plain_manifest(source_fd, set_id):
    """The manifest of ``set_id`` in the open source directory, in the plain case only; else None.

    The same opens as ``_Dir.sub`` and ``_Dir.read_bounded`` (no link followed:
    O_NOFOLLOW on the set directory and on the file, O_NONBLOCK so a FIFO never
    blocks the open), without their objects and messages: a regular file of at
    most MAX_MANIFEST_BYTES, read to its end. Anything else (missing, a link, not
    a regular file, too large, an error) returns None, and the caller takes
    the careful path, which refuses it with its own sentence.
    """
    limit = _stores.MAX_MANIFEST_BYTES
    try:
        set_fd = os.open(set_id, O_DIR, dir_fd=source_fd)
    except OSError:
        return None
    try:
        fd = os.open(_manifest.MANIFEST_NAME, O_READ, dir_fd=set_fd)
    except OSError:
        return None
    finally:
        os.close(set_fd)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > limit:
            return None
        # A regular file never blocks a read, O_NONBLOCK or not.
        data = os.read(fd, st.st_size + 1)
        while len(data) <= limit:
            more = os.read(fd, limit + 1 - len(data))
            if not more:
                return data
            data += more
        return None
    except OSError:
        return None
    finally:
        os.close(fd)


def _entry_in(directory, sub, name):
    """The type of ``sub/name`` without following links, or None (as ``_Dir.entry_type`` in ``_Dir.sub``)."""
    try:
        fd = os.open(sub, O_DIR, dir_fd=directory.fd)
    except FileNotFoundError:
        return None
    except OSError:
        return "other"
    try:
        st = os.stat(name, dir_fd=fd, follow_symlinks=False)
    except FileNotFoundError:
        return None
    finally:
        os.close(fd)
    return _type_of(st.st_mode)


def _type_of(mode):
    """'dir', 'file', 'link' or 'other' for an lstat mode."""
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISLNK(mode):
        return "link"
    return "other"


_stores.register_kind("dir", DirStore, OPTIONS, required=("path",))
