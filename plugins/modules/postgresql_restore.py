#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: postgresql_restore
short_description: Restore a PostgreSQL backup set into a database
version_added: 0.1.0
description:
  - Restores the newest complete set of a source, or the set O(set_id), written by
    M(lifeboat.backup.postgresql_backup).
  - Before anything touches the server, every payload file of the set is re-hashed and compared with
    the manifest; a corrupt, incomplete or unreadable set is refused. That proves the set intact, not
    who wrote it; the rest of the restore treats the set as untrusted input (see C(docs/security.md)).
  - A C(pg_dump) set is restored into a fresh scratch database which takes the name O(target_db)
    only when the restore succeeded. An existing O(target_db) is replaced only with O(clean=true), in one
    transaction that renames the old database aside and the restored copy in, so that a failure at
    any point leaves the old database as it was.
  - For V(custom) and V(directory) sets the whole database comes back as C(pg_restore --create) would
    bring it, with encoding and locale, owner, privileges, C(ALTER DATABASE ... SET) and per-role settings,
    connection limit and comment. These entries of the archive are parsed strictly and rebuilt for
    O(target_db); anything else is not run and is listed in RV(not_carried). V(plain) sets hold no
    database-level properties.
  - Plain and C(pg_dumpall) sets are SQL for C(psql). They run in psql's restricted mode (C(\restrict)
    with a fresh random key), behind a reader that refuses every psql meta-command of the set, naming it,
    before psql sees it. Such sets need a psql with C(\restrict) (13.22, 14.19, 15.14, 16.10, 17.6, 18.0
    or later).
  - A C(pg_dumpall) set is replayed with C(psql) against O(login_db), one restricted psql per database
    it connects to (the module's host, port and user; the set's database name only). Errors about objects
    that already exist (such as the bootstrap role) are reported in RV(warnings_sql), any other error fails.
    A whole-cluster set (made without C(globals_only)) is restored only into a cluster that holds no
    database but C(postgres) and the templates.
  - A scratch database left by a run that was killed is found by the next restore of the same
    O(target_db), dropped and reported in RV(removed_scratch).
  - Database names always reach the PostgreSQL tools as C(dbname='...'), never as a connection string.
  - With O(method=pitr) it restores a physical base backup (a C(pg_basebackup) set) into an empty or new
    data directory and replays archived WAL up to O(target_time), O(target_lsn), O(target_name) or the end
    of the archive (O(latest)), as C(docs/pitr.md) describes. The base backup is the newest one that ends
    before the target. A target outside the recoverable window fails, naming the window, before anything
    is written. The restored cluster is started as O(os_user) on O(cluster_port), with its sockets in
    O(socket_dir) and C(archive_mode=off), and is left running once recovery has promoted it. A failed
    restore stops it and leaves O(data_dir) as it found it (absent or empty).
author:
  - Lifeboat maintainers (@lifeboat-backup)
extends_documentation_fragment:
  - lifeboat.backup._postgres
  - lifeboat.backup._store
  - lifeboat.backup._signing.trust
  - lifeboat.backup._restore
attributes:
  check_mode:
    support: full
    description: Verifies the set and checks the target, changes nothing.
  diff_mode:
    support: none
    description: Nothing to diff; the result describes the sets.
  idempotent:
    support: none
    description: Every run restores again; an existing O(target_db) makes it fail unless O(clean=true).
