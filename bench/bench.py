#!/usr/bin/env python
"""Benchmark of lifeboat.backup.postgresql_backup / postgresql_restore against the raw tools.

Run through bench/run.sh (``make bench``).  One run:

1. starts (or reuses) a throwaway PostgreSQL 15 cluster in $LIFEBOAT_BENCH_DIR/pg
   (default /tmp/lifeboat-bench/pg) with a password-authenticated role, and makes
   (or reuses) a >= 500 MiB database of random-text sample data plus a small one;
2. times backups, interleaved, --reps times each:
     module      ansible localhost -m lifeboat.backup.postgresql_backup (custom, zstd)
     module-poll the same with ansible.cfg internal_poll_interval = 0.05 (the
                 controller otherwise wakes up every millisecond while it waits)
     raw         bash -o pipefail -c 'pg_dump -Fc -Z0 | zstd -q -T0 > file'
     raw+sync    the same, then `sync FILE` (fsync), because the module fsyncs its set
     default     pg_dump -Fc -f file                    (pg_dump's own gzip)
   and a no-op `ansible localhost -m ansible.builtin.ping` to measure ansible's
   own cost.  Every timed run starts after a CHECKPOINT and a sync, so that one run's dirty
   pages are not written back on the next run's clock.
3. samples /proc every 50 ms during every run and keeps the peak (VmHWM) of the
   module's AnsiballZ Python process and, for context, of pg_dump / zstd /
   pg_restore / psql;
4. times restores the same way (module, module-poll, zstd -dc | pg_restore,
   pg_restore file),
   each into a freshly dropped database, and checks the module's restore against
   the source with pgcluster.py checksum;
5. runs the module once directly under cProfile (backup and restore) to attribute
   its time;
6. writes bench/results/latest.md (+ latest.json) and prints the Markdown.

The role's password comes from $LIFEBOAT_PG_PASSWORD or a 0600 file in the bench
directory; it reaches the tools through a 0600 PGPASSFILE and the module through
an Ansible ``lookup('env', ...)`` template, never through argv.
"""

import argparse
import datetime
import json
import os
import platform
import pstats
import re
import resource
import secrets
import shlex
import shutil
import statistics
import subprocess
import sys
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV_BIN = os.path.dirname(os.path.abspath(sys.executable))
PY = sys.executable
ANSIBLE = os.path.join(VENV_BIN, "ansible")
PGCLUSTER = os.path.join(REPO, "scripts", "pgcluster.py")
PG_BIN = os.environ.get("LIFEBOAT_PG_BIN_DIR", "/usr/lib/postgresql/15/bin")
RESULTS = os.path.join(REPO, "bench", "results")

ROLE = "lifeboat_bench"
DB = "bench"
SMALL_DB = "bench_small"
RESTORE_DB = "bench_restore"
HOST = "bench"                        # the module's `host` (store layout <store>/<host>/<source>)
PW_ENV = "LIFEBOAT_BENCH_PG_PASSWORD"  # read by the module args' lookup('env', ...)
MIB = 1024 * 1024
MIN_DB_BYTES = 500 * MIB              # >= 500 MiB, so >= 500 MB either way
TARGET_RATIO = 1.05
POLL = 0.05                           # internal_poll_interval of the "module-poll" variants
TARGET_RSS_MB = 100.0                 # 100 MB = 10^8 bytes
SAMPLE_INTERVAL = 0.05

MODULE_BACKUP = "lifeboat.backup.postgresql_backup"
MODULE_RESTORE = "lifeboat.backup.postgresql_restore"


def log(msg):
    print("bench: " + msg, file=sys.stderr, flush=True)


class BenchError(Exception):
    pass


# --------------------------------------------------------------------------
# /proc sampling


def _read(path):
    with open(path, "rb") as fh:
        return fh.read()


class ProcSampler(threading.Thread):
    """Every SAMPLE_INTERVAL, find the descendants of ``root`` and keep each one's peak RSS.

    Only pids that appeared since the last sample are examined for their parent,
    so a sample costs a listdir of /proc plus a few small reads.  VmHWM (the
    kernel's high-water mark of resident memory) never decreases, so the last
    sample before a process exits holds its peak up to that moment.
    """

    CATEGORIES = ("pg_dump", "pg_restore", "zstd", "gzip", "psql", "sync")

    def __init__(self, root):
        super().__init__(daemon=True)
        self.root = root
        self.tracked = {root}
        self.alive = {root}
        self.foreign = set()
        self.kind = {}
        self.peak_kb = {}
        self.span = {}  # kind -> [first, last] perf_counter time a process of that kind was seen
        self.ticks = {}  # pid -> (kind, utime + stime in clock ticks at the last sample)
        self.samples = 0
        self._halt = threading.Event()

    def stop(self):
        self._halt.set()
        self.join()

    def run(self):
        while True:
            self.sample()
            if self._halt.wait(SAMPLE_INTERVAL):
                break
        self.sample()

    def _ppid(self, pid):
        try:
            stat = _read("/proc/%d/stat" % pid).decode("ascii", "replace")
            return int(stat[stat.rfind(")") + 2:].split()[1])
        except (OSError, ValueError, IndexError):
            return None

    def _classify(self, pid, name):
        if name in self.CATEGORIES:
            return name
        if name.startswith("python"):
            try:
                argv = _read("/proc/%d/cmdline" % pid).split(b"\0")
            except OSError:
                return None
            if any(os.path.basename(a).startswith(b"AnsiballZ_") for a in argv[1:3]):
                return "module"
            if b"-m" in argv[1:3] and any(a.startswith(b"ansible_collections.") for a in argv):
                return "module"   # the module run directly (python -m ...)
        return None

    def sample(self):
        self.samples += 1
        try:
            pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
        except OSError:
            return
        new = sorted(p for p in pids if p not in self.tracked and p not in self.foreign)
        changed = True
        while new and changed:  # a child may be listed before its (also new) parent
            changed = False
            rest = []
            for pid in new:
                ppid = self._ppid(pid)
                if ppid in self.tracked:
                    self.tracked.add(pid)
                    self.alive.add(pid)
                    changed = True
                elif ppid is None or ppid in self.foreign or ppid not in new:
                    self.foreign.add(pid)
                else:
                    rest.append(pid)
            new = rest
        self.foreign.update(new)
        for pid in list(self.alive):
            try:
                status = _read("/proc/%d/status" % pid).decode("utf-8", "replace")
            except OSError:
                self.alive.discard(pid)
                continue
            fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
            name = fields.get("Name", "").strip()
            key = (pid, name)
            if key not in self.kind:
                self.kind[key] = self._classify(pid, name)
            kind = self.kind[key]
            hwm = fields.get("VmHWM")
            if kind and hwm:
                kb = int(hwm.split()[0])
                self.peak_kb[kind] = max(self.peak_kb.get(kind, 0), kb)
                now = time.perf_counter()
                span = self.span.setdefault(kind, [now, now])
                span[1] = now
                try:
                    stat = _read("/proc/%d/stat" % pid).decode("ascii", "replace")
                    fields = stat[stat.rfind(")") + 2:].split()
                    self.ticks[pid] = (kind, int(fields[11]) + int(fields[12]))
                except (OSError, ValueError, IndexError):
                    pass

    def peaks_mib(self):
        return {k: round(v / 1024.0, 1) for k, v in self.peak_kb.items()}

    def cpu(self, kind):
        """CPU seconds (user + system) used by processes of ``kind``, as of their last sample."""
        ticks = sum(t for k, t in self.ticks.values() if k == kind)
        return round(ticks / float(os.sysconf("SC_CLK_TCK")), 2) if ticks or kind in self.span else None

    def lifetime(self, kind):
        """Seconds between the first and the last sample that saw a process of ``kind`` (+-50 ms)."""
        span = self.span.get(kind)
        return round(span[1] - span[0], 3) if span else None


