# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils is PRIVATE to this collection. It may change without notice.

"""Retention planning: which sets a policy keeps, which it deletes, and why.

Pure: it works on manifests, leftover names and the clock ``now`` it is given,
never on a store. docs/retention.md states the rules; in short:

- only *restorable* sets (chain complete, not dated in the future) are chosen
  by the rules; a set whose chain is broken, or that is dated in the future,
  is kept and reported, never deleted by retention;
- the newest restorable set is always kept;
- every rule adds sets; ``min_keep`` is a floor; then every set a kept set
  depends on (its parent, the parent's parent, ...) is kept too;
- a set carrying the ``hold`` label, or under Object Lock, is kept;
- a source whose newest attempt is not a complete set (a ``.partial`` newer
  than its newest set, or a failure record ``attempts/<set_id>.failed`` in its
  object namespace), or whose newest set has not reached the stores the policy
  waits for, deletes nothing.
"""

from __future__ import annotations

import datetime
import io
import json

from ansible_collections.lifeboat.backup.plugins.module_utils._common import (
    LifeboatError,
    format_ts,
    parse_duration,
    utcnow,
)
from ansible_collections.lifeboat.backup.plugins.module_utils import _manifest

COUNT_RULES = ("keep_last", "keep_hourly", "keep_daily", "keep_weekly", "keep_monthly", "keep_yearly")
GFS_RULES = (("keep_hourly", "hour"), ("keep_daily", "day"), ("keep_weekly", "week"),
             ("keep_monthly", "month"), ("keep_yearly", "year"))
POLICY_KEYS = COUNT_RULES + ("keep_within", "min_keep")
MAX_COUNT = 1000000
HOLD_LABEL = "hold"
# The object namespace: failure records, and how a set names the objects it needs.
FAILURE_PREFIX = "attempts/"
FAILURE_SUFFIX = ".failed"
OBJECTS_PREFIX_KEY = "objects_prefix"
OBJECTS_FROM_KEY = "objects_from"
OBJECTS_KEEP_KEY = "objects_keep"
LEFTOVER_SUFFIXES = (".partial", ".deleting", ".upload")


class PolicyError(LifeboatError):
    """A retention policy is not valid."""


def check_policy(policy, what="policy"):
    """A normalised policy: counts (int or None), ``keep_within_s`` (float or None), ``min_keep`` (int).

    Raises PolicyError with one sentence for anything else, and for a policy that keeps nothing.
    """
    if not isinstance(policy, dict):
        raise PolicyError("The %s must be a dictionary such as {keep_daily: 7}." % what)
    unknown = sorted(str(k) for k in policy if k not in POLICY_KEYS)
    if unknown:
        raise PolicyError("The %s has unknown rule(s) %s; use %s." % (what, ", ".join(unknown), ", ".join(POLICY_KEYS)))
    result = {}
    for key in COUNT_RULES + ("min_keep",):
        value = policy.get(key)
        if value is None:
            result[key] = None
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            try:
                if isinstance(value, bool) or float(value) != int(value):
                    raise ValueError
                value = int(value)
            except (TypeError, ValueError, OverflowError):
                raise PolicyError("%s in the %s must be a whole number, not %r." % (key, what, value))
        if value < 0:
            raise PolicyError("%s in the %s must be zero or more, not %d." % (key, what, value))
        if value > MAX_COUNT:
            raise PolicyError("%s in the %s must be at most %d, not %d." % (key, what, MAX_COUNT, value))
        result[key] = value
    try:
        within = parse_duration(policy.get("keep_within"), "keep_within in the %s" % what)
    except LifeboatError as exc:
        raise PolicyError(str(exc))
    result["keep_within_s"] = within
    result["min_keep"] = result["min_keep"] or 0
    if not any(result[k] for k in COUNT_RULES) and not within:
        raise PolicyError("The %s keeps nothing: give at least one of %s above zero, or keep_within."
                          % (what, ", ".join(COUNT_RULES)))
    return result


