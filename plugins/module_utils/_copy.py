# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils is PRIVATE to this collection. It may change without notice.

"""Copy backup sets from one store to another, through the store contract alone.

Two steps, so that check mode and the real run give the same answer:

``plan_copy`` reads names and manifests only. It decides, per set, whether it
is already at the destination (same manifest bytes: skipped), at the
destination with other bytes (a conflict, never overwritten), copyable (queued
after the parents it needs), or refused (a sentence names why: a broken or
missing parent, an unusable manifest).

``execute`` acts on a plan: per source it takes the destination's lock,
removes what crashed runs left there, re-checks the destination, and copies
each queued set parents first. A set is copied by streaming each payload file
from ``open_payload`` into ``writer.open`` through one bounded buffer, hashing
on the fly; only when every file's size and SHA-256 match the manifest are the
source's own manifest bytes committed (never re-serialised: a signature over
them stays valid). Anything else aborts the writer, so nothing that looks like
a set is left behind.

A set with tree payloads (an rsync snapshot: a directory tree stored as it
is, listed by an index with every file's SHA-256) needs the ``trees``
capability at both ends. Its index and links file are copied like any file;
the tree is then walked by descriptor beside the index (``_trees.match``) and
rebuilt in the destination writer's tree directory: each file is streamed and
hashed and must match the index, each link must match the links file, and
anything else in the tree (an unlisted entry, a FIFO, a device, a link where
the index names a file) refuses the set. A file that the destination's
previous copy of the same source already holds under the same path, with the
same SHA-256 in its index and the same size, mode, owner and mtime, is hard-
linked to it instead (the rule of the rsync engine: a file that is the same
inode keeps the SHA-256 recorded for it, and verify re-hashes it), so
incremental-forever stays cheap at the destination too. Files that are one
inode in the source tree stay one inode.

No kind is named here: every kind of store works on either side.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import stat
import time

from ansible_collections.lifeboat.backup.plugins.module_utils._common import LifeboatError
from ansible_collections.lifeboat.backup.plugins.module_utils import _jobs
from ansible_collections.lifeboat.backup.plugins.module_utils import _manifest
from ansible_collections.lifeboat.backup.plugins.module_utils import _stores
from ansible_collections.lifeboat.backup.plugins.module_utils import _trees

CHUNK = _stores.CHUNK
# A failure message names at most this many sets; the result lists them all.
MESSAGE_SETS = 5

PRESENT = "present"
QUEUED = "queued"
CONFLICT = "conflict"
REFUSED = "refused"
ABSENT = "absent"


class CopyError(LifeboatError):
    """One set cannot be copied; the message is a clause naming why (no set name, no final period)."""

    def __init__(self, message, problems=None):
        super(CopyError, self).__init__(message)
        self.problems = problems or []


def set_name(host, source, set_id):
    return "%s/%s/%s" % (host, source, set_id)


def clause(exc):
    """An error's sentence as a clause to embed: trailing period dropped."""
    return str(exc).strip().rstrip(".")


def set_type(set_id):
    """The type a set id carries in its suffix (full, incremental or differential)."""
    return _manifest.SET_ID_RE.match(set_id).group(2)


class _State(object):
    """What the plan decided about one set.

    ``reason`` says why a set cannot be copied; ``inherited`` is the reason its
    descendants give (set when the cause lies in the set's own chain).
    """

    def __init__(self, kind, reason=None, manifest=None, inherited=None):
        self.kind = kind
        self.reason = reason
        self.manifest = manifest
        self.inherited = inherited


class CopyPlan(object):
    """The decision for every set in scope.

    ``copy`` lists the manifests to copy, parents first; ``skipped``,
    ``conflicts`` and ``refused`` map (host, source, set_id) to extra fields
    (``reason``); ``strays`` lists source entries that are not sets.
    """

    def __init__(self):
        self.copy = []
        self.skipped = {}
        self.conflicts = {}
        self.refused = {}
        self.strays = []


