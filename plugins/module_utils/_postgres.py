# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils is PRIVATE to this collection. It may change without notice.

"""PostgreSQL: connection options, credentials handling, argv builders, parsers.

The password never enters argv: it goes into a passfile that libpq finds
through PGPASSFILE. That passfile is a memfd (an in-memory regular file, mode
0600, named ``/dev/fd/N`` and inherited by the tools that connect), so no copy
of the password is ever on disk; and its lines name the exact host (or
socket directory), port and user, so that a connection anywhere else (a
``\\connect host=elsewhere`` in a payload) is never given the password.
Connection settings travel as PG* environment variables, so that every tool
(psql, pg_dump, pg_restore) sees the same ones.
"""

from __future__ import annotations

import json
import os
import pwd
import re

from ansible_collections.lifeboat.backup.plugins.module_utils._common import (
    LifeboatError,
    SecretFile,
)
from ansible_collections.lifeboat.backup.plugins.module_utils._runner import runner_for

PG_BIN_DIRS = ["/usr/lib/postgresql/%d/bin" % v for v in range(18, 11, -1)] + ["/usr/pgsql-16/bin", "/usr/pgsql-15/bin"]

SSL_MODES = ["allow", "disable", "prefer", "require", "verify-ca", "verify-full"]

DUMP_FORMATS = {
    # format: (pg_dump -F letter, payload base name)
    "custom": ("c", "dump.pgc"),
    "directory": ("d", "dump.dir.tar"),
    "plain": ("p", "dump.sql"),
}
DUMPALL_NAME = "dumpall.sql"

# psql releases of August 2025 (CVE-2025-8714) added \restrict; a plain or pg_dumpall set is
# replayed only by a psql that has it.
RESTRICT_MINIMUM = "13.22, 14.19, 15.14, 16.10, 17.6 or 18.0"

# Queried before a dump: server version, recovery state, WAL position, timeline.
PROBE_SQL = (
    "SELECT split_part(current_setting('server_version'), ' ', 1), pg_is_in_recovery(), "
    "CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END, "
    "CASE WHEN pg_is_in_recovery() THEN NULL "
    "ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int END"
)


class PostgresError(LifeboatError):
    """A PostgreSQL tool failed for a reason worth one clear sentence."""


def connection_argument_spec():
    """Options shared by every PostgreSQL module (doc fragment lifeboat.backup._postgres)."""
    return dict(
        login_host=dict(type="str"),
        login_port=dict(type="int", default=5432, aliases=["port"]),
        login_user=dict(type="str", default="postgres"),
        login_password=dict(type="str", no_log=True),
        login_unix_socket=dict(type="str"),
        ssl_mode=dict(type="str", default="prefer", choices=SSL_MODES),
        ca_cert=dict(type="path", aliases=["ssl_rootcert"]),
        ssl_cert=dict(type="path"),
        ssl_key=dict(type="path"),
        login_db=dict(type="str", default="postgres"),
        connect_timeout=dict(type="int", default=10),
        pg_bin_dir=dict(type="path"),
    )


# Socket directories that libpq may have been built with as its default: a
# connection through the default socket is looked up as "localhost" in a passfile.
DEFAULT_SOCKET_DIRS = ("/var/run/postgresql", "/run/postgresql", "/tmp")


def _escape_passfile(value):
    """One passfile field, taken literally by libpq (``*`` escaped too: alone it would match anything)."""
    return value.replace("\\", "\\\\").replace(":", "\\:").replace("*", "\\*")


def passfile_hosts(params):
    """The host fields libpq compares with, for the server ``params`` name.

    libpq looks a TCP host up by its name as given, a socket directory by its
    path, and the default socket (no host, or libpq's built-in socket directory)
    as ``localhost``.
    """
    socket_dir = params.get("login_unix_socket")
    if socket_dir:
        hosts = [socket_dir]
        if socket_dir.rstrip("/") in DEFAULT_SOCKET_DIRS:
            hosts.append("localhost")
        return hosts
    host = params.get("login_host")
    if not host:
        return ["localhost"]
    return [part.strip() for part in host.split(",") if part.strip()] or ["localhost"]


