# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils is PRIVATE to this collection. It may change without notice.

"""The store contract: what every kind of store (dir, s3, ...) offers the core.

Code above this layer never sees a path, a bucket or a host: it sees a
``Store`` (docs/stores.md documents the contract). Each kind lives in its own
``_store_<kind>.py`` and registers itself here; ``_store_kinds.open_store``
builds one from the ``store`` option.

A store is untrusted input. Every kind reads only what it wrote itself in
form: regular files (never a link, FIFO or device), names that match the
layout, manifests of bounded size. What it cannot use it reports; it never
waits on it and never touches anything outside the store through it.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import re
import socket

from ansible_collections.lifeboat.backup.plugins.module_utils._common import (
    LifeboatError,
    format_ts,
    parse_ts,
)
from ansible_collections.lifeboat.backup.plugins.module_utils import _manifest

PARTIAL_SUFFIX = ".partial"
DELETING_SUFFIX = ".deleting"
LOCK_NAME = ".lock"
OBJECTS_DIR = "objects"
CHUNK = 1024 * 1024
# A lock file is a few hundred bytes; anything larger is not ours.
MAX_LOCK_BYTES = 4096
# Manifests larger than this are refused unread (docs/manifest.md).
MAX_MANIFEST_BYTES = getattr(_manifest, "MAX_MANIFEST_BYTES", 1024 * 1024)
OBJECT_PART_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,254}\Z")
OBJECT_MAX_DEPTH = 4

CAPABILITIES = ("trees", "hard_links", "immutability", "conditional_put")


class StoreError(LifeboatError):
    """The store cannot be read or written."""


class LockedError(StoreError):
    """Another live writer holds the source's lock."""


class UnsafeEntryError(StoreError):
    """An entry in the store is a link, FIFO, device or otherwise not what the layout allows."""


class ObjectExistsError(StoreError):
    """put_object found an object of that name with different content."""


def escape(text, limit=200):
    """A name or message from the store, safe to print: non-UTF-8 and control characters escaped, length bounded."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "backslashreplace")
    else:
        text = str(text).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    out = []
    for char in text:
        code = ord(char)
        if code < 0x20 or code == 0x7f or 0x80 <= code < 0xa0 or char in "\u2028\u2029":
            out.append("\\x%02x" % code if code < 0x100 else "\\u%04x" % code)
        else:
            out.append(char)
    text = "".join(out)
    if len(text) > limit:
        text = text[:limit] + "..."
    return text


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
    if exc.errno == errno.ELOOP:
        return "%s is a symbolic link; a store never follows links, so it is refused." % what
    return "%s: %s." % (what, exc.strerror or exc)


def check_object_name(name):
    """Object names are relative paths of plain parts, at most OBJECT_MAX_DEPTH deep."""
    parts = name.split("/") if isinstance(name, str) else []
    if not parts or len(parts) > OBJECT_MAX_DEPTH or not all(OBJECT_PART_RE.match(p) for p in parts):
        raise StoreError("Object name %r is not plain: use up to %d parts of letters, digits and . _ + - joined by /."
                         % (escape(name), OBJECT_MAX_DEPTH))
    return parts


def check_set_id(set_id):
    if not isinstance(set_id, str) or not _manifest.SET_ID_RE.match(set_id):
        raise StoreError("%r is not a set id (like 20261126T031500Z-full)." % escape(set_id))
    return set_id


def check_file_name(name):
    if not isinstance(name, str) or not _manifest.FILE_NAME_RE.match(name):
        raise StoreError("%r is not a plain payload file name." % escape(name))
    return name


# ------------------------------------------------------------------ locks

def process_start_ticks(pid):
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


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except (OverflowError, ValueError):
        return False
    return True


def lock_info(now, ttl, set_id=None):
    """The contents of a lock held by this process."""
    return {
        "pid": os.getpid(),
        "node": socket.gethostname(),
        "start_ticks": process_start_ticks(os.getpid()),
        "started_at": format_ts(now),
        "expires_at": format_ts(now.fromtimestamp(now.timestamp() + ttl, now.tzinfo)),
        "set_id": set_id,
    }


def lock_holder_state(info, node, now):
    """'live' or the reason a lock with contents ``info`` is stale."""
    try:
        pid = int(info["pid"])
        holder_node = str(info["node"])
        expires = parse_ts(info["expires_at"])
    except (KeyError, TypeError, ValueError, OverflowError):
        return "the lock file is unreadable"
    if holder_node == node:
        if pid <= 0 or not pid_alive(pid):
            return "its process %d is gone" % pid
        ticks = info.get("start_ticks")
        if ticks is not None and process_start_ticks(pid) not in (None, ticks):
            return "its process %d is gone (the pid was reused)" % pid
        return "live"
    if expires <= now:
        return "it expired at %s" % escape(info["expires_at"], 40)
    return "live"


def stale_report(info, state):
    return {
        "reason": state,
        "pid": info.get("pid") if isinstance(info.get("pid"), int) else None,
        "node": escape(info.get("node"), 100) if info.get("node") is not None else None,
        "started_at": escape(info.get("started_at"), 40) if info.get("started_at") is not None else None,
        "set_id": escape(info.get("set_id"), 60) if info.get("set_id") is not None else None,
    }


def locked_message(info, where):
    return ("Another backup of this source is running (pid %s on %s since %s, lock %s); wait for it to finish."
            % (escape(info.get("pid"), 20), escape(info.get("node"), 100), escape(info.get("started_at"), 40), where))


class Lock(object):
    """One writer per source. A context manager; ``stale`` reports a stale holder that was taken over."""

    stale = None
    held = False

    def acquire(self):
        raise NotImplementedError

    def update(self, set_id):
        """Record the set being written in the held lock."""
        raise NotImplementedError

    def release(self):
        raise NotImplementedError

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc_info):
        self.release()
        return False


# ------------------------------------------------------------------ writing

class Sink(object):
    """Where one payload file's bytes go. ``write`` takes bytes-like data; ``close`` makes them durable."""

    name = None

    def write(self, data):
        raise NotImplementedError

    def close(self):
        raise NotImplementedError

    def abort(self):
        raise NotImplementedError

    def describe_error(self, exc):
        """One sentence for an OSError raised by ``write`` or ``close``."""
        return describe_os_error(exc, self.name)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc_value, traceback):
        if exc_type is None:
            self.close()
        else:
            self.abort()
        return False


