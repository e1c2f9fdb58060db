# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils is PRIVATE to this collection. It may change without notice.

"""The remote side of the ``ssh`` store: one small program run by ``python3`` on the backup server.

It is sent over the SSH channel's standard input and run there (the remote
command is fixed: ``python3 -I -c 'import sys;exec(sys.stdin.buffer.read(N))'``),
then reads ONE request from the same input: a frame of JSON naming the
operation and its arguments, followed for uploads by framed data. Nothing the
user gives ever reaches a shell. It answers with one JSON frame, followed for
reads by the file's bytes. Frames are an 8-byte big-endian length and the
payload; an upload is a sequence of frames ended by an empty one, so a cut
connection is never taken for the end of a file.

The store's layout and its untrusted-store rules are those of the ``dir``
kind (docs/stores.md): every directory below the root is opened relative to
its parent with ``O_NOFOLLOW``, files ``O_NOFOLLOW | O_NONBLOCK`` and must be
regular, reads are bounded, removal never follows a link. Names are checked
by the caller before they are sent; this side still refuses ``.``, ``..`` and
``/`` in any part.

Standard library only, for any Python 3 a backup server may have; importing
this file does nothing.
"""

import errno
import fcntl
import hashlib
import json
import os
import re
import shutil
import stat
import struct
import sys

DIR_MODE = 0o700
FILE_MODE = 0o600
MANIFEST = "manifest.json"
LOCK = ".lock"
O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
O_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
O_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
CHUNK = 1024 * 1024
MAX_FRAME = 64 * 1024 * 1024
# Trees (rsync snapshots): the marker a writer leaves for each tree of a partial set, where an interrupted
# run's tree is kept to resume from, and how deep a tree may go (as _trees.MAX_DEPTH).
TREE_MARK = ".tree."
RESUME_DIR = ".resume"
MAX_DEPTH = 256


class Refused(Exception):
    """An expected failure: ``kind`` tells the caller which error to raise."""

    def __init__(self, kind, message):
        Exception.__init__(self, message)
        self.kind = kind
        self.message = message


def show(path):
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def os_refusal(exc, path):
    where = show(path)
    if exc.errno == errno.ENOENT:
        return Refused("missing", "%s does not exist." % where)
    if exc.errno == errno.ELOOP:
        return Refused("unsafe", "%s is a symbolic link; the store never follows links, so it is refused." % where)
    if exc.errno == errno.ENOTDIR:
        return Refused("unsafe", "%s is not a directory; the store never follows links, so it is refused." % where)
    if exc.errno == errno.ENOSPC:
        return Refused("store", "No space left on the device holding %s on the backup server." % where)
    if exc.errno == errno.EDQUOT:
        return Refused("store", "Disk quota exceeded while writing %s on the backup server." % where)
    if exc.errno in (errno.EACCES, errno.EPERM):
        return Refused("store", "Permission denied on %s on the backup server." % where)
    if exc.errno == errno.EROFS:
        return Refused("store", "%s is on a read-only file system." % where)
    if exc.errno == errno.EEXIST:
        return Refused("exists", "%s already exists." % where)
    return Refused("store", "%s: %s." % (where, exc.strerror or exc))


# ------------------------------------------------------------------ framing

def read_exact(stream, count):
    data = stream.read(count)
    if data is None or len(data) != count:
        raise Refused("store", "The request was cut off.")
    return data


def read_frame(stream, limit=MAX_FRAME):
    size = struct.unpack(">Q", read_exact(stream, 8))[0]
    if size > limit:
        raise Refused("store", "A frame of %d bytes is larger than the limit." % size)
    return read_exact(stream, size) if size else b""


def write_frame(stream, data):
    stream.write(struct.pack(">Q", len(data)))
    stream.write(data)
    stream.flush()


def reply(out, **fields):
    write_frame(out, json.dumps(fields).encode("ascii"))


# ------------------------------------------------------------------ walking

def check_part(part):
    if not isinstance(part, str) or not part or part in (".", "..") or "/" in part or "\0" in part:
        raise Refused("store", "%r is not a plain name." % part)
    return part


def entry_type(dir_fd, name):
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None
    if stat.S_ISDIR(st.st_mode):
        return "dir"
    if stat.S_ISREG(st.st_mode):
        return "file"
    if stat.S_ISLNK(st.st_mode):
        return "link"
    return "other"


