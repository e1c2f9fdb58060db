#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: postgresql_backup
short_description: Back up a PostgreSQL database or cluster into a verified backup set
version_added: 0.1.0
description:
  - Runs C(pg_dump) (one database) or C(pg_dumpall) (globals or the whole cluster) and streams the
    output through compression and optional age encryption into a backup set of a store.
  - The set is written under C(<set_id>.partial), its files are fsynced, C(manifest.json) (sizes,
    SHA-256, tool versions, WAL position) is written last and the directory is renamed. A run killed
    at any point leaves no set that looks complete.
  - Every stage's exit status is checked; a C(pg_dump) that fails behind the compressor fails the task.
  - One writer per source and store, guarded by a lock; a stale lock left by a dead run is reported
    in RV(stale_lock) and taken over, and that run's leftover C(.partial) directory is removed.
author:
  - Lifeboat maintainers (@lifeboat-backup)
extends_documentation_fragment:
  - lifeboat.backup._postgres
  - lifeboat.backup._store
  - lifeboat.backup._codec
  - lifeboat.backup._signing
attributes:
  check_mode:
    support: full
    description: Connects to read the server version and position, reports the set it would write, writes nothing.
  diff_mode:
    support: none
    description: Nothing to diff; the result describes the sets.
  idempotent:
    support: partial
    description: With O(max_age) a rerun skips while a complete set younger than that exists.
options:
  method:
    description:
      - V(pg_dump) dumps one database (O(db)); V(pg_dumpall) dumps roles and tablespaces
        (O(globals_only=true)) or the whole cluster as SQL.
      - V(pg_basebackup) takes a physical base backup of the whole cluster (C(pg_basebackup -D - -Ft
        -X fetch)), one tar with the WAL it needs to be consistent and C(backup_manifest), streamed
        through the codec into the store as C(base.tar). Always a full set. The manifest records the
        start and stop LSN and WAL file, the timeline, the system identifier and the times, which a
        point-in-time restore needs together with the WAL archive (M(lifeboat.backup.postgresql_wal_archive),
        C(docs/pitr.md)). The login user needs the REPLICATION attribute and a C(replication) entry in
        C(pg_hba.conf). A cluster with tablespaces besides pg_default and pg_global is refused.
    type: str
    default: pg_dump
    choices: [pg_dump, pg_dumpall, pg_basebackup]
  db:
    description:
      - Database to dump. Required with O(method=pg_dump).
    type: str
    aliases: [database]
  format:
    description:
      - C(pg_dump) archive format. V(custom) is one archive file restored with C(pg_restore);
        V(directory) dumps in parallel (O(jobs)) and is stored as a tar of the dump directory;
        V(plain) is SQL for C(psql).
      - Ignored by O(method=pg_dumpall), which always writes SQL.
    type: str
    default: custom
    choices: [custom, directory, plain]
  jobs:
    description:
      - Parallel C(pg_dump) workers; needs O(format=directory).
    type: int
    default: 1
  globals_only:
    description:
      - With O(method=pg_dumpall), dump only roles and tablespaces.
    type: bool
    default: false
  source:
    description:
      - Name of the source in the store. Defaults to O(db) for V(pg_dump), C(globals) or C(cluster)
        for V(pg_dumpall), C(physical) for V(pg_basebackup) (the source the WAL archive of
        M(lifeboat.backup.postgresql_wal_archive) uses by default too).
    type: str
  max_age:
    description:
      - Skip the backup (C(changed=false)) when a complete set of this source younger than this
        exists, for example V(20h) or V(7d). A rerun of a half-failed fleet job then redoes only the
        hosts that failed.
    type: str
  labels:
    description:
      - Free-form labels recorded in the manifest (for example the job or ticket that made the set).
    type: dict
    default: {}
  work_dir:
    description:
      - Local scratch directory for a V(directory) format dump, which C(pg_dump) writes before it is
        streamed into the store. It is never inside the store. Needs room for the uncompressed dump.
      - Defaults to the module's temporary directory.
    type: path
requirements:
  - pg_dump / pg_dumpall / pg_basebackup and psql of a version at least as new as the server
  - zstd (for O(compression=zstd)), gzip or pigz (for O(compression=gzip))
  - age (when O(encrypt_recipients) is set)
  - tar (for O(format=directory))
seealso:
  - module: lifeboat.backup.postgresql_restore
  - module: lifeboat.backup.postgresql_wal_archive
  - module: lifeboat.backup.backup_info
  - module: lifeboat.backup.backup_verify
notes:
  - C(docs/restore-by-hand.md) in the collection explains how to restore a set with stock tools only.
