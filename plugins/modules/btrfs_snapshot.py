#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: btrfs_snapshot
short_description: Back up a btrfs subvolume as a read-only snapshot streamed with btrfs send
version_added: 0.2.0
description:
  - Takes a read-only snapshot of O(subvolume) and streams C(btrfs send) of it through compression and
    optional age encryption into a backup set of any store. An incremental or differential set is
    C(btrfs send -p) against the snapshot of its parent set; the core picks the type and the parent
    (O(type=auto) with O(full_every)).
  - Snapshots live in O(snapshot_dir)C(/<source>/<set_id>). The snapshots of the newest set and of the
    newest full set stay on the host as the parents of the next incremental; older ones are removed
    and reported in RV(removed_snapshots).
  - The snapshot is always released when the backup fails. A snapshot left by a killed run (its set was
    never committed) is found by the next run, removed and reported in RV(removed_snapshots).
  - M(lifeboat.backup.btrfs_restore) receives the chain back with C(btrfs receive).
  - With O(path), the module backs up the files at O(path) inside the snapshot instead, with the GNU tar
    engine of M(lifeboat.backup.files_backup) (full, incremental and differential chains, restored with
    M(lifeboat.backup.files_restore)), and deletes the snapshot when the backup is over, whatever happened.
    This is the C(prepare) step of the C(lifeboat.backup.backup) role's file sources.
author:
  - Lifeboat maintainers (@lifeboat-backup)
extends_documentation_fragment:
  - lifeboat.backup._store
  - lifeboat.backup._codec
  - lifeboat.backup._signing
attributes:
  check_mode:
    support: full
    description:
      - Reports the set, type, parent and snapshot it would write and the leftovers it would remove; touches nothing.
  diff_mode:
    support: none
    description: Nothing to diff.
  idempotent:
    support: partial
    description: With O(max_age) a rerun skips while a complete set younger than that exists.
options:
  subvolume:
    description: Path of the btrfs subvolume to back up.
    type: path
    required: true
  path:
    description:
      - Back up the files of this directory inside the snapshot (file mode) instead of sending the subvolume.
      - Relative to O(subvolume) (V(www) for C(<subvolume>/www), V(.) for all of it), or an absolute path at or
        below O(subvolume). It must resolve inside the snapshot; a symbolic link out of it is refused.
      - A source is either sent or backed up as files; do not switch one source between the two.
    type: str
  exclude:
    description:
      - With O(path), patterns of files and directories to leave out, for example V(*.log).
    type: list
    elements: str
    default: []
  one_file_system:
    description: With O(path), stay on the snapshot's filesystem (nested subvolumes are left out).
    type: bool
    default: false
  xattrs:
    description: With O(path), store extended attributes and POSIX ACLs.
    type: bool
    default: true
  snapshot_dir:
    description:
      - Directory on the same btrfs filesystem where the read-only snapshots are made.
      - Defaults to C(.lifeboat-snapshots) beside O(subvolume). When O(subvolume) is the top of the
        filesystem, set a directory inside it that is excluded from your other backups.
    type: path
  source:
    description: Source name of the sets. Defaults to O(subvolume) with C(/) turned into C(-).
    type: str
  type:
    description: The type of set to write; C(auto) applies O(full_every) and O(between).
    type: str
    default: full
    choices: [full, incremental, differential, auto]
  full_every:
    description: With O(type=auto), how often a full set is due (for example C(7d)).
    type: str
  between:
    description: With O(type=auto), what is written between full sets.
    type: str
    default: incremental
    choices: [incremental, differential]
  max_age:
    description: Skip when a complete set younger than this exists (for example C(20h)).
    type: str
  labels:
    description: Free labels recorded in the manifest.
    type: dict
    default: {}
  work_dir:
    description: Local scratch directory.
    type: path
requirements:
  - btrfs-progs (C(btrfs)) on the managed host, run as root
  - GNU tar with O(path)
  - zstd, gzip or pigz for compression; age for encryption
seealso:
  - module: lifeboat.backup.btrfs_restore
  - module: lifeboat.backup.files_restore
  - module: lifeboat.backup.backup_verify
notes:
  - Tested for real on a btrfs filesystem in a loop file (full and incremental send, receive, a killed
    run and its cleanup); see docs/snapshots.md.
"""

EXAMPLES = r"""
- name: Daily incremental send of /srv/data, a full one every week
  lifeboat.backup.btrfs_snapshot:
    subvolume: /srv/data
    type: auto
    full_every: 7d
    store:
      kind: dir
      path: /var/backups/lifeboat
    host: "{{ inventory_hostname }}"

