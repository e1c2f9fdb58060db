# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils is PRIVATE to this collection. It may change without notice.

"""The catalog: what complete sets a store holds, chains, selection, age and RPO.

Everything here works on manifests, never on engine details, and takes the
clock as ``now`` so that it can be tested without waiting.
"""

from __future__ import annotations

import functools
import gc

from ansible_collections.lifeboat.backup.plugins.module_utils import _common
from ansible_collections.lifeboat.backup.plugins.module_utils import _manifest
from ansible_collections.lifeboat.backup.plugins.module_utils._common import LifeboatError, utcnow

# The same set's times are read many times over (future check, age, RPO, selection): parse each text once.
# Both return immutable datetimes; a failure (ValueError, ManifestError) is never cached.
parse_ts = functools.lru_cache(maxsize=65536)(_common.parse_ts)
set_id_time = functools.lru_cache(maxsize=65536)(_manifest.set_id_time)

# A set whose set id, start or end lies further than this in the future (by the reader's clock) is
# reported and never counts: not fresh for max_age, never the latest, never a parent, ignored by RPO.
FUTURE_TOLERANCE_S = 300.0
REQUESTED_TYPES = ("full", "incremental", "differential", "auto")
BETWEEN_TYPES = ("incremental", "differential")
# A full is due under type auto once the newest full started at least full_every ago, less this
# slack (1 %, at most an hour), so a job scheduled exactly every full_every does not skip a beat
# because it started a few seconds earlier than last time.
FULL_EVERY_SLACK = 0.01
FULL_EVERY_SLACK_MAX_S = 3600.0


class ChainError(LifeboatError):
    """A set cannot be restored because its chain is broken."""


class NoSetError(LifeboatError):
    """No set matches the request."""


def scan(store, host=None, source=None):
    """Read the manifests of every complete set under the filters.

    Returns ``(sets, invalid, partials)``: valid manifests sorted by
    (host, source, set_id); sets whose manifest failed validation; and the
    names of ``.partial`` directories, which are never backups.
    """
    # Thousands of manifests are small dicts and lists that all stay alive: the cyclic garbage
    # collector would walk them again and again for nothing (about a tenth of the scan).
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _scan(store, host, source)
    finally:
        if collecting:
            gc.enable()


def _scan(store, host, source):
    sets, invalid, partials = [], [], []
    hosts = [host] if host else store.hosts()
    for one_host in hosts:
        sources = [source] if source else store.sources(one_host)
        for one_source in sources:
            listing = store.listing(one_host, one_source)
            for set_id, manifest, error in _read_manifests(store, one_host, one_source, listing.sets):
                if error is None:
                    sets.append(manifest)
                else:
                    invalid.append({"host": one_host, "source": one_source, "set_id": set_id, "error": str(error)})
            for stray in listing.strays:
                invalid.append({"host": one_host, "source": one_source, "set_id": stray["name"],
                                "error": "Entry %s is not a usable set: %s." % (stray["name"], stray["problem"])})
            for name in listing.partials:
                partials.append({"host": one_host, "source": one_source, "name": name})
    sets.sort(key=sort_key)
    return sets, invalid, partials


def _read_manifests(store, host, source, set_ids):
    """The store's bulk read (``Store.read_manifests``), or one ``read_manifest`` per set for a reader without it."""
    bulk = getattr(store, "read_manifests", None)
    if bulk is not None:
        yield from bulk(host, source, set_ids)
        return
    for set_id in set_ids:
        try:
            manifest = store.read_manifest(host, source, set_id)
        except LifeboatError as exc:
            yield set_id, None, exc
            continue
        yield set_id, manifest, None


def sort_key(manifest):
    return (manifest["host"], manifest["source"], manifest["ended_at"], manifest["set_id"])


def source_key(manifest):
    return "%s/%s" % (manifest["host"], manifest["source"])


def by_source(manifests):
    """Group manifests by 'host/source', each group oldest first."""
    groups = {}
    for manifest in sorted(manifests, key=sort_key):
        groups.setdefault(source_key(manifest), []).append(manifest)
    return groups


def newest_time(manifest):
    """The latest of the set id's time, started_at and ended_at (UTC)."""
    return max(set_id_time(manifest["set_id"]), parse_ts(manifest["started_at"]), parse_ts(manifest["ended_at"]))


def is_future(manifest, now=None, tolerance_s=FUTURE_TOLERANCE_S):
    """True when the set claims a time later than ``now`` plus ``tolerance_s``: a wrong clock or a forgery."""
    now = now or utcnow()
    return (newest_time(manifest) - now).total_seconds() > tolerance_s


