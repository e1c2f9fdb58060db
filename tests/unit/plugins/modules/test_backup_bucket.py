# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""backup_bucket against a moto server: the four runs, settings read back through boto3, bad input."""

from __future__ import annotations

import json
import uuid

import pytest

from ansible_collections.lifeboat.backup.plugins.modules import backup_bucket
from ansible_collections.lifeboat.backup.tests.unit.plugins.helpers import run_module
from ansible_collections.lifeboat.backup.tests.unit.plugins.module_utils import moto_harness


def store_spec(server, bucket, **extra):
    spec = dict(kind="s3", bucket=bucket, prefix="lifeboat", **server.connection())
    spec.update(extra)
    return spec


def full_args(server, bucket):
    return {
        "store": store_spec(server, bucket),
        "lifecycle": {"transition_days": 30, "storage_class": "GLACIER", "expire_days": 400,
                      "noncurrent_expire_days": 30, "abort_incomplete_days": 3},
        "object_lock": {"mode": "GOVERNANCE", "retain_for": "35d"},
        "retention_policy": {"keep_weekly": 4, "keep_monthly": 12},
    }


def test_four_runs_and_read_back(monkeypatch, tmp_path):
    server = moto_harness.server()
    bucket = "lb-%s" % uuid.uuid4().hex[:16]
    args = full_args(server, bucket)
    client = server.client()
    check = run_module(monkeypatch, tmp_path, backup_bucket, dict(args, _ansible_diff=True), check_mode=True)
    assert not check.failed and check.result["changed"] is True
    assert check.result["changes"] == ["create", "versioning", "public_access_block", "encryption",
                                       "lifecycle_rule", "object_lock"]
    assert check.result["diff"]["before"]["exists"] is False
    assert bucket not in [b["Name"] for b in client.list_buckets()["Buckets"]]  # check mode made nothing
    real = run_module(monkeypatch, tmp_path, backup_bucket, args)
    assert not real.failed and real.result["changed"] is True
    again = run_module(monkeypatch, tmp_path, backup_bucket, args)
    assert again.result["changed"] is False and again.result["changes"] == []
    again_check = run_module(monkeypatch, tmp_path, backup_bucket, args, check_mode=True)
    assert again_check.result["changed"] is False
    # Read back through boto3 itself.
    assert client.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    block = client.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    assert all(block[k] for k in ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets"))
    sse = client.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"][0]
    assert sse["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    rules = client.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    assert len(rules) == 1
    rule = rules[0]
    assert rule["ID"] == "lifeboat-lifeboat/" and rule["Filter"]["Prefix"] == "lifeboat/"
    assert rule["Transitions"][0]["Days"] == 30 and rule["Transitions"][0]["StorageClass"] == "GLACIER"
    assert rule["Expiration"]["Days"] == 400
    assert rule["NoncurrentVersionExpiration"]["NoncurrentDays"] == 30
    assert rule["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"] == 3
    lock = client.get_object_lock_configuration(Bucket=bucket)["ObjectLockConfiguration"]
    assert lock["ObjectLockEnabled"] == "Enabled"
    retention = lock["Rule"]["DefaultRetention"]
    assert (retention["Mode"], retention["Days"], retention.get("Years") or 0) == ("GOVERNANCE", 35, 0)
    # A changed setting is one change; other lifecycle rules of the bucket are kept.
    other = {"ID": "someone-else", "Filter": {"Prefix": "logs/"}, "Status": "Enabled", "Expiration": {"Days": 9}}
    client.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": rules + [other]})
    args["lifecycle"]["expire_days"] = 500
    changed = run_module(monkeypatch, tmp_path, backup_bucket, args)
    assert changed.result["changes"] == ["lifecycle_rule"]
    rules = dict((r["ID"], r) for r in client.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"])
    assert rules["lifeboat-lifeboat/"]["Expiration"]["Days"] == 500 and "someone-else" in rules


def test_existing_bucket_without_lock_gets_it(monkeypatch, tmp_path):
    server = moto_harness.server()
    bucket = server.new_bucket()
    args = {"store": store_spec(server, bucket), "object_lock": {"mode": "COMPLIANCE", "retain_for": "2w"}}
    outcome = run_module(monkeypatch, tmp_path, backup_bucket, args)
    assert not outcome.failed, outcome.result.get("msg")
    assert "object_lock" in outcome.result["changes"]
    lock = server.client().get_object_lock_configuration(Bucket=bucket)["ObjectLockConfiguration"]
    retention = lock["Rule"]["DefaultRetention"]
    assert (retention["Mode"], retention["Days"]) == ("COMPLIANCE", 14)


@pytest.mark.parametrize("lifecycle, policy, warning", [
    ({"expire_days": 90}, {"keep_monthly": 12},
     "The lifecycle expires objects after 90 days, before retention_policy lets its oldest sets go (up to 372 days); "
     "raise"),
    ({"expire_days": 90}, {"keep_last": 5},
     "The lifecycle expires objects after 90 days, but retention_policy keeps sets by count"),
])
def test_lifecycle_shorter_than_retention_warns(monkeypatch, tmp_path, lifecycle, policy, warning):
    server = moto_harness.server()
    bucket = server.new_bucket()
    warnings = []
    monkeypatch.setattr(backup_bucket.AnsibleModule, "warn", lambda self, text: warnings.append(text))
    policy = dict(policy, min_keep=0)
    args = {"store": store_spec(server, bucket), "lifecycle": lifecycle, "retention_policy": policy}
    outcome = run_module(monkeypatch, tmp_path, backup_bucket, args)
    assert not outcome.failed
    assert len(warnings) == 1 and warnings[0].startswith(warning)


def test_lifecycle_longer_than_retention_is_quiet(monkeypatch, tmp_path):
    server = moto_harness.server()
    warnings = []
    monkeypatch.setattr(backup_bucket.AnsibleModule, "warn", lambda self, text: warnings.append(text))
    args = {"store": store_spec(server, server.new_bucket()), "lifecycle": {"expire_days": 400},
            "retention_policy": {"keep_weekly": 4, "keep_monthly": 12, "min_keep": 0}}
    assert not run_module(monkeypatch, tmp_path, backup_bucket, args).failed
    assert warnings == []


@pytest.mark.parametrize("args, sentence", [
    ({"object_lock": {"mode": "GOVERNANCE", "retain_for": "36h"}},
     "object_lock.retain_for must be a whole number of days, like 30d or 2w, not '36h'."),
    ({"lifecycle": {"transition_days": 30, "expire_days": 10}},
     "lifecycle.expire_days (10) must be later than lifecycle.transition_days (30)."),
    ({"lifecycle": {"expire_days": -1}}, "lifecycle.expire_days must be a whole number of days from 1 to 36500, not -1."),
    ({"retention_policy": {"keep_daily": -1}}, "keep_daily in the retention_policy must be zero or more, not -1."),
    ({"retention_policy": {"keep_daily": 0}}, "The retention_policy keeps nothing"),
])
def test_bad_input_one_sentence(monkeypatch, tmp_path, args, sentence):
    server = moto_harness.server()
    outcome = run_module(monkeypatch, tmp_path, backup_bucket, dict(args, store=store_spec(server, server.new_bucket())))
    assert outcome.failed and outcome.result["msg"].startswith(sentence) and "\n" not in outcome.result["msg"]


def test_dir_store_refused(monkeypatch, tmp_path):
    outcome = run_module(monkeypatch, tmp_path, backup_bucket, {"store": {"path": str(tmp_path)}})
    assert outcome.failed
    assert outcome.result["msg"] == "backup_bucket prepares the bucket of an s3 store; set store.kind to s3."


@pytest.fixture(scope="module")
def auth_moto():
    """A moto server that checks credentials after its first requests (users set up through IAM)."""
    server = moto_harness.MotoServer(env={"INITIAL_NO_AUTH_ACTION_COUNT": "5"}).start()
    import boto3  # pylint: disable=import-outside-toplevel
    iam = boto3.client("iam", endpoint_url=server.endpoint_url, aws_access_key_id="x", aws_secret_access_key="x",
                       region_name="us-east-1")
    iam.create_user(UserName="admin")
    admin = iam.create_access_key(UserName="admin")["AccessKey"]
    iam.put_user_policy(UserName="admin", PolicyName="s3", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
    iam.create_user(UserName="nobody")
    nobody = iam.create_access_key(UserName="nobody")["AccessKey"]
    yield server, admin, nobody
    server.stop()


@pytest.mark.parametrize("case, sentence", [
    ("access denied", "for GetBucketVersioning on s3://lb-denied; grant these credentials s3:GetBucketVersioning"),
    ("unknown key", "does not know the access key used for s3://lb-denied; check access_key"),
])
def test_credentials_and_access_one_sentence(monkeypatch, tmp_path, auth_moto, case, sentence):
    server, admin, nobody = auth_moto
    keys = {"access denied": (nobody["AccessKeyId"], nobody["SecretAccessKey"]),
            "unknown key": ("AKIAIOSFODNN7EXAMPLE", "wrong-secret-value")}[case]
    spec = dict(kind="s3", bucket="lb-denied", region="us-east-1", endpoint_url=server.endpoint_url, max_attempts=1,
                access_key=keys[0], secret_key=keys[1])
    outcome = run_module(monkeypatch, tmp_path, backup_bucket, {"store": spec})
    assert outcome.failed and "\n" not in outcome.result["msg"]
    assert sentence in outcome.result["msg"], outcome.result["msg"]
    assert keys[1] not in json.dumps(outcome.result)


def test_missing_credentials_one_sentence(monkeypatch, tmp_path):
    server = moto_harness.server()
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY", "AWS_SECRET_KEY", "AWS_PROFILE",
                 "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    spec = dict(kind="s3", bucket="lb-x", region="us-east-1", endpoint_url=server.endpoint_url)
    outcome = run_module(monkeypatch, tmp_path, backup_bucket, {"store": spec})
    assert outcome.failed and outcome.result["msg"].startswith("No AWS credentials were found for s3://lb-x")
