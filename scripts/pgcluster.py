#!/usr/bin/env python
"""Throwaway PostgreSQL 15 clusters for the lifeboat.backup demo, tests and benchmark.

Python 3 standard library only.  Must run as root (PostgreSQL programs are then
run as the ``postgres`` user through ``runuser``) or directly as the user that
owns the cluster.

Commands::

  pgcluster.py start    --dir DIR [--port N] [--user NAME] [--password-env VAR | --password-file F]
  pgcluster.py stop     --dir DIR [--remove]
  pgcluster.py status   --dir DIR                  # exit 0 running, 3 not running
  pgcluster.py sql      --dir DIR [--db NAME] [-f FILE]   # else SQL on stdin
  pgcluster.py sample   --dir DIR --db NAME [--mb N]
  pgcluster.py checksum --dir DIR --db NAME

Layout of DIR: ``data/`` (PGDATA), ``sock/`` (unix socket), ``log`` (server
log), ``cluster.json`` (connection facts, also printed by start/status).

``checksum`` prints one JSON line ``{"md5": "...", "tables": {"name": rows}}``
that is identical for two databases with the same user-table contents, whatever
cluster they live in.

Expected failures print one line on stderr and exit 1.
"""

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import threading
import time

DEFAULT_BIN_DIR = "/usr/lib/postgresql/15/bin"
DEFAULT_PASSWORD_ENV = "LIFEBOAT_PG_PASSWORD"
PG_OS_USER = "postgres"
SUPERUSER = "postgres"
CONF_NAME = "lifeboat.conf"
MIB = 1024 * 1024
# sun_path is 108 bytes including the terminating NUL
MAX_SOCKET_PATH = 107


class Fail(Exception):
    """An expected error: reported as one line, exit status 1."""


# --------------------------------------------------------------------------
# small helpers


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


def as_root():
    return os.geteuid() == 0


def pg_user_ids():
    try:
        ent = pwd.getpwnam(PG_OS_USER)
    except KeyError:
        raise Fail("the %r OS user does not exist (is PostgreSQL installed?)" % PG_OS_USER)
    return ent.pw_uid, ent.pw_gid


# environment variables never passed to children (the --password-env variable is added)
SECRET_ENV = {DEFAULT_PASSWORD_ENV}