class Store(object):
    def __init__(self, root, allow_shared):
        if not isinstance(root, str) or not root.startswith("/"):
            raise Refused("store", "The store path must be absolute.")
        self.root = os.path.normpath(root)
        self.allow_shared = bool(allow_shared)

    def root_fd(self, create=False):
        try:
            fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError:
            if not create:
                raise
            parent = os.path.dirname(self.root)
            if not os.path.isdir(parent):
                raise Refused("store", "The parent directory %s of the store does not exist on the backup server; "
                                       "mount the backup disk or create it first (the store is never created on an "
                                       "unmounted mount point)." % show(parent))
            try:
                os.mkdir(self.root, DIR_MODE)
            except FileExistsError:
                pass
            except OSError as exc:
                raise os_refusal(exc, self.root)
            fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            raise os_refusal(exc, self.root)
        mode = os.fstat(fd).st_mode
        if mode & 0o022 and not self.allow_shared:
            os.close(fd)
            raise Refused("store", "The store %s is writable by group or others (mode %04o), so anyone there could "
                                   "plant sets; run chmod go-w on it, or set allow_shared: true in the store options "
                                   "if that is intended." % (show(self.root), stat.S_IMODE(mode)))
        return fd

    def walk(self, parts, create=False):
        """A descriptor of root/parts..., every step opened O_NOFOLLOW; FileNotFoundError when absent."""
        fd = self.root_fd(create)
        path = self.root
        try:
            for part in parts:
                check_part(part)
                path = os.path.join(path, part)
                try:
                    nxt = os.open(part, O_DIR, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        raise
                    try:
                        os.mkdir(part, DIR_MODE, dir_fd=fd)
                    except FileExistsError:
                        pass
                    except OSError as exc:
                        raise os_refusal(exc, path)
                    try:
                        nxt = os.open(part, O_DIR, dir_fd=fd)
                    except OSError as exc:
                        raise self.unsafe(fd, part, path, exc)
                except OSError as exc:
                    raise self.unsafe(fd, part, path, exc)
                os.close(fd)
                fd = nxt
        except BaseException:
            os.close(fd)
            raise
        return fd

    def unsafe(self, fd, part, path, exc):
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            kind = entry_type(fd, part)
            what = {"link": "a symbolic link", "file": "a file", "other": "a special file"}.get(kind, "not a directory")
            return Refused("unsafe", "%s is %s, not a directory; the store never follows links, so it is refused."
                           % (show(path), what))
        return os_refusal(exc, path)

    def path(self, parts):
        return os.path.join(self.root, *parts)


def open_regular(dir_fd, name, where, limit=None):
    """(descriptor, size) of a regular file, blocking; a link, FIFO or device is refused at once."""
    try:
        fd = os.open(name, O_READ, dir_fd=dir_fd)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise os_refusal(exc, where)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise Refused("unsafe", "%s is not a regular file (a FIFO, device or directory); it is refused."
                          % show(where))
        if limit is not None and st.st_size > limit:
            raise Refused("manifest", "%s is %d bytes, more than the limit of %d; it is refused unread."
                          % (show(where), st.st_size, limit))
        os.set_blocking(fd, True)
        return fd, st.st_size
    except BaseException:
        os.close(fd)
        raise


def read_bounded(dir_fd, name, where, limit):
    fd, size = open_regular(dir_fd, name, where, limit)
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
    data = b"".join(chunks)
    if len(data) > limit:
        raise Refused("manifest", "%s is more than the limit of %d bytes; it is refused." % (show(where), limit))
    return data


def typed_names(dir_fd):
    found = []
    with os.scandir(dir_fd) as entries:
        for entry in entries:
            try:
                if entry.is_symlink():
                    kind = "link"
                elif entry.is_dir(follow_symlinks=False):
                    kind = "dir"
                elif entry.is_file(follow_symlinks=False):
                    kind = "file"
                else:
                    kind = "other"
            except FileNotFoundError:
                continue
            found.append((entry.name, kind))
    found.sort()
    return found


def remove_tree(dir_fd, name, where):
    kind = entry_type(dir_fd, name)
    if kind is None:
        return
    if kind != "dir":
        raise Refused("unsafe", "%s is not a plain directory; it is left alone." % show(where))
    try:
        # shutil.rmtree with dir_fd walks by descriptor and never follows a link.
        shutil.rmtree(name, dir_fd=dir_fd)
    except PermissionError:
        # A snapshot tree keeps its source's modes: a read-only directory (0555) cannot lose its entries
        # until its owner may write to it again.
        make_writable(dir_fd, name, 0)
        shutil.rmtree(name, dir_fd=dir_fd)


def make_writable(dir_fd, name, depth):
    """Give the owner write and search permission on directory ``name`` and every directory below it."""
    if depth > MAX_DEPTH:
        return
    try:
        fd = os.open(name, O_DIR, dir_fd=dir_fd)
    except OSError:
        return
    try:
        mode = stat.S_IMODE(os.fstat(fd).st_mode)
        if mode & 0o700 != 0o700:
            os.chmod(fd, mode | 0o700)
        for child, kind in typed_names(fd):
            if kind == "dir":
                make_writable(fd, child, depth + 1)
    finally:
        os.close(fd)


def fsync_fd(fd):
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.EROFS):
            raise


