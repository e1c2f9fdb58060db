# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""ebs_snapshot, ebs_restore and retention of EBS sets against moto's EC2 (in-process mock_aws)."""

from __future__ import annotations

import json
import os

import pytest

boto3 = pytest.importorskip("boto3")
moto = pytest.importorskip("moto")

from ansible_collections.lifeboat.backup.plugins.module_utils import _ebs  # noqa: E402
from ansible_collections.lifeboat.backup.plugins.module_utils import _manifest  # noqa: E402
from ansible_collections.lifeboat.backup.plugins.module_utils import _store_dir  # noqa: E402
from ansible_collections.lifeboat.backup.plugins.modules import backup_retention  # noqa: E402
from ansible_collections.lifeboat.backup.plugins.modules import backup_verify  # noqa: E402
from ansible_collections.lifeboat.backup.plugins.modules import ebs_restore  # noqa: E402
from ansible_collections.lifeboat.backup.plugins.modules import ebs_snapshot  # noqa: E402
from ansible_collections.lifeboat.backup.tests.unit.plugins.helpers import make_set, run_module  # noqa: E402

REGION = "us-east-1"
DR = "us-west-2"
ACCOUNT = "123456789012"  # moto's default account
AMI = "ami-12c6146b"  # one of moto's stock AMIs (listing them all takes seconds)


@pytest.fixture
def aws(monkeypatch):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_URL", "AWS_SESSION_TOKEN", "AWS_REGION"):
        monkeypatch.delenv(name, raising=False)
    with moto.mock_aws():
        yield boto3.client("ec2", region_name=REGION)


def make_instance(ec2, data_volumes=2, sizes=(3, 5, 7)):
    """An instance with its root volume and ``data_volumes`` more at /dev/sdf, /dev/sdg..."""
    instance = ec2.run_instances(ImageId=AMI, MinCount=1, MaxCount=1,
                                 Placement={"AvailabilityZone": REGION + "a"})["Instances"][0]
    volumes = []
    for index in range(data_volumes):
        volume = ec2.create_volume(Size=sizes[index], AvailabilityZone=REGION + "a", VolumeType="gp3",
                                   TagSpecifications=[{"ResourceType": "volume",
                                                       "Tags": [{"Key": "app", "Value": "pay"}]}])
        ec2.attach_volume(VolumeId=volume["VolumeId"], InstanceId=instance["InstanceId"],
                          Device="/dev/sd%s" % "fghij"[index])
        volumes.append(volume["VolumeId"])
    return instance["InstanceId"], volumes


def args(tmp_path, **extra):
    base = {"store": {"path": str(tmp_path / "store")}, "host": "app1", "region": REGION}
    base.update(extra)
    return base


def snapshots(ec2, region=REGION):
    client = ec2 if region == REGION else boto3.client("ec2", region_name=region)
    # moto lists the snapshots of its public AMIs too (other owners), whatever OwnerIds says
    found = client.describe_snapshots(OwnerIds=["self"], Filters=[{"Name": "owner-id", "Values": [ACCOUNT]}])
    return dict((s["SnapshotId"], s) for s in found["Snapshots"] if s["OwnerId"] == ACCOUNT)


def tags(item):
    return dict((t["Key"], t["Value"]) for t in item.get("Tags") or [])