def child_env():
    """Environment for PostgreSQL programs: no PG* connection overrides, no secrets."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("PG") and k not in SECRET_ENV}
    env["PGCLIENTENCODING"] = "UTF8"
    env.setdefault("LC_ALL", "C.UTF-8")
    env["LANG"] = "C.UTF-8"
    return env


def as_pg(argv):
    """Prefix argv so it runs as the postgres OS user."""
    if as_root():
        return ["runuser", "-u", PG_OS_USER, "--"] + list(argv)
    return list(argv)


def run(argv, cwd="/", input=None, check=True, capture=True, stdin=None, env=None,
        what=None):
    """Run a command as the postgres user; return CompletedProcess."""
    try:
        proc = subprocess.run(  # the exit status is checked below
            as_pg(argv), cwd=cwd, input=input, stdin=stdin, env=env or child_env(), check=False,
            stdout=subprocess.PIPE if capture else None,
            stderr=subprocess.PIPE if capture else None,
        )
    except FileNotFoundError as exc:
        raise Fail("cannot run %s: %s" % (argv[0], exc))
    if check and proc.returncode != 0:
        err = proc.stderr.decode("utf-8", "replace").strip() if capture and proc.stderr else ""
        last = err.splitlines()[-1] if err else "exit status %d" % proc.returncode
        raise Fail("%s failed: %s" % (what or os.path.basename(argv[0]), last))
    return proc


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_free(port):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def log_size(log_path):
    try:
        return os.path.getsize(log_path)
    except OSError:
        return 0


def tail_error(log_path, offset=0):
    """Most useful line of the server log written after offset (last
    FATAL/ERROR/PANIC line, else the last line)."""
    try:
        with open(log_path, "rb") as fh:
            fh.seek(offset)
            text = fh.read().decode("utf-8", "replace")
            lines = [ln.strip() for ln in text.splitlines()[-50:] if ln.strip()]
    except OSError:
        return ""
    for ln in reversed(lines):
        if any(tag in ln for tag in ("FATAL:", "PANIC:", "ERROR:")):
            return ln
    return lines[-1] if lines else ""


def log(msg):
    print("pgcluster: " + msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# the cluster


class Cluster:
    def __init__(self, directory, bin_dir=None):
        self.dir = os.path.abspath(directory)
        self.data = os.path.join(self.dir, "data")
        self.sock = os.path.join(self.dir, "sock")
        self.log = os.path.join(self.dir, "log")
        self.json_path = os.path.join(self.dir, "cluster.json")
        self.info = self._load()
        self.bin_dir = bin_dir or self.info.get("bin_dir") or os.environ.get(
            "LIFEBOAT_PG_BIN_DIR") or DEFAULT_BIN_DIR

    def _load(self):
        try:
            with open(self.json_path, encoding="utf-8") as fh:
                data = json.load(fh)
            return data if isinstance(data, dict) else {}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise Fail("cannot read %s: %s" % (self.json_path, exc))

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
            with open(os.path.join(self.data, "postmaster.pid"), encoding="utf-8") as fh:
                return fh.read().splitlines()
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

    def running(self):
        """True if a live (not dying, not zombie) postmaster owns the data directory."""
        if not self.initialized:
            return False
        proc = run([self.bin("pg_ctl"), "status", "-D", self.data], cwd=self.cwd,
                   check=False)
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
        proc = run([self.bin("pg_isready"), "-q", "-t", "2", "-h", sock,
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

    @contextlib.contextmanager
    def lock(self):
        """Serialise start/stop on the same DIR."""
        path = os.path.join(self.dir, ".pgcluster.lock")
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise Fail("cannot create lock file %s: %s" % (path, exc))
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    # -- psql ---------------------------------------------------------------

    def conninfo(self, db):
        return "host=%s port=%d user=%s dbname=%s" % (
            quote_conninfo(self.sock), self.port, quote_conninfo(SUPERUSER),
            quote_conninfo(db))

    def psql_argv(self, db, tuples=True):
        argv = [self.bin("psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", self.conninfo(db)]
        if tuples:
            argv[3:3] = ["-A", "-t"]
        return argv

    def query(self, db, sql, what="psql"):
        """Run SQL (given on stdin) and return stdout as text."""
        proc = run(self.psql_argv(db) + ["-f", "-"], cwd=self.cwd,
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
    uid, gid = pg_user_ids() if as_root() else (os.getuid(), os.getgid())
    for name, text in ((CONF_NAME, conf), ("pg_hba.conf", hba)):
        path = os.path.join(cl.data, name)
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chown(path, uid, gid)
        os.chmod(path, 0o600)
    main_conf = os.path.join(cl.data, "postgresql.conf")
    with open(main_conf, encoding="utf-8") as fh:
        content = fh.read()
    line = "include '%s'" % CONF_NAME
    if line not in content.splitlines():
        with open(main_conf, "a", encoding="utf-8") as fh:
            fh.write("\n# lifeboat.backup pgcluster.py settings (must stay last)\n%s\n" % line)


def prepare_dir(cl):
    try:
        os.makedirs(cl.dir, exist_ok=True)
        for sub in (cl.data, cl.sock):
            os.makedirs(sub, exist_ok=True)
    except OSError as exc:
        raise Fail("cannot create %s: %s" % (cl.dir, exc))
    if as_root():
        uid, gid = pg_user_ids()
        for path in (cl.dir, cl.data, cl.sock):
            os.chown(path, uid, gid)
    os.chmod(cl.dir, 0o755)
    os.chmod(cl.data, 0o700)
    os.chmod(cl.sock, 0o755)
    probe = run(["test", "-w", cl.dir, "-a", "-x", cl.dir], check=False)
    if probe.returncode != 0:
        raise Fail("the %s user cannot write %s (check the permissions of its parent "
                   "directories)" % (PG_OS_USER, cl.dir))


def ensure_role(cl, user, password):
    sql = "\n".join([
        # keep the statement (and so the password) out of the server log
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


def cmd_start(args):
    cl = Cluster(args.dir, args.bin_dir)
    password = None
    SECRET_ENV.add(args.password_env)
    if args.user and args.password_file:
        try:
            with open(args.password_file, encoding="utf-8") as handle:
                password = handle.read().rstrip("\n")
        except OSError as exc:
            raise Fail("cannot read --password-file %s: %s" % (args.password_file, exc.strerror))
        if not password:
            raise Fail("--password-file %s is empty" % args.password_file)
    elif args.user:
        password = os.environ.get(args.password_env)
        if not password:
            raise Fail("--user %s needs a password in the environment variable %s"
                       % (args.user, args.password_env))
    if args.port is not None and not 1 <= args.port <= 65535:
        raise Fail("--port must be between 1 and 65535")
    sock_path_len = len(os.path.join(cl.sock, ".s.PGSQL.65535").encode())
    if sock_path_len > MAX_SOCKET_PATH:
        raise Fail("--dir %s is too long: the unix socket path would exceed %d bytes"
                   % (cl.dir, MAX_SOCKET_PATH))
    for prog in ("initdb", "pg_ctl", "psql", "postgres"):
        cl.bin(prog)

    if (args.port is not None and not port_free(args.port)
            and not (os.path.isdir(cl.dir) and cl.running())):
        raise Fail("port %d on 127.0.0.1 is already in use" % args.port)
    prepare_dir(cl)
    with cl.lock():
        cl.info = cl._load()
        if cl.running_and_ready():
            if not cl.info.get("port"):  # started by someone else: describe it
                cl.info = cl.make_info(int(cl.pid_file()[3]), args.user)
                save_info(cl)
            if args.port is not None and cl.info.get("port") != args.port:
                log("warning: cluster already running on port %s; --port %d ignored"
                    % (cl.info.get("port"), args.port))
            if args.user:
                ensure_role(cl, args.user, password)
                cl.info["user"] = args.user
                save_info(cl)
            print(json.dumps(cl.describe(), indent=2, sort_keys=True))
            return 0

        if not cl.initialized:
            if os.listdir(cl.data):
                raise Fail("%s is not empty but holds no cluster (no PG_VERSION)" % cl.data)
            run([cl.bin("initdb"), "-D", cl.data, "-U", SUPERUSER,
                 "--auth-local=trust", "--auth-host=scram-sha-256",
                 "-E", "UTF8", "--locale=C.UTF-8"],
                cwd=cl.dir, what="initdb")

        wait_for_dead_postmaster(cl)
        attempts = 1 if args.port is not None else 3
        for attempt in range(attempts):
            if args.port is not None:
                port = args.port
                if not port_free(port):
                    raise Fail("port %d on 127.0.0.1 is already in use" % port)
            else:
                old = cl.info.get("port")
                port = old if attempt == 0 and old and port_free(old) else free_port()
            write_config(cl, port)
            offset = log_size(cl.log)
            proc = start_server(cl)
            if proc.returncode == 0:
                break
            why = (tail_error(cl.log, offset)
                   or proc.stderr.decode("utf-8", "replace").strip())
            port_problem = "could not bind" in why or "could not create any TCP" in why
            if attempt + 1 == attempts or not port_problem:
                raise Fail("pg_ctl start failed in %s: %s" % (cl.dir, why))
            log("start on port %d failed, retrying with another port" % port)

        cl.info = cl.make_info(port, args.user or cl.info.get("user"))
        if args.user:
            ensure_role(cl, args.user, password)
        save_info(cl)
    print(json.dumps(cl.describe(), indent=2, sort_keys=True))
    return 0


def proc_state(pid):
    """State letter of a process from /proc (None if it is gone)."""
    try:
        with open("/proc/%d/stat" % pid, encoding="ascii", errors="replace") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


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
        log("removing stale postmaster.pid of zombie process %d" % pid)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(cl.data, "postmaster.pid"))


def start_server(cl):
    argv = [cl.bin("pg_ctl"), "-D", cl.data, "-l", cl.log, "-w", "-t", "60", "start"]
    offset = log_size(cl.log)
    proc = run(argv, cwd=cl.dir, check=False)
    if (proc.returncode != 0
            and "shared memory block is still in use" in tail_error(cl.log, offset)):
        # the children of a kill -9'ed postmaster take a moment to notice and exit
        for dummy in range(20):
            time.sleep(0.5)
            proc = run(argv, cwd=cl.dir, check=False)
            if proc.returncode == 0:
                break
    return proc


def save_info(cl):
    tmp = cl.json_path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(cl.info, fh, indent=2, sort_keys=True)
        fh.write("\n")
    os.chmod(tmp, 0o644)
    os.replace(tmp, cl.json_path)


def looks_like_ours(path):
    names = set(os.listdir(path))
    return bool(names & {"cluster.json", "data", "sock"}) or not names


def cmd_stop(args):
    cl = Cluster(args.dir, args.bin_dir)
    if not os.path.isdir(cl.dir):
        return 0
    if cl.initialized:
        with cl.lock():
            if cl.running():
                run([cl.bin("pg_ctl"), "-D", cl.data, "-m", "fast", "-w", "-t", "120", "stop"],
                    cwd=cl.dir, what="pg_ctl stop")
    if args.remove:
        real = os.path.realpath(cl.dir)
        if real == "/" or os.path.dirname(real) == "/" or not looks_like_ours(real):
            raise Fail("refusing to remove %s: it does not look like a pgcluster directory"
                       % cl.dir)
        shutil.rmtree(real)
    return 0


def cmd_status(args):
    cl = Cluster(args.dir, args.bin_dir)
    running = os.path.isdir(cl.dir) and cl.running()
    out = cl.describe(running)
    out.setdefault("dir", cl.dir)
    print(json.dumps(out, indent=2, sort_keys=True))
    return 0 if running else 3


# --------------------------------------------------------------------------
# sql


def cmd_sql(args):
    cl = Cluster(args.dir, args.bin_dir)
    cl.require_running()
    argv = cl.psql_argv(args.db) + ["-f", "-"]
    stdin = None
    if args.file:
        try:
            stdin = open(args.file, "rb")  # opened as the caller: postgres may not read it
        except OSError as exc:
            raise Fail("cannot read %s: %s" % (args.file, exc.strerror))
    try:
        proc = run(argv, cwd=cl.cwd, stdin=stdin, capture=False, check=False)
    finally:
        if stdin:
            stdin.close()
    return proc.returncode


# --------------------------------------------------------------------------
# sample data

GEN_SETUP_SQL = r"""
CREATE SCHEMA lifeboat_gen;
SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'pgcrypto') AS lb_pgcrypto \gset
\if :lb_pgcrypto
CREATE EXTENSION pgcrypto SCHEMA lifeboat_gen;
CREATE FUNCTION lifeboat_gen.rbytes(n int) RETURNS bytea LANGUAGE sql VOLATILE
  AS $$ SELECT lifeboat_gen.gen_random_bytes(n) $$;
