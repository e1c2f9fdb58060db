# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Throwaway PostgreSQL 15 clusters: create, start, stop, roles, sample data, checksums.

As root, the PostgreSQL programs run as the ``postgres`` OS user; anyone else
runs them as themselves and owns the cluster. Layout of a cluster directory:
``data/`` (PGDATA), ``sock/`` (unix socket), ``log`` (server log),
``cluster.json`` (the connection facts that ``start`` returns).

The functions return plain dicts (the facts); ``scripts/pgcluster.py`` prints
them as JSON. The sample data comes from the psql scripts in ``sql/``.
"""

import contextlib
import hashlib
import os
import shutil
import threading
import time

from harness.core import (
    Fail,
    as_root,
    dir_lock,
    file_size,
    free_port,
    log,
    log_error,
    port_free,
    proc_state,
    read_json,
    run,
    user_ids,
    write_json,
)

DEFAULT_BIN_DIR = "/usr/lib/postgresql/15/bin"
DEFAULT_PASSWORD_ENV = "LIFEBOAT_PG_PASSWORD"
PG_OS_USER = "postgres"
SUPERUSER = "postgres"
CONF_NAME = "lifeboat.conf"
PROG = "pgcluster"
MIB = 1024 * 1024
# sun_path is 108 bytes including the terminating NUL
MAX_SOCKET_PATH = 107
SQL_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sql")
LOG_TAGS = ("FATAL:", "PANIC:", "ERROR:")

# environment variables never passed to children (start adds its --password-env variable)
SECRET_ENV = {DEFAULT_PASSWORD_ENV}


def sql_file(name):
    """The text of ``sql/<name>``."""
    with open(os.path.join(SQL_DIR, name), encoding="utf-8") as handle:
        return handle.read()


# --------------------------------------------------------------------------
# quoting


def quote_ident(name):
    if not name or "\x00" in name:
        raise Fail("invalid SQL identifier %r" % name)
    return '"' + name.replace('"', '""') + '"'


def quote_literal(value):
    if "\x00" in value:
        raise Fail("value contains a NUL byte")
    # standard_conforming_strings is on (the default since 9.1): only quotes need doubling
    return "'" + value.replace("'", "''") + "'"


def quote_conninfo(value):
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def quote_conf(value):
    if "\n" in value or "\r" in value or "\x00" in value:
        raise Fail("configuration value contains a newline: %r" % value)
    return "'" + value.replace("'", "''") + "'"


def child_env():
    """Environment for PostgreSQL programs: no PG* connection overrides, no secrets."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("PG") and k not in SECRET_ENV}
    env["PGCLIENTENCODING"] = "UTF8"
    env.setdefault("LC_ALL", "C.UTF-8")
    env["LANG"] = "C.UTF-8"
    return env


def pg_run(argv, cwd="/", **kwargs):
    """Run a PostgreSQL program as the postgres OS user (when root)."""
    kwargs.setdefault("env", child_env())
    return run(argv, user=PG_OS_USER if as_root() else None, cwd=cwd, **kwargs)


def pg_ids():
    return user_ids(PG_OS_USER) if as_root() else (os.getuid(), os.getgid())


# --------------------------------------------------------------------------
# the cluster