def receive(stream, fd, digest=None):
    """Copy framed data from ``stream`` into ``fd`` up to the empty frame; the byte count."""
    total = 0
    while True:
        block = read_frame(stream)
        if not block:
            return total
        if digest is not None:
            digest.update(block)
        view = memoryview(block)
        while view:
            view = view[os.write(fd, view):]
        total += len(block)


# ------------------------------------------------------------------ operations

def op_exists(store, req, inp, out):
    try:
        fd = store.root_fd()
    except FileNotFoundError:
        return reply(out, ok=True, exists=False)
    os.close(fd)
    reply(out, ok=True, exists=True)


def op_names(store, req, inp, out):
    """Typed entries of a directory; with ``probe``, the type of ``<entry>/<probe>`` for entries matching ``match``."""
    try:
        fd = store.walk(req["parts"])
    except FileNotFoundError:
        return reply(out, ok=True, entries=None)
    pattern = re.compile(req["match"]) if req.get("match") else None
    entries = []
    try:
        for name, kind in typed_names(fd):
            inner = None
            if req.get("probe") and kind == "dir" and pattern is not None and pattern.match(name):
                try:
                    sub = os.open(name, O_DIR, dir_fd=fd)
                except OSError:
                    inner = "other"
                else:
                    try:
                        inner = entry_type(sub, req["probe"])
                    finally:
                        os.close(sub)
            entries.append([name, kind, inner])
    finally:
        os.close(fd)
    reply(out, ok=True, entries=entries)


def op_read_manifests(store, req, inp, out):
    """The bounded manifests of many sets of one source, each its own result."""
    results = []
    try:
        fd = store.walk(req["parts"])
    except FileNotFoundError:
        fd = None
    try:
        for set_id in req["set_ids"]:
            where = store.path(req["parts"] + [set_id, MANIFEST])
            try:
                if fd is None:
                    raise FileNotFoundError(errno.ENOENT, "missing")
                try:
                    sub = os.open(check_part(set_id), O_DIR, dir_fd=fd)
                except FileNotFoundError:
                    raise
                except OSError as exc:
                    raise store.unsafe(fd, set_id, store.path(req["parts"] + [set_id]), exc)
                try:
                    data = read_bounded(sub, MANIFEST, where, req["limit"])
                finally:
                    os.close(sub)
            except FileNotFoundError:
                results.append({"error": "missing", "message": "%s is missing." % show(where)})
                continue
            except Refused as exc:
                results.append({"error": exc.kind, "message": exc.message})
                continue
            except OSError as exc:
                refusal = os_refusal(exc, where)
                results.append({"error": refusal.kind, "message": refusal.message})
                continue
            results.append({"data": data.decode("latin-1")})
    finally:
        if fd is not None:
            os.close(fd)
    reply(out, ok=True, results=results)


def op_read(store, req, inp, out):
    """A regular file's size, then exactly that many bytes (a file that grows is read to its size)."""
    parts = req["parts"]
    fd_dir = store.walk(parts[:-1])
    try:
        fd, size = open_regular(fd_dir, check_part(parts[-1]), store.path(parts), req.get("limit"))
    finally:
        os.close(fd_dir)
    try:
        reply(out, ok=True, size=size)
        left = size
        while left:
            block = os.read(fd, min(CHUNK, left))
            if not block:
                # The file shrank under us: the caller sees fewer bytes than announced.
                break
            out.write(block)
            left -= len(block)
        out.flush()
    finally:
        os.close(fd)


def op_read_small(store, req, inp, out):
    parts = req["parts"]
    fd_dir = store.walk(parts[:-1])
    try:
        data = read_bounded(fd_dir, check_part(parts[-1]), store.path(parts), req["limit"])
    finally:
        os.close(fd_dir)
    reply(out, ok=True, data=data.decode("latin-1"))


def op_begin(store, req, inp, out):
    """Create the source directory and ``<set_id>.partial`` (which must not exist)."""
    fd = store.walk(req["parts"], create=True)
    try:
        try:
            os.mkdir(check_part(req["partial"]), DIR_MODE, dir_fd=fd)
        except OSError as exc:
            raise os_refusal(exc, store.path(req["parts"] + [req["partial"]]))
    finally:
        os.close(fd)
    reply(out, ok=True)