\else
CREATE FUNCTION lifeboat_gen.rbytes(n int) RETURNS bytea LANGUAGE sql VOLATILE
  AS $$ SELECT substring(decode(string_agg(md5(random()::text), ''), 'hex') FROM 1 FOR n)
        FROM generate_series(1, (n + 15) / 16) $$;
\endif
-- random "words": base64 of random bytes with some symbols turned into spaces,
-- punctuation and non-ASCII letters; about 5.7 bits of entropy per character
CREATE FUNCTION lifeboat_gen.rtext(n int) RETURNS text LANGUAGE sql VOLATILE
  AS $$ SELECT translate(encode(lifeboat_gen.rbytes(least(1024, greatest(1, (n * 3) / 4))), 'base64'),
                         E'+/0123456\n7Z', repeat(' ', 10) || '.é') $$;
CREATE FUNCTION lifeboat_gen.pick(a text[]) RETURNS text LANGUAGE sql VOLATILE
  AS $$ SELECT a[1 + floor(random() * cardinality(a))::int] $$;

CREATE SEQUENCE invoice_no_seq START 100000;

CREATE TABLE customers (
    id          bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    name        text NOT NULL,
    email       text NOT NULL,
    country     char(2) NOT NULL,
    city        text,
    created_at  timestamptz NOT NULL,
    balance     numeric(12,2) NOT NULL DEFAULT 0,
    notes       text
);

