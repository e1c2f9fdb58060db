#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: btrfs_restore
short_description: Restore a btrfs send set (and its chain) with btrfs receive
version_added: 0.2.0
description:
  - Verifies the set written by M(lifeboat.backup.btrfs_snapshot) and every set of its chain (SHA-256,
    and signatures with O(trusted_signers)), then decodes each stream and feeds it to
    C(btrfs receive) in O(dest), full set first.
  - Each set becomes a read-only subvolume C(<dest>/<set_id>); the restored data is the subvolume of the
    set asked for. Make a writable copy with C(btrfs subvolume snapshot).
  - A subvolume already in O(dest) whose Received UUID is the one the set recorded is not received
    again, so a rerun reports C(changed=false). A receive that fails removes its half-received subvolume.
author:
  - Lifeboat maintainers (@lifeboat-backup)
extends_documentation_fragment:
  - lifeboat.backup._store
  - lifeboat.backup._signing.trust
  - lifeboat.backup._restore
attributes:
  check_mode:
    support: full
    description: Verifies the chain and checks O(dest), changes nothing.
  diff_mode:
    support: none
    description: Nothing to diff.
  idempotent:
    support: full
    description: Subvolumes already received are recognised by their Received UUID.
options:
  source:
    description: Source name of the sets (the btrfs_snapshot module's O(lifeboat.backup.btrfs_snapshot#module:source)).
    type: str
    required: true
  set_id:
    description: The set to restore; the newest when omitted.
    type: str
  dest:
    description: A directory on a btrfs filesystem that receives the subvolumes.
    type: path
    required: true
  work_dir:
    description: Local scratch directory.
    type: path
requirements:
  - btrfs-progs (C(btrfs)) on the managed host, run as root
seealso:
  - module: lifeboat.backup.btrfs_snapshot
"""

EXAMPLES = r"""
- name: Receive the newest set of srv-data into /srv/restore
  lifeboat.backup.btrfs_restore:
    source: srv-data
    dest: /srv/restore
    store:
      path: /var/backups/lifeboat
    host: web1
"""

RETURN = r"""
set_id:
  description: The set restored.
  returned: success
  type: str
chain:
  description: The sets received or found, full first.
  returned: success
  type: list
  elements: str
subvolume:
  description: The read-only subvolume holding the restored data.
  returned: success
  type: str
  sample: /srv/restore/20261126T031500Z-incremental
received:
  description: Subvolumes this run received.
  returned: success
  type: list
  elements: str
already_present:
  description: Subvolumes of the chain that were already in O(dest) and left as they were.
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
  description: Stored size of the chain.
  returned: success
  type: int
verified_files:
  description: Files whose SHA-256 was checked.
  returned: success
  type: int
duration_s:
  description: Seconds the restore took.
  returned: success
  type: float
cmd:
  description: The argv of every pipeline stage.
  returned: always
  type: list
  elements: list
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.lifeboat.backup.plugins.module_utils._common import plain_results
from ansible_collections.lifeboat.backup.plugins.module_utils import _btrfs
from ansible_collections.lifeboat.backup.plugins.module_utils import _jobs
from ansible_collections.lifeboat.backup.plugins.module_utils._runner import runner_for


def main():
    argument_spec = _jobs.restore_argument_spec()
    argument_spec.update(dest=dict(type="path", required=True))
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True,
                           mutually_exclusive=_jobs.RESTORE_MUTUALLY_EXCLUSIVE)
    plain_results(module)

    def pick(job, entered):
        return _btrfs.ReceiveEngine(_btrfs.Btrfs(runner_for(module)), module.params["dest"])

    def finish(job, engine, result):
        target = engine.target(job.manifest)
        if module.check_mode:
            result.update(changed=not engine.present and not _exists_received(engine.btrfs, target, job.manifest),
                          received=[], already_present=[])
        else:
            result.update(changed=bool(engine.received), received=engine.received, already_present=engine.present)
        result["subvolume"] = target

    _jobs.run_restore_module(module, pick, finish=finish)


def _exists_received(btrfs, target, manifest):
    fields = btrfs.show(target)
    ref = _btrfs.snapshot_ref(manifest)
    return fields is not None and ref is not None and fields.get("Received UUID") == ref["id"]


if __name__ == "__main__":
    main()
