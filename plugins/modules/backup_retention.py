#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: backup_retention
short_description: Apply a retention policy to one store, never orphaning a chain
version_added: 0.3.0
description:
  - Plans, for every source of O(store) (or those selected by O(host) and O(sources)), which sets the
    O(policy) keeps and which it deletes, and why; then deletes the others through the store contract.
  - The rules are those of restic and borg (keep_last, hourly, daily, weekly, monthly, yearly, keep_within),
    in UTC, with O(policy.min_keep) as a floor; the collection's docs/retention.md states the bucket rules and
    gives a worked example.
  - It never deletes a set that a kept set depends on (the parent of a kept incremental or differential,
    and so on up to its full), never the newest complete set, never a set whose chain is broken or that is
    dated in the future (those are reported), never a set with the C(hold) label, and never a set under
    S3 Object Lock (retention mode or legal hold).
  - It deletes nothing for a source whose newest attempt did not complete (a C(.partial) newer than its
    newest set, or a failure record C(attempts/<set_id>.failed) that the backup job leaves in the source's
    object namespace), nor for a source whose newest set has not reached every store in O(wait_for).
  - Each source is handled under its store lock, so no backup of that source runs meanwhile. Sets are
    deleted newest first, each hidden before its payload goes; a run that dies part-way leaves no set that
    looks complete, and the next run finishes the deletion and reports it in RV(deletions_finished).
  - Leftovers of crashed runs (C(.partial) sets, half-deleted sets, incomplete multipart uploads) older than
    O(leftovers_older_than) are removed, and objects of the namespace that no kept set needs (WAL segments
    before the first one a kept set names, old failure records) are pruned.
  - A set that refers to EBS snapshots (M(lifeboat.backup.ebs_snapshot)) has them deleted with it, in every
    region it names (the volumes' region and the DR copies'), through the AWS connection in O(aws). Only
    snapshots owned by the account and tagged for that very set are deleted; a snapshot still pending, used
    by an AMI or tagged for another host, source or set keeps the set (and its parents), reported in
    RV(external_kept).
author:
  - Lifeboat maintainers (@lifeboat-backup)
extends_documentation_fragment:
  - lifeboat.backup._store
  - lifeboat.backup._wait_for
attributes:
  check_mode:
    support: full
    description: Returns the plan and what would be deleted, removed and pruned; nothing is changed and no lock
      is taken.
  diff_mode:
    support: none
    description: The plan in RV(plan) says, set by set, what is kept and why.
  idempotent:
    support: full
    description: A second run with the same policy and clock finds nothing to delete and reports C(changed=false).