CREATE TABLE products (
    id     integer PRIMARY KEY,
    sku    text NOT NULL UNIQUE,
    name   text NOT NULL,
    price  numeric(10,2) NOT NULL CHECK (price >= 0),
    active boolean NOT NULL DEFAULT true
);

CREATE TABLE orders (
    id          bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    invoice_no  bigint NOT NULL DEFAULT nextval('invoice_no_seq'),
    customer_id bigint NOT NULL,
    product_id  integer NOT NULL,
    quantity    integer NOT NULL CHECK (quantity > 0),
    amount      numeric(12,2) NOT NULL,
    status      text NOT NULL CHECK (status IN ('new', 'paid', 'shipped', 'delivered', 'cancelled')),
    ordered_at  timestamptz NOT NULL,
    shipped_at  timestamptz,
    note        text
);
ALTER SEQUENCE invoice_no_seq OWNED BY orders.invoice_no;

CREATE TABLE documents (
    id          bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    customer_id bigint,
    title       text NOT NULL,
    attrs       jsonb,
    content     bytea,
    body        text,
    created_at  timestamptz NOT NULL
);

INSERT INTO products (id, sku, name, price, active)
SELECT g,
       'SKU-' || lpad(g::text, 6, '0'),
       lifeboat_gen.pick(ARRAY['Widget', 'Gadget', 'Schraube', 'Café crème', 'Bøtte', 'Łódka',
                               'Ножницы', 'ランプ', 'Κούπα', 'Straße-Set'])
         || ' ' || substr(md5(g::text), 1, 6),
       round((1 + random() * 500)::numeric, 2),
       random() > 0.05
