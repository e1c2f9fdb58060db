# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What moto cannot show (it completes snapshots at once and ignores an AMI's block device mappings):
waiting, progress and timeouts, failed snapshots, and snapshots in use or pending at retention, through
botocore's Stubber (real botocore request validation, canned EC2 answers)."""

from __future__ import annotations

import datetime

import pytest

boto3 = pytest.importorskip("boto3")
from botocore.stub import Stubber  # noqa: E402

from ansible_collections.lifeboat.backup.plugins.module_utils import _ebs  # noqa: E402
from ansible_collections.lifeboat.backup.plugins.module_utils._common import LifeboatError  # noqa: E402

ACCOUNT = "111122223333"
SET = "20261126T031500Z-full"
MANIFEST = {"host": "app1", "source": "db", "set_id": SET, "external": [
    {"kind": "ebs-snapshot", "id": "snap-1", "location": "us-east-1", "size": None,
     "attributes": {"role": "primary", "volume_id": "vol-1"}},
    {"kind": "ebs-snapshot", "id": "snap-9", "location": "us-west-2", "size": None,
     "attributes": {"role": "copy", "volume_id": "vol-1", "copy_of": "snap-1"}},
]}
OUR_TAGS = [{"Key": "lifeboat:host", "Value": "app1"}, {"Key": "lifeboat:source", "Value": "db"},
            {"Key": "lifeboat:set-id", "Value": SET}]


class Clock(object):
    def __init__(self):
        self.now = 0.0
        self.sleeps = []

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds


def stubbed(regions=("us-east-1",)):
    """An Ec2 whose clients (one per region, and STS) are stubbed; returns (ec2, {region: Stubber})."""
    clients, stubbers = {}, {}
    for region in regions:
        clients[region] = boto3.client("ec2", region_name=region, aws_access_key_id="AKIATESTING0000", aws_secret_access_key="testing-secret-key")
        stubbers[region] = Stubber(clients[region])
        stubbers[region].activate()
    sts = boto3.client("sts", region_name=regions[0], aws_access_key_id="AKIATESTING0000", aws_secret_access_key="testing-secret-key")
    sts_stub = Stubber(sts)
    sts_stub.add_response("get_caller_identity", {"Account": ACCOUNT, "Arn": "arn:aws:iam::%s:user/x" % ACCOUNT,
                                                  "UserId": "x"})
    sts_stub.activate()

    def factory(connection, service):
        return sts if service == "sts" else clients[connection.region]

    return _ebs.Ec2({"region": regions[0], "access_key": "AKIATESTING0000", "secret_key": "testing-secret-key"}, environ={}, factory=factory), stubbers


def snap(snapshot_id, state, progress, tags=None, owner=ACCOUNT, volume="vol-1"):
    return {"SnapshotId": snapshot_id, "State": state, "Progress": progress, "VolumeId": volume, "OwnerId": owner,
            "VolumeSize": 8, "StartTime": datetime.datetime(2026, 11, 26, 3, 15), "Tags": tags or OUR_TAGS}


def test_wait_reports_progress_until_completed():
    ec2, stubs = stubbed()
    for states in ((("pending", "10%"), ("pending", "0%")), (("pending", "60%"), ("pending", "45%")),
                   (("completed", "100%"), ("completed", "100%"))):
        stubs["us-east-1"].add_response("describe_snapshots", {"Snapshots": [
            snap("snap-1", *states[0]), snap("snap-2", *states[1])]}, {"SnapshotIds": ["snap-1", "snap-2"]})
    clock, progress = Clock(), []
    done = _ebs.wait_for(ec2, "us-east-1", ["snap-1", "snap-2"], "the snapshots of set x", 60, clock.sleep, clock,
                         interval=5, progress=progress)
    assert sorted(done) == ["snap-1", "snap-2"]
    assert [p["snapshots"] for p in progress] == [{"snap-1": "10%", "snap-2": "0%"}, {"snap-1": "60%", "snap-2": "45%"},
                                                  {"snap-1": "100%", "snap-2": "100%"}]
    assert [p["elapsed_s"] for p in progress] == [0.0, 5.0, 10.0] and clock.sleeps == [5, 5]
    stubs["us-east-1"].assert_no_pending_responses()


def test_wait_times_out_naming_progress():
    ec2, stubs = stubbed()
    for dummy in range(3):
        stubs["us-east-1"].add_response("describe_snapshots", {"Snapshots": [
            snap("snap-1", "completed", "100%"), snap("snap-2", "pending", "42%")]})
    clock = Clock()
    with pytest.raises(LifeboatError) as info:
        _ebs.wait_for(ec2, "us-east-1", ["snap-1", "snap-2"], "the snapshots of set x", 10, clock.sleep, clock,
                      interval=5)
    assert str(info.value) == ("The snapshots of set x did not complete within wait_timeout (10 s): still pending "
                               "snap-2 42%; raise wait_timeout, the snapshots are deleted.")


