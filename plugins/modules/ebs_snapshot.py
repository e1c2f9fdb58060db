#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: ebs_snapshot
short_description: Snapshot one or more EBS volumes as one backup set, with an optional copy to a DR region
version_added: 0.4.0
description:
  - Takes EBS snapshots of the chosen volumes (by id, by instance, or by tags) as one backup set. The set's
    manifest holds no payload but one external reference per snapshot, and goes into any store, so
    M(lifeboat.backup.backup_info), M(lifeboat.backup.backup_verify) and M(lifeboat.backup.backup_retention)
    see it like any other set.
  - When the volumes are all the EBS volumes of one instance (or all but its boot volume), one
    C(CreateSnapshots) call takes them at the same point in time (crash-consistent); otherwise one
    C(CreateSnapshot) per volume is started, one right after the other.
  - O(pre_hook) runs before the snapshots are started (a filesystem freeze, a database backup mode) and
    O(post_hook) right after they are started, always, even when O(pre_hook) or the snapshot failed. Both
    are argv lists, never shell strings.
  - Every snapshot is tagged C(lifeboat:host), C(lifeboat:source), C(lifeboat:set-id), C(lifeboat:type),
    C(lifeboat:volume-id) and C(lifeboat:device), plus O(tags). Restore and retention only touch a snapshot
    whose tags name its set.
  - The module waits until every snapshot is completed (at most O(wait_timeout) seconds) and reports the
    progress it saw in RV(progress). With O(copy_region) it then copies each snapshot there
    (C(CopySnapshot), re-encrypted with O(copy_kms_key_id) when given), waits for the copies, and records
    them in the same set.
  - A run that fails deletes the snapshots it took, in both regions. Snapshots left by a killed run (tagged
    for this host and source, but of no complete set) are deleted by the next run and reported in
    RV(removed_snapshots).
author:
  - Lifeboat maintainers (@lifeboat-backup)
extends_documentation_fragment:
  - lifeboat.backup._store
  - lifeboat.backup._aws
  - lifeboat.backup._signing
attributes:
  check_mode:
    support: full
    description:
      - Chooses the volumes and reports what would be snapshotted (RV(volumes), RV(multi_volume)) and copied
        (RV(copy_region)), and the calls in RV(cmd); changes nothing.
  diff_mode:
    support: none
    description: Nothing to diff.
  idempotent:
    support: partial
    description: With O(max_age) a rerun skips while a complete set younger than that exists.
options:
  volume_ids:
    description: The volumes to snapshot, by id. Exactly one of O(volume_ids), O(instance_id) and O(volume_tags).
    type: list
    elements: str
  instance_id:
    description: Snapshot the EBS volumes attached to this instance (all of them, or those at O(devices)).
    type: str
  devices:
    description: With O(instance_id), only the volumes at these device names (for example V(/dev/sdf)).
    type: list
    elements: str
  volume_tags:
    description: Snapshot every volume of the region that has all these tags.
    type: dict
  source:
    description:
      - Source name of the sets. Defaults to the instance id with O(instance_id), else V(ebs).
    type: str
  tags:
    description:
      - Tags added to every snapshot and copy. Keys starting with C(lifeboat:) or C(aws:) are refused.
    type: dict
    default: {}
  description:
    description: The snapshots' description. Defaults to C(lifeboat <host>/<source> <set_id>).
    type: str
  pre_hook:
    description: A command (argv list) run before the snapshots are started; a failure fails the set.
    type: list
    elements: str
  post_hook:
    description: A command (argv list) run right after the snapshots are started, whatever happened before.
    type: list
    elements: str
  wait_timeout:
    description: Seconds to wait for the snapshots (and again for the copies) to complete.
    type: int
    default: 1800
  copy_region:
    description: Copy every snapshot to this region (disaster recovery); the copies are part of the set.
    type: str
  copy_kms_key_id:
    description: With O(copy_region), encrypt the copies with this KMS key (id, alias or ARN of that region).
    type: str
  max_age:
    description: Skip when a complete set younger than this exists (for example C(20h)).
    type: str
  labels:
    description: Free labels recorded in the manifest.
    type: dict
    default: {}
requirements:
  - boto3 and botocore on the host that talks to AWS
seealso:
  - module: lifeboat.backup.ebs_restore
  - module: lifeboat.backup.backup_retention
