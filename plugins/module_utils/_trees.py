# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils is PRIVATE to this collection. It may change without notice.

"""Tree payloads: walking a tree by descriptor, writing its index, checking it against the index.

A tree payload (manifest v2 ``trees``) is a directory tree stored as it is
(an rsync snapshot). Its index (role ``index``, ``_manifest.read_index``)
lists every regular file with size, mode and SHA-256; its links file (role
``meta``, ``<tree>.links``) lists every symbolic link with its target, in the
same canonical JSON-lines form and the same order:

    {"path":"etc/alternatives/editor","target":"/usr/bin/vim.basic"}\\n

Directories are not listed (an empty directory is data, never a problem).
Anything else in a tree (a FIFO, a device, a socket, a file or link the lists
do not name, a link whose target differs) is a problem. The walk opens every
directory relative to its parent with ``O_NOFOLLOW`` and every file with
``O_NOFOLLOW | O_NONBLOCK``, and reads only regular files: a tree in a store
is untrusted input, and nothing in it is ever followed or waited on.
"""

from __future__ import annotations

import collections
import concurrent.futures
import hashlib
import json
import os
import re
import stat

from ansible_collections.lifeboat.backup.plugins.module_utils import _manifest
from ansible_collections.lifeboat.backup.plugins.module_utils._manifest import ManifestError, show
from ansible_collections.lifeboat.backup.plugins.module_utils._stores import escape

CHUNK = 1024 * 1024
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
LINK_KEYS = ("path", "target")
MAX_DEPTH = 256
# Problems listed per tree before the rest is only counted.
MAX_PROBLEMS = 100
# Hashing a tree's new files: threads, files open or pending at once, and the size below which a
# file is hashed on the walking thread (a hand-off costs more than hashing it).
HASH_WORKERS = max(1, min(4, os.cpu_count() or 1))
HASH_WINDOW = 64
HASH_INLINE_BYTES = 256 * 1024


def links_name(tree_name):
    """The name of the links file (role ``meta``) of tree ``tree_name``."""
    return tree_name + ".links"


def key_of(path):
    """The sort key of a tree path: its components as bytes (the index order)."""
    return tuple(part.encode("utf-8", "surrogateescape") for part in path.split("/"))


def kind_of(mode):
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISLNK(mode):
        return "symlink"
    if stat.S_ISFIFO(mode):
        return "FIFO"
    if stat.S_ISCHR(mode):
        return "character device"
    if stat.S_ISBLK(mode):
        return "block device"
    if stat.S_ISSOCK(mode):
        return "socket"
    return "unknown entry"


class Entry(object):
    """One entry of a walk: ``path`` (relative, ``/``-separated), ``name`` in directory ``dir_fd``, its lstat,
    and ``key``, the path's sort key (``key_of(path)``, built as the walk descends)."""

    __slots__ = ("path", "name", "dir_fd", "st", "kind", "key")

    def __init__(self, path, name, dir_fd, st, key=None):
        self.path = path
        self.name = name
        self.dir_fd = dir_fd
        self.st = st
        self.kind = kind_of(st.st_mode)
        self.key = key if key is not None else key_of(path)


def walk(dir_fd, prefix="", depth=0, parent_key=()):
    """Yield every entry below directory ``dir_fd`` in index order (children sorted by name as bytes, pre-order).

    Directories are opened with O_NOFOLLOW relative to their parent; a link is an entry, never followed.
    The ``dir_fd`` of an entry is valid only until the walk moves on.
    """
    if depth > MAX_DEPTH:
        raise ManifestError("The tree is deeper than %d levels at %s." % (MAX_DEPTH, show(prefix)))
    for encoded, name in sorted((n.encode("utf-8", "surrogateescape"), n) for n in os.listdir(dir_fd)):
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        entry = Entry(prefix + name, name, dir_fd, st, parent_key + (encoded,))
        yield entry
        if entry.kind == "dir":
            child = os.open(name, DIR_FLAGS, dir_fd=dir_fd)
            try:
                yield from walk(child, entry.path + "/", depth + 1, entry.key)
            finally:
                os.close(child)


def open_regular(entry):
    """A descriptor of the regular file ``entry``, or OSError/ValueError when it is not one any more."""
    fd = os.open(entry.name, FILE_FLAGS, dir_fd=entry.dir_fd)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ValueError("not a regular file")
        os.set_blocking(fd, True)
        return fd
    except BaseException:
        os.close(fd)
        raise