def test_instance_set_with_dr_copy_restore_and_retention(aws, monkeypatch, tmp_path):
    (tmp_path / "store").mkdir()
    instance, data = make_instance(aws)
    check = run_module(monkeypatch, tmp_path, ebs_snapshot, args(tmp_path, instance_id=instance, copy_region=DR),
                       check_mode=True)
    assert not check.failed, check.result
    assert check.result["multi_volume"] is True and len(check.result["volumes"]) == 3
    assert snapshots(aws) == {} and not os.listdir(str(tmp_path / "store"))

    made = run_module(monkeypatch, tmp_path, ebs_snapshot,
                      args(tmp_path, instance_id=instance, copy_region=DR, copy_kms_key_id="alias/dr",
                           tags={"team": "pay"}))
    assert not made.failed, made.result
    result = made.result
    assert result["changed"] and result["multi_volume"] and len(result["snapshots"]) == 3
    assert len(result["copies"]) == 3
    set_id = result["set_id"]
    primary = snapshots(aws)
    assert sorted(primary) == sorted(s["snapshot_id"] for s in result["snapshots"])
    volumes = dict((s["volume_id"], s) for s in result["snapshots"])
    assert set(data) < set(volumes)
    for snap in primary.values():
        assert tags(snap)["lifeboat:set-id"] == set_id and tags(snap)["lifeboat:source"] == instance
        assert tags(snap)["lifeboat:host"] == "app1" and tags(snap)["team"] == "pay"
        assert tags(snap)["lifeboat:volume-id"] == snap["VolumeId"]
    copies = snapshots(aws, DR)
    assert sorted(copies) == sorted(c["snapshot_id"] for c in result["copies"])
    assert sorted(tags(c)["lifeboat:copy-of"] for c in copies.values()) == sorted(primary)
    manifest = result["manifest"]
    refs = manifest["external"]
    assert sorted((r["location"], r["id"]) for r in refs) == sorted(
        [(REGION, i) for i in primary] + [(DR, i) for i in copies])
    assert all(r["attributes"]["kms_key_id"] == "alias/dr" for r in refs if r["location"] == DR)
    assert manifest["files"] == [] and manifest["engine"] == "ebs"

    verified = run_module(monkeypatch, tmp_path, backup_verify, {"store": {"path": str(tmp_path / "store")}})
    assert not verified.failed, verified.result

    # restore from the DR copies into a zone there
    restored = run_module(monkeypatch, tmp_path, ebs_restore,
                          args(tmp_path, source=instance, region=DR, availability_zone=DR + "b", tags={"why": "drill"}))
    assert not restored.failed, restored.result
    new = restored.result["volumes"]
    assert sorted(v["snapshot_id"] for v in new) == sorted(copies)
    dr = boto3.client("ec2", region_name=DR)
    described = dr.describe_volumes(VolumeIds=[v["volume_id"] for v in new])["Volumes"]
    by_source = dict((tags(v)["lifeboat:volume-id"], v) for v in described)
    assert sorted(by_source) == sorted(volumes)
    for volume_id, volume in by_source.items():
        assert volume["Size"] == volumes[volume_id]["size_gib"] and volume["AvailabilityZone"] == DR + "b"
        assert tags(volume)["why"] == "drill"

    # retention: a newer set, then keep_last 1 deletes the first set's snapshots in both regions
    second = run_module(monkeypatch, tmp_path, ebs_snapshot, args(tmp_path, instance_id=instance, copy_region=DR))
    assert not second.failed and second.result["set_id"] != set_id
    policy = {"store": {"path": str(tmp_path / "store")}, "policy": {"keep_last": 1}, "aws": {"region": REGION}}
    plan = run_module(monkeypatch, tmp_path, backup_retention, policy, check_mode=True)
    assert sorted(r["id"] for r in plan.result["external_released"]) == sorted(list(primary) + list(copies))
    assert set(primary) <= set(snapshots(aws))
    pruned = run_module(monkeypatch, tmp_path, backup_retention, policy)
    assert not pruned.failed, pruned.result
    assert [d["set_id"] for d in pruned.result["deleted"]] == [set_id]
    assert sorted(r["id"] for r in pruned.result["external_released"]) == sorted(list(primary) + list(copies))
    assert not set(primary) & set(snapshots(aws)) and not set(copies) & set(snapshots(aws, DR))
    assert len(snapshots(aws)) == 3 and len(snapshots(aws, DR)) == 3  # the second set's


