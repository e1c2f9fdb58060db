#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: mongodb_backup
short_description: Back up MongoDB with mongodump --archive into a verified backup set
version_added: 0.2.0
description:
  - Runs C(mongodump --archive) to standard output and streams the archive through the collection's
    compression, optional age encryption and signing into a backup set of any store (mongodump's own
    C(--gzip) is not used).
  - All databases are dumped as one archive; on a replica set (O(replica_set)) with C(--oplog) by default,
    so that the dump is consistent to one point, the oplog time it reached.
  - One database, or each of a list, is dumped as its own archive; O(collections) dumps chosen collections of
    one database, each as its own archive. Such a set is B(not) consistent to one point, even on a replica
    set. mongodump refuses C(--oplog) with C(--db) (C(--oplog mode only supported on full dumps)), and
    mongorestore refuses C(--oplogReplay) with C(--nsInclude), so dumping the whole instance and restoring
    only the listed databases at one point is not possible either. The manifest says so
    (C(position.consistent=false)), and a warning too when O(replica_set) is set. For one point, dump all
    databases.
  - The set is written as C(<set_id>.partial) with C(manifest.json) last. A C(mongodump) that fails behind
    the compressor fails the task and leaves no set. A database that does not exist (mongodump then dumps
    nothing and succeeds) fails the task too, and leaves no set.
  - The manifest records the namespaces and document counts mongodump reported, and as RV(position) the
    oplog time the dump started from (C(oplog_start_t), C(oplog_start_i), which C(mongodump -v) logs) and the
    oplog time it reached (C(oplog_reached_t), C(oplog_reached_i), C(oplog_reached_time)). mongodump does not
    log the time it reached; it is the C(ts) of the last oplog entry in the archive, read while the archive
    streams to the store (C(tee) hands a copy to a reader in the module that walks the archive's BSON
    documents, holding none of them). Without an entry (nothing written during the dump) the start time is
    the time reached. If the archive cannot be read, the backup still succeeds, the start time stands in
    (C(oplog_reached_from=start)) and a warning says why.
  - Tested against a fake of the mongodump/mongorestore command line only (C(tests/fakes/mongodb), which
    writes mongodump's archive format); never against a real MongoDB. See C(docs/mongodb.md).
author:
  - Lifeboat maintainers (@lifeboat-backup)
extends_documentation_fragment:
  - lifeboat.backup._mongodb
  - lifeboat.backup._store
  - lifeboat.backup._codec
  - lifeboat.backup._signing
attributes:
  check_mode:
    support: full
    description: Connects and authenticates (a dump of no document), reports the set it would write, writes nothing.
  diff_mode:
    support: none
    description: Nothing to diff; the result describes the sets.
  idempotent:
    support: partial
    description: With O(max_age) a rerun skips while a complete set younger than that exists.
options:
  databases:
    description:
      - Databases to dump, each as its own archive. All databases (one archive) when empty.
    type: list
    elements: str
    default: []
  collections:
    description:
      - Collections of the one database in O(databases) to dump, each as its own archive.
    type: list
    elements: str
    default: []
  exclude_collections:
    description:
      - Collections to leave out (C(--excludeCollection)); needs O(databases).
    type: list
    elements: str
    default: []
  oplog:
    description:
      - Capture the oplog during the dump (C(--oplog)) for a dump consistent to one point.
      - By default on when O(replica_set) is set and all databases are dumped; mongodump allows it on full
        dumps only.
    type: bool
  read_preference:
    description:
      - C(--readPreference), for example V(secondaryPreferred) to read from a secondary.
    type: str
  source:
    description:
      - Name of the source in the store. Defaults to the database for one database, V(all) for all
        databases; required for a list of databases.
    type: str
  max_age:
    description:
      - Skip the backup (C(changed=false)) when a complete set of this source younger than this exists,
        for example V(20h) or V(7d).
    type: str
  labels:
    description:
      - Free-form labels recorded in the manifest.
    type: dict
    default: {}
  work_dir:
    description:
      - Local scratch directory for the tools' logs. Defaults to the module's temporary directory.
    type: path
requirements:
  - mongodump from the MongoDB Database Tools 100.3 or later
  - tee (coreutils), with the oplog
  - zstd (for O(compression=zstd)), gzip or pigz (for O(compression=gzip))
  - age (when O(encrypt_recipients) is set)
seealso:
  - module: lifeboat.backup.mongodb_restore
  - module: lifeboat.backup.backup_info
  - module: lifeboat.backup.backup_verify
notes:
  - Each archive is C(mongodump)'s own archive format wrapped only in zstd or gzip and age;
    C(docs/restore-by-hand.md) explains restoring it with stock tools.
"""

EXAMPLES = r"""
- name: Dump the whole replica set, consistent to one point, at most once a day
  lifeboat.backup.mongodb_backup:
    login_host: db1.example.com
    replica_set: rs0
    login_user: backup
    login_password: "{{ vault_mongo_backup_password }}"
    read_preference: secondaryPreferred
    store:
      path: /var/backups/lifeboat
    host: "{{ inventory_hostname }}"
    max_age: 20h

- name: One database without its cache collection, encrypted
  lifeboat.backup.mongodb_backup:
    databases: [app]
    exclude_collections: [sessions]
    encrypt_recipients:
      - "{{ vault_lifeboat_age_recipient }}"
    store:
      path: /var/backups/lifeboat
"""

RETURN = r"""
set_id:
  description: Id of the set written (or of the fresh set that made the run skip).
  returned: always
  type: str
  sample: 20261126T031500Z-full
store:
  description: The store, as kind and location.
  returned: always
  type: dict
path:
  description: Location of the set in the store.
  returned: always
  type: str
bytes:
  description: Total size of the stored payload files.
  returned: success
  type: int
duration_s:
  description: Seconds the backup took.
  returned: success
  type: float
files:
  description: Payload files (one archive per mongodump run) with size and SHA-256.
  returned: success
  type: list
  elements: dict
position:
  description:
    - C(oplog) (whether the oplog was captured), C(consistent) (one archive with the oplog, so one point in time),
      C(oplog_start_t), C(oplog_start_i) and C(oplog_start_time) (where the oplog capture started),
      C(oplog_entries) (as mongodump logged it), C(replica_set).
    - With the oplog, C(oplog_reached_t), C(oplog_reached_i) (the raw Timestamp of the last oplog entry in the
      archive), C(oplog_reached_time) (its seconds as an ISO 8601 UTC time) and C(oplog_reached_from)
      (V(archive), or V(start) when there was no entry or the archive could not be read).
  returned: success
  type: dict
manifest:
  description: The whole manifest of the set.
  returned: success
  type: dict
cmd:
  description: The argv of every pipeline stage; the C(--config) file is shown as C(<config>). No secret is part of it.
  returned: always
  type: list
  elements: list
skipped_reason:
  description: Why no backup ran, when C(changed=false).
  returned: always
  type: str
removed_partials:
  description: Leftover C(.partial) directories of crashed runs that were removed.
  returned: success
  type: list
  elements: str
stale_lock:
  description: The stale lock that was taken over.
  returned: when a stale lock was found
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.lifeboat.backup.plugins.module_utils._common import LifeboatError, plain_results
from ansible_collections.lifeboat.backup.plugins.module_utils import _codec
from ansible_collections.lifeboat.backup.plugins.module_utils import _jobs
from ansible_collections.lifeboat.backup.plugins.module_utils import _mongodb


def default_source(params):
    if params["source"]:
        return params["source"]
    if not params["databases"]:
        return "all"
    if len(params["databases"]) == 1:
        return params["databases"][0]
    raise LifeboatError("source is required to name a backup of several databases.")


def main():
    argument_spec = _mongodb.connection_argument_spec()
    argument_spec.update(_jobs.backup_argument_spec())
    argument_spec.update(
        databases=dict(type="list", elements="str", default=[]),
        collections=dict(type="list", elements="str", default=[]),
        exclude_collections=dict(type="list", elements="str", default=[]),
        oplog=dict(type="bool"),
        read_preference=dict(type="str"),
    )
    module = AnsibleModule(
        argument_spec=argument_spec,
        supports_check_mode=True,
        mutually_exclusive=_codec.SIGNING_MUTUALLY_EXCLUSIVE + _mongodb.CONNECTION_MUTUALLY_EXCLUSIVE,
    )
    plain_results(module)
    params = module.params
    try:
        runs, oplog = _mongodb.dump_plan(params["databases"], params["collections"], params["exclude_collections"],
                                         params["oplog"], params["replica_set"])
        engine = _mongodb.DumpEngine(module, _mongodb.find_tool(module, "mongodump"),
                                     _mongodb.Credentials(params, tmpdir=module.tmpdir), runs, oplog, {},
                                     tee=_jobs.need_binary(module, "tee", "coreutils") if oplog else None)
        source = default_source(params)
    except LifeboatError as exc:
        module.fail_json(msg=str(exc), cmd=[])
    if params["replica_set"] and len(runs) > 1:
        module.warn("Each of the %d archives is dumped by its own mongodump run without the oplog, so the set is not "
                    "consistent to one point in time (mongodump takes --oplog on full dumps only); leave databases "
                    "and collections empty for one point." % len(runs))
    _jobs.run_backup_module(module, engine, source, _mongodb.ENGINE, _mongodb.METHOD)


if __name__ == "__main__":
    main()