def hash_fd(fd, sink=None):
    """(size, sha256) of what remains of ``fd``; each block also goes to ``sink(block)`` when given."""
    digest = hashlib.sha256()
    size = 0
    while True:
        block = os.read(fd, CHUNK)
        if not block:
            return size, digest.hexdigest()
        digest.update(block)
        size += len(block)
        if sink is not None:
            sink(block)


# ------------------------------------------------------------------ links file

def format_link_line(path, target):
    """One links-file line (bytes) in its canonical form."""
    line = (json.dumps({"path": path, "target": target}, sort_keys=True, separators=(",", ":"),
                       ensure_ascii=True) + "\n").encode("ascii")
    parse_link_line(line)
    return line


def parse_link_line(line, where="links line"):
    if len(line) > _manifest.INDEX_MAX_LINE_BYTES:
        raise ManifestError("%s is longer than %d bytes." % (where, _manifest.INDEX_MAX_LINE_BYTES))
    if not line.endswith(b"\n"):
        raise ManifestError("%s does not end with a newline." % where)
    try:
        text = bytes(line[:-1]).decode("ascii")
    except UnicodeDecodeError:
        raise ManifestError("%s is not ASCII (non-ASCII characters must be \\u escaped)." % where)
    entry = _manifest.parse_json(text, where, _manifest.INDEX_MAX_LINE_BYTES, 1)
    if not isinstance(entry, dict) or sorted(entry) != list(LINK_KEYS):
        raise ManifestError("%s is not an object with exactly the keys path and target." % where)
    path, target = entry["path"], entry["target"]
    if not isinstance(target, str) or not isinstance(path, str):
        raise ManifestError("%s has a path or target that is not a string." % where)
    _manifest.check_tree_path(path, "%s path" % where)
    if not target or "\x00" in target or len(target.encode("utf-8", "surrogateescape")) > _manifest.INDEX_MAX_PATH_BYTES:
        raise ManifestError("%s has an empty, NUL-holding or over-long target." % where)
    if json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=True) != text:
        raise ManifestError("%s is not in canonical form (sorted keys, no spaces, \\u escapes)." % where)
    return entry


def read_links(handle, where="links file"):
    """Yield the entries of a links file, strictly checked and in strictly ascending path order."""
    previous = None
    count = 0
    while True:
        line = handle.readline(_manifest.INDEX_MAX_LINE_BYTES + 1)
        if not line:
            return
        count += 1
        lwhere = "%s line %d" % (where, count)
        entry = parse_link_line(line, lwhere)
        key = key_of(entry["path"])
        if previous is not None and key <= previous:
            raise ManifestError("%s is out of order or repeats a path (%s)." % (lwhere, show(entry["path"])))
        previous = key
        yield entry


# ------------------------------------------------------------------ writing the lists

def index_line(path, size, mode, sha256, key=None):
    """An index line in its canonical form (``_manifest.format_index_line`` without parsing it back: the path
    is checked, the other fields come from stat and hashlib).

    With ``key`` (a walked entry's: its names come from the directory, so none is empty, ``.`` or ``..``,
    or holds ``/`` or NUL) only the lengths are left to check. The line is the bytes ``json.dumps`` gives
    the object with sorted keys, no spaces and ASCII escapes, built without the dict.
    """
    if key is None or max(len(part) for part in key) > _manifest.INDEX_MAX_NAME_BYTES or \
            sum(len(part) for part in key) + len(key) - 1 > _manifest.INDEX_MAX_PATH_BYTES:
        _manifest.check_tree_path(path)
    return ('{"mode":%d,"path":%s,"sha256":"%s","size":%d}\n'
            % (mode, json.dumps(path, ensure_ascii=True), sha256, size)).encode("ascii")


class Lists(object):
    """What ``write_lists`` found: counts and sums of the tree."""

    def __init__(self):
        self.files = 0
        self.bytes = 0
        self.links = 0
        self.dirs = 0
        self.entries = 0
        self.hashed = 0
        self.specials = []


def _hash_and_close(fd):
    try:
        return hash_fd(fd)
    finally:
        os.close(fd)