def test_subset_by_ids_is_started_together_and_restored_attached(aws, monkeypatch, tmp_path):
    (tmp_path / "store").mkdir()
    instance, data = make_instance(aws, data_volumes=3)
    data = data[:2]  # not all the data volumes: no CreateSnapshots
    made = run_module(monkeypatch, tmp_path, ebs_snapshot, args(tmp_path, volume_ids=data, source="data"))
    assert not made.failed, made.result
    assert made.result["multi_volume"] is False
    assert [s["volume_id"] for s in made.result["snapshots"]] == data
    assert [r["attributes"]["device"] for r in made.result["manifest"]["external"]] == ["/dev/sdf", "/dev/sdg"]
    # attach to the same instance: the original devices are taken, so they are mapped
    taken = run_module(monkeypatch, tmp_path, ebs_restore, args(tmp_path, source="data", instance_id=instance))
    assert taken.failed and "already has a volume at /dev/sdf" in taken.result["msg"]
    restored = run_module(monkeypatch, tmp_path, ebs_restore,
                          args(tmp_path, source="data", instance_id=instance,
                               devices={data[0]: "/dev/sdx", "/dev/sdg": "/dev/sdy"}))
    assert not restored.failed, restored.result
    attached = dict((v["device"], v) for v in restored.result["volumes"])
    assert sorted(attached) == ["/dev/sdx", "/dev/sdy"]
    mapping = aws.describe_instances(InstanceIds=[instance])["Reservations"][0]["Instances"][0]["BlockDeviceMappings"]
    devices = dict((m["DeviceName"], m["Ebs"]["VolumeId"]) for m in mapping)
    assert devices["/dev/sdx"] == attached["/dev/sdx"]["volume_id"]
    assert attached["/dev/sdx"]["source_volume_id"] == data[0]


def test_by_tags_and_devices(aws, monkeypatch, tmp_path):
    (tmp_path / "store").mkdir()
    instance, data = make_instance(aws)
    by_tags = run_module(monkeypatch, tmp_path, ebs_snapshot, args(tmp_path, volume_tags={"app": "pay"}),
                         check_mode=True)
    assert sorted(v["volume_id"] for v in by_tags.result["volumes"]) == sorted(data)
    by_device = run_module(monkeypatch, tmp_path, ebs_snapshot,
                           args(tmp_path, instance_id=instance, devices=["/dev/sdg"]), check_mode=True)
    assert [v["volume_id"] for v in by_device.result["volumes"]] == [data[1]]
    assert by_device.result["multi_volume"] is False
    # all data volumes but not the boot volume: CreateSnapshots excluding the boot volume
    data_only = run_module(monkeypatch, tmp_path, ebs_snapshot,
                           args(tmp_path, instance_id=instance, devices=["/dev/sdf", "/dev/sdg"]))
    assert not data_only.failed, data_only.result
    assert data_only.result["multi_volume"] is True
    assert sorted(s["volume_id"] for s in data_only.result["snapshots"]) == sorted(data)
    assert len(snapshots(aws)) == 2


@pytest.mark.parametrize("extra, sentence", [
    ({"volume_ids": ["vol-0123456789abcdef0"]}, "volume vol-0123456789abcdef0 does not exist in region us-east-1"),
    ({"instance_id": "i-0123456789abcdef0"}, "instance i-0123456789abcdef0 does not exist in region us-east-1"),
    ({"volume_tags": {"app": "nothing"}}, "No volume in region us-east-1 has the tags app=nothing."),
    ({"volume_tags": {"app": "pay"}, "tags": {"lifeboat:set-id": "x"}}, "Tag lifeboat:set-id is reserved (lifeboat: and aws: keys"),
    ({"volume_tags": {"app": "pay"}, "copy_region": REGION}, "copy_region us-east-1 is the region of the volumes"),
])
def test_bad_input_one_sentence(aws, monkeypatch, tmp_path, extra, sentence):
    (tmp_path / "store").mkdir()
    make_instance(aws)
    failed = run_module(monkeypatch, tmp_path, ebs_snapshot, args(tmp_path, **extra))
    assert failed.failed and sentence in failed.result["msg"], failed.result["msg"]
    assert "Traceback" not in failed.result["msg"] and failed.result["msg"].count(". ") == 0
    assert snapshots(aws) == {}


