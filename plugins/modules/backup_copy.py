#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: backup_copy
short_description: Copy backup sets from one store to another, verified, parents first
version_added: 0.2.0
description:
  - Copies complete backup sets from O(store) to O(dest_store), for every engine and between any two
    kinds of store. A set keeps its host, source and set id, and its manifest is copied byte for byte,
    so a signature over it stays valid.
  - By default every set under the O(host) and O(source) filters that is missing at the destination is
    copied. With O(set_id) only that set is copied.
  - An incremental or differential set needs its parents. Parents missing at the destination are copied
    first, from O(store). A set whose chain cannot be completed (a parent in neither store, a parent that
    cannot be copied, a differential set without a full parent) is not copied; RV(refused) names the set
    that is missing.
  - Each payload file is streamed from the source to the destination through one bounded buffer and hashed
    on the way, with no temporary file. Its size and SHA-256 must match the manifest before the manifest
    is written at the destination, last; any failure leaves nothing at the destination that looks like a set.
  - By default each source set is verified (every file re-hashed) before it is copied, so a corrupt set is
    reported and never propagated.
  - A set already at the destination with the same manifest is skipped. One with a different manifest
    under the same id is a conflict; it is reported and never overwritten.
  - The destination's lock for each source is held while that source's sets are copied, and what crashed
    runs left there is removed first.
  - A tree payload (an rsync snapshot) is rebuilt at the destination file by file, walked without
    following links beside its index. Each copied file is hashed as it streams and must match the SHA-256
    of the index; each link must match the links file; an entry the lists do not name (a FIFO, a device,
    a link where a file is listed) refuses the set. A file the destination's previous copy of the same
    source holds under the same path, with the same SHA-256, size, mode, owner and mtime, is hard-linked
    to it, so incremental-forever costs only the changed bytes at the destination as well. Owners (as
    root), modes, times, extended attributes, links and hard links are kept.
author:
  - Lifeboat maintainers (@lifeboat-backup)
extends_documentation_fragment:
  - lifeboat.backup._store
  - lifeboat.backup._dest_store
  - lifeboat.backup._signing.trust
attributes:
  check_mode:
    support: full
    description: Lists in RV(copied) the sets that would be copied, from the manifests alone; nothing is
      read from the payloads and nothing is written. A corrupt payload is found only by the real run
      (or by M(lifeboat.backup.backup_verify)).
  diff_mode:
    support: none
    description: Nothing to diff; the result lists the sets.
  idempotent:
    support: full
    description: A second run finds every set at the destination and reports C(changed=false).
options:
  store:
    description:
      - The store sets are copied from. It is only read.
  host:
    description:
      - Only sets filed under this host. All hosts of O(store) when unset.
    type: str
  source:
    description:
      - Only sets of this source. All sources when unset.
    type: str
  set_id:
    description:
      - Copy only this set (and the parents it needs). Requires O(host) and O(source).
      - Without it, every set under the filters that is missing at the destination is copied.
    type: str
  verify_source:
    description:
      - Re-hash every file of a source set before copying it, so that a corrupt set is found before
        anything is written.
      - With V(false) each payload is read once. A corrupt file is still refused, because the copy is
        hashed as it streams, but only after its bytes were sent to the destination and dropped.
    type: bool
    default: true
  fail_on_error:
    description:
      - Fail the task when any selected set was refused or is in conflict. The sets that could be copied
        are copied first either way.
      - With V(false) the task succeeds and RV(refused) and RV(conflicts) still list every problem.
    type: bool
    default: true
requirements: []
notes:
  - Source sets are not locked, so backups into O(store) carry on while a copy runs; a set deleted at the
    source while it is being copied is refused.
  - A set with a tree payload (an rsync snapshot of M(lifeboat.backup.files_backup)) is copied only into a
    dir store, from a dir or ssh store (an ssh source's tree is fetched into a private local copy, removed
    once copied); an s3 store at either end, or an ssh destination, refuses it with a sentence naming the set
    and the kind, and the other sets are still copied.
seealso:
  - module: lifeboat.backup.backup_info
  - module: lifeboat.backup.backup_verify
  - module: lifeboat.backup.postgresql_restore
"""

EXAMPLES = r"""
- name: Copy every set missing offsite
  lifeboat.backup.backup_copy:
    store:
      path: /var/backups/lifeboat
    dest_store:
      path: /mnt/offsite/lifeboat

- name: Copy the sets of one host and source
  lifeboat.backup.backup_copy:
    store:
      path: /var/backups/lifeboat
    dest_store:
      path: /mnt/offsite/lifeboat
    host: "{{ inventory_hostname }}"
    source: app

- name: Copy one set (and the parents it needs), report problems without failing
  lifeboat.backup.backup_copy:
    store:
      path: /var/backups/lifeboat
    dest_store:
      path: /mnt/offsite/lifeboat
    host: db1
    source: app
    set_id: 20261126T031500Z-incremental
    fail_on_error: false
  register: lifeboat_copy