class _Planner(object):
    """Reads each listing and manifest once and caches every answer."""

    def __init__(self, src, dst, accept=None):
        self.src = src
        self.dst = dst
        self.accept = accept
        self.listings = {}
        self.manifests = {}
        self.states = {}
        self.plan = CopyPlan()

    def listing(self, store, host, source):
        key = (store is self.dst, host, source)
        if key not in self.listings:
            self.listings[key] = store.listing(host, source)
        return self.listings[key]

    def source_manifest(self, host, source, set_id):
        """(manifest, None) or (None, reason) for a set the source lists."""
        key = (host, source, set_id)
        if key not in self.manifests:
            try:
                self.manifests[key] = (self.src.read_manifest(host, source, set_id), None)
            except (LifeboatError, OSError) as exc:
                self.manifests[key] = (None, "its manifest at the source is not usable: %s" % clause(_os_clause(exc)))
        return self.manifests[key]

    def at_destination(self, host, source, set_id):
        """The state of a set the destination holds an entry for, or None when it holds none."""
        dst_listing = self.listing(self.dst, host, source)
        if set_id in dst_listing.sets:
            if set_id not in self.listing(self.src, host, source).sets:
                return _State(PRESENT)
            return self.compare(host, source, set_id)
        for stray in dst_listing.strays:
            if stray["name"] == set_id:
                return _State(CONFLICT, "the destination holds an entry of that name that is not a complete set "
                                        "(%s); it is never overwritten" % stray["problem"])
        return None

    def compare(self, host, source, set_id):
        """PRESENT when both stores hold the same manifest bytes for a set, else CONFLICT."""
        try:
            here = self.src.read_manifest_bytes(host, source, set_id)
        except (LifeboatError, OSError) as exc:
            return _State(REFUSED, "its manifest at the source is not usable: %s" % clause(_os_clause(exc)))
        try:
            there = self.dst.read_manifest_bytes(host, source, set_id)
        except (LifeboatError, OSError) as exc:
            return _State(CONFLICT, "the destination holds a set of that id whose manifest cannot be read (%s); "
                                    "it is never overwritten" % clause(_os_clause(exc)))
        if hashlib.sha256(here).digest() != hashlib.sha256(there).digest():
            return _State(CONFLICT, "the destination holds a set of that id with a different manifest; "
                                    "it is never overwritten")
        return _State(PRESENT)

    def local_state(self, host, source, set_id):
        """A set's state before its parents are looked at; QUEUED here means 'copyable if its parents are'."""
        key = (host, source, set_id)
        if key in self.states:
            return self.states[key]
        state = self.at_destination(host, source, set_id)
        if state is not None:
            return state
        src_listing = self.listing(self.src, host, source)
        if set_id not in src_listing.sets:
            for stray in src_listing.strays:
                if stray["name"] == set_id:
                    return _State(REFUSED, "it is not a usable set at the source: %s" % stray["problem"])
            return _State(ABSENT, "it is in neither store")
        manifest, reason = self.source_manifest(host, source, set_id)
        if manifest is None:
            return _State(REFUSED, reason)
        if manifest.get("trees"):
            reason = tree_refusal(self.src, self.dst)
            if reason is not None:
                return _State(REFUSED, reason)
        if self.accept is not None:
            try:
                self.accept(manifest)
            except LifeboatError as exc:
                return _State(REFUSED, "its manifest is not accepted: %s" % clause(exc))
        parent = manifest["parent_set_id"]
        if manifest["type"] == "differential" and set_type(parent) != "full":
            return _State(REFUSED, "it is a differential set whose parent %s is not a full set" % parent)
        return _State(QUEUED, manifest=manifest)

    def decide(self, host, source, set_id):
        """Decide a set and, when it is to be copied, every ancestor it needs; return its state."""
        key = (host, source, set_id)
        if key in self.states:
            return self.states[key]
        chain = []  # manifests to copy, child first
        seen = set()
        current = set_id
        while True:
            if current in seen:
                cause = "its chain loops at %s" % set_name(host, source, current)
                break
            seen.add(current)
            state = self.local_state(host, source, current)
            if state.kind != QUEUED or (host, source, current) in self.states:
                cause = None if state.kind in (PRESENT, QUEUED) else self.cause(host, source, current, state)
                if chain:
                    self.record(host, source, current, state, parent=True)
                break
            chain.append(state.manifest)
            current = state.manifest["parent_set_id"]
            if current is None:  # a full set: the chain starts here
                cause = None
                break
        if not chain:
            self.states[key] = state
            return state
        for manifest in chain:
            if cause is None:
                self.states[(host, source, manifest["set_id"])] = _State(QUEUED, manifest=manifest)
            else:
                self.states[(host, source, manifest["set_id"])] = _State(REFUSED, cause, inherited=cause)
        if cause is None:
            self.plan.copy.extend(reversed(chain))
        return self.states[key]

    @staticmethod
    def cause(host, source, set_id, state):
        """The reason a descendant of a set in ``state`` cannot be copied."""
        if state.inherited:
            return state.inherited
        name = set_name(host, source, set_id)
        if state.kind == ABSENT:
            return "it would be an orphan: its chain needs %s, which is in neither store" % name
        if state.kind == CONFLICT:
            return "its chain needs %s, which differs between the two stores" % name
        return "its chain needs %s, which cannot be copied (%s)" % (name, state.reason)

    def record(self, host, source, set_id, state, parent=False):
        """Enter a decided set in the plan's lists; a parent only when something is wrong with it."""
        key = (host, source, set_id)
        self.states.setdefault(key, state)
        if state.kind == PRESENT and not parent:
            self.plan.skipped[key] = {}
        elif state.kind == CONFLICT:
            self.plan.conflicts[key] = {"reason": state.reason}
        elif state.kind == REFUSED:
            self.plan.refused[key] = {"reason": state.reason}

    def select(self, host, source, set_id):
        self.record(host, source, set_id, self.decide(host, source, set_id))