class _Hashers(object):
    """Files hashed on worker threads (hashlib and os.read release the GIL), their lines written in walk order.

    At most ``window`` files are open or pending at once; a small file is hashed on the calling thread.
    """

    def __init__(self, out, workers=HASH_WORKERS, window=HASH_WINDOW):
        self.out = out
        self.workers = workers
        self.window = window
        self.pool = None
        self.pending = collections.deque()  # [path, key, mode, (size, sha256) or a future]

    def add(self, path, key, mode, digest):
        self.pending.append((path, key, mode, digest))

    def add_file(self, entry, mode):
        fd = open_regular(entry)
        if self.workers < 2 or entry.st.st_size < HASH_INLINE_BYTES:
            self.add(entry.path, entry.key, mode, _hash_and_close(fd))
            return
        if self.pool is None:
            self.pool = concurrent.futures.ThreadPoolExecutor(self.workers)
        try:
            future = self.pool.submit(_hash_and_close, fd)
        except BaseException:
            os.close(fd)
            raise
        self.add(entry.path, entry.key, mode, future)

    def flush(self, everything):
        """Write the lines whose digest is known, in order; wait for the head when the window is full."""
        found = []
        while self.pending:
            path, key, mode, digest = self.pending[0]
            if isinstance(digest, concurrent.futures.Future):
                if not (everything or len(self.pending) > self.window or digest.done()):
                    break
                digest = digest.result()
            self.pending.popleft()
            self.out.write(index_line(path, digest[0], mode, digest[1], key))
            found.append(digest[0])
        return found

    def close(self):
        if self.pool is not None:
            self.pool.shutdown(wait=True)  # a started hash closes its descriptor itself
            self.pool = None


def write_lists(root_fd, index_out, links_out, known=None, workers=HASH_WORKERS):
    """Walk the tree at ``root_fd`` and write its index and links file; return a Lists.

    ``known(entry)`` may return a (size, sha256) already established for a
    regular file (a file hard-linked to an already verified one), else None;
    every other file is read and hashed (on ``workers`` threads). Entries
    that are neither files, directories nor links are returned in
    ``specials`` (the caller decides).
    """
    found = Lists()
    hashers = _Hashers(index_out, workers)

    def count(sizes):
        found.bytes += sum(sizes)
    try:
        for entry in walk(root_fd):
            found.entries += 1
            if entry.kind == "dir":
                found.dirs += 1
            elif entry.kind == "file":
                found.files += 1
                mode = stat.S_IMODE(entry.st.st_mode)
                digest = known(entry) if known is not None else None
                if digest is None:
                    found.hashed += 1
                    hashers.add_file(entry, mode)
                else:
                    hashers.add(entry.path, entry.key, mode, digest)
                count(hashers.flush(False))
            elif entry.kind == "symlink":
                target = os.readlink(entry.name, dir_fd=entry.dir_fd)
                links_out.write(format_link_line(entry.path, target))
                found.links += 1
            else:
                found.specials.append(entry.path)
        count(hashers.flush(True))
    finally:
        hashers.close()
    return found


# ------------------------------------------------------------------ a previous tree, read in step

# A canonical index line: taken apart without the JSON decoder (anything else is not read at all).
_INDEX_LINE_RE = re.compile(rb'\{"mode":([0-9]{1,5}),"path":("(?:[^"\\]|\\.)*"),"sha256":"([0-9a-f]{64})",'
                            rb'"size":([0-9]{1,20})\}\n\Z')


class Previous(object):
    """A previous tree (``root_fd``) and its index (``reader``, a binary line reader), read in step with a
    walk of a new tree in index order; both are owned and closed by ``close``.

    The index gets a light parse (shape and order only): what it gives is used only where the very bytes
    it describes are shared (a hard link), and verify re-hashes them. An index that does not read stops
    the lookups (every file is then hashed or copied). Each previous directory is opened once, with
    O_NOFOLLOW at every step.
    """

    def __init__(self, root_fd, reader):
        self.root = root_fd
        self.reader = reader
        self.current = None  # (key, path, size, sha256, mode)
        self.previous_key = None
        self.done = False
        self.dir_key = None
        self.dir_fd = None

    def _next(self):
        line = self.reader.readline(_manifest.INDEX_MAX_LINE_BYTES + 1)
        if not line:
            return None
        found = _INDEX_LINE_RE.match(line)
        if found is None:
            raise ValueError("malformed")
        raw = found.group(2)
        path = json.loads(raw) if b"\\" in raw else raw[1:-1].decode("ascii")
        key = key_of(path)
        if self.previous_key is not None and key <= self.previous_key:
            raise ValueError("out of order")
        self.previous_key = key
        return key, path, int(found.group(4)), found.group(3).decode("ascii"), int(found.group(1))

    def listed(self, key):
        """The previous index's (key, path, size, sha256, mode) for the path of ``key``, or None."""
        while not self.done and (self.current is None or self.current[0] < key):
            try:
                self.current = self._next()
            except (ValueError, OSError):
                self.current = None
            if self.current is None:
                self.done = True
        current = self.current
        return current if current is not None and current[0] == key else None

    def lstat(self, path, key):
        """(the previous directory's descriptor, lstat) of ``path`` in the previous tree, or None."""
        parent = key[:-1]
        if parent != self.dir_key:
            self._close_dir()
            self.dir_key = parent
            fd = self.root
            try:
                for part in path.split("/")[:-1]:
                    child = os.open(part, DIR_FLAGS, dir_fd=fd)
                    if fd != self.root:
                        os.close(fd)
                    fd = child
            except OSError:
                if fd != self.root:
                    os.close(fd)
                return None
            self.dir_fd = fd
        if self.dir_fd is None:
            return None
        try:
            return self.dir_fd, os.stat(path.rpartition("/")[2], dir_fd=self.dir_fd, follow_symlinks=False)
        except OSError:
            return None

    def same(self, entry):
        """The (size, sha256) the previous index gives a walked regular file that is the very same inode as the
        previous tree's file of that path (a hard link to it), else None."""
        if entry.st.st_nlink < 2:
            return None
        listed = self.listed(entry.key)
        if listed is None or listed[2] != entry.st.st_size:
            return None
        found = self.lstat(entry.path, entry.key)
        if found is None or (found[1].st_ino, found[1].st_dev) != (entry.st.st_ino, entry.st.st_dev):
            return None
        return listed[2], listed[3]

    def _close_dir(self):
        if self.dir_fd is not None and self.dir_fd != self.root:
            os.close(self.dir_fd)
        self.dir_fd = None

    def close(self):
        self._close_dir()
        self.reader.close()
        os.close(self.root)


