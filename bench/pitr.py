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
     zstd+sync   zstd -q -3 -c FILE > DEST && sync DEST (the same compression and durability)
   each into a fresh directory;
   then, for --breakdown runs, where one push's time goes: `python -I -c pass`
   (the interpreter), `python -X importtime` of the push (the command's imports,
   and the modules that cost most), and the push itself;
4. writes bench/results/pitr.md and .json and prints the Markdown.

With ``--parts basebackup`` (the default runs both parts) it also starts (or
reuses) the bench's PostgreSQL 15 cluster ($LIFEBOAT_BENCH_DIR/pg, bench/lib/cluster.py)
with a sample database of --mb MiB, and times base backups, interleaved, --reps times each:
     module      ansible localhost -m lifeboat.backup.postgresql_backup method=pg_basebackup (zstd)
     raw         bash -o pipefail -c 'pg_basebackup -Ft -D - -X fetch --checkpoint=fast | zstd -q -T0 > file'
     raw+sync    the same, then `sync FILE` (the module fsyncs its set)
     ping        ansible localhost -m ansible.builtin.ping (ansible's own cost)
Every timed run starts after a CHECKPOINT and a sync.

``--parts replay`` (in the default too) turns archiving on for the bench cluster
(postgresql_wal_archive, a restart), takes a base backup, writes about
--replay-mb MiB of WAL (a CREATE TABLE AS), waits for the archiver, and times
postgresql_restore method pitr (latest) into a new cluster on a free port,
--reps times; then it resets archive_mode/archive_command and restarts the
cluster. It works in $LIFEBOAT_BENCH_DIR/pitr-replay (mode 0711: the postgres
user runs the archive command and the restored cluster there).
"""

import os
import shlex
import shutil
import subprocess
import sys
import time

from lib import MIB, PG_BIN, BenchError, bench_dir, cli, log, private_dir
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


def run_cp(src, dest, names, sync, compress=False):
    os.makedirs(dest, exist_ok=True)
    for name in names:
        target = os.path.join(dest, name)
        if compress:
            with open(target, "wb") as out:
                subprocess.run(["zstd", "-q", "-3", "-c", os.path.join(src, name)], stdout=out, check=True)
        else:
            subprocess.run(["cp", os.path.join(src, name), target], check=True)
        if sync:
            subprocess.run(["sync", target], check=True)


def _imports(stderr):
    """(milliseconds of all imports, [(self ms, module)]) from ``python -X importtime`` output."""
    total = 0
    own = []
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        fields = line[len("import time:"):].split("|")
        try:
            self_us, cumulative_us = int(fields[0]), int(fields[1])
        except ValueError:
            continue
        name = fields[2]
        if not name.startswith("  "):  # a top-level import: its cumulative time counts once
            total += cumulative_us
        own.append((self_us / 1000.0, name.strip()))
    return total / 1000.0, own


def push_breakdown(argv, src, names, runs, store):
    """Where one push goes: interpreter start, imports, the whole push (medians of ``runs``), top modules."""
    python = argv[0]
    start, imports, push = [], [], []
    selfs = {}
    for run in range(runs):
        name = names[run % len(names)]
        began = time.monotonic()
        subprocess.run([python, "-I", "-c", "pass"], check=True)
        start.append(time.monotonic() - began)
        for timing in (False, True):
            shutil.rmtree(store, ignore_errors=True)
            command = [python, "-X", "importtime"] + argv[1:] if timing else argv
            began = time.monotonic()
            proc = subprocess.run(command + ["push", os.path.join(src, name), name], stderr=subprocess.PIPE,
                                  text=True, check=True)
            if timing:
                total, own = _imports(proc.stderr)
                imports.append(total / 1000.0)
                for ms, module in own:
                    selfs.setdefault(module, []).append(ms)
            else:
                push.append(time.monotonic() - began)
    top = sorted(((med(v), k) for k, v in selfs.items()), reverse=True)[:8]
    return {"start_s": start, "imports_s": imports, "push_s": push,
            "top_imports_ms": [[module, round(ms, 2)] for ms, module in top]}


def bench_archive(args):
    import_collection()
    from ansible_collections.lifeboat.backup.plugins.module_utils import _wal  # pylint: disable=import-outside-toplevel
    work = private_dir("pitr")
    src = os.path.join(work, "pg_wal")
    names = make_segments(src, args.segments)
    results = {"push": [], "cp": [], "cp+sync": [], "zstd+sync": []}
    for rep in range(args.reps):
        for label in ("push", "cp", "cp+sync", "zstd+sync"):
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
                run_cp(src, dest, names, label != "cp", label == "zstd+sync")
            elapsed = time.monotonic() - start
            results[label].append(elapsed)
            log("rep %d %s: %.2f s, %.1f segments/s" % (rep + 1, label, elapsed, len(names) / elapsed))
    dest = os.path.join(work, "dest")
    settings = _wal.Settings({"kind": "dir", "path": os.path.join(dest, "store")}, "bench", "physical")
    argv = _wal.install_command(os.path.join(dest, "cmd"), settings)["argv"]
    subprocess.run(argv + ["probe"], check=True)  # compiles the command once, as its first push would
    breakdown = push_breakdown(argv, src, names, args.breakdown, os.path.join(dest, "store"))
    rows = []
    for label in ("push", "cp", "cp+sync", "zstd+sync"):
        seconds = med(results[label])
        rows.append([label, "%.2f" % seconds, "%.1f" % (len(names) / seconds), "%.0f" % (len(names) * 16 / seconds)])
    lines = ["## WAL archive command against cp", ""]
    lines += ["%d segments of 16 MiB, one process per segment as PostgreSQL runs archive_command; median of %d "
              "runs." % (len(names), args.reps), ""]
    lines += table(["", "seconds", "segments/s", "MiB/s"], rows)
    lines += ["", "One push, median of %d (seconds): Python start %.3f, the command's imports %.3f "
              "(python -X importtime), the whole push %.3f. Imports that cost most (self, ms): %s."
              % (args.breakdown, med(breakdown["start_s"]), med(breakdown["imports_s"]), med(breakdown["push_s"]),
                 ", ".join("%s %.1f" % (m, ms) for m, ms in breakdown["top_imports_ms"]))]
    return lines, {"segments": len(names), "reps": args.reps, "seconds": results, "breakdown": breakdown}


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
              "and Python start-up) / raw+sync: %.3f."
              % (ratio, ", ".join("%.3f" % r for r in ratios), TARGET_RATIO, ratio_raw, ratio_job)]
    return lines, {"runs": runs, "ratio_sync": ratio, "ratio_raw": ratio_raw, "ratio_job": ratio_job, "data": data,
                   "server": server}


# ------------------------------------------------------------------ a PITR restore replaying WAL

def _owned_by_postgres(path):
    import pwd  # pylint: disable=import-outside-toplevel
    entry = pwd.getpwnam("postgres")
    os.makedirs(path, exist_ok=True)
    os.chown(path, entry.pw_uid, entry.pw_gid)
    os.chmod(path, 0o700)
    return path


def _free_port():
    import socket  # pylint: disable=import-outside-toplevel
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_archived(cluster, switched, timeout=600):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = cluster.psql("SELECT coalesce(last_archived_wal >= '%s', false), failed_count FROM pg_stat_archiver;"
                           % switched)
        if row.startswith("t|"):
            return
        time.sleep(0.5)
    raise BenchError("WAL file %s was not archived within %d s (pg_stat_archiver: %s)" % (switched, timeout, row))


def bench_replay(args):
    """postgresql_restore method pitr (latest) from a base backup followed by --replay-mb MiB of archived WAL."""
    cluster = BenchCluster()
    # Not below the 0700 private directories: the postgres user runs the archive command and the restored cluster here.
    work = os.path.join(bench_dir(), "pitr-replay")
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    os.chmod(work, 0o711)
    store = _owned_by_postgres(os.path.join(work, "store"))
    sock = _owned_by_postgres(os.path.join(work, "sock"))
    data_dir = os.path.join(work, "restored")
    secrets = {PW_ENV: None}
    runs = []
    cluster.start()
    secrets[PW_ENV] = cluster.password
    conn = dict(cluster.conn_args(), login_password="{{ lookup('env', '%s') }}" % PW_ENV)
    common = dict(store={"kind": "dir", "path": store}, host=HOST, source="replay")
    try:
        run_ansible("lifeboat.backup.postgresql_wal_archive",
                    dict(conn, command_dir=os.path.join(work, "archive-command"), python="/usr/bin/python3",
                         os_user="postgres", **common), secrets=secrets)
        cluster.stop()
        cluster.start()  # archive_mode needs a restart
        conn = dict(cluster.conn_args(), login_password="{{ lookup('env', '%s') }}" % PW_ENV)
        run_ansible("lifeboat.backup.postgresql_backup", dict(conn, method="pg_basebackup", **common),
                    secrets=secrets)
        start_lsn = cluster.psql("SELECT pg_current_wal_lsn();")
        rows = int(args.replay_mb * MIB / 300)
        cluster.psql("DROP TABLE IF EXISTS lifeboat_replay; CREATE TABLE lifeboat_replay AS "
                     "SELECT g AS i, repeat(md5(g::text), 6) AS t FROM generate_series(1, %d) g;" % rows, db=DB)
        wal = int(cluster.psql("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '%s');" % start_lsn))
        switched = cluster.psql("SELECT pg_walfile_name(pg_switch_wal());")
        _wait_archived(cluster, switched)
        restore = dict(method="pitr", latest=True, data_dir=data_dir, socket_dir=sock, recovery_timeout=3600,
                       wal_command_python="/usr/bin/python3", **common)
        for rep in range(args.reps):
            shutil.rmtree(data_dir, ignore_errors=True)
            cluster.settle()
            run, res = run_ansible("lifeboat.backup.postgresql_restore", dict(restore, cluster_port=_free_port()))
            subprocess.run(["runuser", "-u", "postgres", "--", os.path.join(PG_BIN, "pg_ctl"), "-D", data_dir,
                            "-m", "fast", "-w", "stop"], check=False, capture_output=True, cwd="/")
            runs.append(dict(rep=rep, wall=round(run.wall, 3), duration_s=res.get("duration_s"),
                             reached=res.get("reached"), verified=res.get("verified")))
            log("rep %d restore: %.2f s, reached %s" % (rep + 1, run.wall, res.get("reached")))
    finally:
        subprocess.run(["runuser", "-u", "postgres", "--", os.path.join(PG_BIN, "pg_ctl"), "-D", data_dir,
                        "-m", "immediate", "-w", "stop"], check=False, capture_output=True, cwd="/")
        shutil.rmtree(data_dir, ignore_errors=True)
        try:
            cluster.psql("ALTER SYSTEM RESET archive_mode; ALTER SYSTEM RESET archive_command;")
            cluster.psql("DROP TABLE IF EXISTS lifeboat_replay;", db=DB)
            cluster.stop()
            cluster.start()
        finally:
            cluster.finish(keep=args.keep, clean=args.clean)
    walls = [r["wall"] for r in runs]
    low, high = spread(walls)
    lines = ["## A PITR restore replaying WAL", ""]
    lines += ["postgresql_restore method pitr, latest, from a dir store: the base backup of the bench cluster (with "
              "%s), then %.0f MiB of WAL (pg_wal_lsn_diff) archived by the collection's command (zstd), replayed into "
              "a new cluster on a free port; median of %d runs." % (DB, wal / MIB, len(runs)), ""]
    lines += table(["", "wall s (median)", "min-max", "WAL MiB/s"],
                   [["restore (ansible)", "%.2f" % med(walls), "%.2f-%.2f" % (low, high),
                     "%.1f" % (wal / MIB / med(walls))]])
    return lines, {"runs": runs, "wal_bytes": wal}


PARTS = {"archive": bench_archive, "basebackup": bench_basebackup, "replay": bench_replay}


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
    p.add_argument("--breakdown", type=int, default=10,
                   help="pushes timed one by one for where a push's time goes (default 10)")
    p.add_argument("--parts", default="archive,basebackup,replay",
                   help="what to time, comma-separated: archive, basebackup, replay (default all three)")
    p.add_argument("--replay-mb", type=float, default=1024,
                   help="WAL (MiB, about) a PITR restore replays with --parts replay (default 1024)")
    p.add_argument("--mb", type=float, default=500, help="size of the sample database in MiB (default 500)")
    p.add_argument("--min-mb", type=float, default=500,
                   help="smallest pg_database_size (MiB) accepted for the sample database (default 500)")

    def run(args_):
        bench(cli.parse(p, args_))
    return cli.main("pitr", run, argv)


if __name__ == "__main__":
    sys.exit(main())