def op_write(store, req, inp, out):
    """Receive one payload file into an existing partial set; fsync it; report its size and SHA-256."""
    parts = req["parts"]
    dir_fd = store.walk(parts[:-1])
    where = store.path(parts)
    try:
        try:
            fd = os.open(check_part(parts[-1]), O_CREATE, FILE_MODE, dir_fd=dir_fd)
        except OSError as exc:
            raise os_refusal(exc, where)
        digest = hashlib.sha256()
        try:
            total = receive(inp, fd, digest)
            os.fsync(fd)
        except OSError as exc:
            raise os_refusal(exc, where)
        finally:
            os.close(fd)
    finally:
        os.close(dir_fd)
    reply(out, ok=True, size=total, sha256=digest.hexdigest())


def op_commit(store, req, inp, out):
    """Check the partial holds exactly ``names``, write the manifest last, rename the set into place."""
    src = store.walk(req["parts"])
    partial, set_id = check_part(req["partial"]), check_part(req["set_id"])
    where = store.path(req["parts"] + [partial])
    try:
        try:
            set_fd = os.open(partial, O_DIR, dir_fd=src)
        except OSError as exc:
            raise store.unsafe(src, partial, where, exc)
        try:
            trees = [check_part(name) for name in req.get("trees") or []]
            for name in trees:
                try:
                    os.unlink(TREE_MARK + name, dir_fd=set_fd)
                except FileNotFoundError:
                    pass
            present = sorted(name for name, kind in typed_names(set_fd))
            expected = sorted(list(req["names"]) + trees)
            if present != expected:
                raise Refused("store", "Refusing to commit %s: the files on the server %s differ from the manifest %s."
                              % (show(where), present, expected))
            for name in trees:
                if entry_type(set_fd, name) != "dir":
                    raise Refused("unsafe", "Refusing to commit %s: its tree %s is not a plain directory."
                                  % (show(where), show(name)))
            if trees:
                os.sync()  # the files rsync wrote into the trees, before the manifest
            for name in req["names"]:
                fd, dummy = open_regular(set_fd, name, os.path.join(where, name))
                try:
                    fsync_fd(fd)
                finally:
                    os.close(fd)
            tmp = MANIFEST + ".tmp"
            try:
                fd = os.open(tmp, O_CREATE, FILE_MODE, dir_fd=set_fd)
            except OSError as exc:
                raise os_refusal(exc, os.path.join(where, tmp))
            try:
                receive(inp, fd)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(tmp, MANIFEST, src_dir_fd=set_fd, dst_dir_fd=set_fd)
            fsync_fd(set_fd)
        finally:
            os.close(set_fd)
        if entry_type(src, set_id) is not None:
            raise Refused("exists", "%s already exists." % show(store.path(req["parts"] + [set_id])))
        os.rename(partial, set_id, src_dir_fd=src, dst_dir_fd=src)
        fsync_fd(src)
        if req.get("trees"):
            # The run finished: the trees it resumed from are no longer needed.
            try:
                resume = os.open(RESUME_DIR, O_DIR, dir_fd=src)
            except OSError:
                resume = None
            if resume is not None:
                try:
                    for name in req["trees"]:
                        try:
                            remove_tree(resume, name, store.path(req["parts"] + [RESUME_DIR, name]))
                        except (OSError, Refused):
                            pass
                finally:
                    os.close(resume)
    except OSError as exc:
        raise os_refusal(exc, where)
    finally:
        os.close(src)
    reply(out, ok=True)


def op_remove(store, req, inp, out):
    """Remove the named directories of a source (partials); a link or file is reported and left alone."""
    try:
        fd = store.walk(req["parts"])
    except FileNotFoundError:
        return reply(out, ok=True, removed=[], problems=[])
    removed, problems = [], []
    try:
        for name in req["names"]:
            if req.get("keep_trees") and name.endswith(".partial"):
                keep_trees(fd, check_part(name))
            try:
                remove_tree(fd, check_part(name), store.path(req["parts"] + [name]))
            except Refused as exc:
                problems.append(exc.message)
                continue
            except OSError as exc:
                problems.append(os_refusal(exc, store.path(req["parts"] + [name])).message)
                continue
            removed.append(name)
    finally:
        os.close(fd)
    reply(out, ok=True, removed=removed, problems=problems)


def keep_trees(source_fd, partial):
    """Move the marked trees of partial set ``partial`` to ``.resume/`` (replacing older ones), to resume from."""
    try:
        set_fd = os.open(partial, O_DIR, dir_fd=source_fd)
    except OSError:
        return
    try:
        entries = typed_names(set_fd)
        marked = set(n[len(TREE_MARK):] for n, kind in entries if kind == "file" and n.startswith(TREE_MARK))
        trees = [n for n, kind in entries if kind == "dir" and n in marked]
        if not trees:
            return
        try:
            os.mkdir(RESUME_DIR, DIR_MODE, dir_fd=source_fd)
        except FileExistsError:
            pass
        resume = os.open(RESUME_DIR, O_DIR, dir_fd=source_fd)
        try:
            for name in trees:
                remove_tree(resume, name, name)
                os.rename(name, name, src_dir_fd=set_fd, dst_dir_fd=resume)
            fsync_fd(resume)
        finally:
            os.close(resume)
    except (OSError, Refused):
        return
    finally:
        os.close(set_fd)


