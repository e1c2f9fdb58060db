#!/usr/bin/env python
"""Where does postgresql_backup lose time against `pg_dump | zstd > file`?  An ablation.

The module does not let zstd write the file: the compressed bytes come back through
a pipe into the module's Python process (lifeboat.backup's _pipeline.run_to_sink),
which hashes them (SHA-256), writes them to the store file and fsyncs it.  This
script times, interleaved, on the bench database (run bench/run.sh first; it is
reused from $LIFEBOAT_BENCH_DIR):

  raw        pg_dump -Fc -Z0 | zstd -q -T0 > file                  (the baseline)
  cat        pg_dump -Fc -Z0 | zstd -q -T0 | cat > file            (one more pipe hop, in C)
  relay      ... | Python: os.read(1 MiB) -> file.write            (no hash, no fsync)
  relay+sha  ... | Python: read -> sha256.update -> write          (no fsync)
  relay+sha+bigpipe  the same with the pipe enlarged to 1 MiB (F_SETPIPE_SZ), so
             each read returns up to 1 MiB instead of the default 64 KiB pipe size
  module     _pipeline.run_to_sink itself, imported from the collection
             (read -> sha256 -> write, then flush + fsync): the module's code path
             without ansible, argument parsing, probe or manifest

  module-direct  the whole module, `python -m ...postgresql_backup ARGS.json` (no
             ansible): argument parsing, probe, `pg_dump --version`, lock, the
             pipeline, fsync, manifest, rename; its duration_s is reported too
  module@REV with --compare REV: run_to_sink from plugins/module_utils/_pipeline.py
             as it was at git revision REV (loaded from `git show`, nothing is
             checked out), to A/B a change of the pipeline

and reports median wall and CPU (user+system of every process except the server).

  bench/relay_check.py [--reps N] [--compare REV] [--keep]   (writes bench/results/relay-check.md)
"""

import argparse
import importlib.util
import fcntl
import hashlib
import json
import os
import shlex
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402  (same directory)

MIB = 1024 * 1024


