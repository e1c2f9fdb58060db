#!/usr/bin/env python
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Benchmark of retention: planning over 10,000 sets, and deleting 1,000 sets from a dir store and from moto.

Run through bench/run.sh (``bench/run.sh retention``), or directly with options:

  --sets N        sets to plan over (default 10,000), across --sources sources (default 100): a full every
                  7 days and an incremental on the other days, one set a day per source
  --reps N        planning runs; the median and spread are reported (default 5)
  --delete N      sets deleted by backup_retention's apply_source from a dir store (default 1,000)
  --s3-delete N   the same from a bucket on a local moto server (default 1,000; 0 skips it)

Planning is timed in this process on manifests already in memory (_retention.plan, the pure planner);
deletion is timed through the store contract (lock, scan, plan, journal, delete_set), as the module runs it.
Results are printed and written to bench/results/retention.json.
"""

import argparse
import datetime
import hashlib
import json
import os
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib import log, private_dir  # noqa: E402  pylint: disable=wrong-import-position
from lib.modules import import_collection  # noqa: E402  pylint: disable=wrong-import-position

UTC = datetime.timezone.utc
START = datetime.datetime(2025, 1, 1, 3, 0, tzinfo=UTC)


def history(_manifest, host, source, count):
    sets, parent = [], None
    for day in range(count):
        when = START + datetime.timedelta(days=day)
        kind = "full" if day % 7 == 0 else "incremental"
        set_id = when.strftime("%Y%m%dT%H%M%SZ") + "-" + kind
        manifest = _manifest.new_manifest(set_id, host, source, "postgresql", "pg_dump", kind,
                                          parent if kind != "full" else None)
        _manifest.add_file(manifest, "dump.pgc", 7, hashlib.sha256(b"payload").hexdigest())
        _manifest.finish(manifest, when, when + datetime.timedelta(seconds=60))
        sets.append(manifest)
        parent = set_id
    return sets


def write_sets(store, _manifest, count):
    for manifest in history(_manifest, "db1", "app", count):
        writer = store.begin("db1", "app", manifest["set_id"])
        with writer.open("dump.pgc") as sink:
            sink.write(b"payload")
        writer.commit(_manifest.dumps(manifest), ["dump.pgc"])


def time_delete(store, _retention, count):
    policy = _retention.check_policy({"keep_last": 1})
    now = START + datetime.timedelta(days=count + 1)
    started = time.monotonic()
    report = _retention.apply_source(store, "db1", "app", policy, now)
    elapsed = time.monotonic() - started
    return elapsed, len(report["deleted"])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    parser.add_argument("--sets", type=int, default=10000)
    parser.add_argument("--sources", type=int, default=100)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--delete", type=int, default=1000)
    parser.add_argument("--s3-delete", type=int, default=1000)
    args = parser.parse_args()
    import_collection()
    from ansible_collections.lifeboat.backup.plugins.module_utils import _manifest, _retention, _store_dir  # noqa: E501  pylint: disable=import-outside-toplevel
    results = {"date": datetime.datetime.now(UTC).strftime("%Y-%m-%d"), "cpus": os.cpu_count()}

    per_source = args.sets // args.sources
    manifests = []
    for index in range(args.sources):
        manifests += history(_manifest, "host%03d" % (index // 4), "src%d" % (index % 4), per_source)
    policy = _retention.check_policy({"keep_daily": 7, "keep_weekly": 4, "keep_monthly": 12, "keep_yearly": 2})
    now = START + datetime.timedelta(days=per_source)
    times = []
    for dummy in range(args.reps):
        started = time.perf_counter()
        plan = _retention.plan(manifests, policy, now)
        times.append(time.perf_counter() - started)
    times.sort()
    kept = sum(1 for p in plan.values() for e in p["sets"] if e["action"] == "keep")
    results["plan"] = {"sets": len(manifests), "sources": len(plan), "kept": kept, "median_s": times[len(times) // 2],
                       "min_s": times[0], "max_s": times[-1]}
    log("plan: %d sets, %d sources, %d kept: median %.3f s (%.3f-%.3f)" % (
        len(manifests), len(plan), kept, times[len(times) // 2], times[0], times[-1]))

    if args.delete:
        root = os.path.join(private_dir("retention"), "dir-store")
        shutil.rmtree(root, ignore_errors=True)
        store = _store_dir.DirStore({"path": root})
        write_sets(store, _manifest, args.delete + 1)
        elapsed, deleted = time_delete(store, _retention, args.delete + 1)
        results["dir_delete"] = {"deleted": deleted, "s": elapsed, "per_set_ms": 1000.0 * elapsed / max(deleted, 1)}
        log("dir store: deleted %d sets in %.2f s" % (deleted, elapsed))
        shutil.rmtree(root, ignore_errors=True)

    if args.s3_delete:
        sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                        "tests", "unit", "plugins", "module_utils"))
        import moto_harness  # noqa: E402  pylint: disable=import-outside-toplevel,import-error
        from ansible_collections.lifeboat.backup.plugins.module_utils import _store_kinds  # noqa: E501  pylint: disable=import-outside-toplevel
        server = moto_harness.server()
        try:
            bucket = server.new_bucket()
            store = _store_kinds.open_store(dict(kind="s3", bucket=bucket, **server.connection()))
            write_sets(store, _manifest, args.s3_delete + 1)
            elapsed, deleted = time_delete(store, _retention, args.s3_delete + 1)
            results["s3_delete"] = {"deleted": deleted, "s": elapsed, "per_set_ms": 1000.0 * elapsed / max(deleted, 1)}
            log("moto: deleted %d sets in %.2f s" % (deleted, elapsed))
        finally:
            server.stop()

    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "retention.json")
    with open(out, "w") as handle:
        json.dump(results, handle, indent=2, sort_keys=True)
    print(json.dumps(results, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