options:
  method:
    description:
      - V(logical) restores a C(pg_dump) or C(pg_dumpall) set into a database.
      - V(pitr) restores a C(pg_basebackup) set and replays archived WAL to a point in time into a new cluster.
        The connection options, O(target_db), O(clean), O(jobs) and O(no_owner) do not apply.
      - With V(pitr), O(trusted_signers) also checks every archived WAL file recovery fetches (its C(.sig) under
        the namespace C(lifeboat.backup/wal@v1)); an unsigned, untrusted or altered file stops recovery
        (docs/security.md, Signed WAL files).
    type: str
    choices: [logical, pitr]
    default: logical
  target_time:
    description:
      - With O(method=pitr), recover up to this time (inclusive), an ISO 8601 time with a zone, such as
        C(2026-12-01T04:10:00Z).
      - One of O(target_time), O(target_lsn), O(target_name) and O(latest) is required with O(method=pitr).
    type: str
  target_lsn:
    description:
      - With O(method=pitr), recover up to this WAL location (inclusive), such as C(0/3000060).
    type: str
  target_name:
    description:
      - With O(method=pitr), recover up to the restore point of this name (made with C(pg_create_restore_point)).
        The newest base backup is used unless O(set_id) names an older one.
    type: str
  latest:
    description:
      - With O(method=pitr), replay all the archived WAL (up to the first missing segment, which is warned about).
    type: bool
    default: false
  data_dir:
    description:
      - With O(method=pitr), the data directory of the restored cluster. It must be empty, or absent under an
        existing parent (then it is created). Required with O(method=pitr).
    type: path
  cluster_port:
    description:
      - With O(method=pitr), the port of the restored cluster, so that it can run beside the live one. Required
        with O(method=pitr); it must be free.
    type: int
  socket_dir:
    description:
      - With O(method=pitr), the directory of the restored cluster's Unix sockets. The module checks recovery
        through it, connecting as O(os_user) to the database C(postgres).
    type: path
    default: /var/run/postgresql
  os_user:
    description:
      - With O(method=pitr), the OS user that owns the restored data directory and runs the server.
    type: str
    default: postgres
  pg_bin_dir:
    description:
      - With O(method=pitr), the directory of C(pg_ctl) and C(psql) of the base backup's major version.
      - Defaults to C(/usr/lib/postgresql/<major>/bin) when it exists, else C(pg_ctl) on PATH.
    type: path
  wal_command_dir:
    description:
      - With O(method=pitr), the directory this collection's WAL fetch command (C(restore_command)) and its
        settings are installed into, for O(os_user). It must be empty or absent. It is removed once recovery
        has promoted, or when the restore fails.
      - The settings file (mode 0600) holds the store options and, for an encrypted archive, O(age_identity),
        for as long as recovery runs; O(age_identity_file) is named there instead, and must be readable by O(os_user).
      - Defaults to O(data_dir) followed by C(.lifeboat-wal), beside the data directory.
    type: path
  wal_command_python:
    description:
      - With O(method=pitr), the Python interpreter that runs the WAL fetch command; O(os_user) must be able to
        run it. Defaults to the interpreter this module runs under.
    type: path
  recovery_timeout:
    description:
      - With O(method=pitr), seconds to wait for recovery to reach its target and promote.
    type: int
    default: 3600
  source:
    description:
      - Source name in the store (for a C(pg_dump) set, the database name unless set otherwise at backup).
    type: str
    required: true
  set_id:
    description:
      - Set to restore. The newest complete set of O(source) when unset.
    type: str
  target_db:
    description:
      - Database to restore a C(pg_dump) set into. Required for C(pg_dump) sets.
    type: str
    aliases: [db]
  clean:
    description:
      - Replace O(target_db) if it exists. Its sessions (and any on the scratch database) are terminated
        when the new copy is swapped in.
      - O(target_db) cannot be O(login_db), the database the module connects to.
    type: bool
    default: false
  jobs:
    description:
      - Parallel C(pg_restore) workers for V(custom) and V(directory) sets. A V(custom) set is
        first decompressed into O(work_dir) when O(jobs) is above 1.
    type: int
    default: 1
  no_owner:
    description:
      - Skip ownership and privilege commands (C(pg_restore --no-owner --no-privileges)), for a
        restore as a role that is not a superuser or into a server without the original roles.
      - The database's owner, privileges and per-role settings are not carried either; its settings
        and comment are.
      - Applies to V(custom) and V(directory) sets; the SQL of a V(plain) set runs as pg_dump wrote it.
    type: bool
    default: false
  work_dir:
    description:
      - Scratch directory for sets that must be unpacked before C(pg_restore) (V(directory) format,
        or V(custom) with O(jobs) above 1). Needs room for the uncompressed dump.
      - The tar of a V(directory) set is checked member by member before anything is extracted; a member
        that is not a regular file or directory with a plain relative name makes the restore fail, naming it.
      - Defaults to the module's temporary directory.
    type: path
requirements:
  - pg_restore and psql, zstd or gzip as the set needs, age for encrypted sets
  - for V(plain) and C(pg_dumpall) sets, a psql with C(\restrict) (13.22, 14.19, 15.14, 16.10, 17.6, 18.0 or later)
seealso:
  - module: lifeboat.backup.postgresql_backup
  - module: lifeboat.backup.backup_verify
"""

EXAMPLES = r"""
- name: Restore the newest set of app, backed up on db1, into app_restored
  lifeboat.backup.postgresql_restore:
    source: app
    target_db: app_restored
    login_unix_socket: /run/postgresql
    store:
      path: /var/backups/lifeboat
    host: db1

- name: Replace app with a given encrypted set, four workers
  lifeboat.backup.postgresql_restore:
    source: app
    set_id: 20261126T031500Z-full
    target_db: app
    clean: true
    jobs: 4
    age_identity: "{{ vault_lifeboat_age_identity }}"
    store:
      path: /var/backups/lifeboat
    host: db1

- name: Recover the cluster to the second before a bad DROP TABLE, beside the live one
  lifeboat.backup.postgresql_restore:
    method: pitr
    source: main
    target_time: "2026-12-01T04:09:59Z"
    data_dir: /var/lib/postgresql/15/pitr
    cluster_port: 5433
    store:
      path: /var/backups/lifeboat
    host: db1
"""

RETURN = r"""
set_id:
  description: The set restored.
  returned: always
  type: str
  sample: 20261126T031500Z-full