def scope(store, host=None, source=None):
    """The (host, source) pairs a store holds under the filters, from names alone."""
    pairs = []
    for one_host in ([host] if host else store.hosts()):
        for one_source in ([source] if source else store.sources(one_host)):
            pairs.append((one_host, one_source))
    return pairs


def plan_copy(src, dst, host=None, source=None, set_id=None, accept=None):
    """Decide what to copy from ``src`` to ``dst``; reads names and manifests only.

    With ``set_id`` (which needs ``host`` and ``source``) that set is selected;
    otherwise every set of the sources under the filters (all hosts and sources
    when unset). A selected set missing at the destination is queued after the
    ancestors it needs that are missing there too (taken from ``src``).
    ``accept(manifest)``, when given, is asked about every set to be copied and
    raises LifeboatError to refuse one (a signature check, for instance).
    """
    planner = _Planner(src, dst, accept)
    if set_id:
        if not (host and source):
            raise LifeboatError("set_id %s needs host and source to name the set." % _stores.escape(set_id, 60))
        _stores.check_set_id(set_id)
        _manifest.check_name(host, "host")
        _manifest.check_name(source, "source")
        if (set_id not in planner.listing(src, host, source).sets
                and set_id not in planner.listing(dst, host, source).sets):
            raise LifeboatError("Set %s is not in the source store (or is incomplete)." % set_name(host, source, set_id))
        planner.select(host, source, set_id)
        return planner.plan
    for one_host, one_source in scope(src, host, source):
        listing = planner.listing(src, one_host, one_source)
        for stray in listing.strays:
            planner.plan.strays.append(dict(host=one_host, source=one_source, name=stray["name"],
                                            problem=stray["problem"]))
        for one_set in listing.sets:
            planner.select(one_host, one_source, one_set)
    return planner.plan


# ------------------------------------------------------------------ acting

def _write_all(sink, view):
    """Write all of ``view``; a sink may take it in parts (returning the count) or whole (returning None)."""
    while view:
        written = sink.write(view)
        if written is None or written >= len(view):
            return
        view = view[written:]


def copy_file(src, writer, manifest, entry, chunk=CHUNK):
    """Stream one payload file from the source into the writer; refuse it unless size and SHA-256 match.

    One buffer of ``chunk`` bytes carries every block. Reading stops as soon as
    the source gives more bytes than the manifest lists.
    """
    host, source, set_id, name = manifest["host"], manifest["source"], manifest["set_id"], entry["name"]
    try:
        reader = src.open_payload(host, source, set_id, name)
    except FileNotFoundError:
        raise CopyError("its file %s is missing at the source" % name)
    except (LifeboatError, OSError) as exc:
        raise CopyError("its file %s cannot be read at the source: %s" % (name, clause(_os_clause(exc))))
    try:
        sink = writer.open(name)
        try:
            digest = hashlib.sha256()
            size = 0
            expected = entry["size"]
            buffer = bytearray(chunk)
            view = memoryview(buffer)
            try:
                while True:
                    try:
                        count = reader.readinto(buffer)
                    except (LifeboatError, OSError) as exc:
                        raise CopyError("reading its file %s at the source failed: %s" % (name, clause(_os_clause(exc))))
                    if not count:
                        break
                    size += count
                    if size > expected:
                        raise CopyError("its file %s at the source is larger than its manifest says (%d bytes)"
                                        % (name, expected))
                    block = view[:count]
                    digest.update(block)
                    try:
                        _write_all(sink, block)
                    except OSError as exc:
                        raise CopyError("writing %s at the destination failed: %s" % (name, clause(sink.describe_error(exc))))
                    finally:
                        block.release()
            finally:
                view.release()
            if size != expected:
                raise CopyError("its file %s at the source is %d bytes, its manifest says %d" % (name, size, expected))
            if digest.hexdigest() != entry["sha256"]:
                raise CopyError("its file %s at the source does not match its manifest (SHA-256 mismatch)" % name)
            try:
                sink.close()
            except OSError as exc:
                raise CopyError("writing %s at the destination failed: %s" % (name, clause(sink.describe_error(exc))))
        except BaseException:
            sink.abort()
            raise
    finally:
        reader.close()
    return size