class SetWriter(object):
    """Writes one set: ``open(name)`` per payload file, then ``commit`` (manifest last) or ``abort``."""

    def open(self, name):
        raise NotImplementedError

    def commit(self, raw_manifest, names):
        """Write ``raw_manifest`` (bytes) last, once exactly the payload files ``names`` are present."""
        raise NotImplementedError

    def abort(self):
        """Remove everything this writer wrote, unless it committed. Never raises."""
        raise NotImplementedError

    def tree(self, name):
        """A local directory for the tree payload ``name`` of the set (capability ``trees``): a TreeTarget.

        The caller fills the directory itself (rsync writes in place); ``commit`` then accepts the tree
        beside the payload files. Kinds without local trees refuse.
        """
        raise StoreError("This store kind cannot hold tree payloads (rsync snapshots); use a dir store.")


class TreeTarget(object):
    """Where a tree payload is written: ``path`` (empty, local) and ``resume`` (an interrupted run's tree of the
    same name, kept for ``--link-dest``, or None)."""

    def __init__(self, path, resume=None):
        self.path = path
        self.resume = resume


# ------------------------------------------------------------------ the contract

class Listing(object):
    """What a source directory holds, from names alone."""

    def __init__(self, sets=None, partials=None, strays=None):
        self.sets = sorted(sets or [])
        self.partials = sorted(partials or [])
        self.strays = list(strays or [])