class Cluster(object):
    def __init__(self, directory, bin_dir=None):
        self.dir = os.path.abspath(directory)
        self.data = os.path.join(self.dir, "data")
        self.sock = os.path.join(self.dir, "sock")
        self.log = os.path.join(self.dir, "log")
        self.json_path = os.path.join(self.dir, "cluster.json")
        self.info = read_json(self.json_path)
        self.bin_dir = bin_dir or self.info.get("bin_dir") or os.environ.get(
            "LIFEBOAT_PG_BIN_DIR") or DEFAULT_BIN_DIR

    def bin(self, name):
        path = os.path.join(self.bin_dir, name)
        if not os.access(path, os.X_OK):
            raise Fail("PostgreSQL program not found: %s" % path)
        return path

    @property
    def cwd(self):
        return self.dir if os.path.isdir(self.dir) else "/"

    @property
    def initialized(self):
        return os.path.isfile(os.path.join(self.data, "PG_VERSION"))

    @property
    def port(self):
        if "port" not in self.info:
            raise Fail("%s has no cluster.json: was it created by 'pgcluster.py start'?"
                       % self.dir)
        return int(self.info["port"])

    def pid_file(self):
        """Lines of postmaster.pid: pid, data dir, start time, port, socket dir, ..."""
        try:
            with open(os.path.join(self.data, "postmaster.pid"), encoding="utf-8") as handle:
                return handle.read().splitlines()
        except OSError:
            return []

    def postmaster_pid(self):
        try:
            return int(self.pid_file()[0].strip())
        except (IndexError, ValueError):
            return None

    def make_info(self, port, user):
        return {
            "dir": self.dir,
            "host": "127.0.0.1",
            "port": port,
            "socket_dir": self.sock,
            "data_dir": self.data,
            "bin_dir": self.bin_dir,
            "log_file": self.log,
            "user": user,
        }

    def save_info(self):
        write_json(self.json_path, self.info)

    def running(self):
        """True if a live (not dying, not zombie) postmaster owns the data directory."""
        if not self.initialized:
            return False
        proc = pg_run([self.bin("pg_ctl"), "status", "-D", self.data], cwd=self.cwd, check=False)
        if proc.returncode != 0:
            return False
        pid = self.postmaster_pid()
        if pid is None:
            return False
        if not os.path.isdir("/proc/self"):
            return True  # no procfs: trust pg_ctl
        state = proc_state(pid)
        return state is not None and state not in ("Z", "X", "x")

    def ready(self):
        """Does the running server accept connections on its socket?"""
        lines = self.pid_file()
        if len(lines) < 5 or not lines[3].strip().isdigit():
            return False
        sock = lines[4].strip() or self.sock
        proc = pg_run([self.bin("pg_isready"), "-q", "-t", "2", "-h", sock,
                       "-p", lines[3].strip(), "-U", SUPERUSER, "-d", "postgres"],
                      cwd=self.cwd, check=False)
        return proc.returncode == 0

    def running_and_ready(self, wait=15.0):
        """running(), but a postmaster that is still dying (e.g. just kill -9'ed, or
        shutting down) counts as not running once it is gone."""
        deadline = time.monotonic() + wait
        while True:
            if not self.running():
                return False
            if self.ready():
                return True
            if time.monotonic() > deadline:
                raise Fail("a postmaster owns %s but does not accept connections "
                           "(see %s)" % (self.data, self.log))
            time.sleep(0.2)

    def describe(self, running=None):
        out = dict(self.info)
        if running is not None:
            out["running"] = running
        return out

    def lock(self):
        """Serialise start/stop on the same directory."""
        return dir_lock(self.dir, ".pgcluster.lock")

    # -- psql ---------------------------------------------------------------

    def conninfo(self, db):
        return "host=%s port=%d user=%s dbname=%s" % (
            quote_conninfo(self.sock), self.port, quote_conninfo(SUPERUSER),
            quote_conninfo(db))

    def psql_argv(self, db, tuples=True, variables=None):
        argv = [self.bin("psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", self.conninfo(db)]
        if tuples:
            argv[3:3] = ["-A", "-t"]
        for name, value in sorted((variables or {}).items()):
            argv += ["-v", "%s=%s" % (name, value)]
        return argv

    def query(self, db, sql, what="psql", variables=None):
        """Run SQL (given on stdin; psql ``variables`` set with -v) and return stdout as text."""
        proc = pg_run(self.psql_argv(db, variables=variables) + ["-f", "-"], cwd=self.cwd,
                      input=sql.encode("utf-8"), what=what)
        return proc.stdout.decode("utf-8", "replace")

    def require_running(self):
        if not self.info:
            raise Fail("no cluster in %s (missing cluster.json)" % self.dir)
        if not self.running():
            raise Fail("the cluster in %s is not running" % self.dir)


# --------------------------------------------------------------------------
# start / stop / status


def write_config(cl, port):
    conf = "\n".join([
        "# written by lifeboat.backup scripts/pgcluster.py; rewritten on every start",
        "listen_addresses = '127.0.0.1'",
        "port = %d" % port,
        "unix_socket_directories = %s" % quote_conf(cl.sock),
        "shared_buffers = 32MB",
        "max_connections = 50",
        "synchronous_commit = off",
        "wal_level = replica",
        "max_wal_senders = 4",
        "max_replication_slots = 4",
        "password_encryption = 'scram-sha-256'",
        "timezone = 'UTC'",
        "log_timezone = 'UTC'",
        "",
    ])
    hba = "\n".join([
        "# written by lifeboat.backup scripts/pgcluster.py",
        "# TYPE  DATABASE     USER  ADDRESS        METHOD",
        "local   all          all                  trust",
        "local   replication  all                  trust",
        "host    all          all   127.0.0.1/32   scram-sha-256",
        "host    replication  all   127.0.0.1/32   scram-sha-256",
        "",
    ])
    uid, gid = pg_ids()
    for name, text in ((CONF_NAME, conf), ("pg_hba.conf", hba)):
        path = os.path.join(cl.data, name)
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chown(path, uid, gid)
        os.chmod(path, 0o600)
    main_conf = os.path.join(cl.data, "postgresql.conf")
    with open(main_conf, encoding="utf-8") as handle:
        content = handle.read()
    line = "include '%s'" % CONF_NAME
    if line not in content.splitlines():
        with open(main_conf, "a", encoding="utf-8") as handle:
            handle.write("\n# lifeboat.backup pgcluster.py settings (must stay last)\n%s\n" % line)


def prepare_dir(cl):
    try:
        os.makedirs(cl.dir, exist_ok=True)
        for sub in (cl.data, cl.sock):
            os.makedirs(sub, exist_ok=True)
    except OSError as exc:
        raise Fail("cannot create %s: %s" % (cl.dir, exc))
    if as_root():
        uid, gid = pg_ids()
        for path in (cl.dir, cl.data, cl.sock):
            os.chown(path, uid, gid)
    os.chmod(cl.dir, 0o755)
    os.chmod(cl.data, 0o700)
    os.chmod(cl.sock, 0o755)
    probe = pg_run(["test", "-w", cl.dir, "-a", "-x", cl.dir], check=False)
    if probe.returncode != 0:
        raise Fail("the %s user cannot write %s (check the permissions of its parent "
                   "directories)" % (PG_OS_USER, cl.dir))


def ensure_role(cl, user, password):
    """Create or update a LOGIN SUPERUSER role; the password stays out of the server log."""
    sql = "\n".join([
        "SET log_statement = 'none';",
        "SET log_min_error_statement = 'panic';",
        "SET log_min_duration_statement = -1;",
        "SET password_encryption = 'scram-sha-256';",
        "SELECT NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = %s) AS lb_create \\gset"
        % quote_literal(user),
        "\\if :lb_create",
        "CREATE ROLE %s;" % quote_ident(user),
        "\\endif",
        "ALTER ROLE %s WITH LOGIN SUPERUSER PASSWORD %s;" % (
            quote_ident(user), quote_literal(password)),
        "",
    ])
    cl.query("postgres", sql, what="creating role %s" % user)


def wait_for_dead_postmaster(cl, timeout=10.0):
    """After a crash (kill -9) the old postmaster can linger as a zombie until its
    parent (often PID 1) reaps it; postgres then refuses to start because the PID in
    postmaster.pid still exists.  Wait for it to go away; a zombie that never does
    cannot hold anything, so its stale lock file is then removed."""
    pid = cl.postmaster_pid()
    if pid is None:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = proc_state(pid)
        if state is None or state not in ("Z", "X", "x"):
            return  # gone (stale file: postgres copes) or alive (postgres reports it)
        time.sleep(0.1)
    if proc_state(pid) in ("Z", "X", "x"):
        log(PROG, "removing stale postmaster.pid of zombie process %d" % pid)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(cl.data, "postmaster.pid"))


