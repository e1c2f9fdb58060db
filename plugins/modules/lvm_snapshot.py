#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: lvm_snapshot
short_description: Back up the files of an LVM logical volume from a read-only snapshot
version_added: 0.2.0
description:
  - Takes a copy-on-write snapshot of O(vg)/O(lv) (C(lvcreate --snapshot)) of O(size), mounts it
    read-only at O(mount_dir)C(/<source>) (with C(nouuid) for XFS), backs its files up with the GNU tar
    engine of M(lifeboat.backup.files_backup) (full, incremental and differential chains, restored with
    M(lifeboat.backup.files_restore)), then unmounts it and removes it with C(lvremove).
  - The snapshot is always unmounted and removed, also when the backup fails. A snapshot left by a killed
    run (tagged for this host and source) is unmounted and removed by the next run and reported in
    RV(removed_snapshots).
  - A snapshot whose copy-on-write space filled up while its files were read (C(lvs) shows it invalid or
    at 100%) fails the backup with one sentence, and no set is written.
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
      - Checks the volume group, the volume, the size and the filesystem, and reports the set, type, parent,
        the commands and the leftovers a run would remove; creates, mounts and removes nothing.
  diff_mode:
    support: none
    description: Nothing to diff.
  idempotent:
    support: partial
    description: With O(max_age) a rerun skips while a complete set younger than that exists.
options:
  vg:
    description: The volume group of the logical volume.
    type: str
    required: true
  lv:
    description: The logical volume to snapshot (the origin, not a snapshot).
    type: str
    required: true
  size:
    description:
      - Size of the snapshot's copy-on-write space, as C(lvcreate --size) takes it (V(10G), V(512M); no unit
        means MiB), or a share as C(lvcreate --extents) takes it (V(20%FREE) of the volume group's free space,
        V(10%ORIGIN), V(5%VG)).
      - It must hold every block written to the origin while the backup runs; a snapshot that fills up fails
        the backup.
    type: str
    default: 20%FREE
  fstype:
    description: The filesystem of the volume; found with C(blkid) when unset. V(xfs) is mounted with C(nouuid).
    type: str
  path:
    description:
      - The directory to back up, relative to the root of the volume (V(www) for C(<volume>/www)); V(.) backs up
        the whole volume. It must resolve inside the snapshot; a symbolic link out of it is refused.
    type: str
    default: .
  mount_dir:
    description: Directory under which the snapshot is mounted read-only, at C(<mount_dir>/<source>).
    type: path
    default: /run/lifeboat/lvm
  bin_dir:
    description:
      - Directory holding C(lvcreate), C(lvs), C(lvremove), C(mount), C(umount) and C(blkid). When unset they
        are found on PATH (and in C(/sbin), C(/usr/sbin)).
    type: path
  source:
    description: Source name of the sets. Defaults to C(<vg>-<lv>).
    type: str
  exclude:
    description:
      - Patterns of files and directories to leave out, for example V(*.log); relative to the volume's root.
    type: list
    elements: str
    default: []
  one_file_system:
    description: Stay on the snapshot's filesystem.
    type: bool
    default: true
  xattrs:
    description: Store extended attributes and POSIX ACLs.
    type: bool
    default: true
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
  - lvm2 (C(lvcreate), C(lvs) 2.02.158 or later for its JSON report, C(lvremove)), util-linux (C(mount),
    C(umount), C(blkid)) and GNU tar on the managed host, run as root
  - zstd, gzip or pigz for compression; age for encryption
seealso:
  - module: lifeboat.backup.files_backup
  - module: lifeboat.backup.files_restore
notes:
  - Tested against a fake of the lvm and mount command-line contract (the test machines' kernel has no
    device-mapper); the backup, restore and store parts ran for real. See docs/snapshots.md.
"""

EXAMPLES = r"""
- name: Nightly file backup of vg0/data from a snapshot, a full set every week
  lifeboat.backup.lvm_snapshot:
    vg: vg0
    lv: data
    size: 20%FREE
    type: auto
    full_every: 7d
    store:
      kind: dir
      path: /var/backups/lifeboat
    host: "{{ inventory_hostname }}"
"""

RETURN = r"""
set_id:
  description: Id of the set written (or of the fresh set that made the run skip).
  returned: always
  type: str
  sample: 20261126T031500Z-incremental
