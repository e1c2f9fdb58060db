#!/usr/bin/env python
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Where does postgresql_backup lose time against `pg_dump | zstd > file`?  An ablation.

Times, interleaved, on the bench database (bench/run.sh postgresql makes it;
it is reused from $LIFEBOAT_BENCH_DIR):

  raw          pg_dump -Fc -Z0 | zstd -q -T0 > file                  (the baseline)
  cat          pg_dump -Fc -Z0 | zstd -q -T0 | cat > file            (one more pipe hop, in C)
  relay        ... | Python: os.read(1 MiB) -> write, 1 MiB pipe       (no hash, no fsync)
  relay+sha    the same, plus hashlib.sha256 per block
  module-copy  _pipeline.run_to_sink into the dir store's sink with its descriptor hidden:
               the bytes pass through Python (read, SHA-256, write; write-back thread, fsync)
  module       _pipeline.run_to_sink into the dir store's sink as the module does it:
               zstd writes the payload file itself, Python reads it back from the page
               cache for the SHA-256 (write-back thread, fsync)
  module-direct  the whole module, `python -m ...postgresql_backup ARGS.json` (no ansible)
  module@REV   with --compare REV: run_to_sink of plugins/module_utils/_pipeline.py at git
               revision REV, into a plain file (loaded from `git show`, nothing checked out)

and reports median wall and CPU (user+system of every process except the
server), and per repetition the ratio to the raw run of the same repetition.

  bench/relay_check.py [--reps N] [--compare REV] [--keep]   (writes bench/results/relay-check.md)
"""

import hashlib
import importlib.util
import fcntl
import json
import os
import shlex
import shutil
import subprocess
import sys
import time

from lib import MIB, PG_BIN, REPO, BenchError, cli, log, private_dir
from lib.cluster import BenchCluster
from lib.modules import collections_path, run_direct
from lib.procs import children_cpu, self_cpu
from lib.report import commit, loadavg, table, write_results
from lib.timing import interleaved, med

DB = "bench"
HOST = "bench"
BASE = ["raw", "cat", "relay", "relay+sha", "module-copy", "module"]


class Hidden(object):
    """A sink with its descriptor hidden, so that run_to_sink copies through Python."""

    def __init__(self, sink):
        self.sink = sink

    def write(self, data):
        return self.sink.write(data)


def child(variant, path, env_json):
    """One run of one variant, in its own process; prints what it did as JSON (with ``relay_cpu``)."""
    if variant.startswith("module"):
        from lib.modules import import_collection  # pylint: disable=import-outside-toplevel
        import_collection()
        # pylint: disable-next=import-outside-toplevel,unused-import
        from ansible_collections.lifeboat.backup.plugins.module_utils import _pipeline, _store_kinds  # noqa: F401
    cpu0 = self_cpu()  # imports done: what follows is the relay's own work
    told = child_run(variant, path, env_json)
    told["relay_cpu"] = self_cpu() - cpu0
    print(json.dumps(told))


def child_run(variant, path, env_json):
    """The variant's work; returns {"reads": N} (Python relays) or {"bytes": N} (run_to_sink)."""
    env = json.loads(env_json)
    producer = [os.path.join(PG_BIN, "pg_dump"), "-Fc", "-Z0", "-d", DB]
    zstd = ["zstd", "-q", "-c", "-T0"]
    if variant.startswith("module"):
        if "@" in variant:
            spec = importlib.util.spec_from_file_location("_pipeline_old", os.environ["LIFEBOAT_OLD_PIPELINE"])
            pipeline = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(pipeline)
            with open(path, "wb") as sink:
                size, dummy = pipeline.run_to_sink([pipeline.Stage("pg_dump", producer), pipeline.Stage("zstd", zstd)],
                                                   sink, env=env)
            return {"bytes": size}
        from ansible_collections.lifeboat.backup.plugins.module_utils import _pipeline, _store_kinds  # pylint: disable=import-outside-toplevel
        store = _store_kinds.open_store({"kind": "dir", "path": os.path.dirname(path)})
        writer = store.begin(HOST, "relay", "20261126T031500Z-full")
        try:
            sink = writer.open("dump.pgc.zst")
            stages = [_pipeline.Stage("pg_dump", producer)] + _pipeline.compress_stages("zstd", "zstd")
            size, dummy = _pipeline.run_to_sink(stages, Hidden(sink) if variant == "module-copy" else sink, env=env)
            sink.close()
        finally:
            writer.abort()
        return {"bytes": size}
    p1 = subprocess.Popen(producer, stdout=subprocess.PIPE, env=env)  # pylint: disable=consider-using-with
    p2 = subprocess.Popen(zstd, stdin=p1.stdout, stdout=subprocess.PIPE, env=env)  # pylint: disable=consider-using-with
    p1.stdout.close()
    digest = hashlib.sha256() if variant == "relay+sha" else None
    fd = p2.stdout.fileno()
    fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), MIB)
    reads = 0
    buffer = bytearray(MIB)
    view = memoryview(buffer)
    with open(path, "wb", buffering=0) as sink:
        while True:
            count = os.readv(fd, [buffer])
            if not count:
                break
            reads += 1
            if digest is not None:
                digest.update(view[:count])
            sink.write(view[:count])
    p2.stdout.close()
    if p1.wait() != 0 or p2.wait() != 0:
        sys.exit("pipeline failed")
    return {"reads": reads}