options:
  btrfs_snapshot_dirs:
    description:
      - The O(lifeboat.backup.btrfs_snapshot#module:snapshot_dir) directories of this host's btrfs send sets. When
        retention deletes such a set, the read-only snapshot it kept on this host
        (C(<snapshot_dir>/<source>/<set_id>)) is deleted too; the module's default directory,
        C(.lifeboat-snapshots) beside the subvolume, is always looked in.
      - Only a read-only subvolume at that very path, with the UUID the set recorded, is deleted; a manifest that
        names another path or snapshot keeps its set (RV(external_kept)). Sets of other hosts (O(host), by
        default this host's name) are not acted on.
    type: list
    elements: path
    default: []
  aws:
    description:
      - The AWS connection used to delete the EBS snapshots of deleted sets. Each snapshot is deleted in the
        region its set records; O(aws.region) is only the default for a set that records none.
      - Unset options come from the environment (E(AWS_ACCESS_KEY_ID), E(AWS_URL)...), as in amazon.aws.
      - Used only when a set to delete refers to EBS snapshots.
    type: dict
    default: {}
    suboptions:
      access_key:
        description: AWS access key ID (else E(AWS_ACCESS_KEY_ID) or E(AWS_ACCESS_KEY), else boto3's chain).
        type: str
        aliases: [aws_access_key_id, aws_access_key]
      secret_key:
        description: AWS secret access key (else E(AWS_SECRET_ACCESS_KEY) or E(AWS_SECRET_KEY)).
        type: str
        aliases: [aws_secret_access_key, aws_secret_key]
      session_token:
        description: AWS STS session token (else E(AWS_SESSION_TOKEN)).
        type: str
        aliases: [aws_session_token]
      profile:
        description: A profile of the AWS configuration files (else E(AWS_PROFILE)).
        type: str
        aliases: [aws_profile]
      region:
        description: The default region (else E(AWS_REGION) or E(AWS_DEFAULT_REGION)).
        type: str
        aliases: [aws_region]
      endpoint_url:
        description: URL of an EC2-compatible endpoint instead of AWS's (else E(AWS_URL)).
        type: str
        aliases: [aws_endpoint_url]
      aws_ca_bundle:
        description: A CA bundle for the endpoint's TLS certificate (else E(AWS_CA_BUNDLE)).
        type: path
      validate_certs:
        description: Verify the endpoint's TLS certificate.
        type: bool
        default: true
      max_attempts:
        description: Attempts per request, from 1 to 20.
        type: int
        default: 5
  host:
    description:
      - Only the sources of this host. All hosts of O(store) when unset.
    type: str
  sources:
    description:
      - Only these sources. All sources when unset.
    type: list
    elements: str
  policy:
    description:
      - What to keep. At least one rule must keep something; a policy that keeps nothing is refused.
      - Counting rules count only restorable sets (chain complete, not dated in the future).
    type: dict
    required: true
    suboptions:
      keep_last:
        description: Keep the newest N sets.
        type: int
      keep_hourly:
        description: Keep the newest set of each of the newest N UTC hours that have a set.
        type: int
      keep_daily:
        description: Keep the newest set of each of the newest N UTC days that have a set.
        type: int
      keep_weekly:
        description: Keep the newest set of each of the newest N ISO weeks (Monday to Sunday, UTC) that have a set.
        type: int
      keep_monthly:
        description: Keep the newest set of each of the newest N UTC months that have a set.
        type: int
      keep_yearly:
        description: Keep the newest set of each of the newest N UTC years that have a set.
        type: int
      keep_within:
        description: Keep every set that started within this duration of now, like V(14d) or V(36h).
        type: str
      min_keep:
        description: Never keep fewer than this many restorable sets per source, whatever the rules say.
        type: int
        default: 1
  leftovers_older_than:
    description:
      - Leftovers of crashed runs are removed once their set id is older than this, and older than the
        source's newest set. A half-deleted set is always finished at once.
    type: str
    default: 1d
  prune_objects:
    description:
      - Delete objects of the namespace that no kept set needs (docs/retention.md says how a set names them).
    type: bool
    default: true
  fail_when_blocked:
    description:
      - Fail the task when a source deleted nothing because its newest attempt failed or its newest set has
        not reached O(wait_for). The other sources are handled first either way.
    type: bool
    default: false
requirements:
  - boto3 and botocore, for a store of kind V(s3)
seealso:
  - module: lifeboat.backup.backup_info
  - module: lifeboat.backup.backup_copy
  - module: lifeboat.backup.backup_bucket
"""

EXAMPLES = r"""
- name: Keep a week of daily sets on the local store, once the offsite copy holds the newest
  lifeboat.backup.backup_retention:
    store:
      path: /var/backups/lifeboat
    host: "{{ inventory_hostname }}"
    policy:
      keep_daily: 7
    wait_for:
      - kind: s3
        bucket: example-offsite-backups
        region: eu-west-1

- name: Keep 4 weekly and 12 monthly sets offsite
  lifeboat.backup.backup_retention:
    store:
      kind: s3
      bucket: example-offsite-backups
      region: eu-west-1
    policy:
      keep_weekly: 4
      keep_monthly: 12

- name: Show what a policy would delete
  lifeboat.backup.backup_retention:
    store:
      path: /var/backups/lifeboat
    policy:
      keep_last: 3
  check_mode: true
  register: lifeboat_plan
"""

RETURN = r"""
plan:
  description: Every set of the selected sources, newest first per source, with C(action) (V(keep) or V(delete))
    and C(reasons) (the rules that keep it, the set that depends on it, or why nothing is deleted).
  returned: always
  type: list
  elements: dict
  sample:
    - host: db1
      source: app
      set_id: 20261126T031500Z-full
      type: full
      parent_set_id: null
      action: keep
      reasons: ["keep_daily 7: the newest set of day 2026-11-26", "set 20261127T031500Z-incremental depends on it"]
deleted:
  description: The sets deleted (in check mode, that would be deleted), each with host, source and set_id.
  returned: always
  type: list
  elements: dict
kept:
  description: How many sets are kept.
  returned: always
  type: int
blocked:
  description: Per C(host/source), why nothing was deleted there (a failed newest attempt, a missing copy).
  returned: always
  type: dict
deletions_finished:
  description: Deletions a previous run left half done, finished by this run (host, source, set_id).
  returned: always
  type: list
  elements: dict
leftovers_removed:
  description: Leftovers of crashed runs removed (host, source, name).
  returned: always
  type: list
  elements: dict
leftovers_kept:
  description: Leftovers not removed, with the reason (host, source, name, reason).
  returned: always
  type: list
  elements: dict
objects_pruned:
  description: Objects of the namespace deleted because no kept set needs them (host, source, name).
  returned: always
  type: list
  elements: dict
external_released:
  description: External references (EBS snapshots, btrfs snapshots) deleted with their sets (in check mode, that
    would be), each with host, source, set_id, kind, id and location (the region, or the snapshot's path).
  returned: always
  type: list
  elements: dict
external_kept:
  description: Why the external references of a set could not be released, so that the set was kept
    (host, source, set_id, reason).
  returned: always
  type: list
  elements: dict
stale_locks:
  description: Stale store locks that were taken over, per C(host/source).
  returned: always
  type: dict
store:
  description: The store, as kind and location (never a secret).
  returned: always
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.lifeboat.backup.plugins.module_utils._common import LifeboatError, parse_duration, plain_results, utcnow
from ansible_collections.lifeboat.backup.plugins.module_utils import _btrfs
from ansible_collections.lifeboat.backup.plugins.module_utils import _ebs
from ansible_collections.lifeboat.backup.plugins.module_utils import _jobs
from ansible_collections.lifeboat.backup.plugins.module_utils import _retention
from ansible_collections.lifeboat.backup.plugins.module_utils import _store_kinds
from ansible_collections.lifeboat.backup.plugins.module_utils._runner import Runner, runner_for

POLICY_OPTIONS = dict(
    keep_last=dict(type="int"),
    keep_hourly=dict(type="int"),
    keep_daily=dict(type="int"),
    keep_weekly=dict(type="int"),
    keep_monthly=dict(type="int"),
    keep_yearly=dict(type="int"),
    keep_within=dict(type="str"),
    min_keep=dict(type="int", default=1),
)


def releasers(params, runner=None):
    """What releases the external references of deleted sets, per kind (EBS snapshots through ``aws``, the
    btrfs snapshots this host keeps)."""
    return [_ebs.Releaser(_ebs.Ec2(params.get("aws") or {})),
            _btrfs.Releaser(runner or Runner(), _jobs.default_host(params), params.get("btrfs_snapshot_dirs") or ())]


def run(store, params, now, check_mode, wait_for=(), release=()):
    """Apply the policy to every selected source; the module's result (without ``changed``)."""
    policy = _retention.check_policy(params["policy"])
    leftover_age_s = _retention.parse_duration(params["leftovers_older_than"], "leftovers_older_than")
    result = dict(plan=[], deleted=[], kept=0, blocked={}, deletions_finished=[], leftovers_removed=[],
                  leftovers_kept=[], objects_pruned=[], stale_locks={}, external_released=[], external_kept=[])
    for host, source in _retention.select_sources(store, params["host"], params["sources"]):
        report = _retention.apply_source(store, host, source, policy, now, wait_for, leftover_age_s,
                                         params["prune_objects"], check_mode, release)
        key = "%s/%s" % (host, source)
        result["plan"] += report["plan"]
        result["kept"] += sum(1 for e in report["plan"] if e["action"] == "keep")
        if report["blocked"]:
            result["blocked"][key] = report["blocked"]
        if report["stale_lock"]:
            result["stale_locks"][key] = report["stale_lock"]
        result["deleted"] += [dict(host=host, source=source, set_id=s) for s in report["deleted"]]
        result["deletions_finished"] += [dict(host=host, source=source, set_id=s) for s in report["deletions_finished"]]
        result["leftovers_removed"] += [dict(host=host, source=source, name=n) for n in report["leftovers_removed"]]
        result["leftovers_kept"] += [dict(item, host=host, source=source) for item in report["leftovers_kept"]]
        result["objects_pruned"] += [dict(host=host, source=source, name=n) for n in report["objects_pruned"]]
        result["external_released"] += [dict(item, host=host, source=source) for item in report["external_released"]]
        result["external_kept"] += [dict(item, host=host, source=source) for item in report["external_kept"]]
    return result


def main():
    argument_spec = _jobs.store_argument_spec()
    argument_spec.update(
        sources=dict(type="list", elements="str"),
        policy=dict(type="dict", required=True, options=POLICY_OPTIONS),
        wait_for=dict(type="list", elements="dict", default=[], options=_store_kinds.store_options()),
        leftovers_older_than=dict(type="str", default="1d"),
        prune_objects=dict(type="bool", default=True),
        aws=dict(type="dict", default={}, options=_ebs.connection_argument_spec()),
        btrfs_snapshot_dirs=dict(type="list", elements="path", default=[]),
        fail_when_blocked=dict(type="bool", default=False),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    plain_results(module)
    params = module.params
    store = None
    try:
        parse_duration(params["leftovers_older_than"], "leftovers_older_than")
        _retention.check_policy(params["policy"])
        store = _store_kinds.open_store(params["store"])
        wait_for = [_store_kinds.open_store(spec) for spec in params["wait_for"]]
        if not store.exists():
            raise LifeboatError("The store %s does not exist." % store.location())
        result = run(store, params, utcnow(), module.check_mode, wait_for, releasers(params, runner_for(module)))
    except LifeboatError as exc:
        module.fail_json(msg=str(exc))
    result["store"] = store.describe()
    changed = bool(result["deleted"] or result["deletions_finished"] or result["leftovers_removed"]
                   or result["objects_pruned"] or result["external_released"])
    if params["fail_when_blocked"] and result["blocked"]:
        module.fail_json(msg="Retention deleted nothing for %s: %s" % (
            ", ".join(sorted(result["blocked"])), " ".join(result["blocked"][k] for k in sorted(result["blocked"]))),
            changed=changed, **result)
    module.exit_json(changed=changed, **result)


if __name__ == "__main__":
    main()