FROM generate_series(1, 1000) g;
"""

CUSTOMERS_SQL = r"""
INSERT INTO customers (id, name, email, country, city, created_at, balance, notes)
SELECT g,
       lifeboat_gen.pick(ARRAY['Anna', 'José', 'Zoë', 'Łukasz', 'Søren', 'Ørjan', 'Chloé',
                               'Jürgen', 'Ἀλέξανδρος', 'Дмитрий', '太郎', 'Aisha', 'Mateo', 'Nguyễn'])
         || ' ' ||
       lifeboat_gen.pick(ARRAY['Müller', 'García', 'Kowalski', 'Østergaard', 'Dubois', 'Smith',
                               'Иванов', '山田', 'Papadopoulos', 'O''Brien', 'Nakamura', 'Çelik']),
       'user' || g || '@example.' || lifeboat_gen.pick(ARRAY['com', 'org', 'de', 'fr', 'jp']),
       lifeboat_gen.pick(ARRAY['DE', 'FR', 'PL', 'DK', 'NO', 'ES', 'JP', 'GR', 'RU', 'US', 'BR']),
       CASE WHEN random() < 0.1 THEN NULL ELSE
       lifeboat_gen.pick(ARRAY['Zürich', 'Kraków', 'São Paulo', 'Århus', 'Москва', '東京',
                               'Αθήνα', 'Paris', 'Reykjavík', 'Málaga', 'Berlin']) END,
       timestamptz '2019-01-01 00:00:00+00' + random() * interval '1500 days',
       round((random() * 10000 - 2000)::numeric, 2),
       CASE WHEN random() < 0.2 THEN NULL ELSE lifeboat_gen.rtext(60 + (random() * 200)::int) END