def op_is_dir(store, req, inp, out):
    """Whether root/parts... is a plain directory, every step reached without following a link."""
    try:
        fd = store.walk(req["parts"])
    except (OSError, Refused):
        return reply(out, ok=True, dir=False)
    os.close(fd)
    reply(out, ok=True, dir=True)


def op_tree_begin(store, req, inp, out):
    """Leave the marker of tree ``name`` in a partial set; say whether ``.resume/<name>`` is a plain directory."""
    parts, partial, name = req["parts"], check_part(req["partial"]), check_part(req["name"])
    fd = store.walk(parts + [partial])
    try:
        try:
            os.close(os.open(TREE_MARK + name, O_CREATE, FILE_MODE, dir_fd=fd))
        except OSError as exc:
            raise os_refusal(exc, store.path(parts + [partial, TREE_MARK + name]))
        fsync_fd(fd)
    finally:
        os.close(fd)
    try:
        os.close(store.walk(parts + [RESUME_DIR, name]))
        resume = True
    except (OSError, Refused):
        resume = False  # absent, or a link or file planted there: never used
    reply(out, ok=True, resume=resume)


def name_key(name):
    return name.encode("utf-8", "surrogateescape")


def walk_tree(dir_fd, prefix="", depth=0):
    """(path, name, dir_fd, lstat) of every entry below ``dir_fd`` in index order (sorted by name as bytes,
    pre-order); directories opened O_NOFOLLOW relative to their parent, links never followed."""
    if depth > MAX_DEPTH:
        raise Refused("store", "The tree is deeper than %d levels at %s." % (MAX_DEPTH, show(prefix)))
    for name in sorted(os.listdir(dir_fd), key=name_key):
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        yield prefix + name, name, dir_fd, st
        if stat.S_ISDIR(st.st_mode):
            child = os.open(name, O_DIR, dir_fd=dir_fd)
            try:
                yield from walk_tree(child, prefix + name + "/", depth + 1)
            finally:
                os.close(child)


def path_key(path):
    return tuple(name_key(part) for part in path.split("/"))


def canonical(entry):
    return (json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=True) + "\n").encode("ascii")


def hash_file(dir_fd, name, where, sink=None):
    fd, dummy = open_regular(dir_fd, name, where)
    digest = hashlib.sha256()
    size = 0
    try:
        while True:
            block = os.read(fd, CHUNK)
            if not block:
                return size, digest.hexdigest()
            digest.update(block)
            size += len(block)
            if sink is not None:
                sink(block)
    finally:
        os.close(fd)


def lstat_below(root_fd, path):
    parts = path.split("/")
    fd = root_fd
    opened = []
    try:
        for part in parts[:-1]:
            fd = os.open(part, O_DIR, dir_fd=fd)
            opened.append(fd)
        return os.stat(parts[-1], dir_fd=fd, follow_symlinks=False)
    finally:
        for item in opened:
            os.close(item)


class Previous(object):
    """The previous snapshot's index, read in step with the new walk: a file that is the very same inode
    (rsync hard-linked it) keeps its recorded SHA-256 instead of being read again."""

    def __init__(self, root_fd, handle):
        self.root_fd = root_fd
        self.handle = handle
        self.current = None
        self.last = None
        self.done = False

    def _next(self):
        line = self.handle.readline(64 * 1024)
        if not line:
            return None
        entry = json.loads(line.decode("ascii"))
        if (not isinstance(entry, dict) or not isinstance(entry.get("path"), str)
                or not isinstance(entry.get("size"), int) or not isinstance(entry.get("sha256"), str)
                or not re.match(r"^[0-9a-f]{64}\Z", entry["sha256"])):
            raise ValueError("malformed line")
        key = path_key(entry["path"])
        if self.last is not None and key <= self.last:
            raise ValueError("out of order")
        self.last = key
        return entry

    def known(self, path, st):
        if st.st_nlink < 2 or self.done:
            return None
        key = path_key(path)
        try:
            while self.current is None or path_key(self.current["path"]) < key:
                self.current = self._next()
                if self.current is None:
                    self.done = True
                    return None
        except (ValueError, UnicodeDecodeError):
            self.done = True  # an index that does not read: every file is hashed
            return None
        listed = self.current
        if listed["path"] != path or listed["size"] != st.st_size:
            return None
        try:
            old = lstat_below(self.root_fd, path)
        except OSError:
            return None
        if (old.st_ino, old.st_dev) != (st.st_ino, st.st_dev):
            return None
        return listed["size"], listed["sha256"]