def children_cpu():
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


MODULE_PATH = "ansible_collections.lifeboat.backup.plugins.modules.postgresql_%s"


def run_module_direct(b, kind, args):
    """Run postgresql_<kind> directly (python -m, no ansible); the args file holds the password, 0600, removed after."""
    path = os.path.join(b.dir, "direct-args.json")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump({"ANSIBLE_MODULE_ARGS": dict(b.conn_args(), login_password=b.password, **args)}, fh)
    env = b.ansible_env()
    env["PYTHONPATH"] = b.coll
    try:
        proc = subprocess.run([sys.executable, "-m", MODULE_PATH % kind, path], env=env, cwd=b.dir,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
    finally:
        os.unlink(path)
    out = proc.stdout.decode()
    result = json.loads(out[out.index("{"):])
    if result.get("failed"):
        raise BenchError("%s module failed: %s" % (kind, result.get("msg")))
    return result


def start_ablation(keep):
    """A Bench with its cluster started, for the ablation scripts (relay_check, restore_check)."""
    ns = argparse.Namespace(keep=keep, clean=False, reps=2, restore_reps=2, mb=500, small_mb=5,
                            min_mb=500, profile=False)
    b = Bench(ns)
    b.prepare_dir()
    b.load_password()
    b.start_cluster()
    return b


def timed(argv, env, cwd, stdout=subprocess.PIPE):
    """Run argv; return (wall seconds, Popen with extra attributes, peaks in MiB).

    ``proc.tree_cpu`` is the CPU time of the whole process tree (every descendant is
    waited for by its parent, so RUSAGE_CHILDREN covers them all); the PostgreSQL
    server's own backend is not part of it.
    """
    cpu0 = children_cpu()
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=stdout, stderr=subprocess.PIPE)
    sampler = ProcSampler(proc.pid)
    sampler.start()
    out, err = proc.communicate()
    wall = time.perf_counter() - t0
    proc.tree_cpu = round(children_cpu() - cpu0, 2)
    sampler.stop()
    proc.module_lifetime = sampler.lifetime("module")
    proc.module_cpu = sampler.cpu("module")
    proc.stdout_text = (out or b"").decode("utf-8", "replace")
    proc.stderr_text = (err or b"").decode("utf-8", "replace")
    return wall, proc, sampler.peaks_mib()


# --------------------------------------------------------------------------
# the bench