def _os_clause(exc):
    if isinstance(exc, OSError) and not isinstance(exc, LifeboatError):
        return exc.strerror or str(exc)
    return str(exc)


def copy_set(src, dst, planned, verify_source=True, chunk=CHUNK):
    """Copy one set whose parents are already at the destination; the caller holds the destination lock.

    The manifest is read again as raw bytes and must still say what the plan
    read; those very bytes are committed last.
    """
    host, source, set_id = planned["host"], planned["source"], planned["set_id"]
    try:
        raw = src.read_manifest_bytes(host, source, set_id)
        manifest = _manifest.loads(raw, "The manifest of set %s" % set_name(host, source, set_id))
    except (LifeboatError, OSError) as exc:
        raise CopyError("its manifest at the source is not usable: %s" % clause(exc))
    if manifest != planned:
        raise CopyError("its manifest at the source changed while the copy was planned; run the copy again")
    if verify_source:
        problems = src.verify_set(manifest)
        if problems:
            raise CopyError("it failed verification at the source (%s)" % _jobs.describe_problems(problems), problems)
    try:
        writer = dst.begin(host, source, set_id)
    except (LifeboatError, OSError) as exc:
        raise CopyError("it cannot be started at the destination: %s" % clause(_os_clause(exc)))
    try:
        for entry in manifest["files"]:
            copy_file(src, writer, manifest, entry, chunk)
        for tree in manifest.get("trees") or []:
            copy_tree(src, dst, writer, manifest, tree)
        try:
            writer.commit(raw, [entry["name"] for entry in manifest["files"]])
        except (LifeboatError, OSError) as exc:
            raise CopyError("committing it at the destination failed: %s" % clause(_os_clause(exc)))
    finally:
        writer.abort()
    return manifest["bytes"]


# ------------------------------------------------------------------ tree payloads

def tree_refusal(src, dst):
    """Why a set with tree payloads cannot go from ``src`` to ``dst`` (a clause), or None when it can.

    The copy rebuilds the tree in place at the destination (capability ``local_trees``: a directory on this host
    inside the set being written); the source only has to read trees (``trees``: read in place, or fetched).
    """
    for store, role, verb, capability in ((dst, "destination", "receive from a copy", "local_trees"),
                                          (src, "source", "read", "trees")):
        if capability not in store.capabilities:
            article = "an" if store.kind[:1] in "aeios" else "a"  # an s3, an ssh, a dir, a memory
            return ("it holds a tree payload (a snapshot stored as a directory tree), which the %s, %s %s store, "
                    "cannot %s (it lacks the %s capability); copy it into a dir store"
                    % (role, article, store.kind, verb, capability))
    return None


class _HashingRaw(io.RawIOBase):
    """A payload reader that hashes what is read from it and stops past the size its manifest gives."""

    def __init__(self, reader, name, limit):
        super(_HashingRaw, self).__init__()
        self.reader = reader
        self.name = name
        self.limit = limit
        self.digest = hashlib.sha256()
        self.size = 0

    def readable(self):
        return True

    def readinto(self, buffer):
        count = self.reader.readinto(buffer) or 0
        with memoryview(buffer) as view:
            self.digest.update(view[:count])
        self.size += count
        if self.size > self.limit:
            raise CopyError("its file %s at the source is larger than its manifest says (%d bytes)"
                            % (self.name, self.limit))
        return count

    def close(self):
        if not self.closed:
            self.reader.close()
        super(_HashingRaw, self).close()


