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

No kind is named here: every kind of store works on either side.
"""

from __future__ import annotations

import hashlib
import time

from ansible_collections.lifeboat.backup.plugins.module_utils._common import LifeboatError
from ansible_collections.lifeboat.backup.plugins.module_utils import _jobs
from ansible_collections.lifeboat.backup.plugins.module_utils import _manifest
from ansible_collections.lifeboat.backup.plugins.module_utils import _stores

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
            return _State(REFUSED, "it holds tree payloads, which backup_copy does not copy yet")
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
        try:
            writer.commit(raw, [entry["name"] for entry in manifest["files"]])
        except (LifeboatError, OSError) as exc:
            raise CopyError("committing it at the destination failed: %s" % clause(_os_clause(exc)))
    finally:
        writer.abort()
    return manifest["bytes"]


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
