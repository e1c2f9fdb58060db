#!/usr/bin/env python
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Benchmark of lifeboat.backup.mongodb_backup / mongodb_restore against the raw pipeline, through the fake tools.

No MongoDB server or tool can be installed where this collection is tested, so
this benchmark drives the faithful fakes of mongodump and mongorestore
(tests/fakes/mongodb: the command-line contract of MongoDB Database Tools 100.x,
data kept as files, mongodump's own archive format). The figures measure
the collection's overhead AROUND the fake producer (ansible, the module, the
pipeline, the store, the manifest), not MongoDB's own speed. Run through
bench/run.sh (``bench/run.sh mongodb``). One run:

1. makes (or reuses) a fake server in $LIFEBOAT_BENCH_DIR/mongodb with a
   database ``bench`` of --mb MiB of archive (default 200; the fake holds each
   collection in memory while it dumps it, so keep collections moderate) and a
   small database ``small`` for the restores;
2. times backups, interleaved, --reps times each:
     module   ansible localhost -m lifeboat.backup.mongodb_backup (databases [bench], zstd)
     raw      mongodump --config=F <the module's flags> --db=bench --archive | zstd -q -T0 > file
     cat      cat <the same archive, written once> | zstd -q -T0 > file  (the pipeline without a producer)
   and with --oplog (the fake server is marked a replica set with OPLOG_ENTRIES entries written during
   the dump) a dump of all databases, with and without the oplog:
     module-oplog  mongodb_backup databases [] oplog true (tee hands the archive to the oplog-time reader)
     module-all    the same with oplog false (no tee)
     raw-oplog     mongodump --config=F <the module's flags> --oplog --archive | zstd -q -T0 > file
3. times restores of ``small`` beside itself (nsFrom small.* -> nsTo restored.*):
     module   ansible localhost -m lifeboat.backup.mongodb_restore
     raw      zstd -dc file | mongorestore --config=F <the module's flags> --archive --nsFrom --nsTo --stopOnError
   (the fake's restore reads the target collection for every document, so a
   large restore would measure the fake, not the module: the database is small);
4. writes bench/results/mongodb.md and .json and prints the Markdown.

