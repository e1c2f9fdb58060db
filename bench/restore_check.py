#!/usr/bin/env python
"""Where does postgresql_restore lose time against `zstd -dc file | pg_restore -d db`?  An ablation.

All variants restore the same file (the payload of a set the module just wrote) into
a database, interleaved, on the bench cluster (run bench/run.sh first; it is reused
from $LIFEBOAT_BENCH_DIR):

  raw        zstd -q -dc FILE | pg_restore -d DB               (DB created before the clock)
  raw-args   the module's exact argv and libpq environment, run by bash
             (zstd -q -d -c < FILE | pg_restore --no-password --exit-on-error -d DB -F c)
  pipeline   lifeboat.backup's _pipeline.run_from_source with those stages, from Python
  module     python -m ...postgresql_restore (no ansible): verify the set's SHA-256,
             CREATE DATABASE scratch, the pipeline, ALTER DATABASE ... RENAME

  bench/restore_check.py [--reps N] [--keep]     (writes bench/results/restore-check.md)
"""

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402  (same directory)


def module_env(b):
    from ansible_collections.lifeboat.backup.plugins.module_utils import _postgres
    params = {"login_host": "127.0.0.1", "login_port": b.port, "login_user": bench.ROLE,
              "ssl_mode": "prefer", "connect_timeout": 10}
    return _postgres.connection_env(params, passfile=b.pgpass)


def child_pipeline(path, db, env_json):
    from ansible_collections.lifeboat.backup.plugins.module_utils import _pipeline
    env = json.loads(env_json)
    stages = [_pipeline.Stage("zstd", ["zstd", "-q", "-d", "-c"]),
              _pipeline.Stage("pg_restore", [os.path.join(bench.PG_BIN, "pg_restore"), "--no-password",
                                             "--exit-on-error", "-d", db, "-F", "c"])]
    with open(path, "rb") as source:
        _pipeline.run_from_source(stages, source, env=dict(os.environ, **env))


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child_pipeline(sys.argv[2], sys.argv[3], sys.argv[4])
        return 0
    p = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--keep", action="store_true", help="leave the cluster running")
    args = p.parse_args()

    b = bench.start_ablation(args.keep)
    sys.path.insert(0, b.coll)
    results = {}
    try:
        state = b.db_state(bench.DB)
        if not state or not state["complete"]:
            raise bench.BenchError("database %s is missing: run bench/run.sh first" % bench.DB)
        b.reset_source(bench.DB)
        backup = bench.run_module_direct(b, "backup", {"db": bench.DB, "format": "custom", "compression": "zstd"})
        payload = os.path.join(backup["path"], backup["files"][0]["name"])
        bench.log("restore-check: set %s, payload %s" % (backup["set_id"], payload))
        menv = module_env(b)
        tool_env = dict(b.tool_env())
        bash_env = dict(tool_env, **menv)
        pg_restore = shlex.quote(os.path.join(bench.PG_BIN, "pg_restore"))
        variants = ["raw", "raw-args", "pipeline", "module"]
        for rep in range(args.reps):
            k = rep % len(variants)
            for v in variants[k:] + variants[:k]:
                db = bench.RESTORE_DB
                if v == "module":
                    b.drop_db(db)
                else:
                    b.fresh_db(db)
                b.settle()
                c0 = bench.children_cpu()
                t0 = time.perf_counter()
                extra = ""
                if v == "raw":
                    rc = subprocess.call(["bash", "-o", "pipefail", "-euc", "zstd -q -dc %s | %s -d %s" % (
                        shlex.quote(payload), pg_restore, db)], env=tool_env)
                elif v == "raw-args":
                    rc = subprocess.call(["bash", "-o", "pipefail", "-euc",
                                          "zstd -q -d -c < %s | %s --no-password --exit-on-error -d %s -F c"
                                          % (shlex.quote(payload), pg_restore, db)], env=bash_env)
                elif v == "pipeline":
                    env = dict(tool_env, PYTHONPATH=b.coll)
                    rc = subprocess.call([sys.executable, os.path.abspath(__file__), "--child", payload, db,
                                          json.dumps(menv)], env=env)
                else:
                    res = bench.run_module_direct(b, "restore", {"source": bench.DB, "target_db": db, "clean": True})
                    extra = " (duration_s %.2f)" % res["duration_s"]
                    rc = 0
                wall = time.perf_counter() - t0
                cpu = bench.children_cpu() - c0
                if rc != 0:
                    raise bench.BenchError("variant %s failed" % v)
                results.setdefault(v, []).append((wall, cpu))
                bench.log("restore-check %-8s wall %.2f s, CPU %.2f s%s" % (v, wall, cpu, extra))
        b.drop_db(bench.RESTORE_DB)
        b.reset_source(bench.DB)
    finally:
        if not args.keep:
            b.stop_cluster()

    base = statistics.median(w for w, c in results["raw"])
    lines = ["# Restore ablation (bench/restore_check.py)", "",
             "Medians of %d interleaved runs restoring the same %s payload; load average at the end: %s. "
             "CPU = user+system time of the client processes (not the PostgreSQL server)." % (
                 args.reps, "zstd", " ".join(open("/proc/loadavg").read().split()[:3])), "",
             "| variant | what runs | wall s | runs s | ÷ raw wall | CPU s |", "|---|---|---:|---|---:|---:|"]
    what = {"raw": "`zstd -q -dc FILE \\| pg_restore -d DB` (bash)",
            "raw-args": "the module's argv + libpq environment, run by bash",
            "pipeline": "`_pipeline.run_from_source` with those stages (Python)",
            "module": "`python -m …postgresql_restore`: verify + create scratch + pipeline + rename"}
    for v in ("raw", "raw-args", "pipeline", "module"):
        walls = [w for w, c in results[v]]
        lines.append("| %s | %s | %.2f | %s | %.3f | %.2f |" % (
            v, what[v], statistics.median(walls), " / ".join("%.2f" % w for w in walls),
            statistics.median(walls) / base, statistics.median(c for w, c in results[v])))
    md = "\n".join(lines) + "\n"
    os.makedirs(bench.RESULTS, exist_ok=True)
    with open(os.path.join(bench.RESULTS, "restore-check.md"), "w") as fh:
        fh.write(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