class Store(object):
    """The contract every kind implements (docs/stores.md)."""

    kind = None
    capabilities = frozenset()

    def describe(self):
        """The store for results: kind and location, never a secret."""
        raise NotImplementedError

    def location(self, host=None, source=None, set_id=None, name=None):
        """Where something lives, for messages and results (a path or a URL)."""
        raise NotImplementedError

    def exists(self):
        raise NotImplementedError

    # listing, names only
    def hosts(self):
        raise NotImplementedError

    def sources(self, host):
        raise NotImplementedError

    def listing(self, host, source):
        """A Listing of complete set ids, partial names and stray entries."""
        raise NotImplementedError

    def set_ids(self, host, source):
        return self.listing(host, source).sets

    def partials(self, host, source):
        return self.listing(host, source).partials

    # reading
    def read_manifest_bytes(self, host, source, set_id):
        """The raw manifest, at most MAX_MANIFEST_BYTES; ManifestError when missing or too large."""
        raise NotImplementedError

    def read_manifest(self, host, source, set_id):
        """The validated manifest of a set; it must name the place it was found in."""
        return self.check_manifest(host, source, set_id, self.read_manifest_bytes(host, source, set_id))

    def check_manifest(self, host, source, set_id, raw):
        """Validate ``raw`` manifest bytes read from ``host/source/set_id``; it must name that place."""
        where = "The manifest of set %s/%s/%s" % (host, source, set_id)
        data = _manifest.loads(raw, where)
        if (data["host"], data["source"], data["set_id"]) != (host, source, set_id):
            raise _manifest.ManifestError(
                "%s names %s/%s/%s: it was moved or edited." % (
                    where, escape(data["host"]), escape(data["source"]), escape(data["set_id"])))
        return data

    def read_manifests_bytes(self, host, source, set_ids):
        """``(set_id, raw, None)`` or ``(set_id, None, error)`` for each of ``set_ids``, in order.

        The bulk form of ``read_manifest_bytes``, with the same limits and
        errors; a kind may share work between the sets of one source (the
        ``dir`` kind opens the source directory once).
        """
        for set_id in set_ids:
            try:
                raw = self.read_manifest_bytes(host, source, set_id)
            except LifeboatError as exc:
                yield set_id, None, exc
                continue
            yield set_id, raw, None

    def read_manifests(self, host, source, set_ids):
        """``(set_id, manifest, None)`` or ``(set_id, None, error)`` for each of ``set_ids``: the catalog's read."""
        for set_id, raw, error in self.read_manifests_bytes(host, source, set_ids):
            if error is None:
                try:
                    manifest = self.check_manifest(host, source, set_id, raw)
                except LifeboatError as exc:
                    error = exc
                else:
                    yield set_id, manifest, None
                    continue
            yield set_id, None, error

    def open_payload(self, host, source, set_id, name):
        """A binary reader (``read``, ``readinto``, ``close``; ``fileno`` where there is one)."""
        raise NotImplementedError

    def payload_names(self, host, source, set_id):
        """Names of the files stored in a set besides its manifest (for verification)."""
        raise NotImplementedError

    # writing
    def begin(self, host, source, set_id):
        """A SetWriter for a new set; the caller holds the source's lock."""
        raise NotImplementedError

    def delete_set(self, host, source, set_id):
        """Delete a set; a crash part-way never leaves one that looks complete."""
        raise NotImplementedError

    def remove_partials(self, host, source):
        """Remove what crashed runs left (partial sets, half-deleted sets, aborted uploads); return their names."""
        raise NotImplementedError

    def set_retention(self, host, source, set_id):
        """The immutability a set is under: None, or {mode, until (UTC datetime or None), legal_hold (bool)}.

        Kinds without ``immutability`` have none; the ``s3`` kind reads the Object Lock of the manifest.
        """
        return None

    def lock(self, host, source, ttl=86400.0):
        raise NotImplementedError

    # objects beside the sets
    def put_object(self, host, source, name, reader):
        """Store ``reader``'s bytes as object ``name`` unless it exists.

        Returns "created", or "identical" when an object with the same bytes is
        already there; raises ObjectExistsError when its bytes differ.
        """
        raise NotImplementedError

    def open_object(self, host, source, name):
        raise NotImplementedError

    def list_objects(self, host, source, prefix=""):
        raise NotImplementedError

    def stat_object(self, host, source, name):
        """``{"size": bytes, "modified": seconds since the epoch, or None}`` of object ``name``.

        Raises FileNotFoundError when it does not exist. The time is what the
        store says (a file's mtime, S3's LastModified, the time the memory kind
        recorded): untrusted, since anyone who can write the store can set it.
        """
        raise NotImplementedError

    def delete_object(self, host, source, name):
        raise NotImplementedError

    # trees (capability ``trees``)
    def tree_path(self, host, source, set_id, name):
        """The local directory of tree ``name`` of a complete set (for ``rsync --link-dest``), or None."""
        return None

    def open_tree(self, host, source, set_id, name):
        """A directory descriptor of tree ``name`` of a set, opened without following links; the caller closes it."""
        raise StoreError("This store kind cannot read tree payloads; restore or verify them from a dir store.")

    def release_trees(self):
        """Drop what ``open_tree`` made to read trees (a kind that fetches a tree into a local copy removes it);
        a reader calls it once done with the trees it opened. Nothing to do for a kind that reads in place."""

    # shared logic
    def verify_tree(self, manifest, tree):
        """Re-hash every file of a tree against its index, check every link against the links file."""
        from ansible_collections.lifeboat.backup.plugins.module_utils import _trees
        host, source, set_id = manifest["host"], manifest["source"], manifest["set_id"]
        names = dict((f["name"], f) for f in manifest["files"])
        for listed in (tree["index"], _trees.links_name(tree["name"])):
            codec = (names.get(listed) or {}).get("codec") or {}
            if codec.get("compression", "none") != "none" or codec.get("encryption"):
                return [{"name": escape(listed), "problem": "unreadable",
                         "detail": "the list of a tree must be stored without compression or encryption"}]
        try:
            root = self.open_tree(host, source, set_id, tree["name"])
        except FileNotFoundError:
            return [{"name": escape(tree["name"]), "problem": "missing"}]
        except (OSError, StoreError) as exc:
            return [{"name": escape(tree["name"]), "problem": "unreadable",
                     "detail": getattr(exc, "strerror", None) or str(exc)}]
        readers = []
        try:
            index = line_reader(self.open_payload(host, source, set_id, tree["index"]))
            readers.append(index)
            links = []
            if _trees.links_name(tree["name"]) in names:
                links_reader = line_reader(self.open_payload(host, source, set_id, _trees.links_name(tree["name"])))
                readers.append(links_reader)
                links = _trees.read_links(links_reader, "The links file of tree %s" % escape(tree["name"]))
            entries = _manifest.read_index(index, tree, "The index of tree %s" % escape(tree["name"]))
            return _trees.check_tree(root, tree["name"], entries, links)
        except (OSError, StoreError) as exc:
            return [{"name": escape(tree["name"]), "problem": "unreadable",
                     "detail": getattr(exc, "strerror", None) or str(exc)}]
        finally:
            for reader in readers:
                reader.close()
            os.close(root)

    def verify_set(self, manifest):
        """Re-hash every file of a set; a list of problems, empty when sound."""
        host, source, set_id = manifest["host"], manifest["source"], manifest["set_id"]
        problems = []
        listed = set()
        for entry in manifest["files"]:
            listed.add(entry["name"])
            try:
                reader = self.open_payload(host, source, set_id, entry["name"])
            except FileNotFoundError:
                problems.append({"name": entry["name"], "problem": "missing"})
                continue
            except StoreError as exc:
                problems.append({"name": entry["name"], "problem": "unreadable", "detail": str(exc)})
                continue
            try:
                size, digest = hash_reader(reader, limit=entry["size"] + 1)
            except (OSError, StoreError) as exc:
                problems.append({"name": entry["name"], "problem": "unreadable",
                                 "detail": getattr(exc, "strerror", None) or str(exc)})
                continue
            finally:
                reader.close()
            if size != entry["size"]:
                problems.append({"name": entry["name"], "problem": "size", "expected": entry["size"],
                                 "actual": size if size <= entry["size"] else "more"})
            elif digest != entry["sha256"]:
                problems.append({"name": entry["name"], "problem": "sha256", "expected": entry["sha256"],
                                 "actual": digest})
        try:
            present = self.payload_names(host, source, set_id)
        except StoreError as exc:
            present = []
            problems.append({"name": ".", "problem": "unreadable", "detail": str(exc)})
        for tree in manifest.get("trees") or []:
            listed.add(tree["name"])
            problems.extend(self.verify_tree(manifest, tree))
        for name in present:
            if name not in listed:
                problems.append({"name": escape(name), "problem": "unlisted"})
        return problems