def test_volume_in_another_region(aws, monkeypatch, tmp_path):
    (tmp_path / "store").mkdir()
    other = boto3.client("ec2", region_name=DR).create_volume(Size=1, AvailabilityZone=DR + "a")["VolumeId"]
    failed = run_module(monkeypatch, tmp_path, ebs_snapshot, args(tmp_path, volume_ids=[other]))
    assert failed.failed
    assert failed.result["msg"] == ("volume %s does not exist in region us-east-1 (or is not visible to these "
                                    "credentials); check the id, or set region to the one it is in." % other)


def test_hooks_post_always_runs(aws, monkeypatch, tmp_path):
    (tmp_path / "store").mkdir()
    instance, data = make_instance(aws)
    log = tmp_path / "hooks.log"
    pre_fail = ["sh", "-c", "echo pre >> %s; echo frozen fs busy >&2; exit 3" % log]
    post = ["sh", "-c", "echo post >> %s" % log]
    failed = run_module(monkeypatch, tmp_path, ebs_snapshot,
                        args(tmp_path, volume_ids=data, pre_hook=pre_fail, post_hook=post))
    assert failed.failed and failed.result["msg"] == "pre_hook sh exited with status 3: frozen fs busy"
    assert log.read_text().split() == ["pre", "post"]
    assert snapshots(aws) == {}  # nothing was started
    # a post hook that fails after the snapshots started fails the set and deletes them
    failed = run_module(monkeypatch, tmp_path, ebs_snapshot,
                        args(tmp_path, volume_ids=data, post_hook=["sh", "-c", "exit 1"]))
    assert failed.failed and failed.result["msg"].startswith("post_hook sh exited with status 1")
    assert snapshots(aws) == {}
    assert _store_dir.DirStore({"path": str(tmp_path / "store")}).hosts() in ([], ["app1"])
    ok = run_module(monkeypatch, tmp_path, ebs_snapshot,
                    args(tmp_path, volume_ids=data, pre_hook=["sh", "-c", "echo pre2 >> %s" % log], post_hook=post))
    assert not ok.failed and [h["hook"] for h in ok.result["hooks"]] == ["pre_hook", "post_hook"]
    assert log.read_text().split() == ["pre", "post", "pre2", "post"]


def test_failed_copy_releases_both_regions_and_leftovers_are_removed(aws, monkeypatch, tmp_path):
    (tmp_path / "store").mkdir()
    instance, data = make_instance(aws)
    real_copy = _ebs.SnapshotEngine._copy

    def copy_then_fail(self, ctx):
        real_copy(self, ctx)
        raise _ebs.LifeboatError("the DR region refused the copy.")

    monkeypatch.setattr(_ebs.SnapshotEngine, "_copy", copy_then_fail)
    failed = run_module(monkeypatch, tmp_path, ebs_snapshot, args(tmp_path, volume_ids=data, copy_region=DR))
    assert failed.failed and failed.result["msg"] == "the DR region refused the copy."
    assert snapshots(aws) == {} and snapshots(aws, DR) == {}
    monkeypatch.setattr(_ebs.SnapshotEngine, "_copy", real_copy)
    # a killed run leaves tagged snapshots of a set that never completed: the next run removes them
    leftover = aws.create_snapshot(VolumeId=data[0], TagSpecifications=[{"ResourceType": "snapshot", "Tags": [
        {"Key": "lifeboat:host", "Value": "app1"}, {"Key": "lifeboat:source", "Value": "ebs"},
        {"Key": "lifeboat:set-id", "Value": "20260101T000000Z-full"}]}])["SnapshotId"]
    ok = run_module(monkeypatch, tmp_path, ebs_snapshot, args(tmp_path, volume_ids=data))
    assert not ok.failed, ok.result
    assert [r["id"] for r in ok.result["removed_snapshots"]] == [leftover]
    assert leftover not in snapshots(aws)
    # a snapshot of a complete set is no leftover
    again = run_module(monkeypatch, tmp_path, ebs_snapshot, args(tmp_path, volume_ids=data))
    assert again.result["removed_snapshots"] == [] and len(snapshots(aws)) == 4