def start_server(cl):
    argv = [cl.bin("pg_ctl"), "-D", cl.data, "-l", cl.log, "-w", "-t", "60", "start"]
    offset = file_size(cl.log)
    proc = pg_run(argv, cwd=cl.dir, check=False)
    if (proc.returncode != 0
            and "shared memory block is still in use" in log_error(cl.log, offset, LOG_TAGS)):
        # the children of a kill -9'ed postmaster take a moment to notice and exit
        for dummy in range(20):
            time.sleep(0.5)
            proc = pg_run(argv, cwd=cl.dir, check=False)
            if proc.returncode == 0:
                break
    return proc


def read_password(user, password_env=DEFAULT_PASSWORD_ENV, password_file=None):
    """The --user password from a file or from the environment (never from argv)."""
    SECRET_ENV.add(password_env)
    if not user:
        return None
    if password_file:
        try:
            with open(password_file, encoding="utf-8") as handle:
                password = handle.read().rstrip("\n")
        except OSError as exc:
            raise Fail("cannot read --password-file %s: %s" % (password_file, exc.strerror))
        if not password:
            raise Fail("--password-file %s is empty" % password_file)
        return password
    password = os.environ.get(password_env)
    if not password:
        raise Fail("--user %s needs a password in the environment variable %s" % (user, password_env))
    return password