# ------------------------------------------------------------------ checking a tree

def _peek(iterator):
    for item in iterator:
        return item
    return None


class Check(object):
    """Problems found in one tree, in verify's shape (``name`` is ``<tree>/<path>``)."""

    def __init__(self, tree_name):
        self.tree_name = tree_name
        self.problems = []
        self.more = 0

    def add(self, path, problem, **detail):
        if len(self.problems) >= MAX_PROBLEMS:
            self.more += 1
            return
        item = {"name": escape("%s/%s" % (self.tree_name, path)), "problem": problem}
        item.update(detail)
        self.problems.append(item)

    def result(self):
        if self.more:
            self.problems.append({"name": self.tree_name, "problem": "more",
                                  "detail": "%d more problems in this tree" % self.more})
        return self.problems


def match(root_fd, index_entries, link_entries, on_entry=None):
    """Walk ``root_fd`` beside the index and links entries (both in index order); yield (entry, listed, kind).

    ``listed`` is the index entry (a file), the links entry (a link) or None; an entry of the lists that
    the walk does not have is yielded as (None, listed, "missing"). Memory is bounded by one entry of each.
    """
    index_iter = iter(index_entries)
    links_iter = iter(link_entries)
    nxt_file = _peek(index_iter)
    nxt_link = _peek(links_iter)
    for entry in walk(root_fd):
        key = entry.key
        while nxt_file is not None and key_of(nxt_file["path"]) < key:
            yield None, nxt_file, "missing"
            nxt_file = _peek(index_iter)
        while nxt_link is not None and key_of(nxt_link["path"]) < key:
            yield None, nxt_link, "missing"
            nxt_link = _peek(links_iter)
        listed = None
        if nxt_file is not None and nxt_file["path"] == entry.path:
            listed = nxt_file
            nxt_file = _peek(index_iter)
        elif nxt_link is not None and nxt_link["path"] == entry.path:
            listed = nxt_link
            nxt_link = _peek(links_iter)
        yield entry, listed, "present"
    while nxt_file is not None:
        yield None, nxt_file, "missing"
        nxt_file = _peek(index_iter)
    while nxt_link is not None:
        yield None, nxt_link, "missing"
        nxt_link = _peek(links_iter)


def entry_problem(entry, listed):
    """Why a walked entry does not match what the lists say (a short phrase), or None when it matches by type.

    Content is checked by the caller (it reads the file once, to hash or to copy it).
    """
    if listed is None:
        if entry.kind == "dir":
            return None
        if entry.kind in ("file", "symlink"):
            return "unlisted"
        return "special"
    if "sha256" in listed:
        if entry.kind != "file":
            return "type"
        if stat.S_IMODE(entry.st.st_mode) != listed["mode"]:
            return "mode"
        if entry.st.st_size != listed["size"]:
            return "size"
        return None
    if entry.kind != "symlink":
        return "type"
    if os.readlink(entry.name, dir_fd=entry.dir_fd) != listed["target"]:
        return "target"
    return None


