#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: files_backup
short_description: Back up a directory tree as GNU tar chains into any store
version_added: 0.2.0
description:
  - V(tar) streams C(tar --listed-incremental) through compression, optional age encryption and
    signing into a set of any store (S3 included). O(type) V(full), V(incremental), V(differential)
    or V(auto) is resolved from the sets already in the store. The tar state (C(.snar)) after each
    set is kept in the store's object namespace (C(tar/<set_id>.snar)) and its SHA-256 in the set's
    manifest, so a host rebuilt from scratch continues the chain, and a state altered in the store is
    refused.
  - One writer per source and store, guarded by a lock; a set becomes visible only when complete.
author:
  - Lifeboat maintainers (@lifeboat-backup)
extends_documentation_fragment:
  - lifeboat.backup._files
  - lifeboat.backup._store
  - lifeboat.backup._codec
  - lifeboat.backup._signing
attributes:
  check_mode:
    support: full
    description: >-
      Reports the set it would write (its type and parent); nothing is written.
  diff_mode:
    support: none
    description: Nothing to diff; the result describes the sets.
  idempotent:
    support: partial
    description: >-
      With O(max_age) a rerun skips while a complete set younger than that exists.
options:
  method:
    description:
      - V(tar) for archives streamed into any store (the form for object storage).
      - Browsable rsync snapshots (C(rsync_snapshot)) are planned and not available yet.
    type: str
    default: tar
    choices: [tar]
  type:
    description:
      - With O(method=tar), the set to write. V(auto) writes a full set when none is usable or the
        newest full started more than O(full_every) ago, else O(between).
      - An V(incremental) holds what changed since the previous set of the chain, a V(differential)
        what changed since the chain's full set.
    type: str
    default: full
    choices: [full, incremental, differential, auto]
  full_every:
    description:
      - With O(type=auto), how often a full set is due, for example V(7d).
    type: str
  between:
    description:
      - With O(type=auto), the type written between full sets.
    type: str
    default: incremental
    choices: [incremental, differential]
  xattrs:
    description:
      - Keep extended attributes and POSIX ACLs (GNU tar C(--xattrs --acls)).
    type: bool
    default: true
  source:
    description:
      - Name of the source in the store. Defaults to the last component of O(path).
    type: str
  max_age:
    description:
      - Skip the backup (C(changed=false)) when a complete set of this source younger than this exists,
        for example V(20h).
    type: str
  labels:
    description:
      - Free-form labels recorded in the manifest.
    type: dict
    default: {}
  work_dir:
    description:
      - Local scratch directory (the tar state while the archive is written). Never inside the store.
      - Defaults to the module's temporary directory.
    type: path
requirements:
  - GNU tar
  - zstd (for O(compression=zstd)), gzip or pigz (for O(compression=gzip))
  - age (when O(encrypt_recipients) is set)
seealso:
  - module: lifeboat.backup.files_restore
  - module: lifeboat.backup.backup_verify
  - module: lifeboat.backup.backup_info
notes:
  - C(docs/restore-by-hand.md) in the collection explains how to restore a tar chain with stock tools only.
  - GNU tar fails when a file changes while it is read; back up a quiescent tree or a file-system snapshot.
"""

EXAMPLES = r"""
- name: Nightly tar chain of /srv/www into S3, a full set every week
  lifeboat.backup.files_backup:
    path: /srv/www
    method: tar
    type: auto
    full_every: 7d
    exclude:
      - "*.log"
      - node_modules
    store:
      kind: s3
      bucket: backups
    host: "{{ inventory_hostname }}"
"""

RETURN = r"""
set_id:
  description: Id of the set written (or of the fresh set that made the run skip, or that would be written).
  returned: always
  type: str
  sample: 20261126T031500Z-incremental
type:
  description: The type written (after O(type=auto) was resolved).
  returned: success
  type: str
  sample: incremental
type_reason:
  description: Why that type and parent were chosen.
  returned: success
  type: str
store:
  description: The store, as kind and location.
  returned: always
  type: dict
path:
  description: Location of the set in the store.
  returned: always
  type: str
bytes:
  description: What the set occupies in the store (payload files and tree files).
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
  description: Why no set was written, when C(changed=false).
  returned: always
  type: str
removed_partials:
  description: Leftover partial sets of crashed runs that were removed.
  returned: success
  type: list
  elements: str
stale_lock:
  description: The stale lock that was taken over.
  returned: when a stale lock was found
  type: dict
"""

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.lifeboat.backup.plugins.module_utils._common import LifeboatError, plain_results
from ansible_collections.lifeboat.backup.plugins.module_utils import _codec
from ansible_collections.lifeboat.backup.plugins.module_utils import _files
from ansible_collections.lifeboat.backup.plugins.module_utils import _jobs
from ansible_collections.lifeboat.backup.plugins.module_utils import _store_kinds


def main():
    argument_spec = _jobs.store_argument_spec()
    argument_spec.update(_jobs.codec_argument_spec())
    argument_spec.update(_codec.signing_argument_spec())
    argument_spec.update(
        path=dict(type="path", required=True),
        method=dict(type="str", default="tar", choices=["tar"]),
        type=dict(type="str", default="full", choices=["full", "incremental", "differential", "auto"]),
        full_every=dict(type="str"),
        between=dict(type="str", default="incremental", choices=["incremental", "differential"]),
        exclude=dict(type="list", elements="str", default=[]),
        one_file_system=dict(type="bool", default=False),
        xattrs=dict(type="bool", default=True),
        source=dict(type="str"),
        max_age=dict(type="str"),
        labels=dict(type="dict", default={}),
        work_dir=dict(type="path"),
    )
    module = AnsibleModule(
        argument_spec=argument_spec,
        supports_check_mode=True,
        required_if=[("type", "auto", ["full_every"])],
        mutually_exclusive=_codec.SIGNING_MUTUALLY_EXCLUSIVE,
    )
    plain_results(module)
    params = module.params
    try:
        source_dir = _files.check_source_dir(params["path"])
        source = params["source"] or os.path.basename(source_dir.rstrip("/")) or "root"
        store = _store_kinds.open_store(params["store"])
        if params["method"] != "tar":
            raise _files.FilesError("method %s is not supported yet; use method tar." % params["method"])
        engine = _files.TarEngine(store, source_dir, _jobs.need_binary(module, "tar", "tar"), params["exclude"],
                                  params["one_file_system"], params["xattrs"])
    except LifeboatError as exc:
        module.fail_json(msg=str(exc), cmd=[])
    _jobs.run_backup_module(module, engine, source, _files.ENGINE, params["method"], store=store)


if __name__ == "__main__":
    main()