class FrameBuffer(object):
    """Data of one kind (tag) sent in frames of about a MiB."""

    def __init__(self, out, tag):
        self.out = out
        self.tag = tag
        self.parts = []
        self.size = 0

    def add(self, data):
        self.parts.append(data)
        self.size += len(data)
        if self.size >= CHUNK:
            self.flush()

    def flush(self):
        if self.parts:
            write_frame(self.out, self.tag + b"".join(self.parts))
            self.parts = []
            self.size = 0


def op_tree_index(store, req, inp, out):
    """Walk a tree rsync wrote and send its index (tag ``i``) and links file (tag ``l``), then the counts.

    Every regular file is hashed here, on the server, unless it is the very inode the previous snapshot's
    index names at the same path (``previous``: the parts of that tree and of its index).
    """
    root = store.walk(req["parts"])
    previous = None
    opened = []
    try:
        if req.get("previous"):
            try:
                prev_root = store.walk(req["previous"]["tree"])
                opened.append(prev_root)
                index_parts = req["previous"]["index"]
                index_dir = store.walk(index_parts[:-1])
                try:
                    fd, dummy = open_regular(index_dir, check_part(index_parts[-1]), store.path(index_parts))
                finally:
                    os.close(index_dir)
                handle = os.fdopen(fd, "rb")
                opened.append(handle)
                previous = Previous(prev_root, handle)
            except (OSError, Refused):
                previous = None
        index = FrameBuffer(out, b"i")
        links = FrameBuffer(out, b"l")
        counts = dict(files=0, bytes=0, links=0, dirs=0, entries=0, specials=[])
        for path, name, dir_fd, st in walk_tree(root):
            counts["entries"] += 1
            if stat.S_ISDIR(st.st_mode):
                counts["dirs"] += 1
            elif stat.S_ISREG(st.st_mode):
                digest = previous.known(path, st) if previous is not None else None
                if digest is None:
                    digest = hash_file(dir_fd, name, store.path(req["parts"] + [path]))
                size, sha = digest
                index.add(canonical({"mode": stat.S_IMODE(st.st_mode), "path": path, "sha256": sha, "size": size}))
                counts["files"] += 1
                counts["bytes"] += size
            elif stat.S_ISLNK(st.st_mode):
                links.add(canonical({"path": path, "target": os.readlink(name, dir_fd=dir_fd)}))
                counts["links"] += 1
            elif len(counts["specials"]) < 10:
                counts["specials"].append(path)
        index.flush()
        links.flush()
    finally:
        for item in opened:
            if isinstance(item, int):
                os.close(item)
            else:
                item.close()
        os.close(root)
    reply(out, ok=True, **counts)


def xattrs_of(fd):
    if not hasattr(os, "listxattr"):
        return []
    try:
        return [[name, os.getxattr(fd, name).decode("latin-1")] for name in os.listxattr(fd)]
    except OSError:
        return []


def op_tree_send(store, req, inp, out):
    """Send a tree entry by entry (tag ``E``: its lstat as JSON) and each regular file's bytes after it
    (tag ``D`` frames, then ``Z``); a file already sent under another name (a hard link) is named instead."""
    root = store.walk(req["parts"])
    sent = {}
    try:
        top = os.fstat(root)
        write_frame(out, b"E" + json.dumps(describe_entry("", top, xattrs_of(root))).encode("ascii"))
        for path, name, dir_fd, st in walk_tree(root):
            entry = describe_entry(path, st)
            if stat.S_ISLNK(st.st_mode):
                entry["target"] = os.readlink(name, dir_fd=dir_fd)
            elif stat.S_ISDIR(st.st_mode):
                try:
                    fd = os.open(name, O_DIR, dir_fd=dir_fd)
                except OSError:
                    fd = None
                if fd is not None:
                    try:
                        entry["xattrs"] = xattrs_of(fd)
                    finally:
                        os.close(fd)
            elif stat.S_ISREG(st.st_mode):
                first = sent.get((st.st_dev, st.st_ino)) if st.st_nlink > 1 else None
                if first is not None:
                    entry["link_to"] = first
                else:
                    try:
                        fd, dummy = open_regular(dir_fd, name, path)
                    except (OSError, Refused) as exc:
                        entry["unreadable"] = getattr(exc, "message", None) or str(exc)
                        write_frame(out, b"E" + json.dumps(entry).encode("ascii"))
                        continue
                    try:
                        size = os.fstat(fd).st_size
                        entry["size"] = size
                        entry["xattrs"] = xattrs_of(fd)
                        write_frame(out, b"E" + json.dumps(entry).encode("ascii"))
                        while size > 0:  # a file that grows is sent to the size announced
                            block = os.read(fd, min(CHUNK, size))
                            if not block:
                                break
                            size -= len(block)
                            write_frame(out, b"D" + block)
                        write_frame(out, b"Z")
                    finally:
                        os.close(fd)
                    if st.st_nlink > 1:
                        sent[(st.st_dev, st.st_ino)] = path
                    continue
            write_frame(out, b"E" + json.dumps(entry).encode("ascii"))
    finally:
        os.close(root)
    reply(out, ok=True)


