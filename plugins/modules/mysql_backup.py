#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: mysql_backup
short_description: Back up MySQL or MariaDB with mysqldump, mariabackup or xtrabackup into a verified backup set
version_added: 0.2.0
description:
  - V(mysqldump) (logical) dumps one, several or all user databases in one consistent transaction, with
    routines, events and triggers, and records the binlog position and GTID of the dump in the manifest.
  - V(mariabackup) or V(xtrabackup) (physical) streams the server's files (C(--stream=xbstream)) as a
    V(full), V(incremental) (parent the previous set of the chain) or V(differential) (parent the last full)
    set; the parent's C(to_lsn) comes from its manifest. Scratch files go to a local work directory, never
    the store.
  - The output streams through compression and optional age encryption into any store. Every stage's exit
    status is checked; a dump that fails behind the compressor fails the task and leaves no set.
  - Exercised for real with MariaDB 10.11 (C(mariadb-dump), C(mariabackup)). Percona XtraBackup's flag
    differences (C(xbstream), C(--apply-log-only)) are covered by unit tests only.
author:
  - Lifeboat maintainers (@lifeboat-backup)
extends_documentation_fragment:
  - lifeboat.backup._mysql
  - lifeboat.backup._store
  - lifeboat.backup._codec
  - lifeboat.backup._signing
attributes:
  check_mode:
    support: full
    description: Connects to read the server's version, reports the set it would write, writes nothing.
  diff_mode:
    support: none
    description: Nothing to diff.
  idempotent:
    support: partial
    description: With O(max_age) a rerun skips while a complete set younger than that exists.
options:
  method:
    description:
      - V(mysqldump) for a logical dump; V(mariabackup) or V(xtrabackup) for a physical backup;
        V(auto) picks the physical tool that is installed (mariabackup first).
    type: str
    default: mysqldump
    choices: [mysqldump, mariabackup, xtrabackup, auto]
  databases:
    description:
      - Databases to dump with O(method=mysqldump). V(all) (alone) means every database but the system
        ones (C(mysql), C(sys), C(information_schema), C(performance_schema)).
      - Ignored by the physical methods, which always copy the whole server.
    type: list
    elements: str
    default: [all]
  type:
    description:
      - V(full), V(incremental), V(differential), or V(auto) (a full when O(full_every) has passed, else
        O(between)). Only the physical methods write incremental and differential sets.
    type: str
    default: full
    choices: [full, incremental, differential, auto]
  full_every:
    description:
      - With O(type=auto), how often a full set is due (for example V(7d)).
    type: str
  between:
    description:
      - With O(type=auto), what to write between fulls.
    type: str
    default: incremental
    choices: [incremental, differential]
  single_transaction:
    description:
      - Dump InnoDB tables in one consistent transaction (C(--single-transaction)) without locking them.
    type: bool
    default: true
  routines:
    description: Dump stored procedures and functions.
    type: bool
    default: true
  events:
    description: Dump events.
    type: bool
    default: true
  triggers:
    description: Dump triggers.
    type: bool
    default: true
  parallel:
    description: Threads that copy files in a physical backup (C(--parallel)).
    type: int
    default: 1
  source:
    description:
      - Name of the source in the store. Defaults to C(mysql) for the physical methods, and for
        V(mysqldump) to the database's name when one database is dumped, else C(mysqldump).
    type: str
  max_age:
    description:
      - Skip the backup (C(changed=false)) when a complete set of this source younger than this exists.
    type: str
  labels:
    description: Free-form labels recorded in the manifest.
    type: dict
    default: {}
  work_dir:
    description:
      - Local scratch directory (C(--extra-lsndir) and the target directory of the physical tools). Never in
        the store. Defaults to the module's temporary directory.
    type: path
requirements:
  - mariadb (or mysql) client and mariadb-dump (or mysqldump) for O(method=mysqldump)
  - mariabackup and mbstream, or xtrabackup and xbstream, for the physical methods (run on the database host)
  - zstd, gzip or pigz for compression; age when O(encrypt_recipients) is set
seealso:
  - module: lifeboat.backup.mysql_restore
  - module: lifeboat.backup.backup_info
notes:
  - Accounts and grants (the C(mysql) database) are not part of a V(mysqldump) set; back them up with a
    physical set or your configuration management.
"""

EXAMPLES = r"""
- name: Dump two databases, at most once a day
  lifeboat.backup.mysql_backup:
    databases: [shop, crm]
    login_unix_socket: /run/mysqld/mysqld.sock
    login_user: backup
    login_password: "{{ vault_mysql_backup_password }}"
    store:
      path: /var/backups/lifeboat
    host: "{{ inventory_hostname }}"
    max_age: 20h