chain:
  description: The sets restored, oldest first (a PostgreSQL logical set is its own chain).
  returned: when the set was loaded
  type: list
  elements: str
store:
  description: The store, as its options describe it.
  returned: when the set was loaded
  type: dict
target_db:
  description: The database restored into (for C(pg_dump) sets).
  returned: always
  type: str
  sample: app_restored
path:
  description: Location of the set in the store.
  returned: always
  type: str
verified_files:
  description: Number of payload files whose SHA-256 matched the manifest before the restore.
  returned: always
  type: int
bytes:
  description: Stored size of the set.
  returned: always
  type: int
duration_s:
  description: Seconds the restore took, verification included.
  returned: success
  type: float
replaced:
  description: Whether an existing O(target_db) was replaced.
  returned: success
  type: bool
warnings_sql:
  description: Ignored "already exists" errors of a C(pg_dumpall) replay (the first 100).
  returned: when a pg_dumpall set was restored
  type: list
  elements: str
removed_scratch:
  description:
    - Scratch databases (and old copies) that killed runs of a restore into O(target_db) left behind,
      dropped before this restore. In check mode, those that would be dropped.
  returned: for pg_dump sets
  type: list
  elements: str
  sample: [app_lifeboat_1f2e3d4c]
database_sql:
  description: The statements that gave O(target_db) the database-level properties of the set, as run.
  returned: success, for pg_dump sets
  type: list
  elements: str
  sample: ['ALTER DATABASE "app" OWNER TO "app_owner";', 'REVOKE CONNECT,TEMPORARY ON DATABASE "app" FROM PUBLIC;']
not_carried:
  description: Database-level entries of the set that were not carried (unknown forms, or left out by O(no_owner)).
  returned: for custom and directory sets
  type: list
  elements: str
kept_old:
  description: The name the old O(target_db) was kept under because dropping it after the swap failed.
  returned: when that happened
  type: str
data_dir:
  description: With O(method=pitr), the data directory of the restored cluster.
  returned: with method pitr
  type: str
cluster_port:
  description: With O(method=pitr), the port of the restored cluster.
  returned: with method pitr
  type: int
target:
  description: With O(method=pitr), the recovery target in words.
  returned: with method pitr, once the target is known
  type: str
  sample: target time 2026-12-01T04:09:59Z
window:
  description:
    - With O(method=pitr), the recoverable window, with C(earliest) and C(latest) (C(time), C(lsn), C(set_id)),
      C(ranges) (one per base backup, with C(from_time), C(from_lsn), C(to_lsn), C(missing_wal)), C(gaps) (missing WAL
      segments since the oldest base backup) and C(segments).
  returned: with method pitr, once the store was read
  type: dict
reached:
  description:
    - With O(method=pitr), the point recovery reached, read from the promoted server. C(lsn) (the last WAL
      record replayed), C(time) (the commit time of the last transaction replayed, UTC, or null) and
      C(timeline) (the new timeline).
  returned: with method pitr, on success, not in check mode
  type: dict
  sample: {lsn: 0/3000060, time: "2026-12-01T04:09:58.123456Z", timeline: 2}
verified:
  description:
    - With O(method=pitr), true when C(pg_verifybackup) checked the restored data directory against the
      C(backup_manifest) the base backup carries (every file's size and checksum, and the WAL the backup
      needs) before recovery started; false when the base backup has no manifest. A mismatch fails the
      task before recovery starts.
  returned: with method pitr, on success, not in check mode
  type: bool
log:
  description: With O(method=pitr), the server log of the recovery, in O(data_dir).
  returned: with method pitr
  type: str
cmd:
  description: The argv of every restore stage. The age identity is passed as a file path only.
  returned: always
  type: list
  elements: list
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.lifeboat.backup.plugins.module_utils._common import plain_results
from ansible_collections.lifeboat.backup.plugins.module_utils import _jobs
from ansible_collections.lifeboat.backup.plugins.module_utils import _pgrestore
from ansible_collections.lifeboat.backup.plugins.module_utils import _pitr
from ansible_collections.lifeboat.backup.plugins.module_utils import _postgres


def main():
    argument_spec = _postgres.connection_argument_spec()
    argument_spec.update(_jobs.restore_argument_spec())
    argument_spec.update(
        target_db=dict(type="str", aliases=["db"]),
        clean=dict(type="bool", default=False),
        jobs=dict(type="int", default=1),
        no_owner=dict(type="bool", default=False),
        method=dict(type="str", default="logical", choices=["logical", "pitr"]),
    )
    argument_spec.update(_pitr.argument_spec())
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True,
                           mutually_exclusive=_jobs.RESTORE_MUTUALLY_EXCLUSIVE)
    plain_results(module)
    if module.params["method"] == "pitr":
        _pitr.run_module(module)
    _jobs.run_restore_module(module, _pgrestore.LogicalRestore(module))


if __name__ == "__main__":
    main()