PHRASES = {
    "unlisted": "is not in the tree's index or links file",
    "special": "is a %s, which a tree never holds; it was not opened",
    "type": "is a %s where the lists name a %s; it was not followed",
    "mode": "has mode %o, the index says %o",
    "size": "has %d bytes, the index says %d",
    "target": "is a link whose target differs from the links file",
    "sha256": "does not match the SHA-256 in the index",
    "missing": "is listed but missing from the tree",
    "unreadable": "cannot be read",
}


def describe(entry, listed, problem):
    """One phrase for a problem of ``entry`` (or of a listed path missing from the tree)."""
    if problem == "special":
        return PHRASES[problem] % entry.kind
    if problem == "type":
        return PHRASES[problem] % (entry.kind, "file" if "sha256" in listed else "symbolic link")
    if problem == "unlisted":
        return "is a %s that is not in the tree's index or links file" % entry.kind
    if problem == "mode":
        return PHRASES[problem] % (stat.S_IMODE(entry.st.st_mode), listed["mode"])
    if problem == "size":
        return PHRASES[problem] % (entry.st.st_size, listed["size"])
    return PHRASES[problem]


def check_tree(root_fd, tree_name, index_entries, link_entries):
    """Every file re-hashed against the index, every link against the links file; a list of problems."""
    check = Check(tree_name)
    try:
        for entry, listed, state in match(root_fd, index_entries, link_entries):
            if state == "missing":
                check.add(listed["path"], "missing")
                continue
            problem = entry_problem(entry, listed)
            if problem is not None:
                check.add(entry.path, problem, detail=describe(entry, listed, problem))
                continue
            if listed is not None and "sha256" in listed:
                try:
                    fd = open_regular(entry)
                except (OSError, ValueError) as exc:
                    check.add(entry.path, "unreadable", detail=getattr(exc, "strerror", None) or str(exc))
                    continue
                try:
                    size, digest = hash_fd(fd)
                finally:
                    os.close(fd)
                if size != listed["size"]:
                    check.add(entry.path, "size", expected=listed["size"], actual=size)
                elif digest != listed["sha256"]:
                    check.add(entry.path, "sha256", expected=listed["sha256"], actual=digest)
    except ManifestError as exc:
        check.add(".", "unreadable", detail=str(exc))
    except OSError as exc:
        check.add(".", "unreadable", detail=exc.strerror or str(exc))
    return check.result()


def entry_xattrs(entry):
    """The extended attributes of a walked entry (opened without following links), or [] where there are none."""
    if not hasattr(os, "listxattr") or entry.kind == "symlink":
        return []
    try:
        fd = os.open(entry.name, DIR_FLAGS if entry.kind == "dir" else FILE_FLAGS, dir_fd=entry.dir_fd)
    except OSError:
        return []
    try:
        return [(name, os.getxattr(fd, name)) for name in os.listxattr(fd)]
    except OSError:
        return []
    finally:
        os.close(fd)


def apply_metadata(fd, st, xattrs, mode, owners):
    """Give a rebuilt file or directory its owner (when ``owners``, as root), extended attributes, ``mode`` and the
    times of ``st``; returns how many attributes the file system refused (a namespace it lacks: the index does not
    cover xattrs)."""
    if owners:
        os.fchown(fd, st.st_uid, st.st_gid)
    skipped = 0
    for name, value in xattrs:
        try:
            os.setxattr(fd, name, value)
        except OSError:
            skipped += 1
    os.fchmod(fd, mode)
    os.utime(fd, ns=(st.st_atime_ns, st.st_mtime_ns))
    return skipped


def copy_listed_file(entry, listed, dir_fd, refuse, finish):
    """Copy the walked regular file ``entry`` into a new file of the same path in ``dir_fd`` (O_EXCL, never
    through a link), hashing it as it goes against its index line ``listed``.

    ``refuse(reason)`` must raise: ``"unreadable"`` when ``entry`` is no longer a regular file that can be read,
    ``"mismatch"`` when its size or SHA-256 differs from the index; ``finish(out_fd, xattrs)`` gives the new file
    its metadata (``xattrs``: those of ``entry``) before it is closed.
    """
    try:
        src = open_regular(entry)
    except (OSError, ValueError):
        refuse("unreadable")
    try:
        xattrs = entry_xattrs(entry)
        out = os.open(entry.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                      dir_fd=dir_fd)
        try:
            def write(block):
                view = memoryview(block)
                while view:
                    view = view[os.write(out, view):]
            size, digest = hash_fd(src, write)
            if size != listed["size"] or digest != listed["sha256"]:
                refuse("mismatch")
            finish(out, xattrs)
        finally:
            os.close(out)
    finally:
        os.close(src)