def _open_list(src, manifest, name):
    """(hashing raw reader, buffered line reader) of a tree's index or links file at the source."""
    entry = [f for f in manifest["files"] if f["name"] == name][0]
    try:
        reader = src.open_payload(manifest["host"], manifest["source"], manifest["set_id"], name)
    except (LifeboatError, OSError) as exc:
        raise CopyError("its file %s cannot be read at the source: %s" % (name, clause(_os_clause(exc))))
    raw = _HashingRaw(reader, name, entry["size"])
    return raw, io.BufferedReader(raw, CHUNK), entry


def _check_list(raw, buffered, entry):
    """The whole list was read while the tree was copied: it must be the bytes its manifest lists."""
    while buffered.read(CHUNK):
        pass
    if raw.size != entry["size"] or raw.digest.hexdigest() != entry["sha256"]:
        raise CopyError("its file %s at the source does not match its manifest (size or SHA-256)" % entry["name"])


def _previous_copy(dst, host, source, set_id, tree):
    """The destination's newest older set of this source holding tree ``tree["name"]``: a _trees.Previous, or None.

    Only the newest older complete set is looked at; a manifest, tree or index there that does not read
    means no hard links (every file is copied).
    """
    try:
        older = [one for one in dst.listing(host, source).sets if one < set_id]
    except (LifeboatError, OSError):
        return None
    for candidate in sorted(older, reverse=True)[:1]:
        try:
            manifest = dst.read_manifest(host, source, candidate)
            trees = [t for t in manifest.get("trees") or [] if t["name"] == tree["name"]]
            if not trees:
                return None
            root = dst.open_tree(host, source, candidate, tree["name"])
        except (LifeboatError, OSError):
            return None
        try:
            reader = _stores.line_reader(dst.open_payload(host, source, candidate, trees[0]["index"]))
        except (LifeboatError, OSError):
            os.close(root)
            return None
        return _trees.Previous(root, reader)
    return None


class TreeCopy(object):
    """Rebuilds one tree of a set in the destination writer's tree directory (see the module docstring)."""

    def __init__(self, manifest, tree, out_root, previous, owners):
        self.manifest = manifest
        self.tree = tree
        self.out = out_root
        self.previous = previous
        self.owners = owners
        self.inodes = {}
        self.linked = 0
        self.written = 0

    def refuse(self, path, phrase):
        raise CopyError("its tree %s holds %s, which %s" % (self.tree["name"], _stores.escape(path), phrase))

    def run(self, root, entries, links):
        dirs = []
        for entry, listed, state in _trees.match(root, entries, links):
            if state == "missing":
                raise CopyError("its tree %s lacks %s, which its index or links file lists"
                                % (self.tree["name"], _stores.escape(listed["path"])))
            problem = _trees.entry_problem(entry, listed)
            if problem is not None:
                self.refuse(entry.path, _trees.describe(entry, listed, problem))
            if entry.kind == "dir":
                os.mkdir(entry.path, 0o700, dir_fd=self.out)
                dirs.append((entry.path, entry.st, _trees.entry_xattrs(entry)))
            elif entry.kind == "symlink":
                os.symlink(listed["target"], entry.path, dir_fd=self.out)
                if self.owners:
                    os.chown(entry.path, entry.st.st_uid, entry.st.st_gid, dir_fd=self.out, follow_symlinks=False)
                os.utime(entry.path, ns=(entry.st.st_atime_ns, entry.st.st_mtime_ns), dir_fd=self.out,
                         follow_symlinks=False)
            else:
                self.file(entry, listed)
        for path, st, xattrs in reversed(dirs):  # deepest first: filling a directory changes its mtime
            fd = os.open(path, _trees.DIR_FLAGS, dir_fd=self.out)
            try:
                _trees.apply_metadata(fd, st, xattrs, stat.S_IMODE(st.st_mode), self.owners)
            finally:
                os.close(fd)
        top = os.fstat(root)
        _trees.apply_metadata(self.out, top, [], stat.S_IMODE(top.st_mode), self.owners)

    def _link_previous(self, entry, listed):
        """Hard-link ``entry`` to the destination's previous copy when that holds the same file; True if done."""
        if self.previous is None:
            return False
        known = self.previous.listed(entry.key)
        if known is None or known[3] != listed["sha256"] or known[2] != listed["size"]:
            return False
        found = self.previous.lstat(entry.path, entry.key)
        if found is None:
            return False
        dir_fd, st = found
        if (not stat.S_ISREG(st.st_mode) or st.st_size != listed["size"] or stat.S_IMODE(st.st_mode) != listed["mode"]
                or st.st_mtime_ns != entry.st.st_mtime_ns
                or (self.owners and (st.st_uid, st.st_gid) != (entry.st.st_uid, entry.st.st_gid))):
            return False
        try:
            os.link(entry.name, entry.path, src_dir_fd=dir_fd, dst_dir_fd=self.out, follow_symlinks=False)
        except OSError:
            return False  # too many links, another file system: the file is copied
        return True

    def file(self, entry, listed):
        key = (entry.st.st_dev, entry.st.st_ino)
        first = self.inodes.get(key)
        if first is not None and first[1] == listed["sha256"]:
            os.link(first[0], entry.path, src_dir_fd=self.out, dst_dir_fd=self.out, follow_symlinks=False)
            return
        if self._link_previous(entry, listed):
            self.linked += 1
        else:
            self._write(entry, listed)
            self.written += 1
        if entry.st.st_nlink > 1:
            self.inodes[key] = (entry.path, listed["sha256"])

    _REFUSALS = {"unreadable": "is no longer a regular file that can be read",
                 "mismatch": "does not match the size and SHA-256 in its index"}

    def _write(self, entry, listed):
        _trees.copy_listed_file(
            entry, listed, self.out, lambda reason: self.refuse(entry.path, self._REFUSALS[reason]),
            lambda out, xattrs: _trees.apply_metadata(out, entry.st, xattrs, listed["mode"], self.owners))


