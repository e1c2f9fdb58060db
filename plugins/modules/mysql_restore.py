#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: mysql_restore
short_description: Restore a MySQL or MariaDB backup set (mysqldump, or a mariabackup/xtrabackup chain)
version_added: 0.2.0
description:
  - Every set of the restore chain (the full, then each incremental in order, or the full and one
    differential) is verified against its manifest's SHA-256 before anything is changed. A missing or
    corrupt link is refused, naming the set.
  - A V(mysqldump) set is imported into the server with the MariaDB client in sandbox mode (C(--sandbox)),
    so a client command in a payload (C(\\!), C(\\.), ...) never runs; a client without sandbox mode is
    refused. Databases of the set that exist are replaced only with O(replace=true); they are first dumped
    into a safety copy in O(work_dir) and put back from it if the import fails, so a failed restore loses
    nothing.
  - A physical set is decoded, its xbstream checked member by member (no absolute names, no C(..)) before
    C(mbstream)/C(xbstream) extracts it, prepared in chain order, copied back into O(datadir) and given to
    O(owner). A non-empty O(datadir) is refused unless O(force=true) (its contents are then moved into a
    sibling directory, never deleted); a server running on O(datadir) is always refused.
  - Exercised for real with MariaDB 10.11 (client 10.11.19, mariabackup 10.11.19); Percona XtraBackup is
    covered by unit tests of its argv only.
author:
  - Lifeboat maintainers (@lifeboat-backup)
extends_documentation_fragment:
  - lifeboat.backup._mysql
  - lifeboat.backup._store
  - lifeboat.backup._signing.trust
  - lifeboat.backup._restore
attributes:
  check_mode:
    support: full
    description: Loads and verifies the chain and checks the target, changes nothing.
  diff_mode:
    support: none
    description: Nothing to diff.
  idempotent:
    support: none
    description: Every run restores again.
options:
  source:
    description: Source of the set in the store.
    type: str
    required: true
  set_id:
    description: Set to restore; the newest complete set by default.
    type: str
  replace:
    description: Replace databases of a V(mysqldump) set that exist on the server.
    type: bool
    default: false
  datadir:
    description: Data directory to copy a physical set into. Required for physical sets.
    type: path
  force:
    description: Restore a physical set into a non-empty O(datadir), moving its contents aside first.
    type: bool
    default: false
  owner:
    description: OS user that owns the restored data directory (the server's user).
    type: str
    default: mysql
  work_dir:
    description:
      - Local scratch directory for the extracted chain (physical) or the safety copy (logical).
        Needs room for the uncompressed backup. Defaults to the module's temporary directory.
    type: path
requirements:
  - mariadb client 10.11.8 (or 10.5.25, 10.6.18, 11.0.6) or newer, for the sandbox mode
  - mariabackup and mbstream (or xtrabackup and xbstream) for physical sets
seealso:
  - module: lifeboat.backup.mysql_backup
"""

EXAMPLES = r"""
- name: Restore the newest dump of shop, replacing the database
  lifeboat.backup.mysql_restore:
    source: shop
    replace: true
    login_unix_socket: /run/mysqld/mysqld.sock
    login_user: root
    store:
      path: /var/backups/lifeboat
    host: db1

- name: Restore a physical chain into an empty datadir (server stopped)
  lifeboat.backup.mysql_restore:
    source: mysql
    datadir: /var/lib/mysql
    store:
      path: /var/backups/lifeboat
    host: db1
"""

RETURN = r"""
set_id:
  description: The set restored.
  returned: success
  type: str
chain:
  description: The sets applied, full first.
  returned: success
  type: list
  elements: str
databases:
  description: Databases imported from a mysqldump set.
  returned: success
  type: list
  elements: str
datadir:
  description: The data directory a physical chain was copied into.
  returned: success
  type: str
moved_aside:
  description: Where the previous contents of O(datadir) were moved with O(force=true).
  returned: when something was moved
  type: str
bytes:
  description: Bytes of the chain's stored payloads.
  returned: success
  type: int
cmd:
  description: The argv of every command run. The password is never part of it.
  returned: always
  type: list
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.lifeboat.backup.plugins.module_utils._common import LifeboatError, plain_results
from ansible_collections.lifeboat.backup.plugins.module_utils import _jobs
from ansible_collections.lifeboat.backup.plugins.module_utils import _mysql


def main():
    argument_spec = _mysql.connection_argument_spec()
    argument_spec.update(_jobs.restore_argument_spec())
    argument_spec.update(
        replace=dict(type="bool", default=False),
        datadir=dict(type="path"),
        force=dict(type="bool", default=False),
        owner=dict(type="str", default="mysql"),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True,
                           mutually_exclusive=_jobs.RESTORE_MUTUALLY_EXCLUSIVE)
    plain_results(module)
    params = module.params

    def pick(job, creds):
        manifest = job.manifest
        if manifest["engine"] != "mysql":
            raise LifeboatError("Set %s was made by %s, not by mysql_backup; use that engine's restore module."
                                % (manifest["set_id"], manifest["engine"]))
        if manifest["method"] in _mysql.LOGICAL_METHODS:
            return _mysql.DumpRestore(module, creds, params["replace"], params["work_dir"] or module.tmpdir)
        return _mysql.PhysicalRestore(module, params["datadir"], params["force"], params["owner"], params["config_file"])

    def finish(job, engine, result):
        if job.manifest["method"] in _mysql.LOGICAL_METHODS:
            result["databases"] = engine.databases
        else:
            result["datadir"] = engine.datadir
            if engine.moved_aside:
                result["moved_aside"] = engine.moved_aside

    _jobs.run_restore_module(module, pick, session=_mysql.Credentials(params, tmpdir=module.tmpdir), finish=finish)


if __name__ == "__main__":
    main()