def start(directory, port=None, user=None, password=None, bin_dir=None):
    """Create (if needed) and start a cluster; make ``user`` a LOGIN SUPERUSER with ``password``.

    Idempotent: a running cluster is reused. Returns the connection facts.
    """
    cl = Cluster(directory, bin_dir)
    if user and not password:
        raise Fail("--user %s needs a password" % user)
    if port is not None and not 1 <= port <= 65535:
        raise Fail("--port must be between 1 and 65535")
    sock_path_len = len(os.path.join(cl.sock, ".s.PGSQL.65535").encode())
    if sock_path_len > MAX_SOCKET_PATH:
        raise Fail("--dir %s is too long: the unix socket path would exceed %d bytes"
                   % (cl.dir, MAX_SOCKET_PATH))
    for prog in ("initdb", "pg_ctl", "psql", "postgres"):
        cl.bin(prog)

    if port is not None and not port_free(port) and not (os.path.isdir(cl.dir) and cl.running()):
        raise Fail("port %d on 127.0.0.1 is already in use" % port)
    prepare_dir(cl)
    with cl.lock():
        cl.info = read_json(cl.json_path)
        if cl.running_and_ready():
            if not cl.info.get("port"):  # started by someone else: describe it
                cl.info = cl.make_info(int(cl.pid_file()[3]), user)
                cl.save_info()
            if port is not None and cl.info.get("port") != port:
                log(PROG, "warning: cluster already running on port %s; --port %d ignored"
                    % (cl.info.get("port"), port))
            if user:
                ensure_role(cl, user, password)
                cl.info["user"] = user
                cl.save_info()
            return cl.describe()

        if not cl.initialized:
            if os.listdir(cl.data):
                raise Fail("%s is not empty but holds no cluster (no PG_VERSION)" % cl.data)
            pg_run([cl.bin("initdb"), "-D", cl.data, "-U", SUPERUSER,
                    "--auth-local=trust", "--auth-host=scram-sha-256",
                    "-E", "UTF8", "--locale=C.UTF-8"],
                   cwd=cl.dir, what="initdb")

        wait_for_dead_postmaster(cl)
        attempts = 1 if port is not None else 3
        for attempt in range(attempts):
            if port is not None:
                chosen = port
                if not port_free(chosen):
                    raise Fail("port %d on 127.0.0.1 is already in use" % chosen)
            else:
                old = cl.info.get("port")
                chosen = old if attempt == 0 and old and port_free(old) else free_port()
            write_config(cl, chosen)
            offset = file_size(cl.log)
            proc = start_server(cl)
            if proc.returncode == 0:
                break
            why = (log_error(cl.log, offset, LOG_TAGS)
                   or proc.stderr.decode("utf-8", "replace").strip())
            port_problem = "could not bind" in why or "could not create any TCP" in why
            if attempt + 1 == attempts or not port_problem:
                raise Fail("pg_ctl start failed in %s: %s" % (cl.dir, why))
            log(PROG, "start on port %d failed, retrying with another port" % chosen)

        cl.info = cl.make_info(chosen, user or cl.info.get("user"))
        if user:
            ensure_role(cl, user, password)
        cl.save_info()
    return cl.describe()


