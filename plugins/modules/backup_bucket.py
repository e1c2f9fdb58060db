#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: backup_bucket
short_description: Prepare an S3 bucket for backup sets in one idempotent step
version_added: 0.3.0
description:
  - Makes the bucket of an V(s3) store ready for offsite backups, each setting only when it differs
    from what the bucket has
  - creates the bucket when absent, in the store's region;
  - turns versioning on;
  - blocks all public access;
  - sets default encryption (SSE-S3, or SSE-KMS with the store's C(kms_key_id));
  - keeps one lifecycle rule of its own (ID C(lifeboat) plus the prefix), under the store's prefix (and
    O(host)), that moves objects to a cold storage class, expires them, expires noncurrent versions and
    aborts incomplete multipart uploads; other lifecycle rules of the bucket are left as they are;
  - optionally sets an Object Lock default retention (governance or compliance mode).
  - A lifecycle expiration is a backstop, not a retention policy; it expires objects by age, so a full set
    would go before the incrementals that need it. Give O(retention_policy) (the policy of
    M(lifeboat.backup.backup_retention) for this store) and the module warns when the lifecycle would expire
    sets before that policy lets them go.
author:
  - Lifeboat maintainers (@lifeboat-backup)
extends_documentation_fragment:
  - lifeboat.backup._store
attributes:
  check_mode:
    support: full
    description: Reports what would change and changes nothing.
  diff_mode:
    support: full
    description: RV(diff) holds the bucket's settings before and after.
  idempotent:
    support: full
    description: A second run with the same options reports C(changed=false).
