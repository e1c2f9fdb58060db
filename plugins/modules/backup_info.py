#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: backup_info
short_description: List the backup sets of a store, the newest per source, its age and RPO status
version_added: 0.1.0
description:
  - Reads the manifests of every complete set in a store, for every engine alike.
  - C(.partial) directories (runs in progress or crashed runs) are never listed as sets; they are
    reported apart in RV(partials). Sets whose manifest fails validation are reported in RV(invalid).
  - Read-only; safe in check mode.
author:
  - Lifeboat maintainers (@lifeboat-backup)
extends_documentation_fragment:
  - lifeboat.backup._store
  - lifeboat.backup._readonly
options:
  host:
    description:
      - Only sets filed under this host. All hosts when unset.
    type: str
  source:
    description:
      - Only sets of this source.
    type: str
  rpo:
    description:
      - Recovery point objective, for example V(26h). Each source's newest set is compared with it
        and RV(rpo_status) says V(ok) or V(violated); a source named by O(source) with no set is V(missing).
    type: str
  max_sets:
    description:
      - List at most this many sets in RV(sets), the newest of the store (still oldest first within
        each host and source). When the store holds more, RV(truncated) is V(true); RV(sources) and
        RV(set_count) always cover every set. V(0) lists none; V(-1) lists every set (a store with many
        thousands of sets then makes a large result, slow to hand back).
      - The default was V(1000) before version 0.2.0. Each listed set adds about 0.4 kB to the result, and to
        the time the module and Ansible spend handing it back; RV(sources), RV(latest) and RV(rpo_status) are
        the overview of a large store.
    type: int
    default: 100
  fail_on_rpo_violation:
    description:
      - Fail the task when any source violates O(rpo) or is missing. Otherwise such a source is named in a warning.
    type: bool
    default: false
requirements: []
seealso:
  - module: lifeboat.backup.backup_verify
  - module: lifeboat.backup.postgresql_backup
"""

EXAMPLES = r"""
- name: What does the store hold for this host?
  lifeboat.backup.backup_info:
    store:
      path: /var/backups/lifeboat
    host: "{{ inventory_hostname }}"
    rpo: 26h
  register: lifeboat_info

- name: Fail the job when any source is older than its RPO
  lifeboat.backup.backup_info:
    store:
      path: /var/backups/lifeboat
    rpo: 26h
    fail_on_rpo_violation: true
"""

RETURN = r"""
sets:
  description:
    - The complete sets, oldest first within each host and source; at most O(max_sets) of them,
      the newest, with RV(truncated) set when some were left out.
  returned: always
  type: list
  elements: dict
  sample:
    - host: db1
      source: app
      set_id: 20261126T031500Z-full
      engine: postgresql
      method: pg_dump
      type: full
      bytes: 1048576
      age_s: 3600.5
set_count:
  description: How many complete sets the store holds under the filters (listed in RV(sets) or not).
  returned: always
  type: int
  sample: 10000
truncated:
  description: True when RV(sets) leaves out some sets because of O(max_sets).
  returned: always
  type: bool
sources:
  description:
    - Per C(host/source) summary of every set, whatever O(max_sets) says; C(count), C(bytes) (the
      sum), C(oldest) and C(newest) set ids (sets dated in the future left out), C(future) (how many
      are dated in the future), C(invalid) (broken or stray entries) and C(partials).
  returned: always
  type: dict
  sample:
    db1/app:
      count: 25
      bytes: 26214400
      oldest: 20261101T031500Z-full
      newest: 20261125T031500Z-full
      future: 0
      invalid: 0
      partials: 0
latest:
  description: The newest set per C(host/source).
  returned: always
  type: dict
rpo_status:
  description: Per C(host/source) RPO verdict (C(status), C(age_s), C(rpo_s)).
  returned: always
  type: dict
  sample: {"db1/app": {status: ok, age_s: 3600.5, rpo_s: 93600.0}}
partials:
  description: C(.partial) directories found (never backups).
  returned: always
  type: list
  elements: dict
future:
  description:
    - Sets dated in the future beyond the tolerance of 5 minutes, from a wrong clock or a forged set.
      They never count as the latest set, as fresh for C(max_age), or for the RPO status.
  returned: always
  type: list
  elements: dict
invalid:
  description: Directories that look like sets but whose manifest is missing fields or broken.
  returned: always
  type: list
  elements: dict