def looks_like_ours(path):
    names = set(os.listdir(path))
    return bool(names & {"cluster.json", "data", "sock"}) or not names


def stop(directory, remove=False, bin_dir=None):
    """Stop a cluster (fast shutdown); with ``remove``, delete its directory too."""
    cl = Cluster(directory, bin_dir)
    if not os.path.isdir(cl.dir):
        return
    if cl.initialized:
        with cl.lock():
            if cl.running():
                pg_run([cl.bin("pg_ctl"), "-D", cl.data, "-m", "fast", "-w", "-t", "120", "stop"],
                       cwd=cl.dir, what="pg_ctl stop")
    if remove:
        real = os.path.realpath(cl.dir)
        if real == "/" or os.path.dirname(real) == "/" or not looks_like_ours(real):
            raise Fail("refusing to remove %s: it does not look like a pgcluster directory"
                       % cl.dir)
        shutil.rmtree(real)


def status(directory, bin_dir=None):
    """(running, facts) of the cluster in ``directory``."""
    cl = Cluster(directory, bin_dir)
    running = os.path.isdir(cl.dir) and cl.running()
    out = cl.describe(running)
    out.setdefault("dir", cl.dir)
    return running, out


def sql(directory, db="postgres", path=None, bin_dir=None):
    """Run a SQL file (or stdin) as the postgres superuser, output passed through; the exit status."""
    cl = Cluster(directory, bin_dir)
    cl.require_running()
    argv = cl.psql_argv(db) + ["-f", "-"]
    stdin = None
    if path:
        try:
            stdin = open(path, "rb")  # pylint: disable=consider-using-with  # opened as the caller: postgres may not read it
        except OSError as exc:
            raise Fail("cannot read %s: %s" % (path, exc.strerror))
    try:
        proc = pg_run(argv, cwd=cl.cwd, stdin=stdin, capture=False, check=False)
    finally:
        if stdin:
            stdin.close()
    return proc.returncode


# --------------------------------------------------------------------------
# sample data

# share of the requested size per table, an initial guess of bytes per row
# (heap + toast + primary key) that is corrected after each batch, its psql
# script and the largest batch
PLAN = {
    "customers": (0.10, 260, "sample_customers.sql", 50000),
    "orders": (0.42, 175, "sample_orders.sql", 200000),
    "documents": (0.40, 1300, "sample_documents.sql", 20000),
}
SAMPLE_TABLES = ("customers", "orders", "documents", "products")
SAMPLE_HELPER_SCHEMA = "lifeboat_gen"


def fill_table(cl, db, table, target, customers, errors, progress_lock):
    """Insert batches into table until it reaches target bytes."""
    dummy, per_row, script, batch_max = PLAN[table]
    text = sql_file(script)
    next_id, size = 1, 0
    try:
        while size < target * 0.995:
            rows = max(1, min(batch_max, int((target - size) / per_row) + 1))
            variables = {"lo": next_id, "hi": next_id + rows - 1}
            if customers is not None:
                variables["customers"] = customers
            cl.query(db, text, what="filling %s" % table, variables=variables)
            next_id += rows
            size = int(cl.query(db, "SELECT pg_total_relation_size(%s)"
                                % quote_literal(table)).strip())
            per_row = max(20.0, size / (next_id - 1))
            with progress_lock:
                log(PROG, "sample %s: %s %.1f/%.1f MiB, %d rows"
                    % (db, table, size / MIB, target / MIB, next_id - 1))
    except Fail as exc:
        errors.append(exc)
    return next_id - 1