def bucket(when, unit):
    """The GFS bucket of a UTC time: hour, day, ISO week (Monday to Sunday), month or year."""
    when = when.astimezone(datetime.timezone.utc)
    if unit == "hour":
        return "%04d-%02d-%02dT%02d" % (when.year, when.month, when.day, when.hour)
    if unit == "day":
        return "%04d-%02d-%02d" % (when.year, when.month, when.day)
    if unit == "week":
        iso = when.isocalendar()
        return "%04d-W%02d" % (iso[0], iso[1])
    if unit == "month":
        return "%04d-%02d" % (when.year, when.month)
    if unit == "year":
        return "%04d" % when.year
    raise ValueError(unit)


def leftover_set_id(name):
    """The set id a leftover name starts with (``<id>.partial``, ``<id>.deleting``, ``<id>/<file>.upload``), or None."""
    head = str(name).split("/", 1)[0]
    for suffix in (".partial", ".deleting"):
        if head.endswith(suffix):
            head = head[:-len(suffix)]
    return head if _manifest.SET_ID_RE.match(head) else None


def is_deletion_leftover(name):
    """True for a half-deleted set (``.deleting``): a deletion to finish, never a failed attempt."""
    return str(name).endswith(".deleting")


def failure_object_name(set_id):
    return FAILURE_PREFIX + set_id + FAILURE_SUFFIX


def failure_set_id(name):
    """The set id of a failure record's object name, or None."""
    if not name.startswith(FAILURE_PREFIX) or not name.endswith(FAILURE_SUFFIX):
        return None
    set_id = name[len(FAILURE_PREFIX):-len(FAILURE_SUFFIX)]
    return set_id if _manifest.SET_ID_RE.match(set_id) else None


def failure_record(set_id, error, now=None):
    """The bytes of a failure record: set id, time and the error sentence."""
    return json.dumps({"set_id": set_id, "failed_at": format_ts(now or utcnow()), "error": str(error)[:2000]},
                      sort_keys=True).encode("utf-8")


def _time(set_id):
    return _manifest.set_id_time(set_id)


def _chain_states(sets, now, tolerance_s):
    """set_id -> None when restorable, else the reason it is not (broken chain or future-dated)."""
    from ansible_collections.lifeboat.backup.plugins.module_utils import _catalog
    index = dict((m["set_id"], m) for m in sets)
    states = {}

    def state_of(set_id):
        path = []
        current = set_id
        while current not in states:
            manifest = index[current]
            if _catalog.is_future(manifest, now, tolerance_s):
                states[current] = "it is dated in the future (a wrong clock or a forged set); it is left alone"
                break
            if manifest["type"] == "full":
                states[current] = None
                break
            parent = manifest["parent_set_id"]
            if parent not in index:
                states[current] = "its chain is broken (parent %s is missing); it is left for an operator" % parent
                break
            if parent in path or parent == current:
                states[current] = "its chain loops at %s; it is left for an operator" % parent
                break
            if manifest["type"] == "differential" and index[parent]["type"] != "full":
                states[current] = "it is a differential whose parent %s is not a full; it is left for an operator" % parent
                break
            path.append(current)
            current = parent
        result = states[current]
        for member in reversed(path):
            if member not in states:
                states[member] = None if result is None else (
                    "its chain is broken (%s cannot be restored); it is left for an operator" % current)
        return states[set_id]

    for manifest in sets:
        state_of(manifest["set_id"])
    return states