def test_wait_fails_on_a_snapshot_in_error():
    ec2, stubs = stubbed()
    failed = snap("snap-2", "error", "3%")
    failed["StateMessage"] = "Internal error"
    stubs["us-east-1"].add_response("describe_snapshots", {"Snapshots": [snap("snap-1", "pending", "5%"), failed]})
    with pytest.raises(LifeboatError) as info:
        _ebs.wait_for(ec2, "us-east-1", ["snap-1", "snap-2"], "the snapshots of set x", 10, Clock().sleep, Clock())
    assert str(info.value) == "Snapshot snap-2 of volume vol-1 failed in region us-east-1: Internal error."


def expect_owned(stub, snapshots, ids):
    stub.add_response("describe_snapshots", {"Snapshots": snapshots},
                      {"OwnerIds": ["self"], "Filters": [{"Name": "snapshot-id", "Values": ids}]})


def test_releaser_reports_pending_and_ami_use_and_deletes_nothing():
    ec2, stubs = stubbed(("us-east-1", "us-west-2"))
    expect_owned(stubs["us-east-1"], [snap("snap-1", "completed", "100%")], ["snap-1"])
    stubs["us-east-1"].add_response("describe_images", {"Images": [{"ImageId": "ami-1", "BlockDeviceMappings": [
        {"DeviceName": "/dev/sda1", "Ebs": {"SnapshotId": "snap-1"}}]}]}, {"Owners": ["self"]})
    expect_owned(stubs["us-west-2"], [snap("snap-9", "pending", "70%")], ["snap-9"])
    stubs["us-west-2"].add_response("describe_images", {"Images": []}, {"Owners": ["self"]})
    problems = _ebs.Releaser(ec2).check(MANIFEST)
    assert problems == ["Snapshot snap-1 in us-east-1 is used by AMI ami-1; deregister the AMI first",
                        "Snapshot snap-9 in us-west-2 is still pending (70%); it is deleted once completed"]
    for stub in stubs.values():
        stub.assert_no_pending_responses()  # and no DeleteSnapshot was called (the Stubber would refuse it)


def test_releaser_in_use_at_delete_time_is_reported_and_gone_counts_as_released():
    ec2, stubs = stubbed(("us-east-1", "us-west-2"))
    expect_owned(stubs["us-east-1"], [snap("snap-1", "completed", "100%")], ["snap-1"])
    stubs["us-east-1"].add_client_error("delete_snapshot", "InvalidSnapshot.InUse",
                                        "The snapshot snap-1 is currently in use by ami-2",
                                        expected_params={"SnapshotId": "snap-1"})
    expect_owned(stubs["us-west-2"], [snap("snap-9", "completed", "100%")], ["snap-9"])
    stubs["us-west-2"].add_client_error("delete_snapshot", "InvalidSnapshot.NotFound", "gone",
                                        expected_params={"SnapshotId": "snap-9"})
    released, problems = _ebs.Releaser(ec2).release(MANIFEST)
    assert released == []
    assert problems == ["Snapshot snap-1 in us-east-1 is in use (The snapshot snap-1 is currently in use by ami-2); "
                        "it was left in place"]


def test_another_accounts_snapshot_is_never_taken_even_if_the_endpoint_ignores_owner_ids():
    ec2, stubs = stubbed()
    expect_owned(stubs["us-east-1"], [snap("snap-1", "completed", "100%", owner="999999999999")], ["snap-1"])
    found = _ebs.owned_snapshots(ec2, "us-east-1", ["snap-1"], "x")
    assert found == {}
    assert _ebs.refusal(MANIFEST, MANIFEST["external"][0], found.get("snap-1")) == (
        "Snapshot snap-1 in us-east-1 does not exist or is not owned by this account")


def test_missing_permission_is_one_sentence_naming_the_action():
    ec2, stubs = stubbed()
    stubs["us-east-1"].add_client_error("create_snapshot", "UnauthorizedOperation",
                                        "You are not authorized to perform this operation. Encoded message: xyz",
                                        http_status_code=403)
    with pytest.raises(LifeboatError) as info:
        ec2.call(None, "create_snapshot", "volume vol-1", VolumeId="vol-1")
    assert str(info.value) == ("Access denied at AWS (region us-east-1) for CreateSnapshot on volume vol-1; grant "
                               "these credentials ec2:CreateSnapshot.")
