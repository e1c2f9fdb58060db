#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: ebs_restore
short_description: Create EBS volumes from the snapshots of an ebs_snapshot set, optionally attached to an instance
version_added: 0.4.0
description:
  - Reads a set written by M(lifeboat.backup.ebs_snapshot) (the newest, or O(set_id)) and creates one volume
    per snapshot in O(availability_zone), tagged with O(tags) and C(lifeboat:restored-from),
    C(lifeboat:snapshot-id) and C(lifeboat:volume-id) (the original volume).
  - With O(instance_id) the volumes are attached to it, each at the device its original volume had (or the
    one O(devices) maps it to); the zone is then the instance's.
  - O(region) picks which snapshots are used. The volumes' own region takes the snapshots; the DR region
    (C(copy_region) of M(lifeboat.backup.ebs_snapshot)) takes the copies made there.
  - Before anything is created, every snapshot must exist, be owned by this account, be completed, and carry
    the tags of this very set (host, source, set id). A manifest naming any other snapshot is refused.
  - A restore that fails deletes the volumes it created and did not attach.
  - Every volume is tagged C(lifeboat:restore) with O(restore_name). A rerun of the same restore finds the volumes
    an earlier run created (same restore name, same set and snapshot, in the zone), creates only those missing,
    attaches only those not attached yet, and reports C(changed=false) when there is nothing left to do.
author:
  - Lifeboat maintainers (@lifeboat-backup)
extends_documentation_fragment:
  - lifeboat.backup._store
  - lifeboat.backup._aws
attributes:
  check_mode:
    support: full
    description: Checks the set and its snapshots and reports the volumes it would create (RV(volumes)).
  diff_mode:
    support: none
    description: Nothing to diff.
  idempotent:
    support: full
    description:
      - A rerun with the same O(restore_name) (by default, the same set and zone) creates nothing and reports
        C(changed=false). Give another O(restore_name) for a second, separate set of volumes.
options:
  source:
    description: Source name of the sets (as given to M(lifeboat.backup.ebs_snapshot)).
    type: str
    required: true
  set_id:
    description: The set to restore. The newest complete set when unset.
    type: str
  availability_zone:
    description: The zone of the new volumes. Defaults to the zone of O(instance_id); one of the two is needed.
    type: str
  instance_id:
    description: Attach the new volumes to this instance (in O(region)).
    type: str
  devices:
    description:
      - With O(instance_id), the device for a volume, keyed by the original volume id or its original device.
        Volumes not named keep their original device.
    type: dict
    default: {}
  volume_type:
    description: The type of the new volumes. Defaults to the original volumes' types.
    type: str
  tags:
    description: Tags added to every new volume. Keys starting with C(lifeboat:) or C(aws:) are refused.
    type: dict
    default: {}
  restore_name:
    description:
      - Names this restore; tagged C(lifeboat:restore) on every volume it creates, and how a rerun finds them.
      - Defaults to C(<set_id>@<availability_zone>). At most 200 characters.
    type: str
  wait_timeout:
    description: Seconds to wait for the volumes to become available (and attached).
    type: int
    default: 1800
requirements:
  - boto3 and botocore on the host that talks to AWS
seealso:
  - module: lifeboat.backup.ebs_snapshot
notes:
  - Permissions used are C(ec2:DescribeSnapshots), C(ec2:DescribeAvailabilityZones), C(ec2:CreateVolume),
    C(ec2:CreateTags), C(ec2:DescribeVolumes), C(ec2:DeleteVolume) (on failure) and, with O(instance_id),
    C(ec2:DescribeInstances) and C(ec2:AttachVolume).
  - Tested against moto's EC2 (server mode); see docs/snapshots.md.
"""

EXAMPLES = r"""
- name: Rebuild the volumes of the newest set in the DR region, attached to a standby instance
  lifeboat.backup.ebs_restore:
    source: i-0123456789abcdef0
    region: eu-central-1
    instance_id: i-0fedcba9876543210
    devices:
      /dev/sda1: /dev/sdh
    tags:
      purpose: dr-test
    store:
      kind: s3
      bucket: backup-manifests
    host: app1
