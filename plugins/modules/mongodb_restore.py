#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: mongodb_restore
short_description: Restore a mongodb_backup set with mongorestore --archive
version_added: 0.2.0
description:
  - Selects a set of a store (the newest, or O(set_id)), checks the namespaces it would write, re-hashes
    every payload file against the manifest, and only then streams each archive, decrypted and
    decompressed, into C(mongorestore --archive) on standard input.
  - A set made with the oplog is replayed with C(--oplogReplay), so that the server ends at the oplog time the
    dump reached (C(position) in the set's manifest). mongorestore replays an oplog only into the
    whole instance, and refuses C(--oplogReplay) together with C(--nsInclude), C(--nsExclude), C(--nsFrom) or
    C(--nsTo). So with O(ns_from) or O(ns_include) the oplog is not replayed (a warning says so) unless
    O(oplog_replay=true) asks for it, which then fails before anything is written.
  - O(ns_from) / O(ns_to) remap namespaces (C(--nsFrom)/C(--nsTo)), to restore beside the original.
  - Without O(drop), a restore into a namespace that exists already refuses, naming it, before anything
    is written. Each namespace is checked by a C(mongodump) of no document (C(--query={"_id":{"$in":[]}})),
    which reads nothing but the C(_id) index; one run per namespace, because mongodump takes C(--query)
    only with one C(--collection) and neither tool can list namespaces without dumping them. With O(drop),
    the target collections are dropped first (C(--drop)).
  - Tested against a fake of the mongodump/mongorestore command line only (C(tests/fakes/mongodb)); never
    against a real MongoDB. See C(docs/mongodb.md).
  - C(mongorestore) runs with C(--stopOnError); a document that fails to restore fails the task.
author:
  - Lifeboat maintainers (@lifeboat-backup)
extends_documentation_fragment:
  - lifeboat.backup._mongodb
  - lifeboat.backup._store
  - lifeboat.backup._signing.trust
  - lifeboat.backup._restore
attributes:
  check_mode:
    support: full
    description: Checks the target namespaces and verifies the set's checksums; writes nothing.
  diff_mode:
    support: none
    description: Nothing to diff.
  idempotent:
    support: none
    description: Every run restores again; existing namespaces make it fail unless O(drop=true).
options:
  source:
    description:
      - Source name in the store.
    type: str
    required: true
  set_id:
    description:
      - Set to restore. The newest complete set of O(source) when unset.
    type: str
  drop:
    description:
      - Drop each target collection before restoring it (C(--drop)). Without it, existing target
        namespaces make the restore refuse.
    type: bool
    default: false
  ns_from:
    description:
      - Namespace patterns of the set to rename (C(--nsFrom)), with C(*) wildcards or C($name$) variables;
        paired in order with O(ns_to).
    type: list
    elements: str
    default: []
  ns_to:
    description:
      - What each O(ns_from) pattern becomes (C(--nsTo)), for example V(app_copy.*) for V(app.*).
    type: list
    elements: str
    default: []
  ns_include:
    description:
      - Restore only namespaces matching these patterns (C(--nsInclude)).
    type: list
    elements: str
    default: []
  oplog_replay:
    description:
      - Replay the oplog captured with the dump (C(--oplogReplay)) when the set has one.
      - Unset, it is replayed unless O(ns_from) or O(ns_include) is given (mongorestore refuses the oplog with
        them). V(true) with either fails before the restore; V(false) never replays.
    type: bool
  work_dir:
    description:
      - Local scratch directory. Defaults to the module's temporary directory.
    type: path
requirements:
  - mongorestore and mongodump from the MongoDB Database Tools 100.3 or later
  - zstd or gzip, and age, as the set needs
seealso:
  - module: lifeboat.backup.mongodb_backup
"""

EXAMPLES = r"""
- name: Restore the newest set of app beside the original, as app_copy
  lifeboat.backup.mongodb_restore:
    source: app
    ns_from: ["app.*"]
    ns_to: ["app_copy.*"]
    login_user: restore
    login_password: "{{ vault_mongo_restore_password }}"
    store:
      path: /var/backups/lifeboat
    host: db1

- name: Replace everything from a whole-replica-set dump, replaying its oplog
  lifeboat.backup.mongodb_restore:
    source: all
    drop: true
    replica_set: rs0
    age_identity: "{{ vault_lifeboat_age_identity }}"
    store:
      path: /var/backups/lifeboat
    host: db1
"""

RETURN = r"""
set_id:
  description: Id of the set restored.
  returned: success
  type: str
chain:
  description: Set ids restored, oldest first.
  returned: success
  type: list
  elements: str
store:
  description: The store.
  returned: success
  type: dict
path:
  description: Location of the set in the store.
  returned: success
  type: str
bytes:
  description: Bytes of the stored payloads.
  returned: success
  type: int
verified_files:
  description: Payload files whose SHA-256 was checked.
  returned: success
  type: int
duration_s:
  description: Seconds the restore took.
  returned: success
  type: float
namespaces:
  description: The namespaces the restore writes (after O(ns_from)/O(ns_to)).
  returned: success
  type: list
  elements: str
documents:
  description: Documents mongorestore reported restored.
  returned: success
  type: int
oplog_applied:
  description: Oplog entries replayed, when the set had an oplog that was replayed.
  returned: success
  type: int
cmd:
  description: The argv of every pipeline stage. No secret is part of it.
  returned: always
  type: list
  elements: list
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.lifeboat.backup.plugins.module_utils._common import plain_results
from ansible_collections.lifeboat.backup.plugins.module_utils import _jobs
from ansible_collections.lifeboat.backup.plugins.module_utils import _mongodb


def main():
    argument_spec = _mongodb.connection_argument_spec()
    argument_spec.update(_jobs.restore_argument_spec())
    argument_spec.update(
        drop=dict(type="bool", default=False),
        ns_from=dict(type="list", elements="str", default=[]),
        ns_to=dict(type="list", elements="str", default=[]),
        ns_include=dict(type="list", elements="str", default=[]),
        oplog_replay=dict(type="bool"),
    )
    module = AnsibleModule(
        argument_spec=argument_spec,
        supports_check_mode=True,
        mutually_exclusive=_jobs.RESTORE_MUTUALLY_EXCLUSIVE + _mongodb.CONNECTION_MUTUALLY_EXCLUSIVE,
    )
    plain_results(module)

    def pick(job, creds):
        return _mongodb.RestoreEngine(module, _mongodb.find_tool(module, "mongorestore"),
                                      _mongodb.find_tool(module, "mongodump"), creds)

    def finish(job, engine, result):
        result.update(namespaces=sorted(set(engine.targets)), documents=engine.restored,
                      oplog_applied=engine.oplog_applied)

    def changed_on_failure(job, engine):
        # Once a mongorestore has started, the server may hold part of the set.
        return bool(job is not None and job.cmd and not module.check_mode)

    _jobs.run_restore_module(module, pick, session=_mongodb.Credentials(module.params, tmpdir=module.tmpdir),
                             finish=finish, changed_on_failure=changed_on_failure)


if __name__ == "__main__":
    main()