FROM generate_series(%(lo)d, %(hi)d) g;
"""

ORDERS_SQL = r"""
INSERT INTO orders (id, customer_id, product_id, quantity, amount, status, ordered_at,
                    shipped_at, note)
SELECT g, c, 1 + floor(random() * 1000)::int, q, round((q * (1 + random() * 500))::numeric, 2),
       s, t,
       CASE WHEN s IN ('shipped', 'delivered') THEN t + random() * interval '10 days' END,
       CASE WHEN random() < 0.5 THEN NULL ELSE lifeboat_gen.rtext(20 + (random() * 120)::int) END
FROM (SELECT g,
             1 + floor(random() * %(customers)d)::bigint AS c,
             1 + floor(random() * 9)::int AS q,
             lifeboat_gen.pick(ARRAY['new', 'paid', 'shipped', 'delivered', 'delivered',
                                     'cancelled']) AS s,
             timestamptz '2020-01-01 00:00:00+00' + random() * interval '1400 days' AS t
      FROM generate_series(%(lo)d, %(hi)d) g) x;
"""

DOCUMENTS_SQL = r"""
INSERT INTO documents (id, customer_id, title, attrs, content, body, created_at)
SELECT g,
       CASE WHEN random() < 0.05 THEN NULL ELSE 1 + floor(random() * %(customers)d)::bigint END,
       lifeboat_gen.pick(ARRAY['Rechnung', 'Facture', 'Umowa', 'Отчёт', '報告書', 'Πρόταση',
                               'Kvittering', 'Invoice', 'Nota fiscal']) || ' №' || g || ' — '
         || lifeboat_gen.pick(ARRAY['Zürich', 'Kraków', 'São Paulo', 'Århus', 'Москва', '東京',
                                    'Αθήνα', 'Paris', 'Reykjavík', 'Málaga']),
       CASE WHEN random() < 0.1 THEN NULL ELSE jsonb_build_object(
           'kind', lifeboat_gen.pick(ARRAY['invoice', 'contract', 'report', 'receipt', 'scan']),
           'pages', 1 + floor(random() * 40)::int,
           'score', round(random()::numeric, 4),
           'signed', random() < 0.5,
           'tags', jsonb_build_array(lifeboat_gen.pick(ARRAY['urgent', 'archiv', 'privé', 'важно']),
                                     lifeboat_gen.pick(ARRAY['2021', '2022', '2023', 'Q4'])),
           'reviewer', CASE WHEN random() < 0.3 THEN NULL
                            ELSE lifeboat_gen.pick(ARRAY['Grüße', 'Łucja', 'Ἑλένη', '花子']) END,
           'checksum', md5(g::text)) END,
       CASE WHEN random() < 0.05 THEN NULL ELSE lifeboat_gen.rbytes(200 + (random() * 800)::int) END,
       CASE WHEN random() < 0.1 THEN NULL ELSE lifeboat_gen.rtext(200 + (random() * 700)::int) END,
       timestamptz '2020-01-01 00:00:00+00' + random() * interval '1400 days'
FROM generate_series(%(lo)d, %(hi)d) g;
"""

FINISH_SQL = r"""
SELECT setval(pg_get_serial_sequence('customers', 'id'), (SELECT coalesce(max(id), 0) + 1 FROM customers), false);
SELECT setval(pg_get_serial_sequence('orders', 'id'), (SELECT coalesce(max(id), 0) + 1 FROM orders), false);
SELECT setval(pg_get_serial_sequence('documents', 'id'), (SELECT coalesce(max(id), 0) + 1 FROM documents), false);
SET maintenance_work_mem = '256MB';
ALTER TABLE orders ADD CONSTRAINT orders_customer_fk
    FOREIGN KEY (customer_id) REFERENCES customers (id);
ALTER TABLE orders ADD CONSTRAINT orders_product_fk
    FOREIGN KEY (product_id) REFERENCES products (id);
ALTER TABLE documents ADD CONSTRAINT documents_customer_fk
    FOREIGN KEY (customer_id) REFERENCES customers (id) ON DELETE SET NULL;