wal_archive:
  description:
    - Per C(host/source) that has PostgreSQL base backups (method C(pg_basebackup)), the health of
      its WAL archive (C(docs/pitr.md)), from the object names under C(wal/).
    - C(files) and C(segments) archived; C(newest), the newest segment, C(newest_time), when the store
      says it was stored (a file's mtime, S3's LastModified), and C(newest_age_s), how long ago that is
      (null when unknown). The store's time is not trusted; one later than now plus 5 minutes sets
      C(newest_time_future) and gives no age (a wrong clock or a forgery). C(gaps), runs of
      missing segments (C(first), C(last), C(count)) after the oldest base backup on its timeline;
      C(earliest_time) and C(earliest_set_id), the start of the recoverable window (the end of the
      oldest base backup); C(latest_wal), the last segment of the unbroken run after the newest base
      backup (the latest point a restore can reach lies in it).
  returned: always
  type: dict
  sample:
    db1/physical:
      base_backups: 2
      files: 41
      segments: 40
      newest: "000000010000000000000029"
      newest_time: "2026-12-01T04:09:47Z"
      newest_age_s: 12.5
      newest_time_future: false
      gaps: []
      earliest_time: "2026-12-01T03:00:05.120Z"
      earliest_set_id: 20261201T030000Z-full
      latest_wal: "000000010000000000000029"
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.lifeboat.backup.plugins.module_utils._common import LifeboatError, parse_duration, plain_results, utcnow
from ansible_collections.lifeboat.backup.plugins.module_utils import _catalog
from ansible_collections.lifeboat.backup.plugins.module_utils import _wal
from ansible_collections.lifeboat.backup.plugins.module_utils import _jobs
from ansible_collections.lifeboat.backup.plugins.module_utils import _store_kinds


def source_summaries(sets, current, invalid, partials):
    """Per 'host/source': count, bytes, oldest and newest current set ids, future, invalid and partials."""
    sources = {}

    def entry(key):
        return sources.setdefault(key, {"count": 0, "bytes": 0, "oldest": None, "newest": None,
                                        "future": 0, "invalid": 0, "partials": 0})
    current_ids = set(id(m) for m in current)
    for manifest in sets:  # sorted oldest first within each source
        one = entry(_catalog.source_key(manifest))
        one["count"] += 1
        one["bytes"] += manifest["bytes"]
        if id(manifest) in current_ids:
            one["oldest"] = one["oldest"] or manifest["set_id"]
            one["newest"] = manifest["set_id"]
        else:
            one["future"] += 1
    for item in invalid:
        entry("%s/%s" % (item["host"], item["source"]))["invalid"] += 1
    for item in partials:
        entry("%s/%s" % (item["host"], item["source"]))["partials"] += 1
    return sources


def report(store, host, source, rpo_s, now, max_sets=-1):
    """Pure given the store contents: the whole info result (``max_sets`` < 0: list every set)."""
    sets, invalid, partials = _catalog.scan(store, host, source)
    current, future = _catalog.split_future(sets, now)
    latest = dict((key, group[-1]) for key, group in _catalog.by_source(current).items())
    status = dict((key, _catalog.rpo_status(manifest, rpo_s, now)) for key, manifest in latest.items())
    if host and source and "%s/%s" % (host, source) not in status:
        status["%s/%s" % (host, source)] = _catalog.rpo_status(None, rpo_s, now)
    listed = sets
    if 0 <= max_sets < len(sets):
        # The newest max_sets sets of the whole store, kept in the (host, source, time) order.
        newest = set(id(m) for m in sorted(sets, key=lambda m: (m["ended_at"], m["set_id"]))[len(sets) - max_sets:])
        listed = [m for m in sets if id(m) in newest]
    return dict(
        sets=[_catalog.summary(m, now) for m in listed],
        set_count=len(sets),
        truncated=len(listed) < len(sets),
        sources=source_summaries(sets, current, invalid, partials),
        latest=dict((key, _catalog.summary(m, now)) for key, m in latest.items()),
        rpo_status=status,
        partials=partials,
        invalid=invalid,
        future=_catalog.future_sets(future, now=now),
        wal_archive=wal_archives(store, current, now),
    )


def wal_archives(store, current, now):
    """Per 'host/source' with PostgreSQL base backups: the health of its WAL archive (_wal.archive_health)."""
    health = {}
    for key, group in _catalog.by_source(current).items():
        if any(m.get("method") == "pg_basebackup" and m.get("engine") == "postgresql" for m in group):
            health[key] = _wal.archive_health(store, group[0]["host"], group[0]["source"], group, now)
    return health


def main():
    argument_spec = _jobs.store_argument_spec()
    argument_spec.update(
        source=dict(type="str"),
        rpo=dict(type="str"),
        max_sets=dict(type="int", default=100),
        fail_on_rpo_violation=dict(type="bool", default=False),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    plain_results(module)
    params = module.params
    try:
        store = _store_kinds.open_store(params["store"])
        if not store.exists():
            raise LifeboatError("The store %s does not exist." % store.location())
        rpo_s = parse_duration(params["rpo"], "rpo")
        if params["max_sets"] < -1:
            raise LifeboatError("max_sets must be -1 (every set), 0 (none) or a positive number, not %d."
                                % params["max_sets"])
        result = report(store, params["host"], params["source"], rpo_s, utcnow(), params["max_sets"])
    except LifeboatError as exc:
        module.fail_json(msg=str(exc))
    result["store"] = store.describe()
    bad = sorted(key for key, value in result["rpo_status"].items() if value["status"] in ("violated", "missing"))
    if params["fail_on_rpo_violation"] and bad:
        module.fail_json(msg="RPO %s is not met by %s." % (params["rpo"], ", ".join(bad)), **result)
    if bad:
        module.warn("RPO %s is not met by %s." % (params["rpo"], ", ".join(bad)))
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