def split_future(manifests, now=None, tolerance_s=FUTURE_TOLERANCE_S):
    """(current, future): the sets that count, and those dated in the future, both in input order."""
    now = now or utcnow()
    current, future = [], []
    for manifest in manifests:
        (future if is_future(manifest, now, tolerance_s) else current).append(manifest)
    return current, future


def future_sets(manifests, now=None, tolerance_s=FUTURE_TOLERANCE_S):
    """What to report about future-dated sets: host, source, set_id and how far ahead they are."""
    now = now or utcnow()
    found = []
    for manifest in split_future(manifests, now, tolerance_s)[1]:
        found.append({
            "host": manifest["host"],
            "source": manifest["source"],
            "set_id": manifest["set_id"],
            "ended_at": manifest["ended_at"],
            "ahead_s": round((newest_time(manifest) - now).total_seconds(), 3),
        })
    return found


def latest_per_source(manifests, now=None):
    """The newest set of each source, never one dated in the future."""
    current = split_future(manifests, now)[0]
    return dict((key, group[-1]) for key, group in by_source(current).items())


def age_seconds(manifest, now=None):
    now = now or utcnow()
    return max(0.0, (now - parse_ts(manifest["ended_at"])).total_seconds())


def fresh_set(manifests, max_age_s, now=None):
    """The newest set younger than ``max_age_s`` seconds, or None; a future-dated set is never fresh."""
    if max_age_s is None:
        return None
    now = now or utcnow()
    young = [m for m in split_future(manifests, now)[0] if age_seconds(m, now) < max_age_s]
    return sorted(young, key=sort_key)[-1] if young else None


def select_set(manifests, set_id=None, before=None, now=None):
    """One source's set: the given id, else the newest (ending at or before ``before``).

    The newest is never a set dated in the future; an explicit ``set_id`` is taken as named.
    """
    if set_id:
        for manifest in manifests:
            if manifest["set_id"] == set_id:
                return manifest
        raise NoSetError("Set %s is not in the store (or is incomplete)." % set_id)
    candidates, future = split_future(manifests, now)
    if before is not None:
        candidates = [m for m in candidates if parse_ts(m["ended_at"]) <= before]
    if not candidates:
        raise NoSetError("The store holds no complete set for this source%s%s." % (
            " that ended before %s" % before.isoformat() if before is not None else "",
            " (%d set(s) dated in the future were left out)" % len(future) if future else ""))
    return sorted(candidates, key=sort_key)[-1]


def restore_chain(manifests, target):
    """The sets to apply, full first, to restore ``target``; raise ChainError if a link is missing."""
    index = dict((m["set_id"], m) for m in manifests if source_key(m) == source_key(target))
    chain = [target]
    seen = set([target["set_id"]])
    current = target
    while current["type"] != "full":
        parent_id = current["parent_set_id"]
        if parent_id in seen:
            raise ChainError("The chain of set %s loops at %s." % (target["set_id"], parent_id))
        parent = index.get(parent_id)
        if parent is None:
            raise ChainError(
                "Set %s cannot be restored: its parent %s is missing or incomplete." % (current["set_id"], parent_id)
            )
        if current["type"] == "differential" and parent["type"] != "full":
            raise ChainError("Differential set %s must have a full parent, not %s." % (current["set_id"], parent_id))
        chain.append(parent)
        seen.add(parent_id)
        current = parent
    chain.reverse()
    return chain


def usable_sets(manifests, now=None, engine=None, method=None):
    """Sets that may be a parent: not future-dated, chain complete and free of future-dated members.

    ``engine`` / ``method``, when given, also keep only sets written by that engine and method.
    Returns (set, its restore chain) pairs, oldest first.
    """
    now = now or utcnow()
    current = [m for m in manifests
               if (engine is None or m["engine"] == engine) and (method is None or m["method"] == method)]
    current = split_future(current, now)[0]
    usable = []
    for manifest in sorted(current, key=sort_key):
        try:
            chain = restore_chain(current, manifest)
        except ChainError:
            continue
        usable.append((manifest, chain))
    return usable


def full_is_due(full, full_every_s, now=None):
    """True when ``full`` started at least ``full_every_s`` ago (less FULL_EVERY_SLACK)."""
    now = now or utcnow()
    slack = min(full_every_s * FULL_EVERY_SLACK, FULL_EVERY_SLACK_MAX_S)
    return (now - parse_ts(full["started_at"])).total_seconds() >= full_every_s - slack


