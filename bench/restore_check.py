#!/usr/bin/env python
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Where does postgresql_restore lose time against `zstd -dc file | pg_restore -d db`?  An ablation.

All variants restore the same file (the payload of a set the module just wrote) into
a database, interleaved, on the bench cluster (bench/run.sh postgresql makes it;
it is reused from $LIFEBOAT_BENCH_DIR):

  raw        zstd -q -dc FILE | pg_restore -d DB               (DB created before the clock)
  raw-args   the module's exact argv and libpq environment, run by bash
             (zstd -q -d -c < FILE | pg_restore --no-password --exit-on-error -d DB -F c)
  pipeline   lifeboat.backup's _pipeline.run_from_source with those stages, from Python
  module     python -m ...postgresql_restore (no ansible): verify the set's SHA-256,
             CREATE DATABASE scratch, the pipeline, ALTER DATABASE ... RENAME

  bench/restore_check.py [--reps N] [--keep]     (writes bench/results/restore-check.md)
"""

import json
import os
import shlex
import shutil
import subprocess
import sys
import time

from lib import PG_BIN, BenchError, cli, log, private_dir
from lib.cluster import ROLE, BenchCluster
from lib.modules import collections_path, import_collection, run_direct
from lib.procs import children_cpu
from lib.report import loadavg, table, write_results
from lib.timing import interleaved, med

DB = "bench"
RESTORE_DB = "bench_restore"
HOST = "bench"
VARIANTS = ["raw", "raw-args", "pipeline", "module"]


def module_env(cluster):
    """The libpq environment the module gives its tools."""
    import_collection()
    from ansible_collections.lifeboat.backup.plugins.module_utils import _postgres  # pylint: disable=import-outside-toplevel
    params = {"login_host": "127.0.0.1", "login_port": cluster.port, "login_user": ROLE,
              "ssl_mode": "prefer", "connect_timeout": 10}
    return _postgres.connection_env(params, passfile=cluster.pgpass)


def child_pipeline(path, db, env_json):
    import_collection()
    from ansible_collections.lifeboat.backup.plugins.module_utils import _pipeline  # pylint: disable=import-outside-toplevel
    env = json.loads(env_json)
    stages = [_pipeline.Stage("zstd", ["zstd", "-q", "-d", "-c"]),
              _pipeline.Stage("pg_restore", [os.path.join(PG_BIN, "pg_restore"), "--no-password",
                                             "--exit-on-error", "-d", db, "-F", "c"])]
    with open(path, "rb") as source:
        _pipeline.run_from_source(stages, source, env=dict(os.environ, **env))


def run_bench(args):
    cluster = BenchCluster().start()
    store = private_dir("restore-check")
    results = {}
    try:
        state = cluster.db_state(DB)
        if not state or not state["complete"]:
            raise BenchError("database %s is missing: run bench/run.sh postgresql first" % DB)
        conn = dict(cluster.conn_args(), login_password=cluster.password, store={"kind": "dir", "path": store},
                    host=HOST)
        dummy, backup = run_direct("postgresql_backup", dict(conn, db=DB, format="custom", compression="zstd"))
        payload = os.path.join(backup["path"], backup["files"][0]["name"])
        log("restore-check: set %s, payload %s" % (backup["set_id"], payload))
        menv = module_env(cluster)
        tool_env = cluster.tool_env()
        bash_env = dict(tool_env, **menv)
        pg_restore = shlex.quote(os.path.join(PG_BIN, "pg_restore"))
        for dummy, v in interleaved(VARIANTS, args.reps):
            if v == "module":
                cluster.drop_db(RESTORE_DB)
            else:
                cluster.fresh_db(RESTORE_DB)
            cluster.settle()
            c0 = children_cpu()
            t0 = time.perf_counter()
            extra = ""
            if v == "raw":
                rc = subprocess.call(["bash", "-o", "pipefail", "-euc", "zstd -q -dc %s | %s -d %s" % (
                    shlex.quote(payload), pg_restore, RESTORE_DB)], env=tool_env)
            elif v == "raw-args":
                rc = subprocess.call(["bash", "-o", "pipefail", "-euc",
                                      "zstd -q -d -c < %s | %s --no-password --exit-on-error -d %s -F c"
                                      % (shlex.quote(payload), pg_restore, RESTORE_DB)], env=bash_env)
            elif v == "pipeline":
                rc = subprocess.call([sys.executable, os.path.abspath(__file__), "--child", payload, RESTORE_DB,
                                      json.dumps(menv)], env=dict(tool_env, PYTHONPATH=collections_path()))
            else:
                dummy2, res = run_direct("postgresql_restore", dict(conn, source=DB, target_db=RESTORE_DB, clean=True))
                extra = " (duration_s %.2f)" % res["duration_s"]
                rc = 0
            wall = time.perf_counter() - t0
            cpu = children_cpu() - c0
            if rc != 0:
                raise BenchError("variant %s failed" % v)
            results.setdefault(v, []).append((wall, cpu))
            log("restore-check %-8s wall %.2f s, CPU %.2f s%s" % (v, wall, cpu, extra))
        cluster.drop_db(RESTORE_DB)
    finally:
        shutil.rmtree(store, ignore_errors=True)
        cluster.finish(keep=args.keep)

    base = med([w for w, c in results["raw"]])
    what = {"raw": "`zstd -q -dc FILE \\| pg_restore -d DB` (bash)",
            "raw-args": "the module's argv + libpq environment, run by bash",
            "pipeline": "`_pipeline.run_from_source` with those stages (Python)",
            "module": "`python -m …postgresql_restore`: verify + create scratch + pipeline + rename"}
    rows = []
    for v in VARIANTS:
        walls = [w for w, c in results[v]]
        rows.append((v, what[v], "%.2f" % med(walls), " / ".join("%.2f" % w for w in walls),
                     "%.3f" % (med(walls) / base), "%.2f" % med([c for w, c in results[v]])))
    lines = ["# Restore ablation (bench/restore_check.py)", "",
             "Medians of %d interleaved runs restoring the same zstd payload; load average at the end: %s. "
             "CPU = user+system time of the client processes (not the PostgreSQL server)."
             % (args.reps, " ".join(loadavg())), ""]
    lines += table(["variant", "what runs", "wall s", "runs s", "÷ raw wall", "CPU s"], rows,
                   ["l", "l", "r", "l", "r", "r"])
    write_results("restore-check", "\n".join(lines) + "\n", {"reps": args.reps, "results": results})


def main(argv=None):
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child_pipeline(sys.argv[2], sys.argv[3], sys.argv[4])
        return 0
    p = cli.parser(__doc__, reps=3)
    p.add_argument("--keep", action="store_true", help="leave the cluster running")
    return cli.main("restore_check", lambda a: run_bench(cli.parse(p, a)), argv)


if __name__ == "__main__":
    sys.exit(main())