def describe_entry(path, st, xattrs=None):
    entry = {"path": path, "mode": st.st_mode, "size": st.st_size, "uid": st.st_uid, "gid": st.st_gid,
             "atime_ns": st.st_atime_ns, "mtime_ns": st.st_mtime_ns, "ino": st.st_ino, "nlink": st.st_nlink}
    if xattrs is not None:
        entry["xattrs"] = xattrs
    return entry


def op_delete_set(store, req, inp, out):
    """Hide the set first (rename to ``.deleting``), then remove it."""
    fd = store.walk(req["parts"])
    set_id, doomed = check_part(req["set_id"]), check_part(req["doomed"])
    where = store.path(req["parts"] + [set_id])
    try:
        kind = entry_type(fd, set_id)
        if kind is None:
            raise Refused("missing", "%s does not exist." % show(where))
        if kind != "dir":
            raise Refused("unsafe", "Set %s is not a plain directory; it is left alone." % show(where))
        try:
            os.rename(set_id, doomed, src_dir_fd=fd, dst_dir_fd=fd)
            fsync_fd(fd)
            remove_tree(fd, doomed, store.path(req["parts"] + [doomed]))
        except OSError as exc:
            raise os_refusal(exc, where)
    finally:
        os.close(fd)
    reply(out, ok=True)


def op_put_object(store, req, inp, out):
    """Put-if-absent: ``created``, ``identical`` (same bytes there), or refused as ``exists``."""
    parts = req["parts"]
    dir_fd = store.walk(parts[:-1], create=True)
    base = check_part(parts[-1])
    tmp = ".%s.%d.tmp" % (base, os.getpid())
    try:
        try:
            os.unlink(tmp, dir_fd=dir_fd)
        except FileNotFoundError:
            pass
        try:
            fd = os.open(tmp, O_CREATE, FILE_MODE, dir_fd=dir_fd)
        except OSError as exc:
            raise os_refusal(exc, store.path(parts[:-1] + [tmp]))
        digest = hashlib.sha256()
        try:
            try:
                receive(inp, fd, digest)
                os.fsync(fd)
            finally:
                os.close(fd)
            try:
                os.link(tmp, base, src_dir_fd=dir_fd, dst_dir_fd=dir_fd, follow_symlinks=False)
                outcome = "created"
            except FileExistsError:
                efd, dummy = open_regular(dir_fd, base, store.path(parts))
                other = hashlib.sha256()
                try:
                    while True:
                        block = os.read(efd, CHUNK)
                        if not block:
                            break
                        other.update(block)
                finally:
                    os.close(efd)
                if other.hexdigest() != digest.hexdigest():
                    raise Refused("exists", "differs")
                outcome = "identical"
            fsync_fd(dir_fd)
        except OSError as exc:
            raise os_refusal(exc, store.path(parts))
        finally:
            try:
                os.unlink(tmp, dir_fd=dir_fd)
            except OSError:
                pass
    finally:
        os.close(dir_fd)
    reply(out, ok=True, outcome=outcome)


def op_list_objects(store, req, inp, out):
    """Regular files below the objects directory matching ``match`` per part, at most ``depth`` parts."""
    pattern = re.compile(req["match"])
    try:
        top = store.walk(req["parts"])
    except FileNotFoundError:
        return reply(out, ok=True, names=[])
    found = []
    stack = [(top, "")]
    while stack:
        fd, rel = stack.pop()
        try:
            for name, kind in typed_names(fd):
                if not pattern.match(name):
                    continue
                if kind == "file":
                    found.append(rel + name)
                elif kind == "dir" and rel.count("/") < req["depth"] - 1:
                    try:
                        stack.append((os.open(name, O_DIR, dir_fd=fd), rel + name + "/"))
                    except OSError:
                        continue
        finally:
            os.close(fd)
    reply(out, ok=True, names=sorted(found))