"""

RETURN = r"""
set_id:
  description: The set restored.
  returned: when the set was found
  type: str
chain:
  description: The sets read (the set itself).
  returned: when the set was found
  type: list
  elements: str
store:
  description: The store, as kind and location.
  returned: when the set was found
  type: dict
path:
  description: Location of the set in the store.
  returned: when the set was found
  type: str
volumes:
  description:
    - The volumes of the restore, each with volume_id (in check mode null for a volume that would be created),
      existing (true for a volume an earlier run of this restore created), existing_volume_id, snapshot_id,
      source_volume_id, size_gib, volume_type, availability_zone, region, device and attached_to.
  returned: always
  type: list
  elements: dict
restore_name:
  description: The name of this restore (the C(lifeboat:restore) tag of its volumes).
  returned: when the set was found
  type: str
region:
  description: The region whose snapshots were used.
  returned: always
  type: str
left_behind:
  description: Volumes a failed restore could not delete, with the reason.
  returned: on failure
  type: list
  elements: dict
duration_s:
  description: Seconds the restore took.
  returned: success
  type: float
cmd:
  description: Nothing (EC2 calls only).
  returned: always
  type: list
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.lifeboat.backup.plugins.module_utils._common import LifeboatError, plain_results
from ansible_collections.lifeboat.backup.plugins.module_utils import _ebs
from ansible_collections.lifeboat.backup.plugins.module_utils import _jobs
from ansible_collections.lifeboat.backup.plugins.module_utils import _store_kinds


def main():
    argument_spec = _jobs.store_argument_spec()
    argument_spec.update(_ebs.connection_argument_spec())
    argument_spec.update(
        source=dict(type="str", required=True),
        set_id=dict(type="str"),
        availability_zone=dict(type="str"),
        instance_id=dict(type="str"),
        devices=dict(type="dict", default={}),
        volume_type=dict(type="str"),
        tags=dict(type="dict", default={}),
        wait_timeout=dict(type="int", default=_ebs.DEFAULT_WAIT_TIMEOUT),
        restore_name=dict(type="str"),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True,
                           required_one_of=[("availability_zone", "instance_id")])
    plain_results(module)
    params = module.params
    job = engine = None
    try:
        if params["wait_timeout"] < 1:
            raise LifeboatError("wait_timeout must be 1 second or more, not %d." % params["wait_timeout"])
        ec2 = _ebs.Ec2(params)
        store = _store_kinds.open_store(params["store"])
        job = _jobs.RestoreJob(module, store, _jobs.default_host(params), params["source"], set_id=params["set_id"],
                               work_dir=module.tmpdir)
        job.load()
        if job.manifest["engine"] != "ebs":
            raise LifeboatError("Set %s was written by %s, not ebs_snapshot; restore it with its own module."
                                % (job.manifest["set_id"], job.manifest["engine"]))
        engine = _ebs.RestoreEngine(ec2, params["availability_zone"], params["instance_id"], None,
                                    dict((str(k), str(v)) for k, v in params["devices"].items()), params["tags"],
                                    params["volume_type"], params["wait_timeout"],
                                    restore_name=params["restore_name"])
        result = job.run(engine, check_mode=module.check_mode)
    except LifeboatError as exc:
        failed = dict(job.summary() if job is not None else {}, cmd=[], volumes=[], region=params["region"])
        if engine is not None:
            failed.update(volumes=engine.volumes, left_behind=engine.left_behind, region=engine.region)
        module.fail_json(msg=str(exc), **failed)
    result.update(region=engine.region, restore_name=engine.restore_name, changed=engine.changed,
                  volumes=engine.volumes if not module.check_mode else [
                      dict(p, volume_id=p["existing_volume_id"], existing=p["existing_volume_id"] is not None)
                      for p in engine.plan])
    module.exit_json(**result)


if __name__ == "__main__":
    main()