options:
  store:
    description:
      - The V(s3) store whose bucket is prepared. Its C(bucket), C(region), connection options, C(prefix)
        (the lifecycle rule's scope), C(sse) and C(kms_key_id) (the default encryption) are used.
  host:
    description:
      - Scope the lifecycle rule to this host's sets (C(<prefix>/<host>/)). The whole store prefix when unset.
    type: str
  versioning:
    description: Turn versioning on. It cannot be turned off again, only suspended; V(false) leaves it as it is.
    type: bool
    default: true
  block_public_access:
    description: Block all public access (the four settings of the public access block).
    type: bool
    default: true
  lifecycle:
    description:
      - The lifeboat lifecycle rule. Unset leaves the bucket's lifecycle as it is; an empty dictionary
        removes the rule.
    type: dict
    suboptions:
      transition_days:
        description: Move objects to O(lifecycle.storage_class) this many days after they are written.
        type: int
      storage_class:
        description: The cold storage class. Sets there must be restored before verify or restore can read them.
        type: str
        choices: [STANDARD_IA, ONEZONE_IA, INTELLIGENT_TIERING, GLACIER_IR, GLACIER, DEEP_ARCHIVE]
        default: GLACIER_IR
      expire_days:
        description: Expire objects this many days after they are written (a delete marker, in a versioned bucket).
        type: int
      noncurrent_expire_days:
        description: Remove noncurrent versions (deleted or overwritten objects) this many days after they became
          noncurrent.
        type: int
      abort_incomplete_days:
        description: Abort multipart uploads still incomplete this many days after they started.
        type: int
        default: 7
  object_lock:
    description:
      - Object Lock default retention for new objects. A bucket created by this module gets Object Lock
        enabled; on an existing bucket it is enabled when absent (versioning is required).
      - Object Lock cannot be turned off again, and in V(COMPLIANCE) mode nobody, not even the root account,
        can shorten it. Unset leaves it as it is.
    type: dict
    suboptions:
      mode:
        description: V(GOVERNANCE) (users with s3:BypassGovernanceRetention may delete early) or V(COMPLIANCE).
        type: str
        required: true
        choices: [GOVERNANCE, COMPLIANCE]
      retain_for:
        description: How long each new object is locked, in whole days, like V(30d) or V(2w).
        type: str
        required: true
  retention_policy:
    description:
      - The retention policy of this store (as O(lifeboat.backup.backup_retention#module:policy)); only used to
        warn when the lifecycle would expire sets earlier than the policy keeps them.
    type: dict
requirements:
  - boto3
  - botocore
seealso:
  - module: lifeboat.backup.backup_retention
  - module: lifeboat.backup.backup_copy
"""

EXAMPLES = r"""
- name: Prepare the offsite bucket
  lifeboat.backup.backup_bucket:
    store:
      kind: s3
      bucket: example-offsite-backups
      region: eu-west-1
      prefix: lifeboat
      sse: aws:kms
      kms_key_id: alias/backups
    lifecycle:
      transition_days: 30
      storage_class: GLACIER_IR
      expire_days: 400
      noncurrent_expire_days: 30
      abort_incomplete_days: 3
    object_lock:
      mode: COMPLIANCE
      retain_for: 35d
    retention_policy:
      keep_weekly: 4
      keep_monthly: 12
"""

RETURN = r"""
bucket:
  description: The bucket's settings after the run (in check mode, as they would be).
  returned: always
  type: dict
  sample:
    exists: true
    versioning: Enabled
    public_access_block: {BlockPublicAcls: true, IgnorePublicAcls: true, BlockPublicPolicy: true,
                          RestrictPublicBuckets: true}
    encryption: {algorithm: AES256, kms_key_id: null}
    lifecycle_rule: {ID: lifeboat-lifeboat/, Filter: {Prefix: lifeboat/}, Status: Enabled}
    object_lock: {mode: COMPLIANCE, days: 35}
changes:
  description: The settings that changed (or would change).
  returned: always
  type: list
  elements: str
  sample: [create, versioning, lifecycle]
diff:
  description: The settings before and after, in diff mode.
  returned: when diff mode is on
  type: dict
store:
  description: The store, as kind and location (never a secret).
  returned: always
  type: dict
"""

import copy

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.lifeboat.backup.plugins.module_utils._common import LifeboatError, parse_duration, plain_results
from ansible_collections.lifeboat.backup.plugins.module_utils import _aws
from ansible_collections.lifeboat.backup.plugins.module_utils import _jobs
from ansible_collections.lifeboat.backup.plugins.module_utils import _retention
from ansible_collections.lifeboat.backup.plugins.module_utils import _store_kinds
from ansible_collections.lifeboat.backup.plugins.module_utils._stores import escape

PUBLIC_BLOCK = dict(BlockPublicAcls=True, IgnorePublicAcls=True, BlockPublicPolicy=True, RestrictPublicBuckets=True)
ABSENT_CODES = {
    "get_public_access_block": ("NoSuchPublicAccessBlockConfiguration",),
    "get_bucket_encryption": ("ServerSideEncryptionConfigurationNotFoundError",),
    "get_bucket_lifecycle_configuration": ("NoSuchLifecycleConfiguration",),
    "get_object_lock_configuration": ("ObjectLockConfigurationNotFoundError", "ObjectLockConfigurationNotFound"),
}
DAY_S = 86400.0


class Bucket(object):
    """The S3 calls of this module, each failure one sentence (``_aws.describe_error``)."""

    def __init__(self, store):
        self.store = store
        self.client = store.client
        self.name = store.bucket
        self.what = "s3://%s" % store.bucket

    def call(self, operation, absent=(), **kwargs):
        try:
            return getattr(self.client, operation)(Bucket=self.name, **kwargs)
        except _aws.BOTO_ERRORS as exc:
            if absent and _aws.is_client_error(exc) and _aws.error_code(exc) in absent:
                return None
            raise LifeboatError(_aws.describe_error(exc, self.store.connection, self.what, self.name))

    def versioning(self):
        """The versioning status ("" when never set), or None when the bucket does not exist.

        A GET, not HeadBucket: a HEAD answer has no body, so a wrong key would look like access denied.
        """
        try:
            return self.client.get_bucket_versioning(Bucket=self.name).get("Status") or ""
        except _aws.BOTO_ERRORS as exc:
            if _aws.is_client_error(exc) and _aws.error_code(exc) == "NoSuchBucket":
                return None
            raise LifeboatError(_aws.describe_error(exc, self.store.connection, self.what, self.name))

    def read(self, rule_id):
        """The current settings, in the same form as ``desired``."""
        versioning = self.versioning()
        if versioning is None:
            return {"exists": False, "versioning": None, "public_access_block": None, "encryption": None,
                    "lifecycle_rule": None, "object_lock": None}
        versioning = versioning or None
        block = self.call("get_public_access_block", ABSENT_CODES["get_public_access_block"])
        block = dict((k, bool((block or {}).get("PublicAccessBlockConfiguration", {}).get(k))) for k in PUBLIC_BLOCK) \
            if block else None
        encryption = self.call("get_bucket_encryption", ABSENT_CODES["get_bucket_encryption"])
        if encryption:
            rules = encryption.get("ServerSideEncryptionConfiguration", {}).get("Rules") or [{}]
            default = rules[0].get("ApplyServerSideEncryptionByDefault") or {}
            encryption = {"algorithm": default.get("SSEAlgorithm"), "kms_key_id": default.get("KMSMasterKeyID")}
        lifecycle = self.call("get_bucket_lifecycle_configuration", ABSENT_CODES["get_bucket_lifecycle_configuration"])
        rules = (lifecycle or {}).get("Rules") or []
        ours = [normalise_rule(r) for r in rules if r.get("ID") == rule_id]
        lock = self.call("get_object_lock_configuration", ABSENT_CODES["get_object_lock_configuration"])
        lock = (lock or {}).get("ObjectLockConfiguration") or {}
        if lock.get("ObjectLockEnabled") == "Enabled":
            retention = (lock.get("Rule") or {}).get("DefaultRetention") or {}
            days = retention.get("Days")
            if days is None and retention.get("Years"):
                days = retention["Years"] * 365
            object_lock = {"mode": retention.get("Mode"), "days": days}
        else:
            object_lock = None
        return {"exists": True, "versioning": versioning, "public_access_block": block, "encryption": encryption,
                "lifecycle_rule": ours[0] if ours else None, "object_lock": object_lock,
                "_other_rules": [r for r in rules if r.get("ID") != rule_id]}


def normalise_rule(rule):
    """The parts of a lifecycle rule this module manages, in one canonical form."""
    out = {"ID": rule.get("ID"), "Filter": {"Prefix": (rule.get("Filter") or {}).get("Prefix", rule.get("Prefix", ""))},
           "Status": rule.get("Status")}
    transitions = [{"Days": t.get("Days"), "StorageClass": t.get("StorageClass")} for t in rule.get("Transitions") or []]
    if transitions:
        out["Transitions"] = transitions
    if (rule.get("Expiration") or {}).get("Days"):
        out["Expiration"] = {"Days": rule["Expiration"]["Days"]}
    if (rule.get("NoncurrentVersionExpiration") or {}).get("NoncurrentDays"):
        out["NoncurrentVersionExpiration"] = {"NoncurrentDays": rule["NoncurrentVersionExpiration"]["NoncurrentDays"]}
    if (rule.get("AbortIncompleteMultipartUpload") or {}).get("DaysAfterInitiation"):
        out["AbortIncompleteMultipartUpload"] = {
            "DaysAfterInitiation": rule["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"]}
    return out


def check_days(value, what):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 36500:
        raise LifeboatError("%s must be a whole number of days from 1 to 36500, not %r." % (what, value))
    return value


def desired_rule(lifecycle, rule_id, prefix):
    """The lifeboat lifecycle rule, or None (no rule wanted)."""
    if lifecycle is None:
        return None
    transition = check_days(lifecycle.get("transition_days"), "lifecycle.transition_days")
    expire = check_days(lifecycle.get("expire_days"), "lifecycle.expire_days")
    noncurrent = check_days(lifecycle.get("noncurrent_expire_days"), "lifecycle.noncurrent_expire_days")
    abort = check_days(lifecycle.get("abort_incomplete_days"), "lifecycle.abort_incomplete_days")
    if transition and expire and expire <= transition:
        raise LifeboatError("lifecycle.expire_days (%d) must be later than lifecycle.transition_days (%d)."
                            % (expire, transition))
    if not (transition or expire or noncurrent or abort):
        return None
    rule = {"ID": rule_id, "Filter": {"Prefix": prefix}, "Status": "Enabled"}
    if transition:
        rule["Transitions"] = [{"Days": transition, "StorageClass": lifecycle.get("storage_class") or "GLACIER_IR"}]
    if expire:
        rule["Expiration"] = {"Days": expire}
    if noncurrent:
        rule["NoncurrentVersionExpiration"] = {"NoncurrentDays": noncurrent}
    if abort:
        rule["AbortIncompleteMultipartUpload"] = {"DaysAfterInitiation": abort}
    return rule


def desired_lock(object_lock):
    if object_lock is None:
        return None
    seconds = parse_duration(object_lock.get("retain_for"), "object_lock.retain_for")
    if not seconds or seconds % DAY_S:
        raise LifeboatError("object_lock.retain_for must be a whole number of days, like 30d or 2w, not %r."
                            % escape(object_lock.get("retain_for"), 40))
    return {"mode": object_lock["mode"], "days": check_days(int(seconds // DAY_S), "object_lock.retain_for")}


def policy_horizon_days(policy):
    """How many days the oldest set a policy can keep may be old (None when a rule has no bound in time)."""
    policy = _retention.check_policy(policy, "retention_policy")
    bound = 0.0
    for rule, days in (("keep_hourly", 1.0 / 24), ("keep_daily", 1), ("keep_weekly", 7), ("keep_monthly", 31),
                       ("keep_yearly", 366)):
        if policy.get(rule):
            bound = max(bound, policy[rule] * days)
    if policy.get("keep_within_s"):
        bound = max(bound, policy["keep_within_s"] / DAY_S)
    if policy.get("keep_last") or (policy.get("min_keep") or 0) > 1:
        return None
    return bound


def lifecycle_warnings(rule, policy, lock):
    """Sentences for a lifecycle that would expire sets before the retention policy or the lock lets them go."""
    warnings = []
    expire = ((rule or {}).get("Expiration") or {}).get("Days")
    if not expire:
        return warnings
    if policy is not None:
        horizon = policy_horizon_days(policy)
        if horizon is None:
            warnings.append("The lifecycle expires objects after %d days, but retention_policy keeps sets by count "
                            "(keep_last or min_keep), which has no bound in time; the lifecycle may expire a set "
                            "the policy keeps, so keep expire_days well above the age of the oldest set kept." % expire)
        elif expire < horizon:
            warnings.append("The lifecycle expires objects after %d days, before retention_policy lets its oldest "
                            "sets go (up to %d days); raise lifecycle.expire_days to at least %d, or the lifecycle "
                            "will delete sets (and the parents of kept incrementals) that retention keeps."
                            % (expire, int(horizon + 0.999), int(horizon + 0.999) + 1))
    if lock and lock.get("days") and expire < lock["days"]:
        warnings.append("The lifecycle expires objects after %d days, before their Object Lock of %d days ends; "
                        "the expiration only adds a delete marker and the versions stay until the lock ends."
                        % (expire, lock["days"]))
    return warnings


def plan(current, want):
    """The names of the settings to change."""
    changes = []
    if not current["exists"]:
        changes.append("create")
    for key in ("versioning", "public_access_block", "encryption", "lifecycle_rule", "object_lock"):
        if want.get(key, "unchanged") != "unchanged" and want[key] != current[key]:
            changes.append(key)
    return changes


def apply(bucket, current, want, changes, region):
    if "create" in changes:
        args = {}
        if region and region != "us-east-1":
            args["CreateBucketConfiguration"] = {"LocationConstraint": region}
        if want.get("object_lock") not in (None, "unchanged"):
            args["ObjectLockEnabledForBucket"] = True
        bucket.call("create_bucket", **args)
    if "versioning" in changes or ("object_lock" in changes and current["versioning"] != "Enabled"):
        bucket.call("put_bucket_versioning", VersioningConfiguration={"Status": "Enabled"})
    if "public_access_block" in changes:
        bucket.call("put_public_access_block", PublicAccessBlockConfiguration=dict(PUBLIC_BLOCK))
    if "encryption" in changes:
        default = {"SSEAlgorithm": want["encryption"]["algorithm"]}
        if want["encryption"]["kms_key_id"]:
            default["KMSMasterKeyID"] = want["encryption"]["kms_key_id"]
        bucket.call("put_bucket_encryption", ServerSideEncryptionConfiguration={
            "Rules": [{"ApplyServerSideEncryptionByDefault": default}]})
    if "lifecycle_rule" in changes:
        rules = list(current.get("_other_rules") or [])
        if want["lifecycle_rule"] is not None:
            rules.append(want["lifecycle_rule"])
        if rules:
            bucket.call("put_bucket_lifecycle_configuration", LifecycleConfiguration={"Rules": rules})
        else:
            bucket.call("delete_bucket_lifecycle")
    if "object_lock" in changes:
        lock = want["object_lock"]
        bucket.call("put_object_lock_configuration", ObjectLockConfiguration={
            "ObjectLockEnabled": "Enabled",
            "Rule": {"DefaultRetention": {"Mode": lock["mode"], "Days": lock["days"]}}})


def run(store, params, check_mode):
    bucket = Bucket(store)
    prefix = store.base + (params["host"] + "/" if params["host"] else "")
    rule_id = ("lifeboat-" + prefix)[:255]
    want = {"exists": True,
            "versioning": "Enabled" if params["versioning"] else "unchanged",
            "public_access_block": dict(PUBLIC_BLOCK) if params["block_public_access"] else "unchanged",
            "encryption": {"algorithm": store.sse or "AES256", "kms_key_id": store.kms_key_id},
            "lifecycle_rule": desired_rule(params["lifecycle"], rule_id, prefix) if params["lifecycle"] is not None
            else "unchanged",
            "object_lock": desired_lock(params["object_lock"]) if params["object_lock"] is not None else "unchanged"}
    if params["retention_policy"] is not None:
        _retention.check_policy(params["retention_policy"], "retention_policy")
    current = bucket.read(rule_id)
    changes = plan(current, want)
    after = copy.deepcopy(current)
    after.pop("_other_rules", None)
    for key, value in want.items():
        if value != "unchanged":
            after[key] = value
    warnings = lifecycle_warnings(after.get("lifecycle_rule"), params["retention_policy"], after.get("object_lock"))
    if changes and not check_mode:
        apply(bucket, current, want, changes, store.connection.region)
        after = bucket.read(rule_id)
        after.pop("_other_rules", None)
    before = dict((k, v) for k, v in current.items() if k != "_other_rules")
    return changes, before, after, warnings


def main():
    argument_spec = _jobs.store_argument_spec()
    argument_spec.update(
        versioning=dict(type="bool", default=True),
        block_public_access=dict(type="bool", default=True),
        lifecycle=dict(type="dict", options=dict(
            transition_days=dict(type="int"),
            storage_class=dict(type="str", default="GLACIER_IR",
                               choices=["STANDARD_IA", "ONEZONE_IA", "INTELLIGENT_TIERING", "GLACIER_IR", "GLACIER",
                                        "DEEP_ARCHIVE"]),
            expire_days=dict(type="int"),
            noncurrent_expire_days=dict(type="int"),
            abort_incomplete_days=dict(type="int", default=7),
        )),
        object_lock=dict(type="dict", options=dict(
            mode=dict(type="str", required=True, choices=["GOVERNANCE", "COMPLIANCE"]),
            retain_for=dict(type="str", required=True),
        )),
        retention_policy=dict(type="dict"),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    plain_results(module)
    params = module.params
    try:
        if (params["store"].get("kind") or "dir") != "s3":
            raise LifeboatError("backup_bucket prepares the bucket of an s3 store; set store.kind to s3.")
        store = _store_kinds.open_store(params["store"])
        changes, before, after, warnings = run(store, params, module.check_mode)
    except _aws.MissingLibraryError as exc:
        module.fail_json(msg=str(exc), exception=exc.import_error)
    except LifeboatError as exc:
        module.fail_json(msg=str(exc))
    for warning in warnings:
        module.warn(warning)
    result = dict(changed=bool(changes), changes=changes, bucket=after, store=store.describe())
    if module._diff:
        result["diff"] = {"before": before, "after": after}
    module.exit_json(**result)


if __name__ == "__main__":
    main()
