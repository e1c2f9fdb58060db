#!/usr/bin/env python
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Benchmark of backup_metrics over the stores of the store_info benchmark.

Run through bench/run.sh (``bench/run.sh metrics``). It reuses (or generates) the two dir stores
of bench/store_info.py under $LIFEBOAT_BENCH_DIR/info/:

  deep    1 host x 1 source x 10,000 sets: the metrics of that host, its store as primary
  fleet   100 hosts x 4 sources x 25 sets: the metrics of one host (4 sources), its store as primary

Timed, interleaved, --reps times each:

  direct        python -m ...backup_metrics ARGS.json (no ansible), store_usage true (every manifest read)
  direct-names  the same with store_usage false (names and the newest manifest only)
  collect       _metrics.collect + render in this process, store_usage true
  collect-names the same, store_usage false

and writes bench/results/metrics.md and .json.
"""

import datetime
import os
import sys
import tempfile
import time

from lib import BenchError, cli, private_dir
from lib.modules import import_collection, run_direct
from lib.report import fmt_s, loadavg, machine_info, machine_table, table, write_results
from lib.timing import interleaved, med, spread

import store_info

VARIANTS = ("direct", "direct-names", "collect", "collect-names")


def outcomes(sources, now):
    finished = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    return [dict(name=s, engine="postgresql", method="pg_dump", status="ok", bytes=100, duration_s=1.0,
                 finished=finished, rpo="26h", copies={"primary": {"verified": True}}) for s in sources]


def run_bench(args):
    import_collection()
    # pylint: disable=import-outside-toplevel
    from ansible_collections.lifeboat.backup.plugins.module_utils import _metrics, _store_kinds
    info_dir = private_dir("info")
    r = {"machine": machine_info(info_dir, tools=()), "reps": args.reps, "shapes": {}}
    out_dir = tempfile.mkdtemp(prefix="metrics-", dir=private_dir())
    for shape in ("deep", "fleet"):
        root, dummy, dummy2 = store_info.ensure_store(info_dir, shape)
        spec = store_info.SHAPES[shape]
        host = store_info.host_name(0)
        sources = ["db%02d" % s for s in range(spec["sources"])]
        now = datetime.datetime.now(datetime.timezone.utc)
        store_spec = {"kind": "dir", "path": root}
        times = dict((v, []) for v in VARIANTS)
        samples = None
        for dummy, variant in interleaved(VARIANTS, args.reps):
            usage = not variant.endswith("-names")
            if variant.startswith("direct"):
                run, result = run_direct("backup_metrics", {
                    "path": os.path.join(out_dir, "%s.prom" % shape), "host": host,
                    "sources": outcomes(sources, now), "stores": {"primary": store_spec}, "store_usage": usage})
                if result.get("failed") or result.get("errors"):
                    why = result.get("msg") or result.get("errors")
                    raise BenchError("backup_metrics failed on the %s store: %s" % (shape, why))
                times[variant].append(run.wall)
            else:
                stores = {"primary": _store_kinds.open_store(store_spec)}
                t0 = time.perf_counter()
                found, errors = _metrics.collect(host, outcomes(sources, now), stores, now, usage)
                found.render()
                times[variant].append(time.perf_counter() - t0)
                samples = len(found.listing())
        r["shapes"][shape] = {"sets_per_source": spec["sets"], "sources": len(sources), "samples": samples,
                              "median_s": dict((v, med(t)) for v, t in times.items()),
                              "spread_s": dict((v, spread(t)) for v, t in times.items())}
    r["loadavg"] = loadavg()
    write_results("metrics", render(r), r)


def render(r):
    lines = ["# backup_metrics over a dir store", ""] + machine_table(r["machine"]) + [
        "", "Median of %d interleaved runs (min–max); wall seconds. Load average after: %s." % (r["reps"], r["loadavg"]),
        ""]
    rows = []
    for shape, s in r["shapes"].items():
        for v in VARIANTS:
            lo, hi = s["spread_s"][v]
            rows.append([shape, "%d x %d" % (s["sources"], s["sets_per_source"]), v, fmt_s(s["median_s"][v], 3),
                         "%s–%s" % (fmt_s(lo, 3), fmt_s(hi, 3))])
    lines += table(["store", "sources x sets", "variant", "median s", "range"], rows)
    return "\n".join(lines) + "\n"


def main(argv=None):
    p = cli.parser(__doc__, reps=5)
    args = cli.parse(p, argv)
    return cli.main("metrics", lambda dummy: run_bench(args), argv)


if __name__ == "__main__":
    sys.exit(main())