def run_bench(args):
    cluster = BenchCluster().start()
    work = private_dir("relay")
    out = os.path.join(work, "relay.zst")
    results = {}
    reads = {}
    durations = []
    try:
        state = cluster.db_state(DB)
        if not state or not state["complete"]:
            raise BenchError("database %s is missing: run bench/run.sh postgresql first" % DB)
        env = cluster.tool_env()
        env["PYTHONPATH"] = collections_path()
        variants = list(BASE)
        if args.compare:
            src = subprocess.run(["git", "-C", REPO, "show", "%s:plugins/module_utils/_pipeline.py" % args.compare],
                                 stdout=subprocess.PIPE, check=False)
            if src.returncode != 0:
                raise BenchError("git show %s:plugins/module_utils/_pipeline.py failed" % args.compare)
            env["LIFEBOAT_OLD_PIPELINE"] = os.path.join(work, "old_pipeline.py")
            with open(env["LIFEBOAT_OLD_PIPELINE"], "wb") as handle:
                handle.write(src.stdout)
            variants.append("module@" + args.compare)
        variants.append("module-direct")
        cluster.dump_size(DB)  # warm the page cache
        conn = dict(cluster.conn_args(), login_password=cluster.password, store={"kind": "dir", "path": work},
                    host=HOST, db=DB, format="custom", compression="zstd")
        for rep, v in interleaved(variants, args.reps):
            shutil.rmtree(os.path.join(work, HOST), ignore_errors=True)
            if os.path.exists(out):
                os.unlink(out)
            cluster.settle()
            c0 = children_cpu()
            t0 = time.perf_counter()
            extra = ""
            relay_cpu = None
            if v == "module-direct":
                run, res = run_direct("postgresql_backup", conn)
                durations.append(res["duration_s"])
                size = res["bytes"]
                relay_cpu = run.module_cpu
                extra = " (duration_s %.2f)" % res["duration_s"]
            else:
                if v in ("raw", "cat"):
                    script = "%s -Fc -Z0 -d %s | zstd -q -T0 %s> %s" % (
                        shlex.quote(os.path.join(PG_BIN, "pg_dump")), DB, "| cat " if v == "cat" else "",
                        shlex.quote(out))
                    argv = ["bash", "-o", "pipefail", "-euc", script]
                else:
                    argv = [sys.executable, os.path.abspath(__file__), "--child", v, out, json.dumps(env)]
                proc = subprocess.run(argv, env=env, stdout=subprocess.PIPE, check=False)
                if proc.returncode != 0:
                    raise BenchError("variant %s failed" % v)
                told = json.loads(proc.stdout) if proc.stdout.strip() else {}
                if "reads" in told:
                    reads[v] = told["reads"]
                size = told.get("bytes")
                relay_cpu = told.get("relay_cpu")
            wall = time.perf_counter() - t0
            cpu = children_cpu() - c0
            if size is None:
                size = os.path.getsize(out)
            results.setdefault(v, []).append({"rep": rep, "wall": wall, "cpu": cpu, "bytes": size,
                                              "relay_cpu": relay_cpu})
            log("relay-check %-17s wall %.2f s, CPU %.2f s, Python %s s%s"
                % (v, wall, cpu, "%.2f" % relay_cpu if relay_cpu is not None else "-", extra))
    finally:
        shutil.rmtree(work, ignore_errors=True)
        cluster.finish(keep=args.keep)
    render(args, variants, results, reads, durations)