def forge(store_path, manifest, ref_ids):
    """Rewrite the stored manifest of a set to name other snapshots (what a hostile store could do)."""
    path = os.path.join(store_path, manifest["host"], manifest["source"], manifest["set_id"], "manifest.json")
    data = json.loads(open(path).read())
    for ref, new_id in zip(data["external"], ref_ids):
        ref["id"] = new_id
    with open(path, "wb") as handle:
        handle.write(_manifest.dumps(data))


def test_hostile_manifest_refused_by_restore_and_retention(aws, monkeypatch, tmp_path):
    (tmp_path / "store").mkdir()
    instance, data = make_instance(aws)
    mine = run_module(monkeypatch, tmp_path, ebs_snapshot, args(tmp_path, volume_ids=[data[0]], source="mine"))
    theirs = run_module(monkeypatch, tmp_path, ebs_snapshot, args(tmp_path, volume_ids=[data[1]], source="theirs"))
    assert not mine.failed and not theirs.failed
    victim = theirs.result["snapshots"][0]["snapshot_id"]
    forge(str(tmp_path / "store"), mine.result["manifest"], [victim])
    refused = run_module(monkeypatch, tmp_path, ebs_restore, args(tmp_path, source="mine", availability_zone=REGION + "a"))
    assert refused.failed
    # the two sets may share a set id (same second, other sources): then only the source tag differs
    wrong = ([] if theirs.result["set_id"] == mine.result["set_id"]
             else ["lifeboat:set-id=%s" % theirs.result["set_id"]]) + ["lifeboat:source=theirs"]
    assert refused.result["msg"] == (
        "Snapshot %s in us-east-1 is not a snapshot of set app1/mine/%s (its tags %s say otherwise); "
        "refusing to restore from set %s." % (victim, mine.result["set_id"], ", ".join(wrong), mine.result["set_id"]))
    volumes_before = len(aws.describe_volumes()["Volumes"])
    assert volumes_before == 3
    # a newer set of "mine", then retention wants to delete the forged one: it keeps it and the victim
    newer = run_module(monkeypatch, tmp_path, ebs_snapshot, args(tmp_path, volume_ids=[data[0]], source="mine"))
    assert not newer.failed
    policy = {"store": {"path": str(tmp_path / "store")}, "sources": ["mine"], "policy": {"keep_last": 1},
              "aws": {"region": REGION}}
    kept = run_module(monkeypatch, tmp_path, backup_retention, policy)
    assert not kept.failed, kept.result
    assert kept.result["deleted"] == [] and victim in snapshots(aws)
    assert kept.result["external_kept"][0]["set_id"] == mine.result["set_id"]
    assert "is not a snapshot of set app1/mine/" in kept.result["external_kept"][0]["reason"]
    # a forged id of a snapshot that does not exist or is another account's: refused, not touched
    forge(str(tmp_path / "store"), mine.result["manifest"], ["snap-0123456789abcdef0"])
    refused = run_module(monkeypatch, tmp_path, ebs_restore,
                         args(tmp_path, source="mine", set_id=mine.result["set_id"], availability_zone=REGION + "a"))
    assert refused.failed and "does not exist or is not owned by this account" in refused.result["msg"]