def child(variant, path, env_json):
    """One run of one variant, in its own process; prints nothing on success."""
    env = json.loads(env_json)
    pg_dump = os.path.join(bench.PG_BIN, "pg_dump")
    producer = [pg_dump, "-Fc", "-Z0", "-d", bench.DB]
    zstd = ["zstd", "-q", "-c", "-T0"]
    if variant.startswith("module"):
        if variant == "module":
            from ansible_collections.lifeboat.backup.plugins.module_utils import _pipeline
        else:
            spec = importlib.util.spec_from_file_location("_pipeline_old", os.environ["LIFEBOAT_OLD_PIPELINE"])
            _pipeline = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(_pipeline)
        stages = [_pipeline.Stage("pg_dump", producer), _pipeline.Stage("zstd", zstd)]
        with open(path, "wb") as sink:
            _pipeline.run_to_sink(stages, sink, env=env)
        return
    p1 = subprocess.Popen(producer, stdout=subprocess.PIPE, env=env)
    p2 = subprocess.Popen(zstd, stdin=p1.stdout, stdout=subprocess.PIPE, env=env)
    p1.stdout.close()
    digest = hashlib.sha256() if variant.startswith("relay+sha") else None
    fd = p2.stdout.fileno()
    if variant.endswith("bigpipe"):
        fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), MIB)
    reads = 0
    with open(path, "wb") as sink:
        while True:
            block = os.read(fd, MIB)
            if not block:
                break
            reads += 1
            if digest is not None:
                digest.update(block)
            sink.write(block)
    p2.stdout.close()
    if p1.wait() != 0 or p2.wait() != 0:
        sys.exit("pipeline failed")
    print(json.dumps({"reads": reads}))


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3], sys.argv[4])
        return 0
    p = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--keep", action="store_true", help="leave the cluster running")
    p.add_argument("--compare", metavar="REV", help="also time run_to_sink as of git revision REV")
    args = p.parse_args()

    b = bench.start_ablation(args.keep)
    results = {}
    try:
        state = b.db_state(bench.DB)
        if not state or not state["complete"]:
            raise bench.BenchError("database %s is missing: run bench/run.sh first" % bench.DB)
        env = b.tool_env()
        env["PYTHONPATH"] = b.coll
        out = os.path.join(b.out, "relay.zst")
        old = None
        if args.compare:
            old = "module@" + args.compare
            src = subprocess.run(["git", "-C", bench.REPO, "show", "%s:plugins/module_utils/_pipeline.py" % args.compare],
                                 stdout=subprocess.PIPE, check=True).stdout
            env["LIFEBOAT_OLD_PIPELINE"] = os.path.join(b.dir, "old_pipeline.py")
            with open(env["LIFEBOAT_OLD_PIPELINE"], "wb") as fh:
                fh.write(src)
        b.uncompressed_dump_size()  # warm the page cache
        variants = ["raw", "cat", "relay", "relay+sha", "relay+sha+bigpipe", "module"] + ([old] if old else []) + ["module-direct"]
        durations = []
        reads = {}
        for rep in range(args.reps):
            k = rep % len(variants)
            for v in variants[k:] + variants[:k]:
                if os.path.exists(out):
                    os.unlink(out)
                if v == "module-direct":
                    b.reset_source(bench.DB)
                    b.settle()
                    c0 = bench.children_cpu()
                    t0 = time.perf_counter()
                    res = bench.run_module_direct(b, "backup", {"db": bench.DB, "format": "custom", "compression": "zstd"})
                    wall = time.perf_counter() - t0
                    cpu = bench.children_cpu() - c0
                    results.setdefault(v, []).append((wall, cpu, res["bytes"]))
                    durations.append(res["duration_s"])
                    bench.log("relay-check %-17s wall %.2f s, CPU %.2f s (duration_s %.2f)" % (v, wall, cpu, res["duration_s"]))
                    continue
                if v in ("raw", "cat"):
                    script = "%s -Fc -Z0 -d %s | zstd -q -T0 %s> %s" % (
                        shlex.quote(os.path.join(bench.PG_BIN, "pg_dump")), bench.DB,
                        "| cat " if v == "cat" else "", shlex.quote(out))
                    argv = ["bash", "-o", "pipefail", "-euc", script]
                else:
                    argv = [sys.executable, os.path.abspath(__file__), "--child", v, out, json.dumps(env)]
                b.settle()
                c0 = bench.children_cpu()
                t0 = time.perf_counter()
                proc = subprocess.run(argv, env=env, stdout=subprocess.PIPE, check=False)
                wall = time.perf_counter() - t0
                cpu = bench.children_cpu() - c0
                if proc.returncode != 0:
                    raise bench.BenchError("variant %s failed" % v)
                results.setdefault(v, []).append((wall, cpu, os.path.getsize(out)))
                if proc.stdout.strip():
                    reads[v] = json.loads(proc.stdout)["reads"]
                bench.log("relay-check %-17s wall %.2f s, CPU %.2f s" % (v, wall, cpu))
        if os.path.exists(out):  # the rotation may end on module-direct, which writes to the store
            os.unlink(out)
        b.reset_source(bench.DB)
    finally:
        if not args.keep:
            b.stop_cluster()

    base_wall = statistics.median(w for w, c, s in results["raw"])
    base_cpu = statistics.median(c for w, c, s in results["raw"])
    lines = ["# Backup relay ablation (bench/relay_check.py)", "",
             "Medians of %d interleaved runs on database `%s`; load average at the end: %s. CPU = user+system time of "
             "every process of the run except the PostgreSQL server." % (
                 args.reps, bench.DB, " ".join(open("/proc/loadavg").read().split()[:3])), "",
             "| variant | what the output path does | wall s | runs s | ÷ raw wall | CPU s | CPU − raw s |",
             "|---|---|---:|---|---:|---:|---:|"]
    head = subprocess.run(["git", "-C", bench.REPO, "rev-parse", "--short", "HEAD"], stdout=subprocess.PIPE,
                          check=False).stdout.decode().strip()
    dirty = subprocess.run(["git", "-C", bench.REPO, "status", "--porcelain", "--", "plugins"],
                           stdout=subprocess.PIPE, check=False).stdout.decode().strip()
    what = {"raw": "zstd writes the file",
            "cat": "zstd → pipe → `cat` writes the file",
            "relay": "zstd → pipe → Python `os.read(1 MiB)` → `write`",
            "relay+sha": "same + `hashlib.sha256().update` per block",
            "relay+sha+bigpipe": "same, pipe enlarged to 1 MiB with `F_SETPIPE_SZ`",
            "module": "`_pipeline.run_to_sink` of the working tree (HEAD %s%s)" % (head, ", plugins/ modified" if dirty else "")}
    if old:
        what[old] = "`_pipeline.run_to_sink` as of %s" % args.compare
    what["module-direct"] = "the whole module via `python -m` (no ansible); duration_s median %.2f s" % statistics.median(durations)
    for v in ["raw", "cat", "relay", "relay+sha", "relay+sha+bigpipe", "module"] + ([old] if old else []) + ["module-direct"]:
        walls = [w for w, c, s in results[v]]
        cpus = [c for w, c, s in results[v]]
        lines.append("| %s | %s | %.2f | %s | %.3f | %.2f | %+.2f |" % (
            v, what[v], statistics.median(walls), " / ".join("%.2f" % w for w in walls),
            statistics.median(walls) / base_wall, statistics.median(cpus), statistics.median(cpus) - base_cpu))
    size = results["raw"][-1][2]
    lines += ["", "Compressed output %.1f MiB. Reads per run by the Python relay: %s." % (
        size / MIB, ", ".join("%s %d (%.0f KiB each)" % (v, n, size / n / 1024.0) for v, n in sorted(reads.items())))]
    md = "\n".join(lines) + "\n"
    os.makedirs(bench.RESULTS, exist_ok=True)
    with open(os.path.join(bench.RESULTS, "relay-check.md"), "w") as fh:
        fh.write(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