class Bench:
    def __init__(self, args):
        self.args = args
        self.dir = os.path.abspath(os.environ.get("LIFEBOAT_BENCH_DIR") or "/tmp/lifeboat-bench")
        self.pg_dir = os.path.join(self.dir, "pg")
        self.store = os.path.join(self.dir, "store")
        self.out = os.path.join(self.dir, "out")
        self.coll = os.path.join(self.dir, "collections")
        self.pgpass = os.path.join(self.dir, "pgpass")
        self.state_path = os.path.join(self.dir, "state.json")
        self.password = None
        self.port = None
        self.rep = None
        self.results = {"backup": {}, "restore": {}, "overhead": [], "small": {}, "notes": []}

    # -- setup --------------------------------------------------------------

    def prepare_dir(self):
        os.makedirs(self.dir, exist_ok=True)
        os.chmod(self.dir, 0o711)  # the postgres user must traverse it to reach pg/
        for sub in (self.store, self.out):
            os.makedirs(sub, exist_ok=True)
            os.chmod(sub, 0o700)
        link_parent = os.path.join(self.coll, "ansible_collections", "lifeboat")
        os.makedirs(link_parent, exist_ok=True)
        link = os.path.join(link_parent, "backup")
        if os.path.islink(link) and os.readlink(link) != REPO:
            os.unlink(link)
        if not os.path.lexists(link):
            os.symlink(REPO, link)

    def load_password(self):
        pw = os.environ.get("LIFEBOAT_PG_PASSWORD")
        path = os.path.join(self.dir, "pg_password")
        if not pw:
            if not os.path.exists(path):
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "w") as fh:
                    fh.write(secrets.token_urlsafe(18) + "\n")
            with open(path) as fh:
                pw = fh.read().strip()
        if ":" in pw or "\\" in pw or "\n" in pw:
            raise BenchError("the bench password must not contain ':', '\\' or a newline")
        self.password = pw

    def pgcluster(self, *argv, capture=True):
        env = dict(os.environ, LIFEBOAT_PG_PASSWORD=self.password)
        proc = subprocess.run([PY, PGCLUSTER] + list(argv), env=env, cwd=REPO,
                              stdout=subprocess.PIPE if capture else None, stderr=None, check=False)
        if proc.returncode != 0:
            raise BenchError("pgcluster.py %s failed (exit %d)" % (argv[0], proc.returncode))
        return proc.stdout.decode() if capture else ""

    def start_cluster(self):
        info = json.loads(self.pgcluster("start", "--dir", self.pg_dir, "--user", ROLE))
        self.port = int(info["port"])
        fd = os.open(self.pgpass, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write("127.0.0.1:%d:*:%s:%s\n" % (self.port, ROLE, self.password))
        log("cluster running in %s, port %d, role %s (password from env/file, never argv)"
            % (self.pg_dir, self.port, ROLE))

    def stop_cluster(self):
        self.pgcluster("stop", "--dir", self.pg_dir)

    def tool_env(self):
        """Environment for the raw tools: same libpq settings the module uses, password via PGPASSFILE."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.update(PGHOST="127.0.0.1", PGPORT=str(self.port), PGUSER=ROLE, PGPASSFILE=self.pgpass,
                   PGAPPNAME="lifeboat-bench", LANG="C", LC_ALL="C")
        env.pop("LIFEBOAT_PG_PASSWORD", None)
        env.pop(PW_ENV, None)
        return env

    def psql(self, sql, db="postgres"):
        proc = subprocess.run([os.path.join(PG_BIN, "psql"), "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1",
                               "-d", db, "-f", "-"], input=sql.encode(), env=self.tool_env(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
        if proc.returncode != 0:
            raise BenchError("psql failed: %s" % proc.stderr.decode().strip())
        return proc.stdout.decode().strip()

    def db_state(self, db):
        out = self.psql("SELECT oid, pg_database_size(oid) FROM pg_database WHERE datname = '%s';" % db)
        if not out:
            return None
        oid, size = out.split("|")
        gen = self.psql("SELECT count(*) FROM pg_namespace WHERE nspname = 'lifeboat_gen';", db=db)
        tables = self.psql("SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tablename IN "
                           "('customers', 'orders', 'documents', 'products');", db=db)
        return {"oid": int(oid), "size": int(size), "complete": gen == "0" and tables == "4"}

    def load_state(self):
        try:
            with open(self.state_path) as fh:
                return json.load(fh)
        except (OSError, ValueError):
            return {}

    def save_state(self, state):
        with open(self.state_path + ".tmp", "w") as fh:
            json.dump(state, fh, indent=2, sort_keys=True)
        os.replace(self.state_path + ".tmp", self.state_path)

    def ensure_db(self, db, mb, min_bytes):
        """Reuse ``db`` when it exists, is complete and big enough; else (re)generate it."""
        state = self.load_state()
        cur = self.db_state(db)
        if cur and cur["complete"] and cur["size"] >= min_bytes:
            log("REUSING database %s from a previous run: pg_database_size %.1f MiB (>= %.0f MiB)"
                % (db, cur["size"] / MIB, min_bytes / MIB))
            reused = True
        else:
            why = "missing" if not cur else ("incomplete" if not cur["complete"] else "too small")
            log("generating database %s (%s): pgcluster.py sample --mb %s" % (db, why, mb))
            t0 = time.perf_counter()
            self.pgcluster("sample", "--dir", self.pg_dir, "--db", db, "--mb", str(mb))
            log("generated %s in %.1f s" % (db, time.perf_counter() - t0))
            cur = self.db_state(db)
            if cur["size"] < min_bytes:
                raise BenchError("%s is only %.1f MiB after sample --mb %s" % (db, cur["size"] / MIB, mb))
            reused = False
        entry = state.get(db) or {}
        if entry.get("oid") != cur["oid"]:
            entry = {"oid": cur["oid"]}
        entry["size"] = cur["size"]
        if "checksum" not in entry:
            entry["checksum"] = json.loads(self.pgcluster("checksum", "--dir", self.pg_dir, "--db", db))
        state[db] = entry
        self.save_state(state)
        rows = entry["checksum"]["tables"]
        return {"db": db, "size_bytes": cur["size"], "reused": reused, "rows": rows,
                "checksum": entry["checksum"]["md5"]}

    # -- ansible ----------------------------------------------------------------

    def ansible_env(self, poll=None):
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG") and not k.startswith("ANSIBLE_")}
        if poll is not None:
            # ansible's controller polls its workers every internal_poll_interval seconds
            # (default 0.001, settable only in ansible.cfg): about 0.1 CPU second per second
            # of module run time, taken from the tools on a small machine
            cfg = os.path.join(self.dir, "ansible-poll.cfg")
            with open(cfg, "w") as fh:
                fh.write("[defaults]\ninternal_poll_interval = %s\n" % poll)
            env["ANSIBLE_CONFIG"] = cfg
        env.pop("LIFEBOAT_PG_PASSWORD", None)
        env.update({
            PW_ENV: self.password,
            "ANSIBLE_COLLECTIONS_PATH": self.coll,
            "ANSIBLE_PYTHON_INTERPRETER": PY,
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_DEPRECATION_WARNINGS": "0",
            "ANSIBLE_LOCALHOST_WARNING": "0",
            "ANSIBLE_RETRY_FILES_ENABLED": "0",
            "PATH": VENV_BIN + os.pathsep + os.environ.get("PATH", "/usr/bin:/bin"),
        })
        return env

    def conn_args(self):
        return {
            "login_host": "127.0.0.1",
            "login_port": self.port,
            "login_user": ROLE,
            "login_password": "{{ lookup('env', '%s') }}" % PW_ENV,
            "pg_bin_dir": PG_BIN,
            "store": {"kind": "dir", "path": self.store},
            "host": HOST,
        }

    def ansible(self, module, args=None, poll=None):
        argv = [ANSIBLE, "localhost", "-i", "localhost,", "-c", "local", "-m", module]
        if args is not None:
            argv += ["-a", json.dumps(args)]
        wall, proc, peaks = timed(argv, self.ansible_env(poll), self.dir)
        text = proc.stdout_text
        m = re.search(r"^localhost \| (\S+)[^\n]*? => ", text, re.M)
        if not m:
            raise BenchError("cannot parse ansible output of %s:\n%s\n%s" % (module, text[-2000:], proc.stderr_text[-2000:]))
        result = json.loads(text[m.end():])
        if proc.returncode != 0 or result.get("failed"):
            raise BenchError("%s failed: %s" % (module, result.get("msg") or text[-2000:]))
        result["_lifetime"] = proc.module_lifetime
        result["_module_cpu"] = proc.module_cpu
        result["_tree_cpu"] = proc.tree_cpu
        return wall, result, peaks

    def ping(self):
        wall, res, dummy = self.ansible("ansible.builtin.ping")
        self.results["overhead"].append(wall)
        self.results.setdefault("overhead_runs", []).append(
            {"wall": round(wall, 3), "lifetime": res["_lifetime"], "module_cpu": res["_module_cpu"],
             "tree_cpu": res["_tree_cpu"]})
        log("ansible ping (no-op overhead): %.2f s (module process %.2f s, tree CPU %.2f s)"
            % (wall, res["_lifetime"] or 0, res["_tree_cpu"]))
        return wall

    # -- raw tools -----------------------------------------------------------------

    def bash(self, script):
        wall, proc, peaks = timed(["bash", "-o", "pipefail", "-euc", script], self.tool_env(), self.dir)
        if proc.returncode != 0:
            raise BenchError("%s failed (exit %d): %s" % (script, proc.returncode, proc.stderr_text.strip()[-2000:]))
        peaks["_tree_cpu"] = proc.tree_cpu
        return wall, peaks

    def record(self, section, variant, wall, peaks, **extra):
        peaks = dict(peaks)
        extra["tree_cpu"] = peaks.pop("_tree_cpu", extra.pop("tree_cpu", None))
        extra["rep"] = self.rep
        entry = self.results[section].setdefault(variant, {"wall": [], "runs": []})
        entry["wall"].append(round(wall, 3))
        entry["runs"].append(dict(wall=round(wall, 3), peaks_mib=peaks, **extra))
        return entry

    def settle(self):
        """Before every timed run: CHECKPOINT and sync, so that the previous run's dirty
        pages (a restore leaves about a gigabyte of data and WAL) are not written back
        on the next run's clock."""
        self.psql("CHECKPOINT;")
        os.sync()

    # -- backup ----------------------------------------------------------------------

    def reset_source(self, source):
        shutil.rmtree(os.path.join(self.store, HOST, source), ignore_errors=True)

    def backup_module(self, db=DB, section="backup", variant="module", poll=None):
        self.reset_source(db)
        self.settle()
        args = dict(self.conn_args(), db=db, format="custom", compression="zstd")
        wall, res, peaks = self.ansible(MODULE_BACKUP, args, poll=poll)
        self.record(section, variant, wall, peaks, duration_s=res["duration_s"], bytes=res["bytes"],
                    lifetime=res["_lifetime"], module_cpu=res["_module_cpu"], tree_cpu=res["_tree_cpu"],
                    cmd=res.get("cmd"))
        log("%s %s on %s: wall %.2f s, duration_s %.2f, %.1f MiB, peak RSS %s"
            % (section, variant, db, wall, res["duration_s"], res["bytes"] / MIB, peaks))
        return res

    def backup_raw(self, sync=False):
        pg_dump = shlex.quote(os.path.join(PG_BIN, "pg_dump"))
        path = os.path.join(self.out, "raw-sync.pgc.zst" if sync else "raw.pgc.zst")
        if os.path.exists(path):
            os.unlink(path)
        script = "%s -Fc -Z0 -d %s | zstd -q -T0 > %s" % (pg_dump, DB, shlex.quote(path))
        if sync:
            script += " && sync %s" % shlex.quote(path)
        self.settle()
        wall, peaks = self.bash(script)
        size = os.path.getsize(path)
        variant = "raw+sync" if sync else "raw"
        self.record("backup", variant, wall, peaks, bytes=size, cmd=script)
        log("backup %s: wall %.2f s, %.1f MiB, peak RSS %s" % (variant, wall, size / MIB, peaks))
        if sync:
            os.unlink(path)

    def backup_default(self):
        path = os.path.join(self.out, "default.pgc")
        if os.path.exists(path):
            os.unlink(path)
        script = "%s -Fc -d %s -f %s" % (shlex.quote(os.path.join(PG_BIN, "pg_dump")), DB, shlex.quote(path))
        self.settle()
        wall, peaks = self.bash(script)
        size = os.path.getsize(path)
        self.record("backup", "default", wall, peaks, bytes=size, cmd=script)
        log("backup default: wall %.2f s, %.1f MiB, peak RSS %s" % (wall, size / MIB, peaks))

    def uncompressed_dump_size(self):
        """One untimed `pg_dump -Fc -Z0` (also warms the page cache); returns its byte count."""
        proc = subprocess.Popen([os.path.join(PG_BIN, "pg_dump"), "-Fc", "-Z0", "-d", DB],
                                env=self.tool_env(), stdout=subprocess.PIPE)
        total = 0
        while True:
            block = proc.stdout.read(1 << 20)
            if not block:
                break
            total += len(block)
        if proc.wait() != 0:
            raise BenchError("pg_dump -Z0 (warm-up) failed")
        return total

    # -- restore ----------------------------------------------------------------------

    def drop_db(self, db):
        self.psql('DROP DATABASE IF EXISTS "%s" WITH (FORCE);' % db)

    def fresh_db(self, db):
        self.drop_db(db)
        self.psql('CREATE DATABASE "%s" TEMPLATE template0;' % db)

    def restore_module(self, source=DB, target=RESTORE_DB, section="restore", variant="module", poll=None):
        self.drop_db(target)
        self.settle()
        args = dict(self.conn_args(), source=source, target_db=target, clean=True)
        wall, res, peaks = self.ansible(MODULE_RESTORE, args, poll=poll)
        self.record(section, variant, wall, peaks, duration_s=res["duration_s"], lifetime=res["_lifetime"],
                    module_cpu=res["_module_cpu"], tree_cpu=res["_tree_cpu"], cmd=res.get("cmd"))
        log("%s %s %s -> %s: wall %.2f s, duration_s %.2f, peak RSS %s"
            % (section, variant, source, target, wall, res["duration_s"], peaks))
        return res

    def restore_raw(self):
        self.fresh_db(RESTORE_DB)
        script = "zstd -q -dc %s | %s -d %s" % (
            shlex.quote(os.path.join(self.out, "raw.pgc.zst")), shlex.quote(os.path.join(PG_BIN, "pg_restore")), RESTORE_DB)
        self.settle()
        wall, peaks = self.bash(script)
        self.record("restore", "raw", wall, peaks, cmd=script)
        log("restore raw: wall %.2f s, peak RSS %s" % (wall, peaks))

    def restore_default(self):
        self.fresh_db(RESTORE_DB)
        script = "%s -d %s %s" % (shlex.quote(os.path.join(PG_BIN, "pg_restore")), RESTORE_DB,
                                  shlex.quote(os.path.join(self.out, "default.pgc")))
        self.settle()
        wall, peaks = self.bash(script)
        self.record("restore", "default", wall, peaks, cmd=script)
        log("restore default: wall %.2f s, peak RSS %s" % (wall, peaks))

    # -- profile ------------------------------------------------------------------------

    def profile_module(self, name, module_args, label):
        """Run the module directly (python -m) under cProfile; summarise where its wall time went."""
        args_path = os.path.join(self.dir, "profile-args.json")
        prof_path = os.path.join(self.dir, "profile-%s.pstats" % label)
        fd = os.open(args_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # holds the password
        with os.fdopen(fd, "w") as fh:
            json.dump({"ANSIBLE_MODULE_ARGS": module_args}, fh)
        stmt = "runpy.run_module(%r, run_name='__main__', alter_sys=True)" % name
        code = ("import cProfile, runpy, sys\n"
                "sys.argv = ['module', %r]\n"
                "cProfile.run(%r, %r)\n" % (args_path, stmt, prof_path))
        env = self.ansible_env()
        env["PYTHONPATH"] = self.coll
        try:
            wall, proc, peaks = timed([PY, "-c", code], env, self.dir)
        finally:
            os.unlink(args_path)
        try:
            result = json.loads(proc.stdout_text[proc.stdout_text.index("{"):])
        except ValueError:
            raise BenchError("profiled %s printed no JSON: %s %s" % (label, proc.stdout_text[-1000:], proc.stderr_text[-1000:]))
        if result.get("failed"):
            raise BenchError("profiled %s failed: %s" % (label, result.get("msg")))
        stats = pstats.Stats(prof_path)
        total = max(ct for (cc, nc, tt, ct, callers) in stats.stats.values())

        def pick(pred):
            tt_sum = ct_sum = calls = 0
            for (fname, line, func), (cc, nc, tt, ct, callers) in stats.stats.items():
                if pred(fname, func):
                    tt_sum += tt
                    ct_sum = max(ct_sum, ct)
                    calls += nc
            return tt_sum, ct_sum, calls

        rows = []

        def add(label_, pred, use="tt"):
            tt, ct, calls = pick(pred)
            rows.append((label_, round(tt if use == "tt" else ct, 3), calls))

        add("whole module (python, under cProfile)", lambda f, fn: fn == "<module>" and f == "<string>", "ct")
        add("os.read/readv on the pipeline's last pipe (blocked waiting for the tools)",
            lambda f, fn: fn in ("<built-in method posix.read>", "<built-in method posix.readv>"))
        add("file.read (verify: re-hash of the stored file)",
            lambda f, fn: fn == "<method 'read' of '_io.BufferedReader' objects>")
        add("sha256 update", lambda f, fn: fn == "<method 'update' of '_hashlib.HASH' objects>")
        add("file.write (payload to the store)",
            lambda f, fn: fn in ("<method 'write' of '_io.BufferedWriter' objects>",
                                 "<method 'write' of '_io.FileIO' objects>"))
        add("os.fsync/fdatasync in the main thread (payload, manifest, dirs)",
            lambda f, fn: fn in ("<built-in method posix.fsync>", "<built-in method posix.fdatasync>"))
        add("Popen.wait (tools finishing after EOF)", lambda f, fn: fn == "wait" and f.endswith("subprocess.py"), "ct")
        add("subprocess start (fork/exec of stages)",
            lambda f, fn: fn == "_execute_child" and f.endswith("subprocess.py"), "ct")
        add("AnsibleModule.run_command (psql probe/SQL, --version)",
            lambda f, fn: fn == "run_command" and f.endswith("basic.py"), "ct")
        add("imports", lambda f, fn: fn == "_find_and_load", "ct")
        add("json dumps of the result (exit_json)", lambda f, fn: fn == "exit_json", "ct")
        top = []
        stats.sort_stats("tottime")
        for key in stats.fcn_list[:12]:
            cc, nc, tt, ct, callers = stats.stats[key]
            top.append((pstats.func_std_string(key), nc, round(tt, 3), round(ct, 3)))
        log("profile %s: wall %.2f s, %s" % (label, wall, rows[:6]))
        return {"wall": round(wall, 3), "total": round(total, 3), "rows": rows, "top_tottime": top,
                "duration_s": result.get("duration_s")}

    # -- main flow -----------------------------------------------------------------------

    def run(self):
        a = self.args
        t_start = time.perf_counter()
        self.prepare_dir()
        self.load_password()
        self.results["machine"] = machine_info(self.dir)
        self.results["started"] = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        self.results["reps"] = {"backup": a.reps, "restore": a.restore_reps}
        self.start_cluster()
        try:
            self._run()
        finally:
            for db in (RESTORE_DB,):
                try:
                    self.drop_db(db)
                except BenchError:
                    pass
            shutil.rmtree(self.out, ignore_errors=True)
            shutil.rmtree(self.store, ignore_errors=True)
            if a.clean:
                log("--clean: stopping the cluster and removing %s" % self.dir)
                self.pgcluster("stop", "--dir", self.pg_dir, "--remove")
                shutil.rmtree(self.dir, ignore_errors=True)
            elif a.keep:
                log("--keep: cluster left running in %s (port %d); stop it with: %s %s stop --dir %s"
                    % (self.pg_dir, self.port, PY, PGCLUSTER, self.pg_dir))
            else:
                self.stop_cluster()
                log("cluster stopped; its data stays in %s for the next run (--clean removes it)" % self.pg_dir)
        log("total bench time %.0f s" % (time.perf_counter() - t_start))

    def _run(self):
        a = self.args
        r = self.results
        r["machine"]["server"] = self.psql("SHOW server_version;")
        r["data"] = self.ensure_db(DB, a.mb, a.min_mb * MIB)
        r["small_data"] = self.ensure_db(SMALL_DB, a.small_mb, 1)

        log("warm-up: pg_dump -Fc -Z0 (untimed; also measures the uncompressed dump size)")
        r["data"]["dump_bytes"] = self.uncompressed_dump_size()

        for dummy in range(2):
            self.ping()
        # warm-up of the module path (AnsiballZ build, imports), untimed
        self.backup_module(db=SMALL_DB, section="small", variant="backup")

        variants = [("module", self.backup_module), ("raw", self.backup_raw),
                    ("module-poll", lambda: self.backup_module(variant="module-poll", poll=POLL)),
                    ("raw+sync", lambda: self.backup_raw(sync=True)), ("default", self.backup_default)]
        for rep in range(a.reps):
            log("--- backup repetition %d/%d" % (rep + 1, a.reps))
            self.rep = "b%d" % rep
            self.results.setdefault("rep_ping", {})[self.rep] = self.ping()
            k = rep % len(variants)
            for name, fn in variants[k:] + variants[:k]:
                fn()

        raw_file = os.path.join(self.out, "raw.pgc.zst")
        r["data"]["zstd_bytes"] = os.path.getsize(raw_file)
        r["data"]["gzip_bytes"] = os.path.getsize(os.path.join(self.out, "default.pgc"))
        ratio = r["data"]["dump_bytes"] / float(r["data"]["zstd_bytes"])
        r["data"]["zstd_ratio"] = round(ratio, 2)
        r["data"]["gzip_ratio"] = round(r["data"]["dump_bytes"] / float(r["data"]["gzip_bytes"]), 2)
        if ratio >= 3:
            r["notes"].append("The sample data is very compressible (zstd ratio %.2fx >= 3x)." % ratio)
        log("compression: custom dump %.1f MiB, zstd %.1f MiB (%.2fx), pg_dump gzip %.1f MiB (%.2fx)"
            % (r["data"]["dump_bytes"] / MIB, r["data"]["zstd_bytes"] / MIB, ratio,
               r["data"]["gzip_bytes"] / MIB, r["data"]["gzip_ratio"]))

        rvariants = [("module", self.restore_module), ("raw", self.restore_raw),
                     ("module-poll", lambda: self.restore_module(variant="module-poll", poll=POLL)),
                     ("default", self.restore_default)]
        for rep in range(a.restore_reps):
            log("--- restore repetition %d/%d" % (rep + 1, a.restore_reps))
            self.rep = "r%d" % rep
            self.results.setdefault("rep_ping", {})[self.rep] = self.ping()
            k = rep % len(rvariants)
            for name, fn in rvariants[k:] + rvariants[:k]:
                if name == "module":
                    fn()
                    if not r.get("restore_check"):
                        got = json.loads(self.pgcluster("checksum", "--dir", self.pg_dir, "--db", RESTORE_DB))
                        r["restore_check"] = {"ok": got["md5"] == r["data"]["checksum"], "md5": got["md5"]}
                        log("module restore content check: %s"
                            % ("identical to the source" if r["restore_check"]["ok"] else "DIFFERS"))
                else:
                    fn()

        # memory on a small database, for comparison with the 500 MiB one
        self.rep = None
        for dummy in range(2):
            self.backup_module(db=SMALL_DB, section="small", variant="backup")
            self.restore_module(source=SMALL_DB, target=RESTORE_DB + "_small", section="small", variant="restore")
        self.drop_db(RESTORE_DB + "_small")
        r["small"]["backup"]["wall"] = r["small"]["backup"]["wall"][1:]  # drop the warm-up
        r["small"]["backup"]["runs"] = r["small"]["backup"]["runs"][1:]

        if a.profile:
            log("profiling the modules directly under cProfile (python -m, outside ansible)")
            self.reset_source(DB)
            self.settle()
            r["profile"] = {}
            r["profile"]["backup"] = self.profile_module(
                "ansible_collections.lifeboat.backup.plugins.modules.postgresql_backup",
                dict(self.conn_args(), login_password=self.password, db=DB, format="custom", compression="zstd"),
                "backup")
            self.drop_db(RESTORE_DB)
            self.settle()
            r["profile"]["restore"] = self.profile_module(
                "ansible_collections.lifeboat.backup.plugins.modules.postgresql_restore",
                dict(self.conn_args(), login_password=self.password, source=DB, target_db=RESTORE_DB, clean=True),
                "restore")
        r["machine"]["loadavg_end"] = open("/proc/loadavg").read().split()[:3]

        md = render(r)
        os.makedirs(RESULTS, exist_ok=True)
        with open(os.path.join(RESULTS, "latest.md.tmp"), "w") as fh:
            fh.write(md)
        os.replace(os.path.join(RESULTS, "latest.md.tmp"), os.path.join(RESULTS, "latest.md"))
        with open(os.path.join(RESULTS, "latest.json.tmp"), "w") as fh:
            json.dump(r, fh, indent=1, sort_keys=True, default=str)
            fh.write("\n")
        os.replace(os.path.join(RESULTS, "latest.json.tmp"), os.path.join(RESULTS, "latest.json"))
        print(md)


# --------------------------------------------------------------------------
# report


def cmd_out(argv):
    try:
        return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False).stdout.decode().strip()
    except OSError:
        return "n/a"


def machine_info(bench_dir):
    cpu = "unknown"
    with open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_kb = 0
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    flags = open("/proc/cpuinfo").read()
    df = cmd_out(["df", "-PT", bench_dir]).splitlines()
    rev = cmd_out(["git", "-C", REPO, "rev-parse", "--short", "HEAD"])
    dirty = cmd_out(["git", "-C", REPO, "status", "--porcelain", "--", "plugins"])
    return {
        "commit": rev + (" + uncommitted changes in plugins/" if dirty else ""),
        "nproc": cmd_out(["nproc"]),
        "cpu": cpu,
        "sha_ni": " sha_ni" in flags,
        "mem_gib": round(mem_kb / 1024.0 / 1024.0, 1),
        "kernel": platform.release(),
        "os": cmd_out(["sh", "-c", ". /etc/os-release && echo $PRETTY_NAME"]),
        "python": platform.python_version(),
        "ansible": cmd_out([ANSIBLE, "--version"]).splitlines()[0],
        "pg_dump": cmd_out([os.path.join(PG_BIN, "pg_dump"), "--version"]),
        "zstd": cmd_out(["zstd", "--version"]),
        "fs": (df[-1].split()[1] if len(df) > 1 else "?"),
        "loadavg_start": open("/proc/loadavg").read().split()[:3],
    }


def med(values):
    return statistics.median(values) if values else float("nan")


def fmt_s(x):
    return "%.2f" % x


def mib(b):
    return "%.1f" % (b / MIB)


def peak_of(entry, kind):
    vals = [run["peaks_mib"].get(kind) for run in entry["runs"] if run["peaks_mib"].get(kind) is not None]
    return max(vals) if vals else None


def fmt_peak(v):
    return "—" if v is None else "%.1f" % v


def verdict(ok):
    return "**met**" if ok else "**missed**"


def col(entry, key):
    return [run[key] for run in entry["runs"] if run.get(key) is not None]


def paired(r, section, variant, base):
    """Median over repetitions of (module wall - that repetition's ping wall) / base wall."""
    by_rep = {}
    for run in r[section][variant]["runs"]:
        by_rep.setdefault(run["rep"], {})["m"] = run["wall"]
    for run in r[section][base]["runs"]:
        by_rep.setdefault(run["rep"], {})["b"] = run["wall"]
    ratios = [(v["m"] - r["rep_ping"][rep]) / v["b"] for rep, v in by_rep.items()
              if "m" in v and "b" in v and rep in r["rep_ping"]]
    return med(ratios), ratios


def render(r):
    m = r["machine"]
    d = r["data"]
    ov = med(r["overhead"])
    ov_runs = r.get("overhead_runs", [])
    ping_life = med([x["lifetime"] for x in ov_runs if x.get("lifetime") is not None])
    ping_cpu = med([x["tree_cpu"] for x in ov_runs])
    b = r["backup"]
    rs = r["restore"]
    L = []
    L.append("# lifeboat.backup benchmark: latest run")
    L.append("")
    L.append("Generated by `make bench` (bench/run.sh → bench/bench.py) on %s. %d backup and %d restore "
             "repetitions per variant, variants interleaved (the order rotates each repetition); figures are medians "
             "unless marked. Before every timed run: `CHECKPOINT` and `sync`. Peak RSS is the largest VmHWM a 50 ms /proc "
             "sampler saw; CPU is user+system time."
             % (r["started"], r["reps"]["backup"], r["reps"]["restore"]))
    L.append("")
    L.append("| machine | |")
    L.append("|---|---|")
    L.append("| CPU | %s × %s (sha_ni: %s), %s GiB RAM |" % (m["nproc"], m["cpu"], "yes" if m["sha_ni"] else "no", m["mem_gib"]))
    L.append("| OS | %s, kernel %s, bench dir on %s |" % (m["os"], m["kernel"], m["fs"]))
    L.append("| software | PostgreSQL server %s; %s; %s; Python %s; %s |"
             % (m.get("server", "?"), m["pg_dump"], m["zstd"].replace("*", "").strip(), m["python"], m["ansible"]))
    L.append("| code measured | commit %s |" % m.get("commit", "?"))
    L.append("| load average (1/5/15 min) | %s at start, %s at end |"
             % (" ".join(m["loadavg_start"]), " ".join(m.get("loadavg_end", []))))
    L.append("")
    L.append("| data | |")
    L.append("|---|---|")
    L.append("| database `%s` | pg_database_size %s MiB%s; rows %s |"
             % (d["db"], mib(d["size_bytes"]), " (reused from a previous run)" if d["reused"] else " (generated this run)",
                ", ".join("%s %d" % kv for kv in sorted(d["rows"].items()))))
    L.append("| custom-format dump, uncompressed (`pg_dump -Fc -Z0`) | %s MiB |" % mib(d["dump_bytes"]))
    L.append("| zstd (level 3, `-T0`) | %s MiB: ratio %.2fx |" % (mib(d["zstd_bytes"]), d["zstd_ratio"]))
    L.append("| pg_dump default (gzip inside the archive) | %s MiB: ratio %.2fx |" % (mib(d["gzip_bytes"]), d["gzip_ratio"]))
    L.append("| small database `%s` | pg_database_size %s MiB |" % (r["small_data"]["db"], mib(r["small_data"]["size_bytes"])))
    L.append("")

    def fmt_opt(vals):
        return fmt_s(med(vals)) if vals else "—"

    L.append("## Backup (`%s`, %s MiB)" % (d["db"], mib(d["size_bytes"])))
    L.append("")
    L.append("| variant | command | wall s | min wall s | all runs s | module duration_s | module process lifetime s "
             "| CPU s: process tree | module python | output MiB | peak RSS MiB: module python | pg_dump | zstd |")
    L.append("|---|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    names = {"module": "`ansible localhost -m lifeboat.backup.postgresql_backup` (custom, zstd)",
             "raw": "`pg_dump -Fc -Z0 \\| zstd -q -T0 > file`",
             "module-poll": "the same, ansible.cfg `internal_poll_interval = %s` (default 0.001)" % POLL,
             "raw+sync": "same, then `sync file` (fsync, as the module does)",
             "default": "`pg_dump -Fc -f file` (its own gzip)"}
    for v in ("module", "module-poll", "raw", "raw+sync", "default"):
        e = b[v]
        L.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            v, names[v], fmt_s(med(e["wall"])), fmt_s(min(e["wall"])), " / ".join(fmt_s(x) for x in e["wall"]),
            fmt_opt(col(e, "duration_s")), fmt_opt(col(e, "lifetime")), fmt_opt(col(e, "tree_cpu")),
            fmt_opt(col(e, "module_cpu")), mib(e["runs"][-1]["bytes"]),
            fmt_peak(peak_of(e, "module")), fmt_peak(peak_of(e, "pg_dump")), fmt_peak(peak_of(e, "zstd"))))
    L.append("")
    L.append("No-op ansible (`ansible localhost -i localhost, -c local -m ansible.builtin.ping`, same environment): "
             "wall %s s median over %d runs (%s); its AnsiballZ process lived %s s; process-tree CPU %s s."
             % (fmt_s(ov), len(r["overhead"]), " / ".join(fmt_s(x) for x in r["overhead"]),
                fmt_s(ping_life), fmt_s(ping_cpu)))
    L.append("")

    L.append("## Restore (each into a freshly dropped database)")
    L.append("")
    L.append("| variant | command | wall s | min wall s | all runs s | module duration_s | module process lifetime s "
             "| CPU s: process tree | module python | peak RSS MiB: module python | pg_restore | zstd |")
    L.append("|---|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    rnames = {"module": "`ansible localhost -m lifeboat.backup.postgresql_restore` (clean: true)",
              "module-poll": "the same, ansible.cfg `internal_poll_interval = %s`" % POLL,
              "raw": "`zstd -dc file \\| pg_restore -d db`",
              "default": "`pg_restore -d db file` (the pg_dump default file)"}
    for v in ("module", "module-poll", "raw", "default"):
        e = rs[v]
        L.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            v, rnames[v], fmt_s(med(e["wall"])), fmt_s(min(e["wall"])), " / ".join(fmt_s(x) for x in e["wall"]),
            fmt_opt(col(e, "duration_s")), fmt_opt(col(e, "lifetime")), fmt_opt(col(e, "tree_cpu")),
            fmt_opt(col(e, "module_cpu")),
            fmt_peak(peak_of(e, "module")), fmt_peak(peak_of(e, "pg_restore")), fmt_peak(peak_of(e, "zstd"))))
    chk = r.get("restore_check")
    if chk:
        L.append("")
        L.append("Module restore content check (pgcluster.py checksum over every table): %s."
                 % ("identical to the source" if chk["ok"] else "**DIFFERS from the source**"))
    L.append("")

    # ratios
    mb_wall = med(b["module"]["wall"])
    mb_net = mb_wall - ov
    mb_dur = med(col(b["module"], "duration_s"))
    mb_life = med(col(b["module"], "lifetime"))
    raw = med(b["raw"]["wall"])
    raws = med(b["raw+sync"]["wall"])
    dflt = med(b["default"]["wall"])
    mr_wall = med(rs["module"]["wall"])
    mr_net = mr_wall - ov
    mr_dur = med(col(rs["module"], "duration_s"))
    mr_life = med(col(rs["module"], "lifetime"))
    rraw = med(rs["raw"]["wall"])
    rdflt = med(rs["default"]["wall"])
    b_pair, b_pairs = paired(r, "backup", "module", "raw")
    bp_net = med(b["module-poll"]["wall"]) - ov
    bp_dur = med(col(b["module-poll"], "duration_s"))
    rp_net = med(rs["module-poll"]["wall"]) - ov
    rp_dur = med(col(rs["module-poll"], "duration_s"))
    r_pair, r_pairs = paired(r, "restore", "module", "raw")
    b_cpu_net = med(col(b["module"], "tree_cpu")) - ping_cpu
    b_cpu_raw = med(col(b["raw"], "tree_cpu"))
    r_cpu_net = med(col(rs["module"], "tree_cpu")) - ping_cpu
    r_cpu_raw = med(col(rs["raw"], "tree_cpu"))
    peak_big = max(filter(None, [peak_of(b["module"], "module"), peak_of(rs["module"], "module")]))
    sm = r["small"]
    peak_small = max(filter(None, [peak_of(sm["backup"], "module"), peak_of(sm["restore"], "module")]))
    target_mib = TARGET_RSS_MB * 1e6 / MIB

    L.append("## Ratios and targets")
    L.append("")
    L.append("*module net* = median wall of the module's whole `ansible` invocation − median wall of the no-op "
             "`ansible … ping` (%s s). *duration_s* is what the module reports (backup: lock → dump → fsync → manifest → "
             "rename; restore: from argument parsing to the end, verification included). *module process lifetime* is "
             "how long the sampler saw the AnsiballZ Python process that runs the module (interpreter start-up, imports, "
             "connection probe and exit included; ansible's controller work excluded). *paired* ratios divide each "
             "repetition's module net (its wall − the ping of the same repetition) by the raw run of the same repetition "
             "and take the median, which cancels slow drifts in machine load." % fmt_s(ov))
    L.append("")
    L.append("| ratio | value | target | verdict |")
    L.append("|---|---:|---:|---|")
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
    T = TARGET_RATIO

    def row(label, value, target=None):
        if target is None:
            L.append("| %s | %.3f | (context) | |" % (label, value))
        else:
            L.append("| %s | %.3f | ≤ %.2f | %s |" % (label, value, target, verdict(value <= target)))

    row("**backup: module net (%s s) ÷ raw pipeline (%s s)**" % (fmt_s(mb_net), fmt_s(raw)), q["backup_net_vs_raw"], T)
    row("backup: module duration_s (%s s) ÷ raw pipeline" % fmt_s(mb_dur), q["backup_duration_vs_raw"], T)
    row("backup: paired module net ÷ raw (per repetition: %s)" % " / ".join("%.3f" % x for x in b_pairs), b_pair, T)
    row("backup: module with `internal_poll_interval = %s`, net (%s s) ÷ raw" % (POLL, fmt_s(bp_net)), q["backup_poll_net_vs_raw"])
    row("backup: module with `internal_poll_interval = %s`, duration_s (%s s) ÷ raw" % (POLL, fmt_s(bp_dur)),
        q["backup_poll_duration_vs_raw"])
    row("backup: module process lifetime (%s s) ÷ raw pipeline" % fmt_s(mb_life), q["backup_lifetime_vs_raw"])
    row("backup: module net ÷ raw pipeline + fsync (%s s)" % fmt_s(raws), q["backup_net_vs_raw_sync"])
    row("backup: module whole ansible wall (%s s) ÷ raw pipeline" % fmt_s(mb_wall), q["backup_wall_vs_raw"])
    row("backup: process-tree CPU, module − no-op ansible (%s s) ÷ raw (%s s)" % (fmt_s(b_cpu_net), fmt_s(b_cpu_raw)),
        q["backup_cpu_net_vs_raw"])
    row("backup: module net ÷ `pg_dump -Fc` default (%s s)" % fmt_s(dflt), q["backup_net_vs_default"])
    row("**restore: module net (%s s) ÷ raw `zstd -dc \\| pg_restore` (%s s)**" % (fmt_s(mr_net), fmt_s(rraw)),
        q["restore_net_vs_raw"], T)
    row("restore: module duration_s (%s s) ÷ raw" % fmt_s(mr_dur), q["restore_duration_vs_raw"], T)
    row("restore: paired module net ÷ raw (per repetition: %s)" % " / ".join("%.3f" % x for x in r_pairs), r_pair, T)
    row("restore: module with `internal_poll_interval = %s`, net (%s s) ÷ raw" % (POLL, fmt_s(rp_net)), q["restore_poll_net_vs_raw"])
    row("restore: module with `internal_poll_interval = %s`, duration_s (%s s) ÷ raw" % (POLL, fmt_s(rp_dur)),
        q["restore_poll_duration_vs_raw"])
    row("restore: module process lifetime (%s s) ÷ raw" % fmt_s(mr_life), q["restore_lifetime_vs_raw"])
    row("restore: module whole ansible wall (%s s) ÷ raw" % fmt_s(mr_wall), q["restore_wall_vs_raw"])
    row("restore: process-tree CPU, module − no-op ansible (%s s) ÷ raw (%s s)" % (fmt_s(r_cpu_net), fmt_s(r_cpu_raw)),
        q["restore_cpu_net_vs_raw"])
    row("restore: module net ÷ `pg_restore -d db file` (%s s)" % fmt_s(rdflt), q["restore_net_vs_default"])
    L.append("| **peak RSS of the module's Python process, %s MiB database (backup and restore)** | %.1f MiB | < 100 MB (%.1f MiB) | %s |"
             % (mib(d["size_bytes"]), peak_big, target_mib, verdict(peak_big < target_mib)))
    L.append("| peak RSS of the module's Python process, %s MiB database (backup and restore) | %.1f MiB | < 100 MB | %s |"
             % (mib(r["small_data"]["size_bytes"]), peak_small, verdict(peak_small < target_mib)))
    L.append("")
    L.append("Small database `%s` (module via ansible): backup wall %s s, module python peak %s MiB; "
             "restore wall %s s, module python peak %s MiB."
             % (r["small_data"]["db"], " / ".join(fmt_s(x) for x in sm["backup"]["wall"]), fmt_peak(peak_of(sm["backup"], "module")),
                " / ".join(fmt_s(x) for x in sm["restore"]["wall"]), fmt_peak(peak_of(sm["restore"], "module"))))
    L.append("")

    prof = r.get("profile")
    if prof:
        L.append("## Where the module's own time goes (cProfile; module run directly with `python -m`, one run each)")
        L.append("")
        L.append("| | backup s | restore s |")
        L.append("|---|---:|---:|")
        pb = dict((row_[0], row_[1]) for row_ in prof["backup"]["rows"])
        pr = dict((row_[0], row_[1]) for row_ in prof["restore"]["rows"])
        L.append("| process wall (python start to exit) | %s | %s |" % (fmt_s(prof["backup"]["wall"]), fmt_s(prof["restore"]["wall"])))
        L.append("| module duration_s | %s | %s |" % (fmt_s(prof["backup"]["duration_s"]), fmt_s(prof["restore"]["duration_s"])))
        for label, dummy, dummy2 in prof["backup"]["rows"]:
            L.append("| %s | %s | %s |" % (label, fmt_s(pb[label]), fmt_s(pr.get(label, 0.0))))
        L.append("")
        L.append("Built-ins (read, update, write, fsync) are self time; Python functions are cumulative time. "
                 "cProfile sees the main thread only (a helper thread's work is not in these rows) and slows Python "
                 "code down, so read these as shares rather than exact costs.")
        L.append("")
    for note in r["notes"]:
        L.append("Note: " + note)
    return "\n".join(L).rstrip() + "\n"


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    p.add_argument("--keep", action="store_true", help="leave the cluster running at the end")
    p.add_argument("--clean", action="store_true", help="stop the cluster and delete the bench directory at the end")
    p.add_argument("--reps", type=int, default=int(os.environ.get("LIFEBOAT_BENCH_REPS", "5")),
                   help="backup repetitions per variant (default 5, env LIFEBOAT_BENCH_REPS)")
    p.add_argument("--restore-reps", type=int, default=int(os.environ.get("LIFEBOAT_BENCH_RESTORE_REPS", "4")),
                   help="restore repetitions per variant (default 4, env LIFEBOAT_BENCH_RESTORE_REPS)")
    p.add_argument("--mb", type=float, default=500, help="sample size passed to pgcluster.py sample (default 500)")
    p.add_argument("--min-mb", type=float, default=MIN_DB_BYTES / MIB,
                   help="smallest pg_database_size (MiB) accepted for the big database (default 500)")
    p.add_argument("--small-mb", type=float, default=5, help="size of the small comparison database (default 5)")
    p.add_argument("--no-profile", dest="profile", action="store_false", help="skip the cProfile runs")
    args = p.parse_args()
    if args.reps < 2 or args.restore_reps < 2:
        p.error("--reps and --restore-reps must be at least 2 (medians of fewer mean little)")
    if args.keep and args.clean:
        p.error("--keep and --clean exclude each other")
    try:
        Bench(args).run()
    except BenchError as exc:
        print("bench: error: %s" % exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
