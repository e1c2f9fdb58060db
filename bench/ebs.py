#!/usr/bin/env python
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Benchmark of the EBS engine's overhead per volume against direct boto3 calls, on a local moto server.

Run through bench/run.sh (``bench/run.sh ebs``), or directly with options:

  --volumes N   volumes snapshotted per run (default 8), attached to one instance (plus its root volume)
  --reps N      runs of each variant, interleaved; medians are reported (default 5)

Variants, both in this process against the same moto server (so ansible's own start-up is not counted):

  direct   boto3, as a standalone program would: a client, CreateSnapshot with tags for each chosen volume,
           then one DescribeSnapshots
  engine   _jobs.BackupJob into a dir store driving _ebs.SnapshotEngine on the same volumes by id: volume
           lookup, leftovers scan, snapshots, waiting, manifest, commit (polling at once: moto completes
           snapshots when they start)

The snapshots of each run are deleted afterwards (not timed). Results go to bench/results/ebs.json.
"""

import argparse
import datetime
import json
import os
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib import log, private_dir  # noqa: E402  pylint: disable=wrong-import-position
from lib.modules import import_collection  # noqa: E402  pylint: disable=wrong-import-position

UTC = datetime.timezone.utc


def median(values):
    values = sorted(values)
    return values[len(values) // 2]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    parser.add_argument("--volumes", type=int, default=8)
    parser.add_argument("--reps", type=int, default=5)
    args, dummy = parser.parse_known_args()
    import_collection()
    from ansible_collections.lifeboat.backup.plugins.module_utils import _ebs, _jobs, _store_dir  # noqa: E501  pylint: disable=import-outside-toplevel
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                    "tests", "unit", "plugins", "module_utils"))
    import moto_harness  # noqa: E402  pylint: disable=import-outside-toplevel,import-error
    server = moto_harness.server()
    results = {"date": datetime.datetime.now(UTC).strftime("%Y-%m-%d"), "cpus": os.cpu_count(),
               "volumes": args.volumes, "reps": args.reps}
    try:
        conn = server.connection()
        import boto3  # pylint: disable=import-outside-toplevel
        ec2 = boto3.client("ec2", region_name=conn["region"], endpoint_url=conn["endpoint_url"],
                           aws_access_key_id=conn["access_key"], aws_secret_access_key=conn["secret_key"])
        zone = conn["region"] + "a"
        image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
        instance = ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1,
                                     Placement={"AvailabilityZone": zone})["Instances"][0]["InstanceId"]
        volumes = []
        for index in range(args.volumes):
            volume = ec2.create_volume(Size=1, AvailabilityZone=zone)["VolumeId"]
            ec2.attach_volume(VolumeId=volume, InstanceId=instance, Device="/dev/xvd%s" % "bcdefghijklmnopqrstuvwxy"[index])
            volumes.append(volume)
        root = os.path.join(private_dir("ebs"), "store")
        shutil.rmtree(root, ignore_errors=True)
        os.makedirs(root)
        store = _store_dir.DirStore({"path": root})
        timings = {"direct": [], "engine": []}

        def direct():
            # a standalone boto3 program: its own client, then the calls
            ec2 = boto3.client("ec2", region_name=conn["region"], endpoint_url=conn["endpoint_url"],
                               aws_access_key_id=conn["access_key"], aws_secret_access_key=conn["secret_key"])
            made = []
            for volume in volumes:
                made.append(ec2.create_snapshot(VolumeId=volume, TagSpecifications=[{"ResourceType": "snapshot", "Tags": [
                    {"Key": "lifeboat:host", "Value": "bench"}, {"Key": "lifeboat:source", "Value": "direct"}]}])["SnapshotId"])
            ec2.describe_snapshots(SnapshotIds=made)
            return made

        def engine():
            client = _ebs.Ec2(dict(conn))
            job = _jobs.BackupJob(store, "bench", "ebs", "ebs", "snapshot", set_type="full")
            chosen = _ebs.select_volumes(client, volume_ids=volumes)
            snapper = _ebs.SnapshotEngine(client, chosen, interval=0.0)
            snapper.plan()
            job.run(snapper)
            return [s["snapshot_id"] for s in snapper.snapshots]

        for rep in range(args.reps):
            for name, variant in (("direct", direct), ("engine", engine)):
                started = time.perf_counter()
                made = variant()
                timings[name].append(time.perf_counter() - started)
                for snapshot_id in made:
                    ec2.delete_snapshot(SnapshotId=snapshot_id)
            log("rep %d: direct %.3f s, engine %.3f s" % (rep + 1, timings["direct"][-1], timings["engine"][-1]))
        for name, values in timings.items():
            results[name] = {"median_s": median(values), "min_s": min(values), "max_s": max(values)}
        extra = results["engine"]["median_s"] - results["direct"]["median_s"]
        results["overhead_s"] = extra
        results["overhead_per_volume_ms"] = 1000.0 * extra / args.volumes
        per_volume = results["overhead_per_volume_ms"]
        log("engine - direct: %.3f s for %d volumes (%.1f ms a volume)" % (extra, args.volumes, per_volume))
        shutil.rmtree(root, ignore_errors=True)
    finally:
        server.stop()
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "ebs.json")
    with open(out, "w") as handle:
        json.dump(results, handle, indent=2, sort_keys=True)
    print(json.dumps(results, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
