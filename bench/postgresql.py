#!/usr/bin/env python
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Benchmark of lifeboat.backup.postgresql_backup / postgresql_restore against the raw tools.

Run through bench/run.sh (``make bench``, or ``bench/run.sh postgresql``). One run:

1. starts (or reuses) the bench's PostgreSQL 15 cluster in $LIFEBOAT_BENCH_DIR/pg
   and makes (or reuses) a >= 500 MiB database of sample data plus a small one;
2. times backups, interleaved, --reps times each:
     module      ansible localhost -m lifeboat.backup.postgresql_backup (custom, zstd)
     module-poll the same with ansible.cfg internal_poll_interval = 0.05
     raw         bash -o pipefail -c 'pg_dump -Fc -Z0 | zstd -q -T0 > file'
     raw+sync    the same, then `sync FILE` (fsync), because the module fsyncs its set
     default     pg_dump -Fc -f file                    (pg_dump's own gzip)
   and a no-op `ansible localhost -m ansible.builtin.ping` for ansible's own cost;
3. times restores the same way (module, module-poll, zstd -dc | pg_restore,
   pg_restore file), each into a freshly dropped database, and checks the
   module's restore against the source;
4. runs each module once directly under cProfile;
5. writes bench/results/postgresql.md and .json and prints the Markdown.

Every timed run starts after a CHECKPOINT and a sync. Peak RSS comes from a
50 ms /proc sampler (VmHWM of the module's Python process, pg_dump, zstd...).
"""

import os
import shlex
import shutil
import sys
import time

from lib import MIB, PG_BIN, BenchError, cli, log, private_dir
from lib.cluster import BenchCluster
from lib.modules import profile_direct, run_ansible
from lib.procs import timed
from lib.report import fmt_peak, fmt_s, loadavg, machine_info, machine_table, mib, table, verdict, write_results
from lib.timing import interleaved, med, paired_ratios

DB = "bench"
SMALL_DB = "bench_small"
RESTORE_DB = "bench_restore"
HOST = "bench"                         # the module's `host` (store layout <store>/<host>/<source>)
PW_ENV = "LIFEBOAT_BENCH_PG_PASSWORD"   # read by the module args' lookup('env', ...)
TARGET_RATIO = 1.05
TARGET_RSS_MB = 100.0                  # 100 MB = 10^8 bytes
POLL = 0.05                            # internal_poll_interval of the "module-poll" variants


class PostgresBench(object):
    def __init__(self, args):
        self.args = args
        self.cluster = BenchCluster()
        self.store = private_dir("store")
        self.out = private_dir("out")
        self.rep = None
        self.r = {"backup": {}, "restore": {}, "overhead": [], "overhead_runs": [], "small": {}, "notes": [],
                  "rep_ping": {}}

    # -- running things -------------------------------------------------------------

    def module_args(self, **extra):
        args = dict(self.cluster.conn_args(), login_password="{{ lookup('env', '%s') }}" % PW_ENV,
                    store={"kind": "dir", "path": self.store}, host=HOST)
        args.update(extra)
        return args

    def ansible(self, module, args=None, poll=None):
        return run_ansible(module, args, secrets={PW_ENV: self.cluster.password}, poll=poll)

    def record(self, section, variant, run, **extra):
        entry = self.r[section].setdefault(variant, {"wall": [], "runs": []})
        entry["wall"].append(round(run.wall, 3))
        entry["runs"].append(dict(wall=round(run.wall, 3), peaks_mib=run.peaks, tree_cpu=run.tree_cpu,
                                  lifetime=run.lifetime, module_cpu=run.module_cpu, rep=self.rep, **extra))

    def ping(self):
        run, dummy = self.ansible("ansible.builtin.ping")
        self.r["overhead"].append(run.wall)
        self.r["overhead_runs"].append({"wall": round(run.wall, 3), "lifetime": run.lifetime,
                                        "module_cpu": run.module_cpu, "tree_cpu": run.tree_cpu})
        log("ansible ping (no-op overhead): %.2f s (module process %.2f s, tree CPU %.2f s)"
            % (run.wall, run.lifetime or 0, run.tree_cpu))
        return run.wall

    def bash(self, script):
        run = timed(["bash", "-o", "pipefail", "-euc", script], self.cluster.tool_env(), self.cluster.dir)
        if run.returncode != 0:
            raise BenchError("%s failed (exit %d): %s" % (script, run.returncode, run.stderr.strip()[-2000:]))
        return run

    def reset_source(self, source):
        shutil.rmtree(os.path.join(self.store, HOST, source), ignore_errors=True)

    # -- backups ----------------------------------------------------------------------

    def backup_module(self, db=DB, section="backup", variant="module", poll=None):
        self.reset_source(db)
        self.cluster.settle()
        run, res = self.ansible("lifeboat.backup.postgresql_backup",
                                self.module_args(db=db, format="custom", compression="zstd"), poll=poll)
        self.record(section, variant, run, duration_s=res["duration_s"], bytes=res["bytes"], cmd=res.get("cmd"))
        log("%s %s on %s: wall %.2f s, duration_s %.2f, %.1f MiB, peak RSS %s"
            % (section, variant, db, run.wall, res["duration_s"], res["bytes"] / MIB, run.peaks))

    def backup_raw(self, sync=False):
        path = os.path.join(self.out, "raw-sync.pgc.zst" if sync else "raw.pgc.zst")
        if os.path.exists(path):
            os.unlink(path)
        script = "%s -Fc -Z0 -d %s | zstd -q -T0 > %s" % (shlex.quote(os.path.join(PG_BIN, "pg_dump")), DB,
                                                          shlex.quote(path))
        if sync:
            script += " && sync %s" % shlex.quote(path)
        self.cluster.settle()
        run = self.bash(script)
        variant = "raw+sync" if sync else "raw"
        self.record("backup", variant, run, bytes=os.path.getsize(path), cmd=script)
        log("backup %s: wall %.2f s, peak RSS %s" % (variant, run.wall, run.peaks))
        if sync:
            os.unlink(path)

    def backup_default(self):
        path = os.path.join(self.out, "default.pgc")
        if os.path.exists(path):
            os.unlink(path)
        script = "%s -Fc -d %s -f %s" % (shlex.quote(os.path.join(PG_BIN, "pg_dump")), DB, shlex.quote(path))
        self.cluster.settle()
        run = self.bash(script)
        self.record("backup", "default", run, bytes=os.path.getsize(path), cmd=script)
        log("backup default: wall %.2f s, peak RSS %s" % (run.wall, run.peaks))

    # -- restores ---------------------------------------------------------------------

    def restore_module(self, source=DB, target=RESTORE_DB, section="restore", variant="module", poll=None):
        self.cluster.drop_db(target)
        self.cluster.settle()
        run, res = self.ansible("lifeboat.backup.postgresql_restore",
                                self.module_args(source=source, target_db=target, clean=True), poll=poll)
        self.record(section, variant, run, duration_s=res["duration_s"], cmd=res.get("cmd"))
        log("%s %s %s -> %s: wall %.2f s, duration_s %.2f, peak RSS %s"
            % (section, variant, source, target, run.wall, res["duration_s"], run.peaks))

    def restore_raw(self):
        self.cluster.fresh_db(RESTORE_DB)
        script = "zstd -q -dc %s | %s -d %s" % (shlex.quote(os.path.join(self.out, "raw.pgc.zst")),
                                                shlex.quote(os.path.join(PG_BIN, "pg_restore")), RESTORE_DB)
        self.cluster.settle()
        self.record("restore", "raw", self.bash(script), cmd=script)

    def restore_default(self):
        self.cluster.fresh_db(RESTORE_DB)
        script = "%s -d %s %s" % (shlex.quote(os.path.join(PG_BIN, "pg_restore")), RESTORE_DB,
                                  shlex.quote(os.path.join(self.out, "default.pgc")))
        self.cluster.settle()
        self.record("restore", "default", self.bash(script), cmd=script)

    # -- the run ----------------------------------------------------------------------

    def run(self):
        a = self.args
        t_start = time.perf_counter()
        self.r["machine"] = machine_info(self.cluster.dir)
        self.r["started"] = self.r["machine"]["started"]
        self.r["reps"] = {"backup": a.reps, "restore": a.restore_reps}
        self.cluster.start()
        try:
            self._run()
        finally:
            try:
                self.cluster.drop_db(RESTORE_DB)
            except BenchError:
                pass
            shutil.rmtree(self.out, ignore_errors=True)
            shutil.rmtree(self.store, ignore_errors=True)
            self.cluster.finish(keep=a.keep, clean=a.clean)
            if a.clean:
                shutil.rmtree(self.cluster.dir, ignore_errors=True)
        log("total bench time %.0f s" % (time.perf_counter() - t_start))

    def _run(self):
        a, r = self.args, self.r
        r["machine"]["server"] = self.cluster.server_version()
        r["data"] = self.cluster.ensure_db(DB, a.mb, a.min_mb * MIB)
        r["small_data"] = self.cluster.ensure_db(SMALL_DB, a.small_mb, 1)
        log("warm-up: pg_dump -Fc -Z0 (untimed; also measures the uncompressed dump size)")
        r["data"]["dump_bytes"] = self.cluster.dump_size(DB)
        for dummy in range(2):
            self.ping()
        self.backup_module(db=SMALL_DB, section="small", variant="backup")  # warm-up, untimed

        variants = {"module": self.backup_module, "raw": self.backup_raw,
                    "module-poll": lambda: self.backup_module(variant="module-poll", poll=POLL),
                    "raw+sync": lambda: self.backup_raw(sync=True), "default": self.backup_default}
        last = None
        for rep, name in interleaved(variants, a.reps):
            if rep != last:
                last, self.rep = rep, "b%d" % rep
                log("--- backup repetition %d/%d" % (rep + 1, a.reps))
                r["rep_ping"][self.rep] = self.ping()
            variants[name]()

        data = r["data"]
        data["zstd_bytes"] = os.path.getsize(os.path.join(self.out, "raw.pgc.zst"))
        data["gzip_bytes"] = os.path.getsize(os.path.join(self.out, "default.pgc"))
        data["zstd_ratio"] = round(data["dump_bytes"] / float(data["zstd_bytes"]), 2)
        data["gzip_ratio"] = round(data["dump_bytes"] / float(data["gzip_bytes"]), 2)
        if data["zstd_ratio"] >= 3:
            r["notes"].append("The sample data is very compressible (zstd ratio %.2fx >= 3x)." % data["zstd_ratio"])

        rvariants = {"module": self.restore_module, "raw": self.restore_raw,
                     "module-poll": lambda: self.restore_module(variant="module-poll", poll=POLL),
                     "default": self.restore_default}
        last = None
        for rep, name in interleaved(rvariants, a.restore_reps):
            if rep != last:
                last, self.rep = rep, "r%d" % rep
                log("--- restore repetition %d/%d" % (rep + 1, a.restore_reps))
                r["rep_ping"][self.rep] = self.ping()
            rvariants[name]()
            if name == "module" and not r.get("restore_check"):
                got = self.cluster.checksum(RESTORE_DB)
                r["restore_check"] = {"ok": got["md5"] == data["checksum"], "md5": got["md5"]}
                log("module restore content check: %s" % ("identical" if r["restore_check"]["ok"] else "DIFFERS"))

        # memory on a small database, for comparison with the big one
        self.rep = None
        for dummy in range(2):
            self.backup_module(db=SMALL_DB, section="small", variant="backup")
            self.restore_module(source=SMALL_DB, target=RESTORE_DB + "_small", section="small", variant="restore")
        self.cluster.drop_db(RESTORE_DB + "_small")
        for key in ("wall", "runs"):
            r["small"]["backup"][key] = r["small"]["backup"][key][1:]  # drop the warm-up

        if a.profile:
            log("profiling the modules directly under cProfile (python -m, outside ansible)")
            conn = dict(self.module_args(), login_password=self.cluster.password)
            self.reset_source(DB)
            self.cluster.settle()
            backup_args = dict(conn, db=DB, format="custom", compression="zstd")
            r["profile"] = {"backup": profile_direct("postgresql_backup", backup_args, "backup")}
            self.cluster.drop_db(RESTORE_DB)
            self.cluster.settle()
            r["profile"]["restore"] = profile_direct("postgresql_restore", dict(conn, source=DB, target_db=RESTORE_DB,
                                                                                clean=True), "restore")
            for prof in r["profile"].values():
                prof.pop("result", None)
        r["machine"]["loadavg_end"] = loadavg()
        write_results("postgresql", render(r), r)


# --------------------------------------------------------------------------
# report


def col(entry, key):
    return [run[key] for run in entry["runs"] if run.get(key) is not None]


def peak_of(entry, kind):
    vals = [run["peaks_mib"].get(kind) for run in entry["runs"] if run["peaks_mib"].get(kind) is not None]
    return max(vals) if vals else None


def variant_rows(section, names, kinds, backup):
    rows = []
    for v, label in names:
        e = section[v]
        row = [v, label, fmt_s(med(e["wall"])), fmt_s(min(e["wall"])), " / ".join(fmt_s(x) for x in e["wall"]),
               fmt_s(med(col(e, "duration_s"))), fmt_s(med(col(e, "lifetime"))), fmt_s(med(col(e, "tree_cpu"))),
               fmt_s(med(col(e, "module_cpu")))]
        if backup:
            row.append(mib(e["runs"][-1]["bytes"]))
        rows.append(row + [fmt_peak(peak_of(e, k)) for k in kinds])
    return rows


def render(r):
    m, d, b, rs = r["machine"], r["data"], r["backup"], r["restore"]
    ov = med(r["overhead"])
    ping_life = med([x["lifetime"] for x in r["overhead_runs"]])
    ping_cpu = med([x["tree_cpu"] for x in r["overhead_runs"]])
    L = ["# lifeboat.backup benchmark: PostgreSQL backup and restore", "",
         "Generated by `bench/run.sh postgresql` (bench/postgresql.py) on %s. %d backup and %d restore repetitions "
         "per variant, variants interleaved (the order rotates each repetition); figures are medians unless marked. "
         "Before every timed run: `CHECKPOINT` and `sync`. Peak RSS is the largest VmHWM a 50 ms /proc sampler saw; "
         "CPU is user+system time." % (r["started"], r["reps"]["backup"], r["reps"]["restore"]), ""]
    L += machine_table(m, [("PostgreSQL", "server %s; %s" % (m.get("server", "?"), m["pg_dump"])),
                           ("zstd", m["zstd"])])
    L += [""] + table(["data", ""], [
        ("database `%s`" % d["db"], "pg_database_size %s MiB%s; rows %s" % (
            mib(d["size_bytes"]), " (reused from a previous run)" if d["reused"] else " (generated this run)",
            ", ".join("%s %d" % kv for kv in sorted(d["rows"].items())))),
        ("custom-format dump, uncompressed (`pg_dump -Fc -Z0`)", "%s MiB" % mib(d["dump_bytes"])),
        ("zstd (level 3, `-T0`)", "%s MiB: ratio %.2fx" % (mib(d["zstd_bytes"]), d["zstd_ratio"])),
        ("pg_dump default (gzip inside the archive)", "%s MiB: ratio %.2fx" % (mib(d["gzip_bytes"]), d["gzip_ratio"])),
        ("small database `%s`" % r["small_data"]["db"], "pg_database_size %s MiB" % mib(r["small_data"]["size_bytes"])),
    ], ["l", "l"]) + [""]

    L += ["## Backup (`%s`, %s MiB)" % (d["db"], mib(d["size_bytes"])), ""]
    L += table(["variant", "command", "wall s", "min wall s", "all runs s", "module duration_s",
                "module process lifetime s", "CPU s: process tree", "module python", "output MiB",
                "peak RSS MiB: module python", "pg_dump", "zstd"],
               variant_rows(b, [("module", "`ansible localhost -m lifeboat.backup.postgresql_backup` (custom, zstd)"),
                                ("module-poll", "the same, ansible.cfg `internal_poll_interval = %s` (default 0.001)"
                                 % POLL),
                                ("raw", "`pg_dump -Fc -Z0 \\| zstd -q -T0 > file`"),
                                ("raw+sync", "same, then `sync file` (fsync, as the module does)"),
                                ("default", "`pg_dump -Fc -f file` (its own gzip)")],
                            ("module", "pg_dump", "zstd"), True), ["l", "l", "r", "r", "l"] + ["r"] * 8)
    L += ["", "No-op ansible (`ansible localhost -i localhost, -c local -m ansible.builtin.ping`, same environment): "
          "wall %s s median over %d runs (%s); its AnsiballZ process lived %s s; process-tree CPU %s s."
          % (fmt_s(ov), len(r["overhead"]), " / ".join(fmt_s(x) for x in r["overhead"]), fmt_s(ping_life),
             fmt_s(ping_cpu)), ""]

    L += ["## Restore (each into a freshly dropped database)", ""]
    L += table(["variant", "command", "wall s", "min wall s", "all runs s", "module duration_s",
                "module process lifetime s", "CPU s: process tree", "module python",
                "peak RSS MiB: module python", "pg_restore", "zstd"],
               variant_rows(rs, [("module", "`ansible localhost -m lifeboat.backup.postgresql_restore` (clean: true)"),
                                 ("module-poll", "the same, ansible.cfg `internal_poll_interval = %s`" % POLL),
                                 ("raw", "`zstd -dc file \\| pg_restore -d db`"),
                                 ("default", "`pg_restore -d db file` (the pg_dump default file)")],
                            ("module", "pg_restore", "zstd"), False), ["l", "l", "r", "r", "l"] + ["r"] * 7)
    if r.get("restore_check"):
        L += ["", "Module restore content check (pgcluster.py checksum over every table): %s."
              % ("identical to the source" if r["restore_check"]["ok"] else "**DIFFERS from the source**")]
    L.append("")

    raw, raws, dflt = med(b["raw"]["wall"]), med(b["raw+sync"]["wall"]), med(b["default"]["wall"])
    rraw, rdflt = med(rs["raw"]["wall"]), med(rs["default"]["wall"])
    mb_wall, mr_wall = med(b["module"]["wall"]), med(rs["module"]["wall"])
    mb_net, mr_net = mb_wall - ov, mr_wall - ov
    mb_dur, mr_dur = med(col(b["module"], "duration_s")), med(col(rs["module"], "duration_s"))
    mb_life, mr_life = med(col(b["module"], "lifetime")), med(col(rs["module"], "lifetime"))
    bp_net, rp_net = med(b["module-poll"]["wall"]) - ov, med(rs["module-poll"]["wall"]) - ov
    bp_dur, rp_dur = med(col(b["module-poll"], "duration_s")), med(col(rs["module-poll"], "duration_s"))
    b_pair, b_pairs = paired_ratios(b["module"]["runs"], b["raw"]["runs"], offset=r["rep_ping"])
    r_pair, r_pairs = paired_ratios(rs["module"]["runs"], rs["raw"]["runs"], offset=r["rep_ping"])
    b_cpu_net, b_cpu_raw = med(col(b["module"], "tree_cpu")) - ping_cpu, med(col(b["raw"], "tree_cpu"))
    r_cpu_net, r_cpu_raw = med(col(rs["module"], "tree_cpu")) - ping_cpu, med(col(rs["raw"], "tree_cpu"))
    sm = r["small"]
    peak_big = max(filter(None, [peak_of(b["module"], "module"), peak_of(rs["module"], "module")]))
    peak_small = max(filter(None, [peak_of(sm["backup"], "module"), peak_of(sm["restore"], "module")]))
    target_mib = TARGET_RSS_MB * 1e6 / MIB
    r["ratios"] = q = {
        "backup_net_vs_raw": mb_net / raw, "backup_duration_vs_raw": mb_dur / raw,
        "backup_paired_net_vs_raw": b_pair, "backup_paired_all": b_pairs,
        "backup_lifetime_vs_raw": mb_life / raw, "backup_net_vs_raw_sync": mb_net / raws,
        "backup_wall_vs_raw": mb_wall / raw, "backup_net_vs_default": mb_net / dflt,
        "backup_cpu_net_vs_raw": b_cpu_net / b_cpu_raw,
        "restore_net_vs_raw": mr_net / rraw, "restore_duration_vs_raw": mr_dur / rraw,
        "restore_paired_net_vs_raw": r_pair, "restore_paired_all": r_pairs,
        "restore_lifetime_vs_raw": mr_life / rraw, "restore_wall_vs_raw": mr_wall / rraw,
        "restore_net_vs_default": mr_net / rdflt, "restore_cpu_net_vs_raw": r_cpu_net / r_cpu_raw,
        "backup_poll_net_vs_raw": bp_net / raw, "backup_poll_duration_vs_raw": bp_dur / raw,
        "restore_poll_net_vs_raw": rp_net / rraw, "restore_poll_duration_vs_raw": rp_dur / rraw,
        "peak_rss_mib_500": peak_big, "peak_rss_mib_small": peak_small,
    }
    L += ["## Ratios and targets", "",
          "*module net* = median wall of the module's whole `ansible` invocation − median wall of the no-op "
          "`ansible … ping` (%s s). *duration_s* is what the module reports (backup: lock → dump → fsync → manifest → "
          "rename; restore: from argument parsing to the end, verification included). *module process lifetime* is "
          "how long the sampler saw the AnsiballZ Python process that runs the module. *paired* ratios divide each "
          "repetition's module net (its wall − the ping of the same repetition) by the raw run of the same "
          "repetition and take the median, which cancels slow drifts in machine load." % fmt_s(ov), ""]
    rows = []

    def row(label, value, target=None):
        rows.append((label, "%.3f" % value, "(context)" if target is None else "≤ %.2f" % target,
                     "" if target is None else verdict(value <= target)))

    row("**backup: module net (%s s) ÷ raw pipeline (%s s)**" % (fmt_s(mb_net), fmt_s(raw)), q["backup_net_vs_raw"],
        TARGET_RATIO)
    row("backup: module duration_s (%s s) ÷ raw pipeline" % fmt_s(mb_dur), q["backup_duration_vs_raw"], TARGET_RATIO)
    row("backup: paired module net ÷ raw (per repetition: %s)" % " / ".join("%.3f" % x for x in b_pairs), b_pair,
        TARGET_RATIO)
    row("backup: module with `internal_poll_interval = %s`, net (%s s) ÷ raw" % (POLL, fmt_s(bp_net)),
        q["backup_poll_net_vs_raw"])
    row("backup: module with `internal_poll_interval = %s`, duration_s (%s s) ÷ raw" % (POLL, fmt_s(bp_dur)),
        q["backup_poll_duration_vs_raw"])
    row("backup: module process lifetime (%s s) ÷ raw pipeline" % fmt_s(mb_life), q["backup_lifetime_vs_raw"])
    row("backup: module net ÷ raw pipeline + fsync (%s s)" % fmt_s(raws), q["backup_net_vs_raw_sync"])
    row("backup: module whole ansible wall (%s s) ÷ raw pipeline" % fmt_s(mb_wall), q["backup_wall_vs_raw"])
    row("backup: process-tree CPU, module − no-op ansible (%s s) ÷ raw (%s s)" % (fmt_s(b_cpu_net), fmt_s(b_cpu_raw)),
        q["backup_cpu_net_vs_raw"])
    row("backup: module net ÷ `pg_dump -Fc` default (%s s)" % fmt_s(dflt), q["backup_net_vs_default"])
    row("**restore: module net (%s s) ÷ raw `zstd -dc \\| pg_restore` (%s s)**" % (fmt_s(mr_net), fmt_s(rraw)),
        q["restore_net_vs_raw"], TARGET_RATIO)
    row("restore: module duration_s (%s s) ÷ raw" % fmt_s(mr_dur), q["restore_duration_vs_raw"], TARGET_RATIO)
    row("restore: paired module net ÷ raw (per repetition: %s)" % " / ".join("%.3f" % x for x in r_pairs), r_pair,
        TARGET_RATIO)
    row("restore: module with `internal_poll_interval = %s`, net (%s s) ÷ raw" % (POLL, fmt_s(rp_net)),
        q["restore_poll_net_vs_raw"])
    row("restore: module with `internal_poll_interval = %s`, duration_s (%s s) ÷ raw" % (POLL, fmt_s(rp_dur)),
        q["restore_poll_duration_vs_raw"])
    row("restore: module process lifetime (%s s) ÷ raw" % fmt_s(mr_life), q["restore_lifetime_vs_raw"])
    row("restore: module whole ansible wall (%s s) ÷ raw" % fmt_s(mr_wall), q["restore_wall_vs_raw"])
    row("restore: process-tree CPU, module − no-op ansible (%s s) ÷ raw (%s s)" % (fmt_s(r_cpu_net), fmt_s(r_cpu_raw)),
        q["restore_cpu_net_vs_raw"])
    row("restore: module net ÷ `pg_restore -d db file` (%s s)" % fmt_s(rdflt), q["restore_net_vs_default"])
    rows.append(("**peak RSS of the module's Python process, %s MiB database (backup and restore)**"
                 % mib(d["size_bytes"]), "%.1f MiB" % peak_big, "< 100 MB (%.1f MiB)" % target_mib,
                 verdict(peak_big < target_mib)))
    rows.append(("peak RSS of the module's Python process, %s MiB database (backup and restore)"
                 % mib(r["small_data"]["size_bytes"]), "%.1f MiB" % peak_small, "< 100 MB",
                 verdict(peak_small < target_mib)))
    L += table(["ratio", "value", "target", "verdict"], rows, ["l", "r", "r", "l"])
    L += ["", "Small database `%s` (module via ansible): backup wall %s s, module python peak %s MiB; "
          "restore wall %s s, module python peak %s MiB."
          % (r["small_data"]["db"], " / ".join(fmt_s(x) for x in sm["backup"]["wall"]),
             fmt_peak(peak_of(sm["backup"], "module")), " / ".join(fmt_s(x) for x in sm["restore"]["wall"]),
             fmt_peak(peak_of(sm["restore"], "module"))), ""]

    prof = r.get("profile")
    if prof:
        L += ["## Where the module's own time goes (cProfile; module run directly with `python -m`, one run each)", ""]
        pb = dict((x[0], x[1]) for x in prof["backup"]["rows"])
        pr = dict((x[0], x[1]) for x in prof["restore"]["rows"])
        rows = [("process wall (python start to exit)", fmt_s(prof["backup"]["wall"]), fmt_s(prof["restore"]["wall"])),
                ("module duration_s", fmt_s(prof["backup"]["duration_s"]), fmt_s(prof["restore"]["duration_s"]))]
        rows += [(label, fmt_s(pb[label], 3), fmt_s(pr.get(label, 0.0), 3)) for label, dummy, dummy2
                 in prof["backup"]["rows"]]
        L += table(["", "backup s", "restore s"], rows)
        L += ["", "Built-ins (read, update, write, fsync) are self time; Python functions are cumulative time. "
              "cProfile sees the main thread only (a helper thread's work is not in these rows) and slows Python "
              "code down, so read these as shares rather than exact costs.", ""]
    for note in r["notes"]:
        L.append("Note: " + note)
    return "\n".join(L).rstrip() + "\n"


def main(argv=None):
    p = cli.parser(__doc__, reps=5, cluster=True)
    p.add_argument("--restore-reps", type=int, default=int(os.environ.get("LIFEBOAT_BENCH_RESTORE_REPS", "4")),
                   help="restore repetitions per variant (default 4, env LIFEBOAT_BENCH_RESTORE_REPS)")
    p.add_argument("--mb", type=float, default=500, help="size of the sample database in MiB (default 500)")
    p.add_argument("--min-mb", type=float, default=500,
                   help="smallest pg_database_size (MiB) accepted for the big database (default 500)")
    p.add_argument("--small-mb", type=float, default=5, help="size of the small comparison database (default 5)")
    p.add_argument("--no-profile", dest="profile", action="store_false", help="skip the cProfile runs")

    def run(args_):
        args = cli.parse(p, args_)
        if args.restore_reps < 2:
            p.error("--restore-reps must be at least 2")
        PostgresBench(args).run()
    return cli.main("postgresql", run, argv)


if __name__ == "__main__":
    sys.exit(main())