def passfile_content(params):
    """The passfile for ``params``: one line per host field, exact port and user, any database."""
    password = params.get("login_password")
    # Without a user libpq connects as the effective OS user: so must the passfile line.
    user = params.get("login_user") or pwd.getpwuid(os.geteuid()).pw_name
    port = str(params.get("login_port") or 5432)
    for option, value in (("login_password", password), ("login_user", user),
                          ("login_host", params.get("login_host")), ("login_unix_socket", params.get("login_unix_socket"))):
        if value and ("\n" in value or "\r" in value):
            raise PostgresError("%s must not contain a line break." % option)
    return "".join("%s:%s:*:%s:%s\n" % (_escape_passfile(host), port, _escape_passfile(user), _escape_passfile(password))
                   for host in passfile_hosts(params))


class Credentials(object):
    """Holds the PG* environment for the tools; owns the passfile (a SecretFile).

    ``passfile`` is its path (``/dev/fd/N``) and ``pass_fds`` the descriptor
    that every process which connects must inherit: pipeline stages take it as
    ``Stage(..., pass_fds=creds.pass_fds)``, ``run_sql`` finds it in the environment.
    """

    def __init__(self, params, tmpdir=None):
        self.params = params
        self.tmpdir = tmpdir
        self.passfile = None
        self._secret = None

    @property
    def pass_fds(self):
        return self._secret.pass_fds if self._secret is not None else ()

    def __enter__(self):
        if self.params.get("login_password"):
            self._secret = SecretFile(passfile_content(self.params), "lifeboat-pgpass-", self.tmpdir).open()
            self.passfile = self._secret.path
        return self

    def __exit__(self, *exc_info):
        if self._secret is not None:
            self._secret.close()
            self._secret = None
        self.passfile = None
        return False

    def env(self, dbname=None):
        return connection_env(self.params, dbname=dbname, passfile=self.passfile)


def env_pass_fds(env):
    """The descriptor a PG* environment names as its passfile (``/dev/fd/N``), for the child to inherit."""
    match = re.match(r"^/dev/fd/(\d+)\Z", (env or {}).get("PGPASSFILE") or "")
    return (int(match.group(1)),) if match else ()


def connection_env(params, dbname=None, passfile=None):
    """The environment that points libpq at the server; never holds the password itself."""
    env = {
        "LANG": "C",
        "LC_ALL": "C",
        "PGAPPNAME": "lifeboat.backup",
        "PGSSLMODE": params.get("ssl_mode") or "prefer",
        "PGCONNECT_TIMEOUT": str(params.get("connect_timeout") or 10),
        # Never fall back to the invoking user's ~/.pgpass, and ignore an inherited
        # PGPASSWORD (libpq reads the passfile when PGPASSWORD is empty).
        "PGPASSFILE": passfile or os.devnull,
        "PGPASSWORD": "",
    }
    host = params.get("login_unix_socket") or params.get("login_host")
    if host:
        env["PGHOST"] = host
    if params.get("login_port"):
        env["PGPORT"] = str(params["login_port"])
    if params.get("login_user"):
        env["PGUSER"] = params["login_user"]
    if dbname:
        env["PGDATABASE"] = dbname
    for option, var in (("ca_cert", "PGSSLROOTCERT"), ("ssl_cert", "PGSSLCERT"), ("ssl_key", "PGSSLKEY")):
        if params.get(option):
            env[var] = params[option]
    return env


def run_sql(module, psql, env, db, sql, tool="psql"):
    """Run ``sql`` (read by psql from stdin, never argv) and return its unaligned output.

    The SQL is UTF-8 text (names may hold any character), so psql is told so;
    the server converts it to the database's encoding.
    """
    env = dict(env, PGCLIENTENCODING="UTF8")
    rc, out, err = runner_for(module).run(psql_query_argv(psql, db), data=sql, env=env, pass_fds=env_pass_fds(env))
    if rc != 0:
        raise PostgresError(explain_error(err, module.params, tool))
    return out


def run_json(module, psql, env, db, sql):
    """Run a query whose one result is a JSON value (names with tabs or line breaks survive); return it."""
    out = run_sql(module, psql, env, db, sql)
    lines = [line for line in out.splitlines() if line.strip()]
    if len(lines) != 1:
        raise PostgresError("Unexpected answer from PostgreSQL at %s: %r." % (where(module.params), out[:200]))
    try:
        return json.loads(lines[0])
    except ValueError:
        raise PostgresError("Unexpected answer from PostgreSQL at %s: %r." % (where(module.params), lines[0][:200]))


