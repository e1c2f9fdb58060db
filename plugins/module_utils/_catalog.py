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

from ansible_collections.lifeboat.backup.plugins.module_utils._common import (
    LifeboatError,
    parse_ts,
    utcnow,
)
from ansible_collections.lifeboat.backup.plugins.module_utils._manifest import ManifestError


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


def latest_per_source(manifests):
    return dict((key, group[-1]) for key, group in by_source(manifests).items())


def age_seconds(manifest, now=None):
    now = now or utcnow()
    return max(0.0, (now - parse_ts(manifest["ended_at"])).total_seconds())


def fresh_set(manifests, max_age_s, now=None):
    """The newest set younger than ``max_age_s`` seconds, or None."""
    if max_age_s is None:
        return None
    now = now or utcnow()
    young = [m for m in manifests if age_seconds(m, now) < max_age_s]
    return sorted(young, key=sort_key)[-1] if young else None


def select_set(manifests, set_id=None, before=None):
    """One source's set: the given id, else the newest (ending at or before ``before``)."""
    if set_id:
        for manifest in manifests:
            if manifest["set_id"] == set_id:
                return manifest
        raise NoSetError("Set %s is not in the store (or is incomplete)." % set_id)
    candidates = manifests
    if before is not None:
        candidates = [m for m in manifests if parse_ts(m["ended_at"]) <= before]
    if not candidates:
        raise NoSetError("The store holds no complete set for this source%s." % (
            " that ended before %s" % before.isoformat() if before is not None else ""))
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


def rpo_status(latest, rpo_s, now=None):
    """RPO status for one source: 'ok', 'violated', 'unknown' (no RPO given) or 'missing'."""
    if latest is None:
        return {"status": "missing" if rpo_s is not None else "unknown", "age_s": None, "rpo_s": rpo_s}
    age = round(age_seconds(latest, now), 3)
    if rpo_s is None:
        status = "unknown"
    else:
        status = "ok" if age <= rpo_s else "violated"
    return {"status": status, "age_s": age, "rpo_s": rpo_s}


def summary(manifest, now=None):
    """A compact description of a set for module results."""
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
    }