- name: What would be copied?
  lifeboat.backup.backup_copy:
    store:
      path: /var/backups/lifeboat
    dest_store:
      path: /mnt/offsite/lifeboat
  check_mode: true
  register: lifeboat_copy_plan
"""

RETURN = r"""
copied:
  description:
    - The sets copied, parents before their children; in check mode, the sets that would be copied.
  returned: always
  type: list
  elements: dict
  contains:
    host:
      description: Host the set is filed under.
      type: str
    source:
      description: Source of the set.
      type: str
    set_id:
      description: Id of the set.
      type: str
    type:
      description: V(full), V(incremental) or V(differential).
      type: str
    bytes:
      description: Sum of the set's payload file sizes.
      type: int
  sample:
    - host: db1
      source: app
      set_id: 20261126T031500Z-full
      type: full
      bytes: 1048576
skipped:
  description: Selected sets already at the destination with the same manifest (C(host), C(source), C(set_id)).
  returned: always
  type: list
  elements: dict
conflicts:
  description:
    - Sets whose id the destination already holds with a different manifest, or with an entry that is not a
      complete set. They are never overwritten. Each has C(host), C(source), C(set_id) and C(reason).
  returned: always
  type: list
  elements: dict
refused:
  description:
    - Sets not copied, each with C(host), C(source), C(set_id) and C(reason), a sentence naming the cause
      (a corrupt file, a parent missing in both stores, an unusable manifest, a locked destination).
    - A set refused for failing verification also has C(problems), as M(lifeboat.backup.backup_verify) reports them.
  returned: always
  type: list
  elements: dict
  sample:
    - host: db1
      source: app
      set_id: 20261127T031500Z-incremental
      reason: "it would be an orphan: its chain needs db1/app/20261126T031500Z-full, which is in neither store"
strays:
  description: Entries of O(store) that look like sets but are not usable ones (C(host), C(source), C(name), C(problem)); never copied.
  returned: always
  type: list
  elements: dict
bytes:
  description: Bytes copied (in check mode, that would be copied).
  returned: always
  type: int
duration_s:
  description: Seconds the copy took.
  returned: always
  type: float
removed_partials:
  description: Leftovers of crashed runs removed from the destination (C(host), C(source), C(name)).
  returned: unless check mode
  type: list
  elements: dict
stale_locks:
  description: Stale destination locks that were taken over, with the former holder.
  returned: unless check mode
  type: list
  elements: dict
store:
  description: The source store (kind and location, never a secret).
  returned: always
  type: dict
  sample: {kind: dir, path: /var/backups/lifeboat}
dest_store:
  description: The destination store (kind and location, never a secret).
  returned: always
  type: dict
  sample: {kind: dir, path: /mnt/offsite/lifeboat}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.lifeboat.backup.plugins.module_utils._common import LifeboatError
from ansible_collections.lifeboat.backup.plugins.module_utils import _copy
from ansible_collections.lifeboat.backup.plugins.module_utils import _codec
from ansible_collections.lifeboat.backup.plugins.module_utils import _jobs
from ansible_collections.lifeboat.backup.plugins.module_utils import _store_kinds
from ansible_collections.lifeboat.backup.plugins.module_utils._runner import runner_for


def main():
    argument_spec = _store_kinds.store_argument_spec()
    argument_spec.update(_store_kinds.dest_store_argument_spec())
    argument_spec.update(_codec.trust_argument_spec())
    argument_spec.update(
        source=dict(type="str"),
        set_id=dict(type="str"),
        verify_source=dict(type="bool", default=True),
        fail_on_error=dict(type="bool", default=True),
    )
    module = AnsibleModule(
        argument_spec=argument_spec,
        supports_check_mode=True,
        required_by={"set_id": ["source", "host"]},
        mutually_exclusive=_codec.TRUST_MUTUALLY_EXCLUSIVE,
    )
    params = module.params
    try:
        src = _store_kinds.open_store(params["store"])
        dst = _store_kinds.open_store(params["dest_store"])
        if src.describe() == dst.describe():
            raise LifeboatError("store and dest_store are the same store (%s); copy to another one." % src.location())
        if not src.exists():
            raise LifeboatError("The store %s does not exist." % src.location())
        trust = _codec.trust_from_params(params, runner_for(module))
        accept = (lambda manifest: _jobs.check_signature(trust, manifest)) if trust is not None else None
        plan = _copy.plan_copy(src, dst, params["host"], params["source"], params["set_id"], accept=accept)
        result = _copy.execute(src, dst, plan, params["verify_source"], module.check_mode)
    except LifeboatError as exc:
        module.fail_json(msg=str(exc))
    result.update(store=src.describe(), dest_store=dst.describe())
    if params["fail_on_error"] and (result["refused"] or result["conflicts"]):
        module.fail_json(msg=_copy.failure_message(result), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