def test_failed_restore_deletes_the_volumes_it_created(aws, monkeypatch, tmp_path):
    (tmp_path / "store").mkdir()
    instance, data = make_instance(aws)
    made = run_module(monkeypatch, tmp_path, ebs_snapshot, args(tmp_path, volume_ids=data))
    assert not made.failed
    before = set(v["VolumeId"] for v in aws.describe_volumes()["Volumes"])

    def attach_fails(self, job):
        raise _ebs.LifeboatError("Attaching failed.")

    monkeypatch.setattr(_ebs.RestoreEngine, "finalise", attach_fails)
    failed = run_module(monkeypatch, tmp_path, ebs_restore,
                        args(tmp_path, source="ebs", availability_zone=REGION + "b"))
    assert failed.failed and failed.result["msg"] == "Attaching failed."
    assert len(failed.result["volumes"]) == 2 and failed.result["left_behind"] == []
    assert set(v["VolumeId"] for v in aws.describe_volumes()["Volumes"]) == before


def test_restore_of_another_engine_set_and_unknown_zone(aws, monkeypatch, tmp_path):
    (tmp_path / "store").mkdir()
    instance, data = make_instance(aws)
    assert not run_module(monkeypatch, tmp_path, ebs_snapshot, args(tmp_path, volume_ids=data[:1])).failed
    failed = run_module(monkeypatch, tmp_path, ebs_restore, args(tmp_path, source="ebs", availability_zone="mars-1a"))
    assert failed.failed and failed.result["msg"].startswith("availability_zone mars-1a is not a zone of region "
                                                             "us-east-1 (")
    failed = run_module(monkeypatch, tmp_path, ebs_restore, args(tmp_path, source="ebs", region=DR,
                                                                 availability_zone=DR + "a"))
    assert failed.failed and failed.result["msg"] == ("Set %s has no EBS snapshot in region us-west-2 (it has some "
                                                      "in us-east-1); set region to one of those."
                                                      % failed.result["set_id"])
    make_set(_store_dir.DirStore({"path": str(tmp_path / "store")}), "app1", "db", "20261126T031500Z-full")
    failed = run_module(monkeypatch, tmp_path, ebs_restore, args(tmp_path, source="db", availability_zone=REGION + "a"))
    assert failed.failed and failed.result["msg"] == ("Set 20261126T031500Z-full was written by postgresql, not "
                                                      "ebs_snapshot; restore it with its own module.")


def volumes_of(ec2, restore_name):
    found = ec2.describe_volumes(Filters=[{"Name": "tag:lifeboat:restore", "Values": [restore_name]}])["Volumes"]
    return dict((v["VolumeId"], v) for v in found if v["State"] not in ("deleting", "deleted"))


def test_a_rerun_of_a_restore_finds_its_volumes_and_changes_nothing(aws, monkeypatch, tmp_path):
    (tmp_path / "store").mkdir()
    instance, data = make_instance(aws, data_volumes=2)
    made = run_module(monkeypatch, tmp_path, ebs_snapshot, args(tmp_path, volume_ids=data, source="data"))
    assert not made.failed, made.result
    zone = REGION + "b"
    first = run_module(monkeypatch, tmp_path, ebs_restore, args(tmp_path, source="data", availability_zone=zone))
    assert not first.failed, first.result
    name = "%s@%s" % (made.result["set_id"], zone)
    assert first.result["changed"] and first.result["restore_name"] == name
    created = sorted(v["volume_id"] for v in first.result["volumes"])
    assert sorted(volumes_of(aws, name)) == created
    assert not any(v["existing"] for v in first.result["volumes"])

    # check mode and a real rerun: the same volumes, nothing created
    check = run_module(monkeypatch, tmp_path, ebs_restore, args(tmp_path, source="data", availability_zone=zone),
                       check_mode=True)
    assert not check.failed and not check.result["changed"]
    assert sorted(v["volume_id"] for v in check.result["volumes"]) == created
    again = run_module(monkeypatch, tmp_path, ebs_restore, args(tmp_path, source="data", availability_zone=zone))
    assert not again.failed, again.result
    assert not again.result["changed"]
    assert sorted(v["volume_id"] for v in again.result["volumes"]) == created
    assert all(v["existing"] for v in again.result["volumes"])
    assert sorted(volumes_of(aws, name)) == created

    # one volume deleted by hand: the rerun creates that one only
    aws.delete_volume(VolumeId=created[0])
    mended = run_module(monkeypatch, tmp_path, ebs_restore, args(tmp_path, source="data", availability_zone=zone))
    assert not mended.failed and mended.result["changed"]
    now = sorted(volumes_of(aws, name))
    assert len(now) == 2 and created[1] in now and created[0] not in now
    assert sorted(v["existing"] for v in mended.result["volumes"]) == [False, True]

    # another restore name is another set of volumes; another zone too
    other = run_module(monkeypatch, tmp_path, ebs_restore,
                       args(tmp_path, source="data", availability_zone=zone, restore_name="drill-2"))
    assert not other.failed and other.result["changed"]
    assert len(volumes_of(aws, "drill-2")) == 2 and sorted(volumes_of(aws, name)) == now
    elsewhere = run_module(monkeypatch, tmp_path, ebs_restore,
                           args(tmp_path, source="data", availability_zone=REGION + "c"))
    assert not elsewhere.failed and elsewhere.result["changed"]
    assert not set(v["volume_id"] for v in elsewhere.result["volumes"]) & set(now)