def render(args, variants, results, reads, durations):
    raw_by_rep = dict((x["rep"], x) for x in results["raw"])
    base_wall = med([x["wall"] for x in results["raw"]])
    base_cpu = med([x["cpu"] for x in results["raw"]])
    what = {"raw": "zstd writes the file",
            "cat": "zstd → pipe → `cat` writes the file",
            "relay": "zstd → 1 MiB pipe → Python `os.readv` → `write`",
            "relay+sha": "same + `hashlib.sha256().update` per block",
            "module-copy": "`run_to_sink` into the dir sink, descriptor hidden: read → SHA-256 → write (+ write-back "
                           "thread, fsync)",
            "module": "`run_to_sink` into the dir sink as the module runs it: zstd writes the file, Python hashes it "
                      "read back (+ write-back, fsync)",
            "module-direct": "the whole module via `python -m` (no ansible); duration_s median %.2f s"
                             % med(durations)}
    if args.compare:
        what["module@" + args.compare] = "`run_to_sink` as of %s, into a plain file" % args.compare
    rows = []
    for v in variants:
        runs = results[v]
        walls = [x["wall"] for x in runs]
        paired = [x["wall"] / raw_by_rep[x["rep"]]["wall"] for x in runs if x["rep"] in raw_by_rep]
        relay = [x.get("relay_cpu") for x in runs if x.get("relay_cpu") is not None]
        rows.append((v, what[v], "%.2f" % med(walls), " / ".join("%.2f" % w for w in walls),
                     "%.3f" % (med(walls) / base_wall), "%.3f" % med(paired),
                     "%.2f" % med([x["cpu"] for x in runs]), "%+.2f" % (med([x["cpu"] for x in runs]) - base_cpu),
                     "%.3f" % med(relay) if relay else "—"))
    size = results["raw"][-1]["bytes"]
    lines = ["# Backup relay ablation (bench/relay_check.py)", "",
             "Medians of %d interleaved runs on database `%s`, %s; load average at the end: %s. CPU = "
             "user+system time of every process of the run except the PostgreSQL server. *paired* divides each run "
             "by the raw run of the same repetition." % (args.reps, DB, commit(), " ".join(loadavg())), ""]
    lines += table(["variant", "what the output path does", "wall s", "runs s", "÷ raw wall", "paired ÷ raw",
                    "CPU s", "CPU − raw s", "Python CPU s"], rows, ["l", "l", "r", "l", "r", "r", "r", "r", "r"])
    lines += ["", "*Python CPU* is the user+system time of the Python process that moves the bytes, from the start "
              "of the variant's work to its end (interpreter start-up excluded); for `module-direct` it is the whole "
              "module process as a 50 ms /proc sampler last saw it. It is the part of the CPU that the machine's "
              "load disturbs least."]
    lines += ["", "Compressed output %.1f MiB. Reads per run by the Python relays: %s." % (
        size / float(MIB), ", ".join("%s %d (%.0f KiB each)" % (v, n, size / n / 1024.0) for v, n in sorted(reads.items())))]
    write_results("relay-check", "\n".join(lines) + "\n",
                  {"reps": args.reps, "results": results, "reads": reads, "durations": durations})


def main(argv=None):
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3], sys.argv[4])
        return 0
    p = cli.parser(__doc__, reps=5)
    p.add_argument("--keep", action="store_true", help="leave the cluster running")
    p.add_argument("--compare", metavar="REV", help="also time run_to_sink as of git revision REV")
    return cli.main("relay_check", lambda a: run_bench(cli.parse(p, a)), argv)


if __name__ == "__main__":
    sys.exit(main())