The fake server's password reaches the module through ``lookup('env', ...)``
and the raw tools through a 0600 ``--config`` YAML file; never argv.
"""

import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys

from lib import MIB, PY, REPO, BenchError, bench_dir, cli, log, private_dir
from lib.modules import run_ansible
from lib.procs import timed
from lib.report import fmt_peak, fmt_s, loadavg, machine_info, machine_table, mib, table, verdict, write_results
from lib.timing import interleaved, med, paired_ratios

FAKES = os.path.join(REPO, "tests", "fakes", "mongodb")
FAKE = os.path.join(FAKES, "fakemongo.py")
PORT = 27199
HOST = "bench"
PW_ENV = "LIFEBOAT_BENCH_MONGO_PASSWORD"
USER = "backup"
DB = "bench"
SMALL = "small"
ALL = "all"
OPLOG_ENTRIES = 100
COLLECTIONS = 4
TARGET_RATIO = 1.05
TARGET_RSS_MB = 100.0
KINDS = ("module", "mongodump", "mongorestore", "zstd", "cat")
# the fakes are Python scripts: their processes are named python, so they are told apart by argv
MARKERS = ((b"fakes/mongodb/mongodump", "mongodump"), (b"fakes/mongodb/mongorestore", "mongorestore"))


class MongoBench(object):
    def __init__(self, args):
        self.args = args
        self.root = private_dir("mongodb")
        self.server = os.path.join(self.root, "127.0.0.1_%d" % PORT)
        self.store = private_dir("mongodb-store")
        self.out = private_dir("mongodb-out")
        self.config = os.path.join(bench_dir(), "mongodb-config.yml")
        self.password = None
        self.rep = None
        self.r = {"backup": {}, "restore": {}, "overhead": [], "notes": [], "rep_ping": {}}
        # the module and the raw pipeline find the fakes first on PATH, and the fake server by this root
        os.environ["PATH"] = FAKES + os.pathsep + os.environ.get("PATH", "")
        os.environ["LIFEBOAT_FAKE_MONGO_ROOT"] = self.root

    # -- the fake server ----------------------------------------------------------------

    def fake(self, *argv):
        proc = subprocess.run([PY, FAKE] + list(argv) + ["--root", self.root, "--port", str(PORT)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
        if proc.returncode != 0:
            raise BenchError("fakemongo.py %s failed: %s" % (argv[0], proc.stderr.decode().strip()[-1000:]))
        return proc.stdout.decode()

    def prepare(self):
        pw_path = os.path.join(self.root, "password")
        if not os.path.exists(pw_path):
            fd = os.open(pw_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(hashlib.sha256(os.urandom(32)).hexdigest()[:24] + "\n")
        with open(pw_path, encoding="utf-8") as handle:
            self.password = handle.read().strip()
        fd = os.open(self.config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write('password: "%s"\n' % self.password)
        meta = os.path.join(self.root, "bench.json")
        try:
            with open(meta, encoding="utf-8") as handle:
                have = json.load(handle)
        except (OSError, ValueError):
            have = {}
        if have.get("mb", 0) >= self.args.mb and os.path.isdir(os.path.join(self.server, "data", DB)):
            log("REUSING the fake server's database %s (%s MiB asked then)" % (DB, have["mb"]))
            self.oplog_state()
            return True
        shutil.rmtree(self.server, ignore_errors=True)
        self.fake("init", "--user", USER, "--password-file", pw_path)
        # the fake's seed writes documents of about 330 bytes of archive each
        per_coll = int(self.args.mb * MIB / 330 / COLLECTIONS) + 1
        log("seeding the fake database %s: %d collections of %d documents" % (DB, COLLECTIONS, per_coll))
        colls = []
        for index in range(COLLECTIONS):
            colls += ["--coll", "c%d" % index]
        self.fake("seed", "--db", DB, "--count", str(per_coll), *colls)
        self.fake("seed", "--db", SMALL, "--count", str(self.args.small_docs), "--coll", "users", "--coll", "orders")
        with open(meta, "w", encoding="utf-8") as handle:
            json.dump({"mb": self.args.mb}, handle)
        self.oplog_state()
        return False

    def oplog_state(self):
        """With --oplog: a replica set (mongodump --oplog needs one) with entries written during the dump."""
        if self.args.oplog:
            entries = [{"op": "i", "ns": "%s.c0" % DB, "o": {"_id": -n}} for n in range(1, OPLOG_ENTRIES + 1)]
            self.fake("set", "--json", json.dumps({"replica_set": "rs0", "oplog_during_dump": entries}))

    def conn_flags(self):
        return "--config=%s --host=127.0.0.1 --port=%d --username=%s --authenticationDatabase=admin" % (
            shlex.quote(self.config), PORT, USER)

    # -- running things -----------------------------------------------------------------

    def ansible(self, module, args):
        full = dict(login_host="127.0.0.1", login_port=PORT, login_user=USER,
                    login_password="{{ lookup('env', '%s') }}" % PW_ENV,
                    store={"kind": "dir", "path": self.store}, host=HOST)
        full.update(args)
        return run_ansible(module, full, secrets={PW_ENV: self.password}, markers=MARKERS)

    def bash(self, script):
        env = dict(os.environ, LANG="C", LC_ALL="C")
        env.pop(PW_ENV, None)
        run = timed(["bash", "-o", "pipefail", "-euc", script], env, self.out, markers=MARKERS)
        if run.returncode != 0:
            raise BenchError("%s failed (exit %d): %s" % (script, run.returncode, run.stderr.strip()[-2000:]))
        return run

    def record(self, section, variant, run, **extra):
        entry = self.r[section].setdefault(variant, {"wall": [], "runs": []})
        entry["wall"].append(round(run.wall, 3))
        entry["runs"].append(dict(wall=round(run.wall, 3), peaks_mib=run.peaks, tree_cpu=run.tree_cpu,
                                  lifetime=run.lifetime, module_cpu=run.module_cpu, rep=self.rep, **extra))
        log("%s %s: wall %.2f s, peaks %s" % (section, variant, run.wall, run.peaks))

    def ping(self):
        run, dummy = run_ansible("ansible.builtin.ping")
        self.r["overhead"].append(run.wall)
        log("ansible ping (no-op overhead): %.2f s" % run.wall)
        return run.wall

    def sync(self):
        os.sync()

    # -- backups ------------------------------------------------------------------------

    def backup_module(self):
        shutil.rmtree(os.path.join(self.store, HOST, DB), ignore_errors=True)
        self.sync()
        run, res = self.ansible("lifeboat.backup.mongodb_backup", {"databases": [DB], "source": DB})
        self.record("backup", "module", run, duration_s=res["duration_s"], bytes=res["bytes"], cmd=res.get("cmd"))

    def backup_all(self, oplog):
        shutil.rmtree(os.path.join(self.store, HOST, ALL), ignore_errors=True)
        self.sync()
        run, res = self.ansible("lifeboat.backup.mongodb_backup", {"databases": [], "oplog": oplog, "source": ALL})
        position = res.get("position") or {}
        self.record("backup", "module-oplog" if oplog else "module-all", run, duration_s=res["duration_s"],
                    bytes=res["bytes"], cmd=res.get("cmd"), oplog_reached_from=position.get("oplog_reached_from"),
                    oplog_reached_t=position.get("oplog_reached_t"))

    def backup_raw_oplog(self):
        path = os.path.join(self.out, "raw-oplog.archive.zst")
        script = "mongodump %s --oplog --archive | zstd -q -T0 > %s" % (self.conn_flags(), shlex.quote(path))
        self.sync()
        self.record("backup", "raw-oplog", self.bash(script), bytes=os.path.getsize(path), cmd=script)

    def backup_raw(self):
        path = os.path.join(self.out, "raw.archive.zst")
        script = "mongodump %s --db=%s --archive | zstd -q -T0 > %s" % (self.conn_flags(), DB, shlex.quote(path))
        self.sync()
        self.record("backup", "raw", self.bash(script), bytes=os.path.getsize(path), cmd=script)

    def backup_cat(self):
        path = os.path.join(self.out, "cat.archive.zst")
        script = "cat %s | zstd -q -T0 > %s" % (shlex.quote(os.path.join(self.out, "plain.archive")),
                                                shlex.quote(path))
        self.sync()
        self.record("backup", "cat", self.bash(script), bytes=os.path.getsize(path), cmd=script)

    # -- restores -----------------------------------------------------------------------

    def drop_target(self):
        shutil.rmtree(os.path.join(self.server, "data", "restored"), ignore_errors=True)

    def restore_module(self):
        self.drop_target()
        self.sync()
        run, res = self.ansible("lifeboat.backup.mongodb_restore", {"source": SMALL, "ns_from": ["small.*"],
                                                                    "ns_to": ["restored.*"]})
        self.record("restore", "module", run, duration_s=res["duration_s"], cmd=res.get("cmd"))

    def restore_raw(self):
        self.drop_target()
        script = ("zstd -q -dc %s | mongorestore %s --archive '--nsFrom=small.*' '--nsTo=restored.*' --stopOnError"
                  % (shlex.quote(os.path.join(self.out, "small.archive.zst")), self.conn_flags()))
        self.sync()
        self.record("restore", "raw", self.bash(script), cmd=script)

    def checksum(self, db):
        return json.loads(self.fake("checksum", "--db", db))["collections"]

    # -- the run ------------------------------------------------------------------------

    def run(self):
        r = self.r
        r["machine"] = machine_info(bench_dir(), tools=("zstd",))
        r["started"] = r["machine"]["started"]
        r["reps"] = self.args.reps
        r["reused"] = self.prepare()
        try:
            self._run()
        finally:
            shutil.rmtree(self.out, ignore_errors=True)
            shutil.rmtree(self.store, ignore_errors=True)
            self.drop_target()
            if self.args.clean:
                shutil.rmtree(self.root, ignore_errors=True)

    def _run(self):
        a, r = self.args, self.r
        r["machine"]["mongodump"] = subprocess.run([os.path.join(FAKES, "mongodump"), "--version"],
                                                   stdout=subprocess.PIPE, check=False).stdout.decode().split("\n")[0]
        log("warm-up: the fake mongodump of %s into a plain archive (untimed; its size, and the input of `cat`)" % DB)
        plain = os.path.join(self.out, "plain.archive")
        self.bash("mongodump %s --db=%s --archive > %s" % (self.conn_flags(), DB, shlex.quote(plain)))
        r["archive_bytes"] = os.path.getsize(plain)
        self.bash("mongodump %s --db=%s --archive | zstd -q -T0 > %s" % (
            self.conn_flags(), SMALL, shlex.quote(os.path.join(self.out, "small.archive.zst"))))
        for dummy in range(2):
            self.ping()
        variants = {"module": self.backup_module, "raw": self.backup_raw, "cat": self.backup_cat}
        if a.oplog:
            variants.update({"module-oplog": lambda: self.backup_all(True), "module-all": lambda: self.backup_all(False),
                             "raw-oplog": self.backup_raw_oplog})
        last = None
        for rep, name in interleaved(variants, a.reps):
            if rep != last:
                last, self.rep = rep, "b%d" % rep
                r["rep_ping"][self.rep] = self.ping()
            variants[name]()
        self.ansible("lifeboat.backup.mongodb_backup", {"databases": [SMALL], "source": SMALL})
        source = self.checksum(SMALL)
        rvariants = {"module": self.restore_module, "raw": self.restore_raw}
        last = None
        for rep, name in interleaved(rvariants, a.reps):
            if rep != last:
                last, self.rep = rep, "r%d" % rep
                r["rep_ping"][self.rep] = self.ping()
            rvariants[name]()
            if name == "module":
                r.setdefault("restore_checks", []).append(self.checksum("restored") == source)
        r["machine"]["loadavg_end"] = loadavg()
        write_results("mongodb", render(r), r)


# --------------------------------------------------------------------------
# report


def col(entry, key):
    return [run[key] for run in entry["runs"] if run.get(key) is not None]


def peak_of(entry, kind):
    vals = [run["peaks_mib"].get(kind) for run in entry["runs"] if run["peaks_mib"].get(kind) is not None]
    return max(vals) if vals else None


def rows_for(section, names, with_bytes=True):
    rows = []
    for v, label in names:
        if v not in section:
            continue
        e = section[v]
        row = [v, label, fmt_s(med(e["wall"])), " / ".join(fmt_s(x) for x in e["wall"]),
               fmt_s(med(col(e, "duration_s"))), fmt_s(med(col(e, "lifetime"))), fmt_s(med(col(e, "tree_cpu")))]
        if with_bytes:
            row.append(mib(med(col(e, "bytes"))))
        rows.append(row + [fmt_peak(peak_of(e, k)) for k in KINDS])
    return rows


def render(r):
    m, b, rs = r["machine"], r["backup"], r["restore"]
    ov = med(r["overhead"])
    L = ["# lifeboat.backup benchmark: MongoDB backup and restore through the FAKE tools (pipeline only)", "",
         "Generated by `bench/run.sh mongodb` (bench/mongodb.py) on %s. %d repetitions per variant, interleaved; "
         "medians unless marked. **No MongoDB is involved**: mongodump and mongorestore are the fakes of "
         "tests/fakes/mongodb (a Python stand-in of the tools' command-line contract, writing mongodump's "
         "archive format). The figures are the collection's overhead around that producer, not MongoDB's speed."
         % (r["started"], r["reps"]), ""]
    L += machine_table(m, [("tools", "%s (fake); %s" % (m.get("mongodump"), m["zstd"]))])
    L += ["", "Database `bench` in the fake: a %s MiB archive (%s)." % (
        mib(r["archive_bytes"]), "reused" if r["reused"] else "generated this run"), ""]
    L += ["## Backup", ""]
    L += table(["variant", "command", "wall s", "all runs s", "module duration_s", "module process lifetime s", "CPU s (tree)", "output MiB"]
               + ["peak RSS MiB: %s" % k for k in KINDS],
               rows_for(b, [("module", "`mongodb_backup` databases [bench] (zstd)"),
                            ("raw", "`mongodump <same flags> --archive \\| zstd -q -T0 > file` (fake mongodump)"),
                            ("cat", "`cat archive \\| zstd -q -T0 > file` (no producer)"),
                            ("module-oplog", "`mongodb_backup` all databases, `oplog: true` (tee to the oplog-time "
                                             "reader)"),
                            ("module-all", "`mongodb_backup` all databases, `oplog: false`"),
                            ("raw-oplog", "`mongodump <same flags> --oplog --archive \\| zstd -q -T0 > file` (fake)")]),
               ["l", "l"] + ["r"] * 11)
    if "module-oplog" in b:
        found = sorted(set(str(run.get("oplog_reached_from")) for run in b["module-oplog"]["runs"]))
        L += ["", "With the oplog (%d entries written during the dump): `position.oplog_reached_from` was %s."
              % (OPLOG_ENTRIES, ", ".join(found))]
    L += ["", "## Restore of the small database beside itself (`small.*` → `restored.*`)", ""]
    L += table(["variant", "command", "wall s", "all runs s", "module duration_s", "module process lifetime s", "CPU s (tree)"]
               + ["peak RSS MiB: %s" % k for k in KINDS],
               rows_for(rs, [("module", "`mongodb_restore` ns_from/ns_to"),
                             ("raw", "`zstd -dc file \\| mongorestore --archive --nsFrom --nsTo` (fake)")],
                        with_bytes=False), ["l", "l"] + ["r"] * 10)
    checks = r.get("restore_checks", [])
    L += ["", "Module restore content check (the fake's checksum of every collection): %s." % (
        "identical to the source every time" if checks and all(checks) else "**DIFFERS from the source**"), ""]
    rows = []
    q = r["ratios"] = {}

    def row(label, value, target=None):
        rows.append((label, "%.3f" % value, "(context)" if target is None else "≤ %.2f" % target,
                     "" if target is None else verdict(value <= target)))

    for key, sec in (("backup", b), ("restore", rs)):
        net = med(sec["module"]["wall"]) - ov
        dur = med(col(sec["module"], "duration_s"))
        raw = med(sec["raw"]["wall"])
        pair, pairs = paired_ratios(sec["module"]["runs"], sec["raw"]["runs"], offset=r["rep_ping"])
        q[key] = {"net": net / raw, "duration": dur / raw, "paired": pair}
        row("**%s: module net (%s s) ÷ raw (%s s)**" % (key, fmt_s(net), fmt_s(raw)), net / raw, TARGET_RATIO)
        row("%s: module duration_s (%s s) ÷ raw" % (key, fmt_s(dur)), dur / raw, TARGET_RATIO)
        row("%s: paired module net ÷ raw (%s)" % (key, " / ".join("%.3f" % x for x in pairs)), pair)
    if "module-oplog" in b:
        raw = med(b["raw-oplog"]["wall"])
        for variant in ("module-oplog", "module-all"):
            net = med(b[variant]["wall"]) - ov
            dur = med(col(b[variant], "duration_s"))
            pair, pairs = paired_ratios(b[variant]["runs"], b["raw-oplog"]["runs"], offset=r["rep_ping"])
            q[variant] = {"net": net / raw, "duration": dur / raw, "paired": pair}
            target = TARGET_RATIO if variant == "module-oplog" else None
            row("**backup, all databases, %s: module net (%s s) ÷ raw with `--oplog` (%s s)**"
                % (variant, fmt_s(net), fmt_s(raw)), net / raw, target)
            row("backup, all databases, %s: module duration_s (%s s) ÷ raw with `--oplog`" % (variant, fmt_s(dur)),
                dur / raw, target)
            row("backup, all databases, %s: paired module net ÷ raw with `--oplog` (%s)"
                % (variant, " / ".join("%.3f" % x for x in pairs)), pair)
        pair, pairs = paired_ratios(b["module-oplog"]["runs"], b["module-all"]["runs"])
        q["oplog_tap"] = pair
        row("backup, all databases: module with the oplog ÷ without, paired whole wall (%s): the tap's cost"
            % " / ".join("%.3f" % x for x in pairs), pair)
    cat = med(b["cat"]["wall"])
    row("backup: raw with the fake producer ÷ `cat` of the same archive (%s s): the fake's own cost" % fmt_s(cat),
        med(b["raw"]["wall"]) / cat)
    peak = max(filter(None, [peak_of(b["module"], "module"), peak_of(rs["module"], "module")]))
    q["peak_rss_mib"] = peak
    rows.append(("**peak RSS of the module's Python process**", "%.1f MiB" % peak,
                 "< 100 MB (%.1f MiB)" % (TARGET_RSS_MB * 1e6 / MIB), verdict(peak < TARGET_RSS_MB * 1e6 / MIB)))
    L += ["## Ratios and targets", "", "*module net* = median wall of the whole `ansible` invocation − median wall "
          "of a no-op `ansible ... ping` (%s s)." % fmt_s(ov), ""]
    L += table(["ratio", "value", "target", "verdict"], rows, ["l", "r", "r", "l"])
    for note in r["notes"]:
        L.append("Note: " + note)
    return "\n".join(L).rstrip() + "\n"


def main(argv=None):
    p = cli.parser(__doc__, reps=3)
    p.add_argument("--mb", type=float, default=200, help="size of the fake database's archive in MiB (default 200)")
    p.add_argument("--small-docs", type=int, default=1000,
                   help="documents in each of the 2 collections of the restored database (default 1000)")
    p.add_argument("--clean", action="store_true", help="remove the fake server's data at the end")
    p.add_argument("--oplog", action="store_true",
                   help="also time a dump of all databases with the oplog (the module's tee tap) and without, "
                        "against mongodump --oplog --archive | zstd")

    def run(args_):
        MongoBench(cli.parse(p, args_)).run()
    return cli.main("mongodb", run, argv)


if __name__ == "__main__":
    sys.exit(main())