- name: Nightly tar chain of /srv/data/www, read from a read-only snapshot of /srv/data
  lifeboat.backup.btrfs_snapshot:
    subvolume: /srv/data
    path: www
    source: www
    type: auto
    full_every: 7d
    store:
      kind: dir
      path: /var/backups/lifeboat
"""

RETURN = r"""
set_id:
  description: Id of the set written (or of the fresh set that made the run skip).
  returned: always
  type: str
  sample: 20261126T031500Z-incremental
type:
  description: Type of the set written, and why (C(type_reason)).
  returned: success
  type: str
type_reason:
  description: Why this type and parent were chosen.
  returned: success
  type: str
parent_set_id:
  description: The set this one was sent against (C(btrfs send -p)), or null for a full set.
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
  description: Engine position (empty for btrfs).
  returned: success
  type: dict
snapshot:
  description:
    - The read-only snapshot taken (kept as the parent of the next incremental; with O(path) deleted once the files
      were read), or the one check mode would take.
  returned: always
  type: str
  sample: /srv/.lifeboat-snapshots/srv-data/20261126T031500Z-full
removed_snapshots:
  description:
    - Snapshots removed before the new one was taken, with the reason (left by an interrupted run, or no
      longer a parent). In check mode, those that would be removed.
  returned: always
  type: list
  elements: dict
manifest:
  description: The whole manifest of the set.
  returned: success
  type: dict
cmd:
  description: The argv of every pipeline stage.
  returned: always
  type: list
  elements: list
tool_versions:
  description: With O(path), the versions of the tools that wrote the set.
  returned: success with O(path)
  type: dict
skipped_reason:
  description: Why no backup ran, when C(changed=false).
  returned: always
  type: str
removed_partials:
  description: Leftover C(.partial) sets of crashed runs that were removed.
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
from ansible_collections.lifeboat.backup.plugins.module_utils import _btrfs
from ansible_collections.lifeboat.backup.plugins.module_utils import _codec
from ansible_collections.lifeboat.backup.plugins.module_utils import _files
from ansible_collections.lifeboat.backup.plugins.module_utils import _jobs
from ansible_collections.lifeboat.backup.plugins.module_utils import _snapshot
from ansible_collections.lifeboat.backup.plugins.module_utils import _store_kinds
from ansible_collections.lifeboat.backup.plugins.module_utils._runner import runner_for


def main():
    argument_spec = _jobs.backup_argument_spec(chains=True)
    argument_spec.update(
        subvolume=dict(type="path", required=True),
        snapshot_dir=dict(type="path"),
        path=dict(type="str"),
        exclude=dict(type="list", elements="str", default=[]),
        one_file_system=dict(type="bool", default=False),
        xattrs=dict(type="bool", default=True),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True,
                           required_if=_jobs.BACKUP_REQUIRED_IF,
                           mutually_exclusive=_codec.SIGNING_MUTUALLY_EXCLUSIVE)
    plain_results(module)
    params = module.params
    try:
        btrfs = _btrfs.Btrfs(runner_for(module))
        subvolume = os.path.abspath(params["subvolume"])
        _btrfs.check_subvolume(btrfs, subvolume)
        source = params["source"] or _btrfs.source_name(subvolume)
        if params["path"] is None:
            provider = _btrfs.SnapshotProvider(btrfs, subvolume, params["snapshot_dir"], keep_parents=True)
            engine = _snapshot.with_snapshot(provider, _btrfs.SendEngine(btrfs, provider))
        else:
            subpath = _btrfs.path_in_subvolume(subvolume, params["path"])
            provider = _btrfs.SnapshotProvider(btrfs, subvolume, params["snapshot_dir"], keep_parents=False)
            store = _store_kinds.open_store(params["store"])
            files = _files.TarEngine(store, None, _jobs.need_binary(module, "tar", "tar"), params["exclude"],
                                     params["one_file_system"], params["xattrs"])
            engine = _btrfs.FilesEngine(provider, files, subpath, os.path.join(subvolume, subpath))
    except LifeboatError as exc:
        module.fail_json(msg=str(exc), cmd=[])
    if params["path"] is None:
        _jobs.run_backup_module(module, engine, source, "btrfs", "send")
    else:
        _jobs.run_backup_module(module, engine, source, _files.ENGINE, "tar", store=store)


if __name__ == "__main__":
    main()