def plan_source(sets, policy, now=None, leftovers=(), failures=(), locks=None, waiting=None, tolerance_s=None):
    """The retention plan of one source.

    ``sets``: the manifests of its complete sets. ``policy``: from check_policy. ``leftovers``: names of its
    ``.partial`` / ``.deleting`` / ``.upload`` leftovers. ``failures``: set ids of failure records.
    ``locks``: set_id -> a sentence describing its Object Lock. ``waiting``: a sentence when its newest set
    has not reached the stores the policy waits for, else None.

    Returns {"blocked": sentence or None, "sets": [{set_id, type, parent_set_id, action, reasons}]},
    newest first; deletions are ordered newest first so that a child always goes before its parent.
    """
    from ansible_collections.lifeboat.backup.plugins.module_utils import _catalog
    now = now or utcnow()
    tolerance_s = _catalog.FUTURE_TOLERANCE_S if tolerance_s is None else tolerance_s
    locks = locks or {}
    ordered = sorted(sets, key=lambda m: (_time(m["set_id"]), m["set_id"]), reverse=True)
    index = dict((m["set_id"], m) for m in ordered)
    reasons = dict((m["set_id"], []) for m in ordered)
    states = _chain_states(ordered, now, tolerance_s)
    restorable = [m for m in ordered if states[m["set_id"]] is None]

    def keep(set_id, reason):
        if reason not in reasons[set_id]:
            reasons[set_id].append(reason)

    for manifest in ordered:
        if states[manifest["set_id"]] is not None:
            keep(manifest["set_id"], states[manifest["set_id"]])
        labels = manifest.get("labels") or {}
        if HOLD_LABEL in labels:
            keep(manifest["set_id"], "it carries the hold label (%s)" % labels[HOLD_LABEL])
        if manifest["set_id"] in locks:
            keep(manifest["set_id"], locks[manifest["set_id"]])
    if restorable:
        keep(restorable[0]["set_id"], "it is the newest complete set")
    if policy.get("keep_last"):
        for manifest in restorable[:policy["keep_last"]]:
            keep(manifest["set_id"], "keep_last %d" % policy["keep_last"])
    for rule, unit in GFS_RULES:
        count = policy.get(rule)
        if not count:
            continue
        seen = set()
        for manifest in restorable:
            name = bucket(_time(manifest["set_id"]), unit)
            if name in seen:
                continue
            seen.add(name)
            if len(seen) > count:
                break
            keep(manifest["set_id"], "%s %d: the newest set of %s %s" % (rule, count, unit, name))
    within = policy.get("keep_within_s")
    if within:
        limit = now - datetime.timedelta(seconds=within)
        for manifest in restorable:
            if _time(manifest["set_id"]) >= limit:
                keep(manifest["set_id"], "keep_within: started within %s of now" % _describe_seconds(within))

    def close_over_parents():
        for manifest in ordered:
            if not reasons[manifest["set_id"]]:
                continue
            child = manifest
            seen = set([child["set_id"]])
            while child["type"] != "full" and child["parent_set_id"] in index and child["parent_set_id"] not in seen:
                parent = child["parent_set_id"]
                keep(parent, "set %s depends on it" % child["set_id"])
                seen.add(parent)
                child = index[parent]

    close_over_parents()
    floor = policy.get("min_keep") or 0
    kept_restorable = sum(1 for m in restorable if reasons[m["set_id"]])
    if kept_restorable < floor:
        for manifest in restorable:
            if kept_restorable >= floor:
                break
            if not reasons[manifest["set_id"]]:
                keep(manifest["set_id"], "min_keep %d" % floor)
                close_over_parents()
                kept_restorable = sum(1 for m in restorable if reasons[m["set_id"]])

    blocked = None
    # A set dated in the future must not make a failed attempt look old.
    current = [m for m in ordered if not _catalog.is_future(m, now, tolerance_s)]
    newest = _time(current[0]["set_id"]) if current else None
    complete_ids = set(index)
    attempts = [(leftover_set_id(name), "%s is left by a run that failed or is still running" % name)
                for name in leftovers if not is_deletion_leftover(name)]
    attempts += [(set_id, "the backup attempt %s failed (record %s)" % (set_id, failure_object_name(set_id)))
                 for set_id in failures]
    for set_id, sentence in sorted((a for a in attempts if a[0]), reverse=True):
        if set_id in complete_ids:
            continue
        if newest is None or _time(set_id) >= newest:
            blocked = "The newest attempt did not complete: %s; nothing is deleted until a newer set completes." % sentence
            break
    if blocked is None and waiting:
        blocked = waiting

    entries = []
    for manifest in ordered:
        set_id = manifest["set_id"]
        if reasons[set_id]:
            action = "keep"
        elif blocked:
            action, reasons[set_id] = "keep", [blocked]
        else:
            action, reasons[set_id] = "delete", ["no rule keeps it"]
        entries.append({
            "set_id": set_id,
            "type": manifest["type"],
            "parent_set_id": manifest["parent_set_id"],
            "action": action,
            "reasons": reasons[set_id],
        })
    return {"blocked": blocked, "sets": entries}