def op_stat_object(store, req, inp, out):
    """Size and modification time (seconds since the epoch) of a regular file; a link or FIFO is refused."""
    parts = req["parts"]
    fd_dir = store.walk(parts[:-1])
    try:
        fd, size = open_regular(fd_dir, check_part(parts[-1]), store.path(parts))
    finally:
        os.close(fd_dir)
    try:
        reply(out, ok=True, size=size, mtime=os.fstat(fd).st_mtime)
    finally:
        os.close(fd)


def op_delete_object(store, req, inp, out):
    parts = req["parts"]
    try:
        fd = store.walk(parts[:-1])
    except FileNotFoundError:
        return reply(out, ok=True)
    try:
        kind = entry_type(fd, check_part(parts[-1]))
        if kind not in (None, "file"):
            raise Refused("unsafe", "Object %s is not a regular file; it is left alone." % show(store.path(parts)))
        try:
            os.unlink(parts[-1], dir_fd=fd)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise os_refusal(exc, store.path(parts))
    finally:
        os.close(fd)
    reply(out, ok=True)


def write_lock(fd, content):
    """Replace the lock with ``content`` atomically (a temporary file O_EXCL | O_NOFOLLOW, then rename)."""
    tmp = "%s.%d.tmp" % (LOCK, os.getpid())
    try:
        os.unlink(tmp, dir_fd=fd)
    except FileNotFoundError:
        pass
    tfd = os.open(tmp, O_CREATE, FILE_MODE, dir_fd=fd)
    try:
        view = memoryview(content)
        while view:
            view = view[os.write(tfd, view):]
        os.fsync(tfd)
    finally:
        os.close(tfd)
    os.rename(tmp, LOCK, src_dir_fd=fd, dst_dir_fd=fd)
    fsync_fd(fd)


def op_lock(store, req, inp, out):
    """Compare-and-swap on ``<source>/.lock`` under flock of the source directory.

    ``expect`` is None (the lock must be absent), or the exact bytes the lock
    must hold; ``content`` is None to remove it, else the new bytes. The
    answer carries what the lock held (``current``) and whether it was swapped.
    """
    fd = store.walk(req["parts"], create=req.get("content") is not None)
    where = store.path(req["parts"] + [LOCK])
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        kind = entry_type(fd, LOCK)
        if kind not in (None, "file"):
            raise Refused("unsafe", "The lock %s is not a regular file (%s); remove it by hand after checking the store."
                          % (show(where), kind))
        current = None
        if kind == "file":
            try:
                current = read_bounded(fd, LOCK, where, req["limit"]).decode("latin-1")
            except FileNotFoundError:
                current = None
            except Refused:
                current = ""
        expect = req.get("expect")
        swapped = False
        if current == expect:
            try:
                if req.get("content") is None:
                    if current is not None:
                        os.unlink(LOCK, dir_fd=fd)
                else:
                    write_lock(fd, req["content"].encode("latin-1"))
            except OSError as exc:
                raise os_refusal(exc, where)
            swapped = True
    finally:
        os.close(fd)
    reply(out, ok=True, current=current, swapped=swapped)


OPERATIONS = {
    "exists": op_exists,
    "names": op_names,
    "read_manifests": op_read_manifests,
    "read": op_read,
    "read_small": op_read_small,
    "begin": op_begin,
    "write": op_write,
    "commit": op_commit,
    "remove": op_remove,
    "delete_set": op_delete_set,
    "put_object": op_put_object,
    "list_objects": op_list_objects,
    "delete_object": op_delete_object,
    "stat_object": op_stat_object,
    "lock": op_lock,
    "is_dir": op_is_dir,
    "tree_begin": op_tree_begin,
    "tree_index": op_tree_index,
    "tree_send": op_tree_send,
}


def serve(inp, out):
    """Run one request from ``inp``; every expected failure is answered as one JSON frame."""
    try:
        req = json.loads(read_frame(inp, 4 * 1024 * 1024).decode("utf-8"), strict=False)
        operation = OPERATIONS.get(req.get("op"))
        if operation is None:
            raise Refused("store", "Unknown operation %r." % req.get("op"))
        store = Store(req.get("root"), req.get("allow_shared"))
        operation(store, req, inp, out)
    except Refused as exc:
        reply(out, ok=False, error=exc.kind, message=exc.message)
    except FileNotFoundError as exc:
        reply(out, ok=False, error="missing", message="%s does not exist." % show(exc.filename or "an entry"))
    except OSError as exc:
        refusal = os_refusal(exc, exc.filename or "the store")
        reply(out, ok=False, error=refusal.kind, message=refusal.message)
    except (ValueError, KeyError, TypeError) as exc:
        reply(out, ok=False, error="store", message="The store helper got a malformed request (%s)." % exc)


def main():
    serve(sys.stdin.buffer, sys.stdout.buffer)


if __name__ == "__main__":
    main()