notes:
  - Permissions used are C(ec2:DescribeVolumes), C(ec2:DescribeInstances), C(ec2:DescribeSnapshots),
    C(ec2:CreateSnapshot) or C(ec2:CreateSnapshots), C(ec2:CreateTags), C(ec2:DeleteSnapshot) (on failure
    and for leftovers) and, with O(copy_region), C(ec2:CopySnapshot) (and the KMS key's use).
  - Tested against moto's EC2 (server mode); moto completes snapshots at once, so the waiting is tested
    with botocore's Stubber. See docs/snapshots.md.
"""

EXAMPLES = r"""
- name: Snapshot every volume of an instance, copy the snapshots to a DR region
  lifeboat.backup.ebs_snapshot:
    instance_id: i-0123456789abcdef0
    region: eu-west-1
    copy_region: eu-central-1
    copy_kms_key_id: alias/dr-backups
    pre_hook: [fsfreeze, --freeze, /srv/data]
    post_hook: [fsfreeze, --unfreeze, /srv/data]
    tags:
      team: payments
    store:
      kind: s3
      bucket: backup-manifests
    host: "{{ inventory_hostname }}"
"""

RETURN = r"""
set_id:
  description: Id of the set written (or of the fresh set that made the run skip, or that check mode would write).
  returned: always
  type: str
  sample: 20261126T031500Z-full
type:
  description: Type of the set written (always C(full)).
  returned: success
  type: str
type_reason:
  description: Why this type was chosen.
  returned: success
  type: str
parent_set_id:
  description: Always null (every EBS set is complete on its own).
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
  description: Stored bytes (0; the snapshots' sizes are in the manifest's external references).
  returned: success
  type: int
duration_s:
  description: Seconds the backup took.
  returned: success
  type: float
files:
  description: Stored files (none for an EBS set).
  returned: success
  type: list
  elements: dict
position:
  description: How the snapshots were started (C(create_snapshots) or C(create_snapshot)).
  returned: success
  type: dict
volumes:
  description: The chosen volumes (volume_id, size_gib, availability_zone, device, instance_id, volume_type...).
  returned: always
  type: list
  elements: dict
multi_volume:
  description: Whether one C(CreateSnapshots) call took them all at one point in time.
  returned: always
  type: bool
snapshots:
  description: The snapshots taken (snapshot_id, volume_id, region, device, size_gib).
  returned: always
  type: list
  elements: dict
copies:
  description: The copies made in O(copy_region) (snapshot_id, source_snapshot_id, volume_id, region).
  returned: always
  type: list
  elements: dict
copy_region:
  description: The DR region, or null.
  returned: always
  type: str
progress:
  description: Progress samples seen while waiting (elapsed_s, region, snapshots as id to percentage).
  returned: success
  type: list
  elements: dict
hooks:
  description: The hooks run, with argv and exit status.
  returned: success
  type: list
  elements: dict
removed_snapshots:
  description: Snapshots of killed runs that were deleted (kind, id, region, set_id, reason).
  returned: success
  type: list
  elements: dict
manifest:
  description: The whole manifest of the set.
  returned: success
  type: dict
cmd:
  description: The hooks and EC2 calls, in order.
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
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.lifeboat.backup.plugins.module_utils._common import LifeboatError, plain_results
from ansible_collections.lifeboat.backup.plugins.module_utils import _codec
from ansible_collections.lifeboat.backup.plugins.module_utils import _ebs
from ansible_collections.lifeboat.backup.plugins.module_utils import _jobs
from ansible_collections.lifeboat.backup.plugins.module_utils._runner import runner_for


def main():
    argument_spec = _jobs.store_argument_spec()
    argument_spec.update(_ebs.connection_argument_spec())
    argument_spec.update(_codec.signing_argument_spec())
    argument_spec.update(
        volume_ids=dict(type="list", elements="str"),
        instance_id=dict(type="str"),
        devices=dict(type="list", elements="str"),
        volume_tags=dict(type="dict"),
        source=dict(type="str"),
        tags=dict(type="dict", default={}),
        description=dict(type="str"),
        pre_hook=dict(type="list", elements="str"),
        post_hook=dict(type="list", elements="str"),
        wait_timeout=dict(type="int", default=_ebs.DEFAULT_WAIT_TIMEOUT),
        copy_region=dict(type="str"),
        copy_kms_key_id=dict(type="str"),
        max_age=dict(type="str"),
        labels=dict(type="dict", default={}),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True,
                           required_one_of=[("volume_ids", "instance_id", "volume_tags")],
                           mutually_exclusive=[("volume_ids", "instance_id", "volume_tags")]
                           + list(_codec.SIGNING_MUTUALLY_EXCLUSIVE),
                           required_by={"devices": "instance_id", "copy_kms_key_id": "copy_region"})
    plain_results(module)
    params = module.params
    try:
        if params["wait_timeout"] < 1:
            raise LifeboatError("wait_timeout must be 1 second or more, not %d." % params["wait_timeout"])
        for hook in ("pre_hook", "post_hook"):
            if params[hook] is not None and not params[hook]:
                raise LifeboatError("%s is an empty command; give an argv list or leave it out." % hook)
        selection = dict(volume_ids=params["volume_ids"], instance_id=params["instance_id"],
                         devices=params["devices"], tags=params["volume_tags"])
        engine = _ebs.SnapshotEngine(_ebs.Ec2(params), None, runner_for(module), params["pre_hook"],
                                     params["post_hook"], params["tags"], params["copy_region"],
                                     params["copy_kms_key_id"], params["wait_timeout"], params["description"],
                                     selection=selection)
    except LifeboatError as exc:
        module.fail_json(msg=str(exc), cmd=[])
    _jobs.run_backup_module(module, engine, params["source"] or params["instance_id"] or "ebs", "ebs", "snapshot")


if __name__ == "__main__":
    main()