CREATE UNIQUE INDEX customers_email_key ON customers (lower(email));
CREATE INDEX orders_customer_idx ON orders (customer_id);
CREATE INDEX orders_ordered_at_idx ON orders (ordered_at);
CREATE INDEX documents_kind_idx ON documents ((attrs ->> 'kind'));
CREATE VIEW customer_order_totals AS
    SELECT c.id, c.name, c.country, count(o.id) AS orders, coalesce(sum(o.amount), 0) AS total
    FROM customers c LEFT JOIN orders o ON o.customer_id = c.id
    GROUP BY c.id, c.name, c.country;
COMMENT ON TABLE documents IS 'Sample documents: jsonb, bytea, NULLs and non-ASCII text — ünïcødé ✓';
DROP SCHEMA lifeboat_gen CASCADE;
ANALYZE;
"""

# share of the requested size per table, and an initial guess of bytes per row
# (heap + toast + primary key) that is corrected after each batch
PLAN = {
    "customers": (0.10, 260, CUSTOMERS_SQL, 50000),
    "orders": (0.42, 175, ORDERS_SQL, 200000),
    "documents": (0.40, 1300, DOCUMENTS_SQL, 20000),
}


def fill_table(cl, db, table, target, customers, errors, progress_lock):
    """Insert batches into table until it reaches target bytes."""
    _share, per_row, sql, batch_max = PLAN[table]
    next_id, size = 1, 0
    try:
        while size < target * 0.995:
            rows = max(1, min(batch_max, int((target - size) / per_row) + 1))
            params = {"lo": next_id, "hi": next_id + rows - 1, "customers": customers}
            cl.query(db, sql % params, what="filling %s" % table)
            next_id += rows
            size = int(cl.query(db, "SELECT pg_total_relation_size(%s)"
                                % quote_literal(table)).strip())
            per_row = max(20.0, size / (next_id - 1))
            with progress_lock:
                log("sample %s: %s %.1f/%.1f MiB, %d rows"
                    % (db, table, size / MIB, target / MIB, next_id - 1))
    except Fail as exc:
        errors.append(exc)
    return next_id - 1


def cmd_sample(args):
    if args.mb <= 0:
        raise Fail("--mb must be positive")
    if args.db in ("postgres", "template0", "template1"):
        raise Fail("refusing to recreate the %s database; use another --db" % args.db)
    cl = Cluster(args.dir, args.bin_dir)
    cl.require_running()
    t0 = time.monotonic()
    target = args.mb * MIB
    db = args.db
    cl.query("postgres", "DROP DATABASE IF EXISTS %s WITH (FORCE);\n"
             "CREATE DATABASE %s TEMPLATE template0 ENCODING 'UTF8' LOCALE 'C.UTF-8';\n"
             % (quote_ident(db), quote_ident(db)), what="creating database %s" % db)
    cl.query(db, GEN_SETUP_SQL, what="creating sample schema")

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
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    if errors:
        raise errors[0]
    counts.update(results)
    t_load = time.monotonic() - t0
    log("sample %s: data loaded in %.1f s; adding constraints, indexes, view" % (db, t_load))
    cl.query(db, FINISH_SQL, what="finishing sample schema")
    out = cl.query(db, """SELECT pg_database_size(current_database()),
        (SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c
         JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = 'public' AND c.relkind IN ('r', 'm'))""").strip()
    db_size, user_size = (int(x) for x in out.split("|"))
    elapsed = time.monotonic() - t0
    log("sample %s: done in %.1f s, pg_database_size %.1f MiB" % (db, elapsed, db_size / MIB))
    print(json.dumps({
        "db": db,
        "requested_mb": args.mb,
        "database_size_bytes": db_size,
        "database_size_mb": round(db_size / MIB, 1),
        "user_relations_bytes": user_size,
        "seconds": round(elapsed, 2),
        "rows": counts,
    }, sort_keys=True))
    return 0


# --------------------------------------------------------------------------
# checksum

CHECKSUM_SETTINGS = """
SET TimeZone = 'UTC';
SET DateStyle = 'ISO, MDY';
SET IntervalStyle = 'postgres';
SET extra_float_digits = 1;
SET bytea_output = 'hex';
SET work_mem = '256MB';
"""


def cmd_checksum(args):
    cl = Cluster(args.dir, args.bin_dir)
    cl.require_running()
    listing = cl.query(args.db, """
        SELECT schemaname, tablename FROM pg_tables
        WHERE schemaname NOT IN ('pg_catalog', 'information_schema')
          AND schemaname NOT LIKE 'pg\\_%'
        ORDER BY schemaname COLLATE "C", tablename COLLATE "C";
    """, what="listing tables")
    tables = []
    for line in listing.splitlines():
        if line:
            schema, dummy, name = line.partition("|")
            tables.append((schema, name))
    total = hashlib.md5()
    counts = {}
    for schema, name in tables:
        rel = "%s.%s" % (quote_ident(schema), quote_ident(name))
        sql = CHECKSUM_SETTINGS + (
            "SELECT count(*), coalesce(md5(string_agg(h, '' ORDER BY h COLLATE \"C\")), '') "
            "FROM (SELECT md5(t::text) AS h FROM %s t) s;\n" % rel)
        out = cl.query(args.db, sql, what="checksumming %s" % rel).strip().splitlines()[-1]
        count, dummy, digest = out.partition("|")
        label = name if schema == "public" else "%s.%s" % (schema, name)
        counts[label] = int(count)
        total.update(("%s\t%s\t%s\n" % (label, count, digest)).encode("utf-8"))
    print(json.dumps({"md5": total.hexdigest(), "tables": counts}, sort_keys=True))
    return 0


# --------------------------------------------------------------------------
# command line


def build_parser():
    parser = argparse.ArgumentParser(
        prog="pgcluster.py",
        description="Manage throwaway PostgreSQL 15 clusters for lifeboat.backup tests.")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--dir", required=True, help="cluster directory (data/, sock/, log)")
    common.add_argument("--bin-dir", default=None,
                        help="PostgreSQL bin directory (default: $LIFEBOAT_PG_BIN_DIR or %s)"
                        % DEFAULT_BIN_DIR)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("start", parents=[common], help="create (if needed) and start a cluster")
    p.add_argument("--port", type=int, default=None, help="TCP port (default: a free one)")
    p.add_argument("--user", default=None, help="create/update a LOGIN SUPERUSER role")
    p.add_argument("--password-env", default=DEFAULT_PASSWORD_ENV, metavar="VAR",
                   help="environment variable holding the --user password (default %s)"
                   % DEFAULT_PASSWORD_ENV)
    p.add_argument("--password-file", default=None, metavar="FILE",
                   help="file holding the --user password (instead of --password-env)")
    p.set_defaults(func=cmd_start)

    p = sub.add_parser("stop", parents=[common], help="stop a cluster (fast shutdown)")
    p.add_argument("--remove", action="store_true", help="also delete DIR")
    p.set_defaults(func=cmd_stop)

    p = sub.add_parser("status", parents=[common],
                       help="print cluster.json and running; exit 0 if running, else 3")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("sql", parents=[common], help="run SQL as the postgres superuser")
    p.add_argument("--db", default="postgres", help="database (default postgres)")
    p.add_argument("-f", "--file", default=None, help="SQL file (default: stdin)")
    p.set_defaults(func=cmd_sql)

    p = sub.add_parser("sample", parents=[common], help="(re)create a database with sample data")
    p.add_argument("--db", required=True)
    p.add_argument("--mb", type=float, default=1.0,
                   help="approximate size of the sample data in MiB (default 1)")
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("checksum", parents=[common],
                       help="print {md5, tables: {name: rows}} over all user tables")
    p.add_argument("--db", required=True)
    p.set_defaults(func=cmd_checksum)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except Fail as exc:
        print("pgcluster.py %s: error: %s" % (args.command, exc), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("pgcluster.py: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:
        print("pgcluster.py %s: error: %s" % (args.command, exc), file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