def copy_tree(src, dst, writer, manifest, tree, owners=None):
    """Copy tree ``tree`` of a set into ``writer`` (see TreeCopy); every file checked against the index."""
    host, source, set_id, name = manifest["host"], manifest["source"], manifest["set_id"], tree["name"]
    owners = (os.geteuid() == 0) if owners is None else owners
    names = [f["name"] for f in manifest["files"]]
    try:
        target = writer.tree(name)
        os.mkdir(target.path, 0o700)
        out = os.open(target.path, _trees.DIR_FLAGS)
    except (LifeboatError, OSError) as exc:
        raise CopyError("its tree %s cannot be started at the destination: %s" % (name, clause(_os_clause(exc))))
    opened = []
    done = False
    try:
        try:
            root = src.open_tree(host, source, set_id, name)
        except (LifeboatError, OSError) as exc:
            raise CopyError("its tree %s cannot be opened at the source: %s" % (name, clause(_os_clause(exc))))
        opened.append(lambda: os.close(root))
        index_raw, index, index_entry = _open_list(src, manifest, tree["index"])
        opened.append(index.close)
        entries = _manifest.read_index(index, tree, "The index of tree %s" % _stores.escape(name))
        links, links_raw, links_entry = [], None, None
        if _trees.links_name(name) in names:
            links_raw, links_buffered, links_entry = _open_list(src, manifest, _trees.links_name(name))
            opened.append(links_buffered.close)
            links = _trees.read_links(links_buffered, "The links file of tree %s" % _stores.escape(name))
        previous = _previous_copy(dst, host, source, set_id, tree) if "hard_links" in dst.capabilities else None
        if previous is not None:
            opened.append(previous.close)
        copier = TreeCopy(manifest, tree, out, previous, owners)
        try:
            copier.run(root, entries, links)
        except _manifest.ManifestError as exc:
            raise CopyError(clause(exc))
        except OSError as exc:
            raise CopyError("copying its tree %s failed: %s" % (name, clause(_stores.describe_os_error(
                exc, "the tree at the destination"))))
        _check_list(index_raw, index, index_entry)
        if links_raw is not None:
            _check_list(links_raw, links_buffered, links_entry)
        done = True
        return copier
    finally:
        for close in reversed(opened):
            close()
        src.release_trees()  # a source that fetched the tree into a local copy (ssh) removes it
        os.close(out)
        if not done:  # a copy never resumes: what it wrote is not kept for a later run
            shutil.rmtree(target.path, ignore_errors=True)


def summary(manifest):
    return dict(host=manifest["host"], source=manifest["source"], set_id=manifest["set_id"],
                type=manifest["type"], bytes=manifest["bytes"])