def _describe_seconds(seconds):
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return "%d%s" % (seconds // size, unit)
    return "%gs" % seconds


def plan(manifests, policy, now=None, leftovers=(), failures=(), locks=None, waiting=None):
    """The plan over many sources: {"host/source": plan_source(...)} for every source seen.

    ``leftovers`` and ``failures`` are dicts "host/source" -> names / set ids; ``locks`` "host/source" ->
    {set_id: sentence}; ``waiting`` "host/source" -> sentence.
    """
    from ansible_collections.lifeboat.backup.plugins.module_utils import _catalog
    now = now or utcnow()
    groups = _catalog.by_source(manifests)
    for key in list(leftovers or {}) + list(failures or {}):
        groups.setdefault(key, [])
    result = {}
    for key in sorted(groups):
        result[key] = plan_source(groups[key], policy, now, (leftovers or {}).get(key, ()),
                                  (failures or {}).get(key, ()), (locks or {}).get(key),
                                  (waiting or {}).get(key))
    return result


def needed_objects(kept):
    """prefix -> the first object name (under that prefix) the kept sets need; later names are needed too.

    A set names the objects it needs through two keys of its manifest's ``position``:
    ``objects_prefix`` (like ``wal/``) and ``objects_from`` (the first name under it, like the WAL segment
    its backup started in). Objects under a prefix no kept set names are not judged.
    """
    needed = {}
    for manifest in kept:
        position = manifest.get("position") or {}
        prefix, first = position.get(OBJECTS_PREFIX_KEY), position.get(OBJECTS_FROM_KEY)
        if not isinstance(prefix, str) or not isinstance(first, str) or not prefix:
            continue
        if prefix not in needed or first < needed[prefix]:
            needed[prefix] = first
    return needed


def kept_suffixes(kept):
    """prefix -> markers of names a kept set needs whatever their order (``objects_keep``: comma-separated
    texts, like ``.history``; a name under the prefix that contains one is kept)."""
    suffixes = {}
    for manifest in kept:
        position = manifest.get("position") or {}
        prefix, keep = position.get(OBJECTS_PREFIX_KEY), position.get(OBJECTS_KEEP_KEY)
        if isinstance(prefix, str) and prefix and isinstance(keep, str) and keep:
            suffixes.setdefault(prefix, set()).update(part for part in keep.split(",") if part)
    return suffixes


def prunable_objects(names, kept, newest_set_id=None):
    """Object names no kept set needs: below the first needed name of a judged prefix (unless a kept set
    marks them with ``objects_keep``), and failure records older than ``newest_set_id`` (the newest
    complete set). Sorted."""
    needed = needed_objects(kept)
    always = kept_suffixes(kept)
    newest = _time(newest_set_id) if newest_set_id else None
    doomed = []
    for name in names:
        failed = failure_set_id(name)
        if failed is not None:
            if newest is not None and _time(failed) < newest:
                doomed.append(name)
            continue
        for prefix, first in needed.items():
            if name.startswith(prefix) and any(mark in name[len(prefix):] for mark in always.get(prefix, ())):
                continue
            if name.startswith(prefix) and name[len(prefix):] < first:
                doomed.append(name)
                break
    return sorted(doomed)


# ------------------------------------------------------------------ applying a plan to a store
#
# Not pure: these functions read and change a store, through its contract only (docs/stores.md).

JOURNAL_PREFIX = "retention/deleting/"
DEFAULT_LEFTOVER_AGE_S = 86400.0


def lock_sentence(info):
    """A sentence for a set's immutability ({mode, until, legal_hold}), as a keep reason."""
    parts = []
    if info.get("mode"):
        until = info.get("until")
        parts.append("it is under Object Lock (%s)%s" % (info["mode"], " until %s" % format_ts(until) if until else ""))
    if info.get("legal_hold"):
        parts.append("it is under an Object Lock legal hold")
    return " and ".join(parts) or "it is under Object Lock"


def select_sources(store, host=None, sources=None):
    """(host, source) pairs of the store under the filters, sorted."""
    hosts = [host] if host else store.hosts()
    pairs = []
    for one_host in hosts:
        names = store.sources(one_host)
        for name in names:
            if not sources or name in sources:
                pairs.append((one_host, name))
    return sorted(pairs)


def inspect_source(store, host, source, policy, now, wait_for=()):
    """Read one source and plan it: (plan, manifests, object names, leftover names)."""
    from ansible_collections.lifeboat.backup.plugins.module_utils import _catalog
    sets, dummy, partials = _catalog.scan(store, host, source)
    leftovers = [p["name"] for p in partials]
    objects = store.list_objects(host, source)
    failures = [s for s in (failure_set_id(n) for n in objects) if s]
    result = plan_source(sets, policy, now, leftovers, failures)
    newest = [e["set_id"] for e in result["sets"] if "it is the newest complete set" in e["reasons"]]
    waiting = None
    if newest and not result["blocked"]:
        for other in wait_for:
            try:
                present = newest[0] in other.listing(host, source).sets
            except (LifeboatError, OSError) as exc:
                waiting = "The store %s, which this policy waits for, could not be read (%s); nothing is deleted." % (
                    other.location(), str(exc).rstrip("."))
                break
            if not present:
                waiting = ("The newest set %s has not reached %s yet; nothing is deleted until it is copied there."
                           % (newest[0], other.location(host, source)))
                break
    locks = {}
    if not result["blocked"] and not waiting:
        for entry in result["sets"]:
            if entry["action"] == "delete":
                info = store.set_retention(host, source, entry["set_id"])
                if info:
                    locks[entry["set_id"]] = lock_sentence(info)
    if waiting or locks:
        result = plan_source(sets, policy, now, leftovers, failures, locks=locks, waiting=waiting)
    return result, sets, objects, leftovers


def classify_leftovers(leftovers, journal, newest_set_id, now, older_than_s):
    """(removable, kept): leftover names that may go now, and {name, reason} for the others."""
    newest = _time(newest_set_id) if newest_set_id else None
    limit = now - datetime.timedelta(seconds=older_than_s)
    removable, kept_back = [], []
    for name in leftovers:
        set_id = leftover_set_id(name)
        if is_deletion_leftover(name) or (set_id and set_id in journal):
            removable.append(name)
        elif set_id is None:
            kept_back.append({"name": name, "reason": "its name holds no set id; it is left for an operator"})
        elif newest is None or _time(set_id) >= newest:
            kept_back.append({"name": name, "reason": "it is the newest attempt of the source, kept as the evidence "
                                                      "that it did not complete until a newer set completes"})
        elif _time(set_id) > limit:
            kept_back.append({"name": name, "reason": "it is younger than leftovers_older_than"})
        else:
            removable.append(name)
    return removable, kept_back


def external_releasers(manifest, releasers):
    """The releasers (objects with ``kinds``, ``check`` and ``release``) for the external references of ``manifest``."""
    kinds = set(ref.get("kind") for ref in manifest.get("external") or [])
    return [r for r in releasers or () if kinds.intersection(r.kinds)]


def check_external(manifest, releasers):
    """Why the external references of ``manifest`` cannot be released now (a list of sentences; empty: they can)."""
    problems = []
    for releaser in external_releasers(manifest, releasers):
        try:
            problems += releaser.check(manifest)
        except LifeboatError as exc:
            problems.append(str(exc).rstrip("."))
    return problems


def apply_source(store, host, source, policy, now, wait_for=(), leftover_age_s=DEFAULT_LEFTOVER_AGE_S,
                 prune_objects=True, check_mode=False, releasers=()):
    """Plan one source and, unless ``check_mode``, carry the plan out under the source's lock.

    Deletions go newest first (a child before its parent), each recorded in the journal
    ``retention/deleting/<set_id>`` of the object namespace before ``delete_set`` and cleared after, so a
    run that dies part-way leaves a half-deleted set that never looks complete and that the next run finishes
    and reports. Returns the source's report.

    ``releasers`` release what a set refers to but does not hold (its external references: volume
    snapshots) before the set is deleted: a set whose references cannot all be released (``check``) is
    kept, with its parents, and reported in ``external_kept``; what was released is in ``external_released``.
    """
    report = {"host": host, "source": source, "blocked": None, "plan": [], "deleted": [], "objects_pruned": [],
              "leftovers_removed": [], "leftovers_kept": [], "deletions_finished": [], "stale_lock": None,
              "external_released": [], "external_kept": []}

    def work():
        result, sets, objects, leftovers = inspect_source(store, host, source, policy, now, wait_for)
        report["blocked"] = result["blocked"]
        report["plan"] = [dict(entry, host=host, source=source) for entry in result["sets"]]
        by_id = dict((m["set_id"], m) for m in sets)
        kept_sets = [by_id[e["set_id"]] for e in result["sets"] if e["action"] == "keep"]
        newest = [e["set_id"] for e in result["sets"] if "it is the newest complete set" in e["reasons"]]
        newest = newest[0] if newest else None
        journal = set(n[len(JOURNAL_PREFIX):] for n in objects if n.startswith(JOURNAL_PREFIX))
        removable, kept_back = classify_leftovers(leftovers, journal, newest, now, leftover_age_s)
        report["leftovers_kept"] = kept_back
        doomed_objects = []
        if prune_objects and not result["blocked"]:
            doomed_objects = [n for n in prunable_objects(objects, kept_sets, newest) if not n.startswith(JOURNAL_PREFIX)]
        doomed = [e["set_id"] for e in result["sets"] if e["action"] == "delete"]
        held = set()
        for set_id in doomed:  # newest first: a set kept back keeps its parents too
            problems = [] if set_id in held else check_external(by_id[set_id], releasers)
            if problems or set_id in held:
                parent = by_id[set_id].get("parent_set_id")
                while parent and parent in by_id and parent not in held:
                    held.add(parent)
                    parent = by_id[parent].get("parent_set_id")
                held.add(set_id)
            for problem in problems:
                report["external_kept"].append({"set_id": set_id, "reason": problem})
        if held:
            doomed = [s for s in doomed if s not in held]
            for entry in report["plan"]:
                if entry["set_id"] in held and entry["action"] == "delete":
                    entry["action"] = "keep"
                    entry["reasons"] = list(entry["reasons"]) + [
                        "its external references cannot be released now (see external_kept)"]
            kept_sets += [by_id[s] for s in sorted(held)]
            if doomed_objects:
                doomed_objects = [n for n in prunable_objects(objects, kept_sets, newest)
                                  if not n.startswith(JOURNAL_PREFIX)]
        if check_mode:
            for set_id in doomed:
                for ref in by_id[set_id].get("external") or []:
                    for releaser in external_releasers({"external": [ref]}, releasers):
                        planned = getattr(releaser, "planned", None)
                        try:
                            item = planned(by_id[set_id], ref) if planned else {
                                "kind": ref["kind"], "id": ref["id"], "location": ref.get("location")}
                        except LifeboatError:
                            item = None  # the real run reports it in external_kept
                        if item:
                            report["external_released"].append(dict(item, set_id=set_id))
                        break
            report["deleted"] = doomed
            report["objects_pruned"] = doomed_objects
            report["leftovers_removed"] = removable if not kept_back else []
            report["deletions_finished"] = sorted(journal)
            return
        for set_id in doomed:
            mark = JOURNAL_PREFIX + set_id
            if set_id not in journal:  # a mark left by a run that died before hiding the set is reused
                store.put_object(host, source, mark, io.BytesIO(json.dumps({"set_id": set_id}).encode("utf-8")))
            problems = []
            for releaser in external_releasers(by_id[set_id], releasers):
                released, failed = releaser.release(by_id[set_id])
                report["external_released"] += [dict(item, set_id=set_id) for item in released]
                problems += failed
            if problems:  # the set stays complete: the next run tries again
                report["external_kept"] += [{"set_id": set_id, "reason": p} for p in problems]
                if set_id not in journal:  # a mark found in the journal is cleared below
                    store.delete_object(host, source, mark)
                continue
            store.delete_set(host, source, set_id)
            store.delete_object(host, source, mark)
            report["deleted"].append(set_id)
        for name in doomed_objects:
            store.delete_object(host, source, name)
            report["objects_pruned"].append(name)
        if removable and not kept_back:
            report["leftovers_removed"] = store.remove_partials(host, source)
        elif removable:
            # remove_partials takes every leftover of a source; with some kept back, the rest waits too.
            report["leftovers_kept"] += [{"name": n, "reason": "it is removed once the leftovers kept beside it go"}
                                         for n in removable]
        after = store.listing(host, source)
        pending = set(leftover_set_id(n) for n in after.partials)
        for set_id in sorted(journal):
            if set_id in pending:
                continue  # still half-deleted: its leftover is kept back above, the mark stays
            store.delete_object(host, source, JOURNAL_PREFIX + set_id)
            if set_id not in after.sets:
                report["deletions_finished"].append(set_id)

    if check_mode:
        work()
    else:
        lock = store.lock(host, source)
        with lock:
            report["stale_lock"] = lock.stale
            work()
    return report