def test_a_rerun_of_an_attaching_restore_attaches_only_what_is_not_attached(aws, monkeypatch, tmp_path):
    (tmp_path / "store").mkdir()
    instance, data = make_instance(aws, data_volumes=2)
    made = run_module(monkeypatch, tmp_path, ebs_snapshot, args(tmp_path, volume_ids=data, source="data"))
    assert not made.failed, made.result
    target = aws.run_instances(ImageId=AMI, MinCount=1, MaxCount=1,
                               Placement={"AvailabilityZone": REGION + "a"})["Instances"][0]["InstanceId"]
    restore = args(tmp_path, source="data", instance_id=target)
    first = run_module(monkeypatch, tmp_path, ebs_restore, restore)
    assert not first.failed and first.result["changed"], first.result
    by_device = dict((v["device"], v["volume_id"]) for v in first.result["volumes"])
    assert sorted(by_device) == ["/dev/sdf", "/dev/sdg"]
    again = run_module(monkeypatch, tmp_path, ebs_restore, restore)
    assert not again.failed, again.result
    assert not again.result["changed"]
    assert dict((v["device"], v["volume_id"]) for v in again.result["volumes"]) == by_device
    assert all(v["attached_to"] == target for v in again.result["volumes"])

    # detached by hand: the rerun attaches it again, creating nothing
    aws.detach_volume(VolumeId=by_device["/dev/sdg"], InstanceId=target)
    mended = run_module(monkeypatch, tmp_path, ebs_restore, restore)
    assert not mended.failed and mended.result["changed"], mended.result
    assert dict((v["device"], v["volume_id"]) for v in mended.result["volumes"]) == by_device
    mapping = aws.describe_instances(InstanceIds=[target])["Reservations"][0]["Instances"][0]["BlockDeviceMappings"]
    assert dict((m["DeviceName"], m["Ebs"]["VolumeId"]) for m in mapping if m["DeviceName"] in by_device) == by_device

    # a volume of this restore attached elsewhere is refused with one sentence, nothing created
    aws.detach_volume(VolumeId=by_device["/dev/sdf"], InstanceId=target)
    aws.attach_volume(VolumeId=by_device["/dev/sdf"], InstanceId=instance, Device="/dev/sdz")
    refused = run_module(monkeypatch, tmp_path, ebs_restore, restore)
    assert refused.failed
    assert ("Volume %s, restored earlier from snapshot" % by_device["/dev/sdf"]) in refused.result["msg"]
    assert "is attached to instance %s; detach it, or give another restore_name" % instance in refused.result["msg"]
    assert len(volumes_of(aws, "%s@%s" % (made.result["set_id"], REGION + "a"))) == 2