"""

EXAMPLES = r"""
- name: Back up the app database, custom format, zstd, at most once a day
  lifeboat.backup.postgresql_backup:
    db: app
    login_unix_socket: /run/postgresql
    store:
      kind: dir
      path: /var/backups/lifeboat
    host: "{{ inventory_hostname }}"
    max_age: 20h

- name: Parallel directory-format dump, encrypted to the restore team's age key
  lifeboat.backup.postgresql_backup:
    db: warehouse
    format: directory
    jobs: 4
    login_host: 127.0.0.1
    login_user: backup
    login_password: "{{ vault_pg_backup_password }}"
    encrypt_recipients:
      - "{{ vault_lifeboat_age_recipient }}"
    store:
      path: /var/backups/lifeboat
    host: "{{ inventory_hostname }}"
    labels:
      job: nightly

- name: Physical base backup for point-in-time recovery, into the source the WAL archive uses
  lifeboat.backup.postgresql_backup:
    method: pg_basebackup
    login_unix_socket: /run/postgresql
    login_user: postgres
    store:
      kind: dir
      path: /var/backups/lifeboat
    host: "{{ inventory_hostname }}"

- name: Roles and tablespaces
  lifeboat.backup.postgresql_backup:
    method: pg_dumpall
    globals_only: true
    login_unix_socket: /run/postgresql
    store:
      path: /var/backups/lifeboat
    host: "{{ inventory_hostname }}"
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
  sample: {kind: dir, path: /var/backups/lifeboat}
path:
  description: Location of the set in the store.
  returned: always
  type: str
  sample: /var/backups/lifeboat/db1/app/20261126T031500Z-full
bytes:
  description: Total size of the stored payload files.
  returned: success
  type: int
  sample: 1048576
duration_s:
  description: Seconds the backup took.
  returned: success
  type: float
  sample: 2.41
files:
  description: Payload files with size and SHA-256.
  returned: success
  type: list
  elements: dict
  sample: [{name: dump.pgc.zst, size: 1048576, sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08}]
position:
  description:
    - Server state when the dump began (C(lsn), C(timeline), C(in_recovery), C(server_version)).
    - With O(method=pg_basebackup) C(server_version) (as an integer like 150018), C(system_identifier),
      C(timeline), C(start_lsn), C(stop_lsn), C(start_wal), C(stop_wal), C(start_time), C(stop_time),
      C(wal_segment_size), C(objects_prefix) and C(objects_from) (docs/pitr.md).
  returned: success
  type: dict
  sample: {lsn: 0/3000148, timeline: 1, in_recovery: false, server_version: "15.18"}
manifest:
  description: The whole manifest of the set.
  returned: success
  type: dict
cmd:
  description: The argv of every pipeline stage. No secret is ever part of it.
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
  description: The stale lock that was taken over (its pid, node, start time and why it was stale).
  returned: when a stale lock was found
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.lifeboat.backup.plugins.module_utils._common import LifeboatError, plain_results
from ansible_collections.lifeboat.backup.plugins.module_utils import _codec
from ansible_collections.lifeboat.backup.plugins.module_utils import _jobs
from ansible_collections.lifeboat.backup.plugins.module_utils import _pgbackup
from ansible_collections.lifeboat.backup.plugins.module_utils import _pgbasebackup
from ansible_collections.lifeboat.backup.plugins.module_utils import _postgres


def main():
    argument_spec = _postgres.connection_argument_spec()
    argument_spec.update(_jobs.backup_argument_spec())
    argument_spec.update(
        method=dict(type="str", default="pg_dump", choices=["pg_dump", "pg_dumpall", "pg_basebackup"]),
        db=dict(type="str", aliases=["database"]),
        format=dict(type="str", default="custom", choices=["custom", "directory", "plain"]),
        jobs=dict(type="int", default=1),
        globals_only=dict(type="bool", default=False),
    )
    module = AnsibleModule(
        argument_spec=argument_spec,
        supports_check_mode=True,
        required_if=[("method", "pg_dump", ["db"])],
        mutually_exclusive=_codec.SIGNING_MUTUALLY_EXCLUSIVE,
    )
    plain_results(module)
    try:
        if module.params["method"] == _pgbasebackup.METHOD:
            engine = _pgbasebackup.BaseBackupEngine(module)
        else:
            engine = _pgbackup.PgDumpEngine(module)
    except LifeboatError as exc:
        module.fail_json(msg=str(exc), cmd=[])
    _jobs.run_backup_module(module, engine, module.params["source"] or engine.default_source(), "postgresql",
                            module.params["method"])


if __name__ == "__main__":
    main()