def check_restrict(module, psql, env, db, version=None):
    """Refuse a psql that has no ``\\restrict`` (restricted mode), which replaying a SQL set needs."""
    key = "lifeboatprobe"
    rc, out, err = runner_for(module).run(psql_query_argv(psql, db),
                                          data="\\restrict %s\n\\unrestrict %s\nSELECT 1;\n" % (key, key), env=env)
    if rc == 0:
        return
    if "restrict" in err and ("invalid command" in err or "Invalid command" in err):
        raise PostgresError(
            "%s%s has no \\restrict, which a restore of a plain or pg_dumpall set needs to keep the set's SQL from "
            "running client-side commands; use psql %s or later (pg_bin_dir)."
            % (psql, (" (%s)" % version) if version else "", RESTRICT_MINIMUM))
    raise PostgresError(explain_error(err, module.params, "psql"))


def run_probe(module, psql, env, db):
    """Connect and read the server version and WAL position; the first credential check."""
    return parse_probe(run_sql(module, psql, env, db, PROBE_SQL + ";\n"))


def database_exists(module, psql, env, maintenance_db, name):
    out = run_sql(module, psql, env, maintenance_db,
                  "SELECT count(*) FROM pg_database WHERE datname = %s;\n" % quote_literal(name))
    return out.strip() == "1"


def where(params):
    host = params.get("login_unix_socket") or params.get("login_host") or "the default socket"
    return "%s port %s" % (host, params.get("login_port") or 5432)


def quote_conninfo(value):
    """A libpq connection-string value: always quoted, so that it is a value and nothing else."""
    return "'%s'" % value.replace("\\", "\\\\").replace("'", "\\'")


def dbname_arg(name):
    """What to pass as ``-d``: libpq reads a bare ``-d`` value holding ``=`` as a whole connection
    string, so a database name always travels as ``dbname='...'``."""
    return "dbname=" + quote_conninfo(name)


def pg_dump_argv(binary, db, fmt, jobs=1, output=None, extra=None):
    """pg_dump writes uncompressed output (-Z0): compression happens in the pipeline."""
    if fmt not in DUMP_FORMATS:
        raise PostgresError("format must be one of %s, not %r." % (", ".join(DUMP_FORMATS), fmt))
    argv = [binary, "--no-password", "-F", DUMP_FORMATS[fmt][0]]
    if fmt != "plain":
        argv.append("-Z0")
    if fmt == "directory":
        if not output:
            raise PostgresError("The directory format needs an output directory.")
        argv += ["-j", str(int(jobs)), "-f", output]
    elif jobs and int(jobs) > 1:
        raise PostgresError("jobs > 1 needs format: directory (pg_dump runs in parallel only then).")
    argv += list(extra or [])
    argv += ["-d", dbname_arg(db)]
    return argv


def pg_dumpall_argv(binary, globals_only=False, extra=None, login_db=None):
    argv = [binary, "--no-password"]
    if globals_only:
        argv.append("--globals-only")
    if login_db:
        argv += ["-l", dbname_arg(login_db)]
    argv += list(extra or [])
    return argv


def pg_restore_argv(binary, db, fmt, jobs=1, path=None, no_owner=False):
    """pg_restore into ``db``; from stdin unless ``path`` (parallel restore needs a file)."""
    argv = [binary, "--no-password", "--exit-on-error", "-d", dbname_arg(db)]
    if no_owner:
        argv += ["--no-owner", "--no-privileges"]
    if jobs and int(jobs) > 1:
        if not path:
            raise PostgresError("A parallel restore (jobs > 1) needs the dump as a file or directory.")
        argv += ["-j", str(int(jobs))]
    argv += ["-F", DUMP_FORMATS[fmt][0]]
    if path:
        argv.append(path)
    return argv


def psql_argv(binary, db=None, single_transaction=False, stop_on_error=True, quiet=True):
    argv = [binary, "--no-password", "-X", "-q" if quiet else "-a"]
    argv += ["-v", "ON_ERROR_STOP=%d" % (1 if stop_on_error else 0)]
    if single_transaction:
        argv.append("--single-transaction")
    if db:
        argv += ["-d", dbname_arg(db)]
    return argv


def psql_query_argv(binary, db=None):
    """psql for a query read from stdin; unaligned, tuples only, field separator TAB."""
    argv = [binary, "--no-password", "-X", "-A", "-t", "-F", "\t", "-v", "ON_ERROR_STOP=1"]
    if db:
        argv += ["-d", dbname_arg(db)]
    return argv


def quote_ident(name):
    return '"%s"' % name.replace('"', '""')


def quote_literal(value):
    return "'%s'" % value.replace("'", "''")


