#!/usr/bin/env python
"""EC2 fixtures and facts for the ebs_snapshot target, on moto's server (boto3, dummy credentials).

  ec2.py ENDPOINT setup REGION                      -> an instance with its root volume and two data volumes
  ec2.py ENDPOINT snapshots REGION HOST SOURCE      -> this account's snapshots tagged for HOST/SOURCE
  ec2.py ENDPOINT volumes REGION VOLUME_ID...       -> the volumes (id, size, zone, tags, attachments)
  ec2.py ENDPOINT forge MANIFEST SNAPSHOT_ID        -> rewrite a dir store's manifest to name another snapshot

Prints JSON.
"""

import json
import sys

import boto3

ACCOUNT = "123456789012"  # moto's default account


def client(endpoint, region):
    return boto3.client("ec2", region_name=region, endpoint_url=endpoint, aws_access_key_id="testing",
                        aws_secret_access_key="testing")


def tags(item):
    return dict((t["Key"], t["Value"]) for t in item.get("Tags") or [])


def main(endpoint, command, *args):
    if command == "setup":
        ec2 = client(endpoint, args[0])
        image = "ami-12c6146b"  # one of moto's stock AMIs (listing them all takes seconds)
        zone = args[0] + "a"
        instance = ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1,
                                     Placement={"AvailabilityZone": zone})["Instances"][0]["InstanceId"]
        volumes = {}
        for size, device in ((2, "/dev/sdf"), (3, "/dev/sdg")):
            volume = ec2.create_volume(Size=size, AvailabilityZone=zone, VolumeType="gp3")["VolumeId"]
            ec2.attach_volume(VolumeId=volume, InstanceId=instance, Device=device)
        described = ec2.describe_instances(InstanceIds=[instance])["Reservations"][0]["Instances"][0]
        ids = [m["Ebs"]["VolumeId"] for m in described["BlockDeviceMappings"]]
        for volume in ec2.describe_volumes(VolumeIds=ids)["Volumes"]:
            volumes[volume["VolumeId"]] = volume["Size"]
        return {"instance_id": instance, "zone": zone, "sizes": volumes, "data": sorted(volumes)}
    if command == "snapshots":
        region, host, source = args
        found = client(endpoint, region).describe_snapshots(OwnerIds=["self"], Filters=[
            {"Name": "tag:lifeboat:host", "Values": [host]}, {"Name": "tag:lifeboat:source", "Values": [source]}])
        return sorted(s["SnapshotId"] for s in found["Snapshots"] if s["OwnerId"] == ACCOUNT)
    if command == "volumes":
        region, ids = args[0], list(args[1:])
        found = client(endpoint, region).describe_volumes(VolumeIds=ids)["Volumes"]
        return dict((v["VolumeId"], {"size": v["Size"], "zone": v["AvailabilityZone"], "tags": tags(v),
                                     "attached_to": [a["InstanceId"] for a in v.get("Attachments") or []]})
                    for v in found)
    if command == "forge":
        path, snapshot_id = args
        with open(path) as handle:
            data = json.load(handle)
        data["external"][0]["id"] = snapshot_id
        with open(path, "w") as handle:
            json.dump(data, handle, indent=2, sort_keys=True)
        return {"forged": path}
    raise SystemExit("unknown command %s" % command)


if __name__ == "__main__":
    print(json.dumps(main(*sys.argv[1:])))
