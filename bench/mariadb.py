#!/usr/bin/env python
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Benchmark of lifeboat.backup.mysql_backup / mysql_restore against the raw MariaDB tools.

Run through bench/run.sh (``bench/run.sh mariadb``). One run:

1. starts (or reuses) a throwaway MariaDB in $LIFEBOAT_BENCH_DIR/mariadb
   (scripts/harness/mariadb.py) and makes (or reuses) a database ``bench`` of
   --mb MiB (InnoDB data + indexes; default 300) of generated rows: text,
   JSON, decimals, partly random BLOBs, plus a MyISAM log table;
2. times backups, interleaved, --reps times each:
     dump-module   ansible localhost -m lifeboat.backup.mysql_backup (mysqldump, zstd)
     dump-raw      mariadb-dump <the module's flags> --databases bench | zstd -q -T0 > file
     full-module   mysql_backup method mariabackup, type full
     full-raw      mariabackup --backup --stream=mbstream --extra-lsndir=D | zstd -q -T0 > file
3. then, --reps times: 1% of the orders rows change (the newest 1%, as an OLTP
   workload touches recent rows), then an incremental through the module and
   one raw (`--incremental-lsn` from the raw chain's last checkpoints), with
   their bytes as a share of the full's;
4. times the restore of the chain (the last full and its --reps incrementals)
   into an empty datadir: the module against the raw sequence (`zstd -dc |
   mbstream -x` each, `mariabackup --prepare`, `--incremental-dir` each,
   `--copy-back`, `chown -R mysql:mysql`);
5. times the logical restore (module against `zstd -dc file | mariadb`), each
   into a freshly dropped database, and checks the module's restore against
   the source's checksum (scripts/harness/mariadb.py checksum);
6. writes bench/results/mariadb.md and .json and prints the Markdown.

The password of the bench account reaches the module through a
``lookup('env', ...)`` and the raw tools through a 0600 option file
(``--defaults-extra-file``); never argv. Peak RSS comes from the 50 ms /proc
sampler (VmHWM of the module's Python process, mariadb-dump, mariabackup, zstd...).
"""

import os
import secrets
import shlex
import shutil
import sys
import time

from lib import MIB, BenchError, Skip, bench_dir, cli, log, private_dir
from lib.modules import run_ansible
from lib.procs import timed
from lib.report import fmt_peak, fmt_s, loadavg, machine_info, machine_table, mib, table, verdict, write_results
from lib.timing import interleaved, med, paired_ratios

from harness import mariadb as harness_mariadb  # scripts/ is on sys.path once lib is imported
from harness.core import Fail

DB = "bench"
HOST = "bench"
PW_ENV = "LIFEBOAT_BENCH_MARIADB_PASSWORD"
TARGET_RATIO = 1.05
TARGET_INCR_SHARE = 0.05
TARGET_RSS_MB = 100.0
TOOLS = ("mariadb", "mariadb-dump", "mariabackup", "mbstream", "mariadb-install-db", "mariadbd", "zstd")
# the module's mysqldump flags (plugins/module_utils/_mysql.py dump_argv), so that raw and module dump alike
DUMP_FLAGS = ["--default-character-set=utf8mb4", "--hex-blob", "--quick", "--add-drop-table", "--create-options",
              "--tz-utc", "--single-transaction", "--routines", "--events", "--triggers", "--master-data=2", "--gtid"]
ROWS_PER_BATCH = 20000


def sql_text(text):
    return "'%s'" % text.replace("\\", "\\\\").replace("'", "''")


class BenchServer(object):
    """$LIFEBOAT_BENCH_DIR/mariadb: the server, its account ``lifeboat`` and the sample database."""

    def __init__(self):
        self.dir = os.path.join(bench_dir(), "mariadb")
        self.paths = harness_mariadb.layout(self.dir)
        self.defaults = os.path.join(bench_dir(), "mariadb-client.cnf")
        self.password = None
        self.port = None

    def load_password(self):
        path = os.path.join(bench_dir(), "mariadb_password")
        if not os.path.exists(path):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_urlsafe(18) + "\n")
        with open(path, encoding="utf-8") as handle:
            self.password = handle.read().strip()

    def start(self):
        self.load_password()
        try:
            facts = harness_mariadb.start(self.dir, password=self.password)
        except Fail as exc:
            raise BenchError("starting MariaDB: %s" % exc)
        self.port = int(facts["port"])
        fd = os.open(self.defaults, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write('[client]\nuser=lifeboat\npassword="%s"\nhost=127.0.0.1\nport=%d\nprotocol=tcp\n'
                         % (self.password, self.port))
        log("MariaDB running in %s, port %d (password from a 0600 file, never argv)" % (self.dir, self.port))

    def stop(self, remove=False):
        try:
            harness_mariadb.stop(self.dir, remove=remove)
        except Fail as exc:
            raise BenchError("stopping MariaDB: %s" % exc)

    def sql(self, text, db=None):
        try:
            return harness_mariadb.client(self.paths, sql=text, db=db)
        except Fail as exc:
            raise BenchError("SQL failed: %s" % exc)

    def conn_args(self):
        return {"login_host": "127.0.0.1", "login_port": self.port, "login_user": "lifeboat",
                "login_password": "{{ lookup('env', '%s') }}" % PW_ENV}

    def version(self):
        return self.sql("SELECT VERSION()").strip()

    def settle(self):
        """Before each timed run: flush dirty InnoDB pages and the OS's."""
        self.sql("SET GLOBAL innodb_max_dirty_pages_pct = 0; FLUSH TABLES;")
        deadline = time.time() + 60
        while time.time() < deadline:
            dirty = self.sql("SELECT variable_value FROM information_schema.global_status WHERE "
                             "variable_name = 'INNODB_BUFFER_POOL_PAGES_DIRTY'").strip()
            if dirty in ("", "0"):
                break
            time.sleep(0.2)
        self.sql("SET GLOBAL innodb_max_dirty_pages_pct = 90;")
        os.sync()

    def db_bytes(self, db=DB):
        out = self.sql("SELECT IFNULL(SUM(data_length + index_length), 0) FROM information_schema.tables "
                       "WHERE table_schema = %s" % sql_text(db)).strip()
        return int(out or 0)

    def rows(self, db=DB):
        out = self.sql("SELECT table_name, table_rows FROM information_schema.tables WHERE table_schema = %s "
                       "AND table_type = 'BASE TABLE' ORDER BY 1" % sql_text(db))
        return dict((line.split("\t")[0], int(line.split("\t")[1] or 0)) for line in out.splitlines() if line)

    def complete_mb(self):
        """The size the sample was generated for, or None when there is none (or it is incomplete)."""
        out = self.sql("SELECT table_name FROM information_schema.tables WHERE table_schema = %s AND "
                       "table_name = 'bench_meta'" % sql_text(DB)).strip()
        if not out:
            return None
        val = self.sql("SELECT mb FROM bench.bench_meta WHERE done = 1").strip()
        return float(val) if val else None

    def ensure_db(self, mb):
        have = self.complete_mb()
        if have is not None and have >= mb:
            log("REUSING database %s (generated for %.0f MiB, %.1f MiB now)" % (DB, have, self.db_bytes() / MIB))
            return True
        log("generating database %s: about %.0f MiB of rows" % (DB, mb))
        t0 = time.perf_counter()
        self.sql("DROP DATABASE IF EXISTS bench; CREATE DATABASE bench CHARACTER SET utf8mb4 "
                 "COLLATE utf8mb4_unicode_ci;")
        self.sql("""
CREATE TABLE customers (id INT PRIMARY KEY AUTO_INCREMENT, name VARCHAR(100) NOT NULL, email VARCHAR(200),
  country CHAR(2), prefs JSON CHECK (JSON_VALID(prefs)), created DATETIME NOT NULL, KEY (email)) ENGINE=InnoDB;
CREATE TABLE orders (id INT PRIMARY KEY AUTO_INCREMENT, customer_id INT NOT NULL, amount DECIMAL(12,2) NOT NULL,
  status VARCHAR(20) NOT NULL, note TEXT, receipt BLOB, created DATETIME NOT NULL, KEY (customer_id),
  KEY (created)) ENGINE=InnoDB;
CREATE TABLE audit_log (id INT PRIMARY KEY AUTO_INCREMENT, what VARCHAR(200) NOT NULL) ENGINE=MyISAM;
CREATE TABLE bench_meta (mb DOUBLE NOT NULL, done INT NOT NULL) ENGINE=InnoDB;
CREATE VIEW big_orders AS SELECT id, customer_id, amount FROM orders WHERE amount > 900;
""", db=DB)
        self.sql("INSERT INTO customers (name, email, country, prefs, created) SELECT "
                 "CONCAT('customer ', seq, IF(seq % 7 = 0, ' Zoë Ångström', ' plain')), CONCAT('c', seq, "
                 "'@example.com'), ELT(1 + seq % 5, 'DE', 'FR', 'US', 'JP', 'BR'), JSON_OBJECT('tier', seq % 3, "
                 "'tags', JSON_ARRAY('a', seq), 'newsletter', seq % 2 = 0), '2025-01-01' + INTERVAL seq MINUTE "
                 "FROM seq_1_to_50000", db=DB)
        batch = 0
        while self.db_bytes() < mb * MIB:
            base = batch * ROWS_PER_BATCH
            self.sql("INSERT INTO orders (customer_id, amount, status, note, receipt, created) SELECT "
                     "1 + (seq * 7919) %% 50000, ROUND(RAND(seq) * 1000, 2), ELT(1 + seq %% 4, 'new', 'paid', "
                     "'shipped', 'returned'), CONCAT('order ', seq, ': ', REPEAT(ELT(1 + seq %% 6, 'deliver to the "
                     "back door ', 'gift wrap please ', 'call before delivery ', 'leave with neighbour ', "
                     "'fragile, handle with care ', 'no note '), 1 + seq %% 12), ' ref ', MD5(seq), SHA2(seq, 256)), "
                     "CONCAT(RANDOM_BYTES(160), REPEAT('receipt line ', 10)), '2025-06-01' + INTERVAL seq SECOND "
                     "FROM seq_%d_to_%d" % (base + 1, base + ROWS_PER_BATCH), db=DB)
            self.sql("INSERT INTO audit_log (what) SELECT CONCAT('batch %d row ', seq) FROM seq_1_to_200" % batch,
                     db=DB)
            batch += 1
            self.sql("ANALYZE TABLE orders", db=DB)
            if batch % 10 == 0:
                log("  %d rows, %.1f MiB" % (batch * ROWS_PER_BATCH, self.db_bytes() / MIB))
        self.sql("ANALYZE TABLE customers, orders, audit_log; INSERT INTO bench_meta VALUES (%f, 1);" % mb, db=DB)
        log("generated %s in %.0f s: %.1f MiB" % (DB, time.perf_counter() - t0, self.db_bytes() / MIB))
        return False

    def checksum(self):
        try:
            return harness_mariadb.checksum(self.dir, [DB])
        except Fail as exc:
            raise BenchError("checksum of %s: %s" % (DB, exc))


class MariadbBench(object):
    def __init__(self, args):
        self.args = args
        self.server = BenchServer()
        self.store = private_dir("mariadb-store")
        self.out = private_dir("mariadb-out")
        self.rep = None
        self.raw_lsn = None
        self.raw_incrs = []
        self.r = {"backup": {}, "incremental": {}, "chain": {}, "restore": {}, "overhead": [], "notes": [], "rep_ping": {}}

    def ansible(self, module, args):
        full = dict(self.server.conn_args(), store={"kind": "dir", "path": self.store}, host=HOST)
        full.update(args)
        return run_ansible(module, full, secrets={PW_ENV: self.server.password})

    def record(self, section, variant, run, **extra):
        entry = self.r[section].setdefault(variant, {"wall": [], "runs": []})
        entry["wall"].append(round(run.wall, 3))
        entry["runs"].append(dict(wall=round(run.wall, 3), peaks_mib=run.peaks, tree_cpu=run.tree_cpu,
                                  lifetime=run.lifetime, module_cpu=run.module_cpu, rep=self.rep, **extra))

    def ping(self):
        run, dummy = run_ansible("ansible.builtin.ping")
        self.r["overhead"].append(run.wall)
        log("ansible ping (no-op overhead): %.2f s" % run.wall)
        return run.wall

    def bash(self, script):
        env = dict(os.environ, LANG="C", LC_ALL="C")
        env.pop(PW_ENV, None)
        run = timed(["bash", "-o", "pipefail", "-euc", script], env, self.out)
        if run.returncode != 0:
            raise BenchError("%s failed (exit %d): %s" % (script, run.returncode, run.stderr.strip()[-2000:]))
        return run

    def dflt(self):
        return "--defaults-extra-file=%s" % shlex.quote(self.server.defaults)

    # -- backups ------------------------------------------------------------------------

    def module_backup(self, section, variant, **args):
        self.server.settle()
        run, res = self.ansible("lifeboat.backup.mysql_backup", args)
        self.record(section, variant, run, duration_s=res["duration_s"], bytes=res["bytes"], cmd=res.get("cmd"),
                    set_id=res.get("set_id"))
        log("%s %s: wall %.2f s, duration_s %.2f, %.1f MiB, peaks %s"
            % (section, variant, run.wall, res["duration_s"], res["bytes"] / MIB, run.peaks))
        return res

    def dump_module(self):
        shutil.rmtree(os.path.join(self.store, HOST, DB), ignore_errors=True)
        self.module_backup("backup", "dump-module", method="mysqldump", databases=[DB])

    def dump_raw(self):
        path = os.path.join(self.out, "dump.sql.zst")
        script = "mariadb-dump %s %s --databases -- %s | zstd -q -T0 > %s" % (
            self.dflt(), " ".join(DUMP_FLAGS), DB, shlex.quote(path))
        self.server.settle()
        run = self.bash(script)
        self.record("backup", "dump-raw", run, bytes=os.path.getsize(path), cmd=script)
        log("backup dump-raw: wall %.2f s, peaks %s" % (run.wall, run.peaks))

    def full_module(self):
        self.module_backup("backup", "full-module", method="mariabackup", type="full")

    def physical_raw(self, name, incremental):
        path = os.path.join(self.out, name + ".mbstream.zst")
        lsndir = os.path.join(self.out, name + ".lsn")
        target = os.path.join(self.out, name + ".tmp")
        for p in (lsndir, target):
            shutil.rmtree(p, ignore_errors=True)
            os.makedirs(p)
        script = "mariabackup %s --backup --stream=mbstream --target-dir=%s --extra-lsndir=%s%s | zstd -q -T0 > %s" % (
            self.dflt(), shlex.quote(target), shlex.quote(lsndir),
            " --incremental-lsn=%d" % self.raw_lsn if incremental else "", shlex.quote(path))
        self.server.settle()
        run = self.bash(script)
        with open(os.path.join(lsndir, "xtrabackup_checkpoints"), encoding="utf-8") as handle:
            lsn = dict(line.split(" = ", 1) for line in handle.read().splitlines() if " = " in line)
        self.raw_lsn = int(lsn["to_lsn"])
        return run, path, script

    def full_raw(self):
        run, path, script = self.physical_raw("full", False)
        self.record("backup", "full-raw", run, bytes=os.path.getsize(path), cmd=script)
        log("backup full-raw: wall %.2f s, peaks %s" % (run.wall, run.peaks))

    def change(self):
        """1% of the orders rows, the newest ones, change (amount and status)."""
        top = int(self.server.sql("SELECT MAX(id) FROM bench.orders").strip())
        n = max(1, top // 100)
        self.server.sql("UPDATE bench.orders SET amount = amount + 1, status = 'changed' WHERE id > %d" % (top - n))
        return n

    def incr_module(self):
        self.module_backup("incremental", "incr-module", method="mariabackup", type="incremental")

    def incr_raw(self):
        run, path, script = self.physical_raw("incr%d" % len(self.raw_incrs), True)
        self.raw_incrs.append(path)
        self.record("incremental", "incr-raw", run, bytes=os.path.getsize(path), cmd=script)
        log("incremental raw: wall %.2f s, %.1f MiB" % (run.wall, os.path.getsize(path) / MIB))

    # -- restores -----------------------------------------------------------------------

    def drop(self):
        self.server.sql("DROP DATABASE IF EXISTS %s" % DB)

    def restore_module(self):
        self.drop()
        self.server.settle()
        run, res = self.ansible("lifeboat.backup.mysql_restore", {"source": DB})
        self.record("restore", "module", run, duration_s=res["duration_s"], cmd=res.get("cmd"))
        log("restore module: wall %.2f s, duration_s %.2f, peaks %s" % (run.wall, res["duration_s"], run.peaks))

    def restore_raw(self):
        self.drop()
        script = "zstd -q -dc %s | mariadb %s --default-character-set=utf8mb4" % (
            shlex.quote(os.path.join(self.out, "dump.sql.zst")), self.dflt())
        self.server.settle()
        run = self.bash(script)
        self.record("restore", "raw", run, cmd=script)
        log("restore raw: wall %.2f s, peaks %s" % (run.wall, run.peaks))

    def restore_chain_module(self):
        datadir = os.path.join(self.out, "datadir-module")
        shutil.rmtree(datadir, ignore_errors=True)
        self.server.settle()
        run, res = self.ansible("lifeboat.backup.mysql_restore", {"source": "mysql", "datadir": datadir})
        self.record("chain", "module", run, duration_s=res["duration_s"], cmd=res.get("cmd"), chain=res.get("chain"))
        log("chain restore module: wall %.2f s, duration_s %.2f, chain of %d, peaks %s"
            % (run.wall, res["duration_s"], len(res.get("chain") or []), run.peaks))
        shutil.rmtree(datadir, ignore_errors=True)

    def restore_chain_raw(self):
        """The raw sequence: extract every stream, prepare the full, apply each incremental, copy back, chown."""
        work = os.path.join(self.out, "raw-chain")
        datadir = os.path.join(self.out, "datadir-raw")
        for p in (work, datadir):
            shutil.rmtree(p, ignore_errors=True)
        parts = [os.path.join(self.out, "full.mbstream.zst")] + self.raw_incrs
        lines = []
        for index, path in enumerate(parts):
            d = shlex.quote(os.path.join(work, str(index)))
            lines.append("mkdir -p %s && zstd -q -dc %s | mbstream -x -C %s" % (d, shlex.quote(path), d))
        full = shlex.quote(os.path.join(work, "0"))
        lines.append("mariabackup --prepare --target-dir=%s" % full)
        for index in range(1, len(parts)):
            lines.append("mariabackup --prepare --target-dir=%s --incremental-dir=%s"
                         % (full, shlex.quote(os.path.join(work, str(index)))))
        lines.append("mariabackup --no-defaults --copy-back --target-dir=%s --datadir=%s"
                     % (full, shlex.quote(datadir)))
        lines.append("chown -R mysql:mysql %s" % shlex.quote(datadir))
        script = " && ".join(lines)
        self.server.settle()
        run = self.bash(script)
        self.record("chain", "raw", run, cmd=script)
        log("chain restore raw: wall %.2f s, peaks %s" % (run.wall, run.peaks))
        for p in (work, datadir):
            shutil.rmtree(p, ignore_errors=True)

    # -- the run ------------------------------------------------------------------------

    def run(self):
        missing = [t for t in TOOLS if not shutil.which(t)]
        if missing:
            raise Skip("missing tools: %s (see bindep.txt)" % " ".join(missing))
        t_start = time.perf_counter()
        self.r["machine"] = machine_info(bench_dir(), tools=("mariadb-dump", "mariabackup", "zstd"))
        self.r["started"] = self.r["machine"]["started"]
        self.r["reps"] = self.args.reps
        self.server.start()
        try:
            self._run()
        finally:
            shutil.rmtree(self.out, ignore_errors=True)
            shutil.rmtree(self.store, ignore_errors=True)
            if self.args.keep:
                log("--keep: MariaDB left running in %s" % self.server.dir)
            else:
                self.server.stop(remove=self.args.clean)
        log("total bench time %.0f s" % (time.perf_counter() - t_start))

    def _run(self):
        a, r = self.args, self.r
        r["machine"]["server"] = self.server.version()
        reused = self.server.ensure_db(a.mb)
        r["data"] = {"db": DB, "bytes": self.server.db_bytes(), "rows": self.server.rows(), "reused": reused}
        r["source_checksum"] = self.server.checksum()
        for dummy in range(2):
            self.ping()
        variants = {"dump-module": self.dump_module, "dump-raw": self.dump_raw,
                    "full-module": self.full_module, "full-raw": self.full_raw}
        last = None
        for rep, name in interleaved(variants, a.reps):
            if rep != last:
                last, self.rep = rep, "b%d" % rep
                r["rep_ping"][self.rep] = self.ping()
            variants[name]()
        # the chains: the module's last full and the raw one (full-raw ran in every repetition)
        self.full_module()
        self.r["backup"]["full-module"]["wall"].pop()
        self.r["backup"]["full-module"]["runs"].pop()
        self.full_raw()
        self.r["backup"]["full-raw"]["wall"].pop()
        self.r["backup"]["full-raw"]["runs"].pop()
        ivariants = {"incr-module": self.incr_module, "incr-raw": self.incr_raw}
        last = None
        for rep, name in interleaved(ivariants, a.reps):
            if rep != last:
                last, self.rep = rep, "i%d" % rep
                r.setdefault("changed_rows", []).append(self.change())
                r["rep_ping"][self.rep] = self.ping()
            ivariants[name]()
        r["chain_length"] = 1 + len(self.raw_incrs)
        cvariants = {"module": self.restore_chain_module, "raw": self.restore_chain_raw}
        last = None
        for rep, name in interleaved(cvariants, a.reps):
            if rep != last:
                last, self.rep = rep, "c%d" % rep
                r["rep_ping"][self.rep] = self.ping()
            cvariants[name]()
        self.rvariants(a)
        r["machine"]["loadavg_end"] = loadavg()
        write_results("mariadb", render(r), r)

    def rvariants(self, a):
        r = self.r
        # a fresh dump of the current data, by both, so both restores bring back the same contents
        self.dump_module()
        self.r["backup"]["dump-module"]["wall"].pop()
        self.r["backup"]["dump-module"]["runs"].pop()
        self.dump_raw()
        self.r["backup"]["dump-raw"]["wall"].pop()
        self.r["backup"]["dump-raw"]["runs"].pop()
        before = self.server.checksum()
        rvariants = {"module": self.restore_module, "raw": self.restore_raw}
        last = None
        for rep, name in interleaved(rvariants, a.reps):
            if rep != last:
                last, self.rep = rep, "r%d" % rep
                r["rep_ping"][self.rep] = self.ping()
            rvariants[name]()
            if name == "module":
                r.setdefault("restore_checks", []).append(self.server.checksum() == before)


# --------------------------------------------------------------------------
# report


def col(entry, key):
    return [run[key] for run in entry["runs"] if run.get(key) is not None]


def peak_of(entry, kind):
    vals = [run["peaks_mib"].get(kind) for run in entry["runs"] if run["peaks_mib"].get(kind) is not None]
    return max(vals) if vals else None


KINDS = ("module", "mariadb-dump", "mariabackup", "mariadb", "zstd")


def rows_for(section, names, with_bytes=True):
    rows = []
    for v, label in names:
        e = section[v]
        row = [v, label, fmt_s(med(e["wall"])), " / ".join(fmt_s(x) for x in e["wall"]),
               fmt_s(med(col(e, "duration_s"))), fmt_s(med(col(e, "lifetime"))), fmt_s(med(col(e, "tree_cpu")))]
        if with_bytes:
            row.append(mib(med(col(e, "bytes"))))
        rows.append(row + [fmt_peak(peak_of(e, k)) for k in KINDS])
    return rows


def render(r):
    m, d, b, inc, rs = r["machine"], r["data"], r["backup"], r["incremental"], r["restore"]
    ov = med(r["overhead"])
    L = ["# lifeboat.backup benchmark: MariaDB backup and restore", "",
         "Generated by `bench/run.sh mariadb` (bench/mariadb.py) on %s. %d repetitions per variant, interleaved; "
         "medians unless marked. Before each timed run: InnoDB's dirty pages flushed and `sync`. Peak RSS is the "
         "largest VmHWM a 50 ms /proc sampler saw." % (r["started"], r["reps"]), ""]
    L += machine_table(m, [("MariaDB", "server %s; %s; %s" % (m.get("server"), m["mariadb-dump"], m["mariabackup"])),
                           ("zstd", m["zstd"])])
    L += ["", "Database `%s`: %s MiB of InnoDB/MyISAM data and indexes (%s); rows %s." % (
        d["db"], mib(d["bytes"]), "reused" if d["reused"] else "generated this run",
        ", ".join("%s ~%d" % kv for kv in sorted(d["rows"].items()))), ""]
    L += ["## Backup", ""]
    L += table(["variant", "command", "wall s", "all runs s", "module duration_s", "module process lifetime s", "CPU s (tree)", "output MiB"]
               + ["peak RSS MiB: %s" % k for k in KINDS],
               rows_for(b, [("dump-module", "`mysql_backup` method mysqldump (zstd)"),
                            ("dump-raw", "`mariadb-dump <same flags> \\| zstd -q -T0 > file`"),
                            ("full-module", "`mysql_backup` method mariabackup, type full"),
                            ("full-raw", "`mariabackup --backup --stream=mbstream \\| zstd -q -T0 > file`")]),
               ["l", "l"] + ["r"] * 11)
    L += ["", "## Incremental after 1%% of the orders rows changed (%s rows each time)"
          % " / ".join(str(x) for x in r.get("changed_rows", [])), ""]
    L += table(["variant", "command", "wall s", "all runs s", "module duration_s", "module process lifetime s", "CPU s (tree)", "output MiB"]
               + ["peak RSS MiB: %s" % k for k in KINDS],
               rows_for(inc, [("incr-module", "`mysql_backup` mariabackup, type incremental"),
                              ("incr-raw", "`mariabackup ... --incremental-lsn=<raw chain's to_lsn> \\| zstd`")]),
               ["l", "l"] + ["r"] * 11)
    L += ["", "## Physical restore of the chain (full + %d incrementals) into an empty datadir"
          % (r.get("chain_length", 1) - 1), ""]
    L += table(["variant", "command", "wall s", "all runs s", "module duration_s", "module process lifetime s",
                "CPU s (tree)"] + ["peak RSS MiB: %s" % k for k in KINDS],
               rows_for(r["chain"], [("module", "`mysql_restore` source mysql, datadir (prepare, copy back, chown)"),
                                     ("raw", "`zstd -dc \\| mbstream -x` each, `mariabackup --prepare` "
                                             "(+ `--incremental-dir` each), `--copy-back`, `chown -R`")],
                        with_bytes=False), ["l", "l"] + ["r"] * 10)
    L += ["", "## Logical restore (each into a freshly dropped database)", ""]
    L += table(["variant", "command", "wall s", "all runs s", "module duration_s", "module process lifetime s", "CPU s (tree)"]
               + ["peak RSS MiB: %s" % k for k in KINDS],
               rows_for(rs, [("module", "`mysql_restore` of the mysqldump set"),
                             ("raw", "`zstd -dc file \\| mariadb`")], with_bytes=False),
               ["l", "l"] + ["r"] * 10)
    checks = r.get("restore_checks", [])
    L += ["", "Module restore content check (checksum of ordered rows of every table): %s." % (
        "identical to the source every time" if checks and all(checks) else "**DIFFERS from the source**"), ""]

    rows = []

    def row(label, value, target=None, fmt="%.3f"):
        rows.append((label, fmt % value, "(context)" if target is None else "≤ %s" % target,
                     "" if target is None else verdict(value <= target)))

    q = r["ratios"] = {}
    for key, mod, raw, sec in (("dump", "dump-module", "dump-raw", b), ("full", "full-module", "full-raw", b),
                               ("incremental", "incr-module", "incr-raw", inc), ("chain restore", "module", "raw", r["chain"]),
                               ("restore", "module", "raw", rs)):
        net = med(sec[mod]["wall"]) - ov
        dur = med(col(sec[mod], "duration_s"))
        rawv = med(sec[raw]["wall"])
        pair, pairs = paired_ratios(sec[mod]["runs"], sec[raw]["runs"], offset=r["rep_ping"])
        q[key] = {"net": net / rawv, "duration": dur / rawv, "paired": pair}
        row("**%s: module net (%s s) ÷ raw (%s s)**" % (key, fmt_s(net), fmt_s(rawv)), net / rawv, TARGET_RATIO)
        row("%s: module duration_s (%s s) ÷ raw" % (key, fmt_s(dur)), dur / rawv, TARGET_RATIO)
        row("%s: paired module net ÷ raw (%s)" % (key, " / ".join("%.3f" % x for x in pairs)), pair)
    share = med(col(inc["incr-module"], "bytes")) / float(med(col(b["full-module"], "bytes")))
    tshare = med(col(inc["incr-module"], "duration_s")) / med(col(b["full-module"], "duration_s"))
    q["incr_bytes_share"], q["incr_time_share"] = share, tshare
    row("**incremental bytes ÷ full bytes (module)**", share, TARGET_INCR_SHARE)
    row("incremental duration_s ÷ full duration_s (module)", tshare)
    module_runs = ((b, "dump-module"), (b, "full-module"), (inc, "incr-module"), (r["chain"], "module"),
                   (rs, "module"))
    peak = max(filter(None, [peak_of(s[v], "module") for s, v in module_runs]))
    q["peak_rss_mib"] = peak
    rows.append(("**peak RSS of the module's Python process (all runs)**", "%.1f MiB" % peak,
                 "< 100 MB (%.1f MiB)" % (TARGET_RSS_MB * 1e6 / MIB), verdict(peak < TARGET_RSS_MB * 1e6 / MIB)))
    L += ["## Ratios and targets", "", "*module net* = median wall of the whole `ansible` invocation − median wall "
          "of a no-op `ansible ... ping` (%s s)." % fmt_s(ov), ""]
    L += table(["ratio", "value", "target", "verdict"], rows, ["l", "r", "r", "l"])
    for note in r["notes"]:
        L.append("Note: " + note)
    return "\n".join(L).rstrip() + "\n"


def main(argv=None):
    p = cli.parser(__doc__, reps=3)
    p.add_argument("--mb", type=float, default=300, help="size of the sample database in MiB (default 300)")
    p.add_argument("--keep", action="store_true", help="leave the MariaDB server running at the end")
    p.add_argument("--clean", action="store_true", help="stop the server and remove its directory at the end")

    def run(args_):
        MariadbBench(cli.parse(p, args_)).run()
    return cli.main("mariadb", run, argv)


if __name__ == "__main__":
    sys.exit(main())