def parse_tool_version(text):
    """'pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)' -> '15.18'."""
    match = re.search(r"\(PostgreSQL\)\s+(\d+(?:\.\d+)*)", text or "")
    if not match:
        raise PostgresError("Cannot read the PostgreSQL tool version from %r." % (text or "").strip()[:200])
    return match.group(1)


def parse_probe(output):
    """Parse PROBE_SQL output: one TAB-separated row."""
    lines = [line for line in (output or "").splitlines() if line.strip()]
    if not lines:
        raise PostgresError("The server returned nothing for the position query.")
    fields = lines[-1].split("\t")
    if len(fields) != 4:
        raise PostgresError("Unexpected answer to the position query: %r." % lines[-1][:200])
    version, recovery, lsn, timeline = fields
    return {
        "server_version": version,
        "in_recovery": recovery == "t",
        "lsn": lsn or None,
        "timeline": int(timeline) if timeline else None,
    }


_ERROR_PATTERNS = [
    (re.compile(r'password authentication failed for user "([^"]*)"'),
     'PostgreSQL at {where} rejected the password for user "{0}"; check login_user and login_password.'),
    (re.compile(r"no password supplied|fe_sendauth: no password"),
     "PostgreSQL at {where} asks for a password and none was given; set login_password."),
    (re.compile(r'no pg_hba\.conf entry for host "[^"]*", user "([^"]*)"'),
     'PostgreSQL at {where} does not allow user "{0}" from this host (pg_hba.conf); ask the DBA for an entry.'),
    (re.compile(r'database "([^"]*)" does not exist'),
     'Database "{0}" does not exist on PostgreSQL at {where}; check the database name.'),
    (re.compile(r'role "([^"]*)" does not exist'),
     'Role "{0}" does not exist on PostgreSQL at {where}; check login_user.'),
    (re.compile(r"Connection refused|No such file or directory\s+Is the server running|could not connect to server|"
                r"connection to server .* failed: (?:Connection refused|No such file)"),
     "Cannot connect to PostgreSQL at {where}: is the server running and the host/port/socket right?"),
    (re.compile(r"timeout expired"),
     "Connecting to PostgreSQL at {where} timed out; check the host, port and firewall."),
    (re.compile(r"permission denied for (?:table|relation|schema|sequence|database) (\S+)"),
     "User lacks the privilege to read {0} on PostgreSQL at {where}; grant it or use another login_user."),
    (re.compile(r"server version: ([\d.]+)[^;]*; (pg_dump|pg_dumpall) version: ([\d.]+)"),
     "The server runs PostgreSQL {0} but {1} is {2}; use a {1} at least as new as the server (pg_bin_dir)."),
]


_RESTORE_PATTERNS = [
    (re.compile(r'role "([^"]*)" does not exist'),
     'The set refers to role "{0}", which does not exist on PostgreSQL at {where}; create that role first '
     'or restore with no_owner: true.'),
]


def explain_error(stderr, params, tool):
    """One sentence for a failed PostgreSQL tool, from its stderr."""
    text = stderr or ""
    context = where(params)
    if tool in ("pg_restore", "psql") and "could not connect" not in text and "connection to server" not in text:
        for pattern, template in _RESTORE_PATTERNS:
            match = pattern.search(text)
            if match:
                return template.format(*match.groups(), where=context)
    for pattern, template in _ERROR_PATTERNS:
        match = pattern.search(text)
        if match:
            return template.format(*match.groups(), where=context)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    detail = lines[-1] if lines else "no error output"
    for line in lines:
        if "error:" in line.lower() or line.startswith("ERROR:") or line.startswith("FATAL:"):
            detail = line
            break
    return "%s failed against PostgreSQL at %s: %s" % (tool, context, detail)


def find_binary(module, name, bin_dir=None):
    """Locate a PostgreSQL client binary, preferring pg_bin_dir, then PATH, then the usual places."""
    if bin_dir:
        path = os.path.join(bin_dir, name)
        if os.access(path, os.X_OK):
            return path
        raise PostgresError("%s is not in pg_bin_dir %s; install the PostgreSQL client tools there." % (name, bin_dir))
    found = module.get_bin_path(name, required=False, opt_dirs=PG_BIN_DIRS)
    if not found:
        raise PostgresError(
            "%s was not found on PATH or in %s; install the PostgreSQL client package "
            "(postgresql-client) or set pg_bin_dir." % (name, ", ".join(PG_BIN_DIRS[:4]))
        )
    return found