def sample(directory, db, mb=1.0, bin_dir=None):
    """(Re)create database ``db`` with about ``mb`` MiB of sample data; return what was made."""
    if mb <= 0:
        raise Fail("--mb must be positive")
    if db in ("postgres", "template0", "template1"):
        raise Fail("refusing to recreate the %s database; use another --db" % db)
    cl = Cluster(directory, bin_dir)
    cl.require_running()
    t0 = time.monotonic()
    target = mb * MIB
    cl.query("postgres", "DROP DATABASE IF EXISTS %s WITH (FORCE);\n"
             "CREATE DATABASE %s TEMPLATE template0 ENCODING 'UTF8' LOCALE 'C.UTF-8';\n"
             % (quote_ident(db), quote_ident(db)), what="creating database %s" % db)
    cl.query(db, sql_file("sample_schema.sql"), what="creating sample schema")

    progress_lock = threading.Lock()
    errors = []
    counts = {"products": 1000}
    counts["customers"] = fill_table(cl, db, "customers", PLAN["customers"][0] * target,
                                     None, errors, progress_lock)
    if errors:
        raise errors[0]
    customers = counts["customers"]

    results = {}

    def worker(table):
        results[table] = fill_table(cl, db, table, PLAN[table][0] * target, customers,
                                    errors, progress_lock)

    threads = [threading.Thread(target=worker, args=(t,)) for t in ("orders", "documents")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    counts.update(results)
    log(PROG, "sample %s: data loaded in %.1f s; adding constraints, indexes, view"
        % (db, time.monotonic() - t0))
    cl.query(db, sql_file("sample_finish.sql"), what="finishing sample schema")
    db_size, user_size = (int(x) for x in cl.query(db, sql_file("sizes.sql")).strip().split("|"))
    elapsed = time.monotonic() - t0
    log(PROG, "sample %s: done in %.1f s, pg_database_size %.1f MiB" % (db, elapsed, db_size / MIB))
    return {
        "db": db,
        "requested_mb": mb,
        "database_size_bytes": db_size,
        "database_size_mb": round(db_size / MIB, 1),
        "user_relations_bytes": user_size,
        "seconds": round(elapsed, 2),
        "rows": counts,
    }


def sample_complete(cl, db):
    """True when ``db`` holds a finished sample: its four tables, and no generator schema left."""
    out = cl.query(db, "SELECT (SELECT count(*) FROM pg_namespace WHERE nspname = %s), "
                   "(SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tablename IN (%s));"
                   % (quote_literal(SAMPLE_HELPER_SCHEMA), ", ".join(quote_literal(t) for t in SAMPLE_TABLES)))
    helper, tables = out.strip().split("|")
    return helper == "0" and tables == str(len(SAMPLE_TABLES))


# --------------------------------------------------------------------------
# checksum


def checksum(directory, db, bin_dir=None):
    """{md5, tables: {name: rows}} over every user table, the same for equal contents in any cluster."""
    cl = Cluster(directory, bin_dir)
    cl.require_running()
    listing = cl.query(db, sql_file("list_tables.sql"), what="listing tables")
    tables = []
    for line in listing.splitlines():
        if line:
            schema, dummy, name = line.partition("|")
            tables.append((schema, name))
    text = sql_file("checksum_table.sql")
    total = hashlib.md5()
    counts = {}
    for schema, name in tables:
        rel = "%s.%s" % (quote_ident(schema), quote_ident(name))
        out = cl.query(db, text, what="checksumming %s" % rel,
                       variables={"schema": schema, "table": name}).strip().splitlines()[-1]
        count, dummy, digest = out.partition("|")
        label = name if schema == "public" else "%s.%s" % (schema, name)
        counts[label] = int(count)
        total.update(("%s\t%s\t%s\n" % (label, count, digest)).encode("utf-8"))
    return {"md5": total.hexdigest(), "tables": counts}