def line_reader(reader):
    """``reader`` with a buffered ``readline`` (a raw file would read one byte at a time)."""
    if isinstance(reader, io.RawIOBase):
        return io.BufferedReader(reader, CHUNK)
    return reader


def hash_reader(reader, limit=None, chunk=CHUNK):
    """(size, sha256 hex) of a reader, read in bounded chunks; stops past ``limit`` bytes."""
    digest = hashlib.sha256()
    size = 0
    buffer = bytearray(chunk)
    view = memoryview(buffer)
    try:
        while True:
            count = reader.readinto(buffer)
            if not count:
                break
            digest.update(view[:count])
            size += count
            if limit is not None and size >= limit:
                break
    finally:
        view.release()
    return size, digest.hexdigest()


# ------------------------------------------------------------------ registry

_KINDS = {}


class Kind(object):
    """A registered kind: its class, its suboptions of ``store`` and whether users may pick it."""

    def __init__(self, name, factory, options, required=(), public=True):
        self.name = name
        self.factory = factory
        self.options = options
        self.required = tuple(required)
        self.public = public


def register_kind(name, factory, options, required=(), public=True):
    _KINDS[name] = Kind(name, factory, options, required, public)


def kinds(public_only=True):
    return [k for name, k in sorted(_KINDS.items()) if k.public or not public_only]


def get_kind(name):
    kind = _KINDS.get(name)
    if kind is None:
        raise StoreError("Store kind %r is not supported; use one of: %s."
                         % (escape(name, 40), ", ".join(k.name for k in kinds())))
    return kind