def resolve_type(manifests, requested, full_every_s=None, between="incremental", now=None,
                 engine=None, method=None):
    """Decide what one source's next set is: {"type", "parent", "base", "reason"}.

    ``manifests`` are the complete sets of one source. ``requested`` is full, incremental,
    differential or auto. An incremental's parent is the newest set of the current chain (the
    chain of the newest full); a differential's parent is the newest full. ``auto`` writes a full
    when no full can be a parent or the newest one is ``full_every_s`` old, else ``between``.
    Future-dated sets, sets whose id is later than ``now``, sets of a broken chain and (when given)
    sets of another engine or method are never parents. ``parent`` and ``base`` (the chain's full) are manifests or None.
    """
    if requested not in REQUESTED_TYPES:
        raise LifeboatError("type must be one of %s, not %r." % (", ".join(REQUESTED_TYPES), requested))
    if requested == "auto" and between not in BETWEEN_TYPES:
        raise LifeboatError("between must be one of %s, not %r." % (", ".join(BETWEEN_TYPES), between))
    if requested == "auto" and (full_every_s is None or isinstance(full_every_s, bool)
                                or not isinstance(full_every_s, (int, float)) or not full_every_s > 0):
        raise LifeboatError("type auto needs full_every, a duration longer than zero (like 7d).")
    keys = set(source_key(m) for m in manifests)
    if len(keys) > 1:
        raise LifeboatError("resolve_type takes the sets of one source, not of %s." % ", ".join(sorted(keys)))
    now = now or utcnow()
    if requested == "full":
        return {"type": "full", "parent": None, "base": None, "reason": "a full set was asked for"}
    # A parent must not be younger than the set about to be written (its id is taken from ``now``).
    usable = [(m, chain) for m, chain in usable_sets(manifests, now, engine, method) if set_id_time(m["set_id"]) <= now]
    fulls = [m for m, dummy in usable if m["type"] == "full"]
    base = fulls[-1] if fulls else None
    if requested == "auto":
        if base is None:
            return {"type": "full", "parent": None, "base": None,
                    "reason": "no usable full set exists for this source"}
        if full_is_due(base, full_every_s, now):
            return {"type": "full", "parent": None, "base": None,
                    "reason": "the newest full set %s started more than full_every ago" % base["set_id"]}
        set_type = between
    else:
        set_type = requested
    if base is None:
        raise ChainError(
            "A %s set needs a full set to build on and the store holds no usable one for this source "
            "(none, or only future-dated or broken ones); write a full set first, or use type auto." % set_type
        )
    if set_type == "differential":
        parent = base
    else:
        parent = [m for m, chain in usable if chain[0] is base][-1]
    return {"type": set_type, "parent": parent, "base": base,
            "reason": "%s on %s, in the chain of full set %s" % (set_type, parent["set_id"], base["set_id"])}


def rpo_status(latest, rpo_s, now=None):
    """RPO status for one source: 'ok', 'violated', 'unknown' (no RPO given) or 'missing'.

    A future-dated ``latest`` counts as no set at all, so it cannot hide a breach.
    """
    if latest is not None and is_future(latest, now):
        latest = None
    if latest is None:
        return {"status": "missing" if rpo_s is not None else "unknown", "age_s": None, "rpo_s": rpo_s}
    age = round(age_seconds(latest, now), 3)
    if rpo_s is None:
        status = "unknown"
    else:
        status = "ok" if age <= rpo_s else "violated"
    return {"status": status, "age_s": age, "rpo_s": rpo_s}


def summary(manifest, now=None):
    """A compact description of a set for module results (``future``: dated beyond the tolerance)."""
    return {
        "host": manifest["host"],
        "source": manifest["source"],
        "set_id": manifest["set_id"],
        "engine": manifest["engine"],
        "method": manifest["method"],
        "type": manifest["type"],
        "parent_set_id": manifest["parent_set_id"],
        "started_at": manifest["started_at"],
        "ended_at": manifest["ended_at"],
        "duration_s": manifest["duration_s"],
        "bytes": manifest["bytes"],
        "files": len(manifest["files"]),
        "compression": manifest["compression"]["algorithm"],
        "encrypted": manifest["encryption"] is not None,
        "labels": manifest["labels"],
        "age_s": round(age_seconds(manifest, now), 3),
        "future": is_future(manifest, now),
    }


# Retention planning lives in _retention (pure, like everything here); the catalog names it too.
from ansible_collections.lifeboat.backup.plugins.module_utils import _retention  # noqa: E402  pylint: disable=wrong-import-position

check_policy = _retention.check_policy
retention_plan = _retention.plan