- name: Weekly full, daily incremental physical backup to S3
  lifeboat.backup.mysql_backup:
    method: auto
    type: auto
    full_every: 7d
    login_user: backup
    login_password: "{{ vault_mysql_backup_password }}"
    store:
      kind: s3
      bucket: backups
    host: "{{ inventory_hostname }}"
"""

RETURN = r"""
set_id:
  description: Id of the set written (or of the fresh set that made the run skip).
  returned: always
  type: str
  sample: 20261126T031500Z-incremental
store:
  description: The store, as kind and location.
  returned: always
  type: dict
path:
  description: Location of the set in the store.
  returned: always
  type: str
type:
  description: The type written (C(full), C(incremental), C(differential)) and its parent set.
  returned: success
  type: str
parent_set_id:
  description: The parent of an incremental or differential set.
  returned: success
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
  description: Payload files with size and SHA-256.
  returned: success
  type: list
  elements: dict
position:
  description: Binlog file and position, GTID, and for physical sets C(from_lsn) / C(to_lsn).
  returned: success
  type: dict
  sample: {binlog_file: binlog.000001, binlog_position: 295772, gtid: 0-1-19, to_lsn: 44404}
manifest:
  description: The whole manifest of the set.
  returned: success
  type: dict
cmd:
  description: The argv of every pipeline stage. The password is never part of it.
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
"""

import sys

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.lifeboat.backup.plugins.module_utils._common import LifeboatError, plain_results
from ansible_collections.lifeboat.backup.plugins.module_utils import _codec
from ansible_collections.lifeboat.backup.plugins.module_utils import _jobs
from ansible_collections.lifeboat.backup.plugins.module_utils import _manifest
from ansible_collections.lifeboat.backup.plugins.module_utils import _mysql


def default_source(params, method, databases):
    if params["source"]:
        return params["source"]
    if method in _mysql.PHYSICAL_METHODS:
        return "mysql"
    if len(databases) == 1 and databases[0] != "all":
        try:
            return _manifest.check_name(databases[0], "source")
        except LifeboatError:
            raise LifeboatError("Database %s is not usable as a source name; set source." % databases[0])
    return "mysqldump"


def build_engine(module):
    """Check the options and find the binaries; returns (engine, source, method)."""
    params = module.params
    method = params["method"]
    databases = [d for d in params["databases"] if d]
    if method == "mysqldump":
        if params["type"] in ("incremental", "differential"):
            raise LifeboatError("method mysqldump writes full sets only; use mariabackup or xtrabackup for %s sets."
                                % params["type"])
        if "all" in databases and len(databases) > 1:
            raise LifeboatError("databases: all stands alone; list databases or say all.")
        if not databases:
            raise LifeboatError("databases is empty; name at least one database or all.")
    else:
        method = _mysql.pick_physical(module, method)
    if params["parallel"] < 1:
        raise LifeboatError("parallel must be 1 or more, not %d." % params["parallel"])
    client_bin = _mysql.find_one(module, _mysql.CLIENT_BINARIES, "mariadb-client")
    creds = _mysql.Credentials(params, tmpdir=module.tmpdir)
    if method == "mysqldump":
        engine = _mysql.DumpEngine(module, creds, _mysql.find_one(module, _mysql.DUMP_BINARIES, "mariadb-client"),
                                   databases, params, sys.executable, client_bin=client_bin)
    else:
        engine = _mysql.PhysicalEngine(module, creds, method, _mysql.tool_binary(module, method), params["parallel"],
                                       client_bin=client_bin)
    return engine, default_source(params, method, databases), method


def main():
    argument_spec = _mysql.connection_argument_spec()
    argument_spec.update(_jobs.backup_argument_spec(chains=True))
    argument_spec.update(
        method=dict(type="str", default="mysqldump", choices=["mysqldump", "mariabackup", "xtrabackup", "auto"]),
        databases=dict(type="list", elements="str", default=["all"]),
        single_transaction=dict(type="bool", default=True),
        routines=dict(type="bool", default=True),
        events=dict(type="bool", default=True),
        triggers=dict(type="bool", default=True),
        parallel=dict(type="int", default=1),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True,
                           required_if=_jobs.BACKUP_REQUIRED_IF,
                           mutually_exclusive=_codec.SIGNING_MUTUALLY_EXCLUSIVE)
    plain_results(module)
    try:
        engine, source, method = build_engine(module)
    except LifeboatError as exc:
        module.fail_json(msg=str(exc), cmd=[])
    _jobs.run_backup_module(module, engine, source, "mysql", method)


if __name__ == "__main__":
    main()
