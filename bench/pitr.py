#!/usr/bin/env python
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Benchmark of the WAL archive command against cp: segments per second.

Run through bench/run.sh (``bench/run.sh pitr``). One run:

1. makes --segments WAL-like files of 16 MiB (each 8 KiB page: 2 KiB of random
   bytes and 6 KiB of repeated text, so zstd finds about what it finds in WAL);
2. installs the archive command (_wal.install_command) for a dir store;
3. archives every file the way PostgreSQL does, one process after the other,
   --reps times, interleaved with the same files through
     cp          cp FILE DEST
     cp+sync     cp FILE DEST && sync DEST (the command fsyncs what it stores)
   each into a fresh directory;
4. writes bench/results/pitr.md and .json and prints the Markdown.

With ``--parts basebackup`` (the default runs both parts) it also starts (or
reuses) the bench's PostgreSQL 15 cluster ($LIFEBOAT_BENCH_DIR/pg, bench/lib/cluster.py)
with a sample database of --mb MiB, and times base backups, interleaved, --reps times each:
     module      ansible localhost -m lifeboat.backup.postgresql_backup method=pg_basebackup (zstd)
     raw         bash -o pipefail -c 'pg_basebackup -Ft -D - -X fetch --checkpoint=fast | zstd -q -T0 > file'
     raw+sync    the same, then `sync FILE` (the module fsyncs its set)
     ping        ansible localhost -m ansible.builtin.ping (ansible's own cost)
Every timed run starts after a CHECKPOINT and a sync.
"""

import os
import shlex
import shutil
import subprocess
import sys
import time

from lib import MIB, PG_BIN, BenchError, cli, log, private_dir
from lib.cluster import BenchCluster
from lib.modules import import_collection, run_ansible
from lib.procs import timed
from lib.report import machine_info, machine_table, table, write_results
from lib.timing import interleaved, med, paired_ratios, spread

SEGMENT = 16 * MIB
DB = "bench"
HOST = "bench"
SOURCE = "physical"
PW_ENV = "LIFEBOAT_BENCH_PG_PASSWORD"   # read by the module args' lookup('env', ...)
TARGET_RATIO = 1.05
BASE_VARIANTS = ("module", "raw", "raw+sync", "ping")


def make_segments(directory, count):
    os.makedirs(directory, exist_ok=True)
    names = []
    text = (b"INSERT INTO orders VALUES (42, 'lifeboat', now()); " * 200)[:6 * 1024]
    for number in range(count):
        name = "%08X%08X%08X" % (1, 0, number + 1)
        path = os.path.join(directory, name)
        if not os.path.exists(path) or os.path.getsize(path) != SEGMENT:
            with open(path, "wb") as handle:
                for dummy in range(SEGMENT // 8192):
                    handle.write(os.urandom(2048) + text)
        names.append(name)
    return names


def run_push(argv, src, names):
    for name in names:
        subprocess.run(argv + ["push", os.path.join(src, name), name], check=True)


def run_cp(src, dest, names, sync):
    os.makedirs(dest, exist_ok=True)
    for name in names:
        target = os.path.join(dest, name)
        subprocess.run(["cp", os.path.join(src, name), target], check=True)
        if sync:
            subprocess.run(["sync", target], check=True)


def bench_archive(args):
    import_collection()
    from ansible_collections.lifeboat.backup.plugins.module_utils import _wal  # pylint: disable=import-outside-toplevel
    work = private_dir("pitr")
    src = os.path.join(work, "pg_wal")
    names = make_segments(src, args.segments)
    results = {"push": [], "cp": [], "cp+sync": []}
    for rep in range(args.reps):
        for label in ("push", "cp", "cp+sync"):
            dest = os.path.join(work, "dest")
            shutil.rmtree(dest, ignore_errors=True)
            subprocess.run(["sync"], check=True)
            if label == "push":
                settings = _wal.Settings({"kind": "dir", "path": os.path.join(dest, "store")}, "bench", "physical")
                argv = _wal.install_command(os.path.join(dest, "cmd"), settings)["argv"]
                start = time.monotonic()
                run_push(argv, src, names)
            else:
                start = time.monotonic()
                run_cp(src, dest, names, label == "cp+sync")
            elapsed = time.monotonic() - start
            results[label].append(elapsed)
            log("rep %d %s: %.2f s, %.1f segments/s" % (rep + 1, label, elapsed, len(names) / elapsed))
    rows = []
    for label in ("push", "cp", "cp+sync"):
        seconds = med(results[label])
        rows.append([label, "%.2f" % seconds, "%.1f" % (len(names) / seconds), "%.0f" % (len(names) * 16 / seconds)])
    lines = ["## WAL archive command against cp", ""]
    lines += ["%d segments of 16 MiB, one process per segment as PostgreSQL runs archive_command; median of %d "
              "runs." % (len(names), args.reps), ""]
    lines += table(["", "seconds", "segments/s", "MiB/s"], rows)
    return lines, {"segments": len(names), "reps": args.reps, "seconds": results}


# ------------------------------------------------------------------ base backup against raw pg_basebackup

def bench_basebackup(args):
    cluster = BenchCluster()
    store = private_dir("pitr", "store")
    out = private_dir("pitr", "out")
    runs = dict((name, []) for name in BASE_VARIANTS)
    cluster.start()
    try:
        server = cluster.server_version()
        data = cluster.ensure_db(DB, args.mb, args.min_mb * MIB)
        raw_path = os.path.join(out, "base.tar.zst")
        raw = "%s -Ft -D - -X fetch --checkpoint=fast --no-password | zstd -q -T0 > %s" % (
            shlex.quote(os.path.join(PG_BIN, "pg_basebackup")), shlex.quote(raw_path))
        module_args = dict(cluster.conn_args(), login_password="{{ lookup('env', '%s') }}" % PW_ENV,
                           store={"kind": "dir", "path": store}, host=HOST, source=SOURCE,
                           method="pg_basebackup", compression="zstd")
        for rep, name in interleaved(BASE_VARIANTS, args.reps):
            cluster.settle()
            extra = {}
            if name == "module":
                shutil.rmtree(os.path.join(store, HOST), ignore_errors=True)
                run, res = run_ansible("lifeboat.backup.postgresql_backup", module_args,
                                       secrets={PW_ENV: cluster.password})
                extra = dict(bytes=res["bytes"], duration_s=res["duration_s"])
            elif name == "ping":
                run, dummy = run_ansible("ansible.builtin.ping")
            else:
                script = raw + (" && sync %s" % shlex.quote(raw_path) if name == "raw+sync" else "")
                run = timed(["bash", "-o", "pipefail", "-euc", script], cluster.tool_env(), cluster.dir)
                if run.returncode != 0:
                    raise BenchError("%s failed (exit %d): %s" % (script, run.returncode, run.stderr.strip()[-2000:]))
                extra = dict(bytes=os.path.getsize(raw_path))
                os.unlink(raw_path)
            runs[name].append(dict(rep=rep, wall=round(run.wall, 3), tree_cpu=run.tree_cpu, peaks_mib=run.peaks,
                                   **extra))
            log("rep %d %s: %.2f s %s" % (rep + 1, name, run.wall, extra))
    finally:
        cluster.finish(keep=args.keep, clean=args.clean)
    ping = dict((r["rep"], r["wall"]) for r in runs["ping"])
    ratio, ratios = paired_ratios(runs["module"], runs["raw+sync"], offset=ping)
    ratio_raw, dummy = paired_ratios(runs["module"], runs["raw"], offset=ping)
    rows = []
    for name in BASE_VARIANTS:
        walls = [r["wall"] for r in runs[name]]
        low, high = spread(walls)
        sizes = [r["bytes"] for r in runs[name] if r.get("bytes")]
        rows.append([name, "%.2f" % med(walls), "%.2f-%.2f" % (low, high),
                     "%.1f" % (med(sizes) / MIB) if sizes else ""])
    lines = ["## Base backup: the module against raw pg_basebackup | zstd -T0", ""]
    lines += ["Database %s: pg_database_size %.1f MiB (the cluster holds it and the sample's small ones), PostgreSQL %s; "
              "median of %d interleaved runs, each after a CHECKPOINT and a sync." % (
                  DB, data["size_bytes"] / MIB, server, args.reps), ""]
    lines += ["raw: `%s`" % raw.replace(raw_path, "FILE"), ""]
    durations = [r["duration_s"] for r in runs["module"]]
    low, high = spread(durations)
    rows.insert(1, ["module duration_s", "%.2f" % med(durations), "%.2f-%.2f" % (low, high), ""])
    ratio_job = med(durations) / med([r["wall"] for r in runs["raw+sync"]])
    lines += table(["", "wall s (median)", "min-max", "MiB stored"], rows)
    lines += ["", "Module / raw+sync, ansible's own cost (ping, same repetition) taken off: **%.3f** (per run: %s; "
              "target <= %.2f). Module / raw: %.3f. The module's own duration_s (the backup job, without ansible "
              "and Python start-up) / raw+sync: %.3f." % (ratio, ", ".join("%.3f" % r for r in ratios), TARGET_RATIO,
                                                         ratio_raw, ratio_job)]
    return lines, {"runs": runs, "ratio_sync": ratio, "ratio_raw": ratio_raw, "ratio_job": ratio_job, "data": data,
                   "server": server}


PARTS = {"archive": bench_archive, "basebackup": bench_basebackup}


def bench(args):
    parts = [part.strip() for part in args.parts.split(",") if part.strip()]
    unknown = [part for part in parts if part not in PARTS]
    if unknown or not parts:
        raise BenchError("--parts takes a comma-separated list of %s, not %r" % (", ".join(sorted(PARTS)), args.parts))
    lines = ["# PITR benchmarks", ""]
    lines += machine_table(machine_info(private_dir("pitr"), tools=("zstd",)))
    results = {}
    for part in parts:
        part_lines, results[part] = PARTS[part](args)
        lines += [""] + part_lines
    markdown = "\n".join(lines) + "\n"
    write_results("pitr", markdown, results)
    print(markdown)


def main(argv=None):
    p = cli.parser(__doc__, reps=3, cluster=True)
    p.add_argument("--segments", type=int, default=64, help="WAL files to archive per run (default 64)")
    p.add_argument("--parts", default="archive,basebackup",
                   help="what to time, comma-separated: archive, basebackup (default both)")
    p.add_argument("--mb", type=float, default=500, help="size of the sample database in MiB (default 500)")
    p.add_argument("--min-mb", type=float, default=500,
                   help="smallest pg_database_size (MiB) accepted for the sample database (default 500)")

    def run(args_):
        bench(cli.parse(p, args_))
    return cli.main("pitr", run, argv)


if __name__ == "__main__":
    sys.exit(main())