type:
  description: Type of the set written.
  returned: success
  type: str
type_reason:
  description: Why this type and parent were chosen.
  returned: success
  type: str
parent_set_id:
  description: The set this one builds on, or null for a full set.
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
  description: Engine position (empty for file trees).
  returned: success
  type: dict
snapshot:
  description:
    - The snapshot taken and removed (C(vg/name)), the one check mode would take, or null when the run skipped.
  returned: always
  type: str
  sample: vg0/lifeboat-3fa4c2d1-20261126T031500Z-full
snapshot_used_percent:
  description: How full the snapshot's copy-on-write space was when the files had been read (C(lvs data_percent)).
  returned: success
  type: str
removed_snapshots:
  description:
    - Snapshots and mounts left by interrupted runs that were removed before the new snapshot was taken.
      In check mode, those that would be removed.
  returned: always
  type: list
  elements: dict
tool_versions:
  description: Versions of the tools that wrote the set.
  returned: success
  type: dict
manifest:
  description: The whole manifest of the set.
  returned: success
  type: dict
cmd:
  description: The argv of every pipeline stage.
  returned: always
  type: list
  elements: list
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
from ansible_collections.lifeboat.backup.plugins.module_utils import _codec
from ansible_collections.lifeboat.backup.plugins.module_utils import _files
from ansible_collections.lifeboat.backup.plugins.module_utils import _jobs
from ansible_collections.lifeboat.backup.plugins.module_utils import _lvm
from ansible_collections.lifeboat.backup.plugins.module_utils import _snapshot
from ansible_collections.lifeboat.backup.plugins.module_utils import _store_kinds
from ansible_collections.lifeboat.backup.plugins.module_utils._runner import runner_for


class LvmFilesEngine(_snapshot.FilesInSnapshot):
    """The tar engine on the mounted snapshot; results name the snapshot and how full it got."""

    def provider_versions(self):
        return {"lvm": self.provider.lvm.version()}

    def check_result(self, decision):
        result = super(LvmFilesEngine, self).check_result(decision)
        job = decision["job"]
        name = self.provider.snapshot_name(job.host, job.source, decision["set_id"])
        result["snapshot"] = "%s/%s" % (self.provider.vg, name)
        return result

    def result(self, manifest, extras):
        result = super(LvmFilesEngine, self).result(manifest, extras)
        if not extras.get("skipped"):
            result["snapshot_used_percent"] = self.provider.usage
        return result


def main():
    argument_spec = _jobs.backup_argument_spec(chains=True)
    argument_spec.update(
        vg=dict(type="str", required=True),
        lv=dict(type="str", required=True),
        size=dict(type="str", default="20%FREE"),
        fstype=dict(type="str"),
        path=dict(type="str", default="."),
        mount_dir=dict(type="path", default="/run/lifeboat/lvm"),
        bin_dir=dict(type="path"),
        exclude=dict(type="list", elements="str", default=[]),
        one_file_system=dict(type="bool", default=True),
        xattrs=dict(type="bool", default=True),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True,
                           required_if=_jobs.BACKUP_REQUIRED_IF,
                           mutually_exclusive=_codec.SIGNING_MUTUALLY_EXCLUSIVE)
    plain_results(module)
    params = module.params
    try:
        _lvm.check_name("volume group", params["vg"])
        _lvm.check_name("logical volume", params["lv"])
        source = params["source"] or "%s-%s" % (params["vg"], params["lv"])
        lvm = _lvm.Lvm(runner_for(module), params["bin_dir"])
        provider = _lvm.SnapshotProvider(lvm, params["vg"], params["lv"], params["size"], params["mount_dir"],
                                         source, params["fstype"])
        provider.check_origin()
        store = _store_kinds.open_store(params["store"])
        subpath = _snapshot.check_subpath(params["path"])
        files = _files.TarEngine(store, None, _jobs.need_binary(module, "tar", "tar"),
                                 params["exclude"], params["one_file_system"], params["xattrs"])
        engine = LvmFilesEngine(provider, files, subpath, os.path.normpath(os.path.join(provider.mount_point, subpath)))
    except LifeboatError as exc:
        module.fail_json(msg=str(exc), cmd=[])
    _jobs.run_backup_module(module, engine, source, _files.ENGINE, "tar", store=store)


if __name__ == "__main__":
    main()
