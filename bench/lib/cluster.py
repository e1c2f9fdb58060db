# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The bench's PostgreSQL cluster: started through the test harness, with sample databases kept between runs.

The role's password comes from $LIFEBOAT_PG_PASSWORD or a 0600 file in the
bench directory; it reaches the raw tools through a 0600 PGPASSFILE and never
appears in argv.
"""

import json
import os
import secrets
import subprocess
import time

from harness import pg as harness_pg
from harness.core import Fail

from lib import MIB, PG_BIN, BenchError, bench_dir, log

ROLE = "lifeboat_bench"


class BenchCluster(object):
    """$LIFEBOAT_BENCH_DIR/pg, its role ``lifeboat_bench`` and the sample databases."""

    def __init__(self):
        self.dir = bench_dir()
        self.pg_dir = os.path.join(self.dir, "pg")
        self.pgpass = os.path.join(self.dir, "pgpass")
        self.state_path = os.path.join(self.dir, "state.json")
        self.password = None
        self.port = None

    # -- lifecycle ------------------------------------------------------------------

    def load_password(self):
        pw = os.environ.get("LIFEBOAT_PG_PASSWORD")
        path = os.path.join(self.dir, "pg_password")
        if not pw:
            if not os.path.exists(path):
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "w") as handle:
                    handle.write(secrets.token_urlsafe(18) + "\n")
            with open(path, encoding="utf-8") as handle:
                pw = handle.read().strip()
        if ":" in pw or "\\" in pw or "\n" in pw:
            raise BenchError("the bench password must not contain ':', '\\' or a newline")
        self.password = pw

    def start(self):
        """Start (or reuse) the cluster; write the 0600 passfile of the raw tools."""
        if self.password is None:
            self.load_password()
        try:
            info = harness_pg.start(self.pg_dir, user=ROLE, password=self.password)
        except Fail as exc:
            raise BenchError("starting the cluster: %s" % exc)
        self.port = int(info["port"])
        fd = os.open(self.pgpass, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write("127.0.0.1:%d:*:%s:%s\n" % (self.port, ROLE, self.password))
        log("cluster running in %s, port %d, role %s (password from env/file, never argv)"
            % (self.pg_dir, self.port, ROLE))
        return self

    def stop(self, remove=False):
        try:
            harness_pg.stop(self.pg_dir, remove=remove)
        except Fail as exc:
            raise BenchError("stopping the cluster: %s" % exc)

    def finish(self, keep=False, clean=False):
        """Stop the cluster at the end of a benchmark (its data stays unless ``clean``)."""
        if clean:
            log("--clean: stopping the cluster and removing %s" % self.pg_dir)
            self.stop(remove=True)
        elif keep:
            log("--keep: cluster left running in %s (port %s); stop it with: scripts/pgcluster.py stop --dir %s"
                % (self.pg_dir, self.port, self.pg_dir))
        else:
            self.stop()
            log("cluster stopped; its data stays in %s for the next run (--clean removes it)" % self.pg_dir)

    # -- the raw tools --------------------------------------------------------------

    def tool_env(self):
        """Environment for the raw tools: the libpq settings the module uses, password via PGPASSFILE."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.update(PGHOST="127.0.0.1", PGPORT=str(self.port), PGUSER=ROLE, PGPASSFILE=self.pgpass,
                   PGAPPNAME="lifeboat-bench", LANG="C", LC_ALL="C")
        env.pop("LIFEBOAT_PG_PASSWORD", None)
        return env

    def conn_args(self):
        """The module's connection options (the password is added by the caller, never argv)."""
        return {"login_host": "127.0.0.1", "login_port": self.port, "login_user": ROLE, "pg_bin_dir": PG_BIN}

    def psql(self, sql, db="postgres"):
        proc = subprocess.run([os.path.join(PG_BIN, "psql"), "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1",
                               "-d", db, "-f", "-"], input=sql.encode(), env=self.tool_env(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
        if proc.returncode != 0:
            raise BenchError("psql failed: %s" % proc.stderr.decode().strip())
        return proc.stdout.decode().strip()

    def server_version(self):
        return self.psql("SHOW server_version;")

    def settle(self):
        """Before every timed run: CHECKPOINT and sync, so that the previous run's dirty
        pages (a restore leaves about a gigabyte of data and WAL) are not written back
        on the next run's clock."""
        self.psql("CHECKPOINT;")
        os.sync()

    def drop_db(self, db):
        self.psql('DROP DATABASE IF EXISTS "%s" WITH (FORCE);' % db)

    def fresh_db(self, db):
        self.drop_db(db)
        self.psql('CREATE DATABASE "%s" TEMPLATE template0;' % db)

    def dump_size(self, db):
        """One untimed `pg_dump -Fc -Z0` (also warms the page cache); returns its byte count."""
        proc = subprocess.Popen([os.path.join(PG_BIN, "pg_dump"), "-Fc", "-Z0", "-d", db],  # pylint: disable=consider-using-with
                                env=self.tool_env(), stdout=subprocess.PIPE)
        total = 0
        while True:
            block = proc.stdout.read(MIB)
            if not block:
                break
            total += len(block)
        if proc.wait() != 0:
            raise BenchError("pg_dump -Z0 of %s (warm-up) failed" % db)
        return total

    # -- sample databases -------------------------------------------------------------

    def db_state(self, db):
        out = self.psql("SELECT oid, pg_database_size(oid) FROM pg_database WHERE datname = '%s';" % db)
        if not out:
            return None
        oid, size = out.split("|")
        try:
            complete = harness_pg.sample_complete(harness_pg.Cluster(self.pg_dir), db)
        except Fail:
            complete = False
        return {"oid": int(oid), "size": int(size), "complete": complete}

    def _state(self):
        try:
            with open(self.state_path, encoding="utf-8") as handle:
                return json.load(handle)
        except (OSError, ValueError):
            return {}

    def _save_state(self, state):
        with open(self.state_path + ".tmp", "w", encoding="utf-8") as handle:
            json.dump(state, handle, indent=2, sort_keys=True)
        os.replace(self.state_path + ".tmp", self.state_path)

    def ensure_db(self, db, mb, min_bytes):
        """Reuse ``db`` when it exists, is complete and big enough; else (re)generate it.

        Returns {db, size_bytes, reused, rows, checksum}; the checksum of a reused
        database is remembered in state.json (it takes a while on 500 MiB).
        """
        state = self._state()
        cur = self.db_state(db)
        if cur and cur["complete"] and cur["size"] >= min_bytes:
            log("REUSING database %s from a previous run: pg_database_size %.1f MiB (>= %.0f MiB)"
                % (db, cur["size"] / MIB, min_bytes / MIB))
            reused = True
        else:
            why = "missing" if not cur else ("incomplete" if not cur["complete"] else "too small")
            log("generating database %s (%s): sample data of %s MiB" % (db, why, mb))
            t0 = time.perf_counter()
            try:
                harness_pg.sample(self.pg_dir, db, mb=mb)
            except Fail as exc:
                raise BenchError("generating %s: %s" % (db, exc))
            log("generated %s in %.1f s" % (db, time.perf_counter() - t0))
            cur = self.db_state(db)
            if cur["size"] < min_bytes:
                raise BenchError("%s is only %.1f MiB after generating %s MiB" % (db, cur["size"] / MIB, mb))
            reused = False
        entry = state.get(db) or {}
        if entry.get("oid") != cur["oid"]:
            entry = {"oid": cur["oid"]}
        entry["size"] = cur["size"]
        if "checksum" not in entry:
            entry["checksum"] = self.checksum(db)
        state[db] = entry
        self._save_state(state)
        return {"db": db, "size_bytes": cur["size"], "reused": reused, "rows": entry["checksum"]["tables"],
                "checksum": entry["checksum"]["md5"]}

    def checksum(self, db):
        try:
            return harness_pg.checksum(self.pg_dir, db)
        except Fail as exc:
            raise BenchError("checksum of %s: %s" % (db, exc))