def execute(src, dst, plan, verify_source=True, check_mode=False, chunk=CHUNK, clock=time.monotonic):
    """Carry out a plan (or, in check mode, report it); return the result fields of backup_copy."""
    started = clock()
    copied, removed, stale = [], [], []
    skipped, conflicts, refused = dict(plan.skipped), dict(plan.conflicts), dict(plan.refused)
    if check_mode:
        copied = [summary(m) for m in plan.copy]
    else:
        groups = {}  # (host, source) -> manifests, parents first (dicts keep insertion order)
        for manifest in plan.copy:
            groups.setdefault((manifest["host"], manifest["source"]), []).append(manifest)
        for (host, source), manifests in groups.items():
            _copy_source(src, dst, host, source, manifests, verify_source, chunk,
                         copied, removed, stale, skipped, conflicts, refused)
    result = dict(
        changed=bool(copied or removed),
        copied=copied,
        skipped=_entries(skipped),
        conflicts=_entries(conflicts),
        refused=_entries(refused),
        strays=list(plan.strays),
        bytes=sum(item["bytes"] for item in copied),
        duration_s=round(clock() - started, 3),
    )
    if not check_mode:
        result["removed_partials"] = removed
        result["stale_locks"] = stale
    return result


def _entries(table):
    return [dict(host=k[0], source=k[1], set_id=k[2], **v) for k, v in sorted(table.items())]


def _copy_source(src, dst, host, source, manifests, verify_source, chunk,
                 copied, removed, stale, skipped, conflicts, refused):
    """Copy one source's queued sets under the destination's lock for that source."""
    failed = set()
    done = 0
    try:
        lock = dst.lock(host, source)
        with lock:
            if lock.stale:
                stale.append(dict(lock.stale, host=host, source=source))
            for name in dst.remove_partials(host, source):
                removed.append(dict(host=host, source=source, name=name))
            # Look again under the lock: another copy may have written some of these sets meanwhile.
            fresh = _Planner(src, dst)
            for manifest in manifests:
                _copy_one(src, dst, lock, fresh, manifest, verify_source, chunk, failed,
                          copied, skipped, conflicts, refused)
                done += 1
    except _stores.LockedError as exc:
        reason = "the destination is locked: %s" % clause(exc)
    except (LifeboatError, OSError) as exc:
        reason = "the destination could not be prepared: %s" % clause(_os_clause(exc))
    else:
        return
    for manifest in manifests[done:]:
        refused[(host, source, manifest["set_id"])] = {"reason": reason}


def _copy_one(src, dst, lock, fresh, manifest, verify_source, chunk, failed, copied, skipped, conflicts, refused):
    host, source, set_id = manifest["host"], manifest["source"], manifest["set_id"]
    key = (host, source, set_id)
    parent = manifest["parent_set_id"]
    if parent in failed:
        failed.add(set_id)
        refused[key] = {"reason": "its parent %s was not copied" % set_name(host, source, parent)}
        return
    state = fresh.at_destination(host, source, set_id)
    if state is not None:
        if state.kind == PRESENT:
            skipped[key] = {}
        else:
            failed.add(set_id)
            (conflicts if state.kind == CONFLICT else refused)[key] = {"reason": state.reason}
        return
    try:
        lock.update(set_id)
        copy_set(src, dst, manifest, verify_source, chunk)
    except CopyError as exc:
        failed.add(set_id)
        entry = {"reason": clause(exc)}
        if exc.problems:
            entry["problems"] = exc.problems
        refused[key] = entry
        return
    except (LifeboatError, OSError) as exc:
        failed.add(set_id)
        refused[key] = {"reason": clause(_os_clause(exc))}
        return
    copied.append(summary(manifest))


def failure_message(result, limit=MESSAGE_SETS):
    """One sentence naming the sets that were not copied and the conflicts, at most ``limit`` of them."""
    bad = ([("%s/%s/%s: %s" % (e["host"], e["source"], e["set_id"], e["reason"])) for e in result["refused"]]
           + [("%s/%s/%s: %s" % (e["host"], e["source"], e["set_id"], e["reason"])) for e in result["conflicts"]])
    shown = "; ".join(bad[:limit])
    if len(bad) > limit:
        shown += "; and %d more (see refused and conflicts)" % (len(bad) - limit)
    return "%d set(s) copied, %d not copied: %s." % (len(result["copied"]), len(bad), shown)
