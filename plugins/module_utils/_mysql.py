# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils is PRIVATE to this collection. It may change without notice.

"""MySQL and MariaDB: connection options, argv builders, parsers and the backup/restore engines.

Every connection detail, the password included, reaches the client tools in an
option file handed over as ``--defaults-extra-file=/dev/fd/N`` (an inherited
memfd, or a 0600 file that is always removed): never on argv. The differences
between MariaDB's ``mariabackup`` and Percona's ``xtrabackup`` live in TOOLS.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import shutil
import stat
import struct

from ansible_collections.lifeboat.backup.plugins.module_utils._common import LifeboatError, SecretFile
from ansible_collections.lifeboat.backup.plugins.module_utils import _jobs
from ansible_collections.lifeboat.backup.plugins.module_utils import _pipeline
from ansible_collections.lifeboat.backup.plugins.module_utils._runner import runner_for

SYSTEM_DATABASES = ("information_schema", "performance_schema", "sys", "mysql")
LOGICAL_METHODS = ("mysqldump",)
PHYSICAL_METHODS = ("mariabackup", "xtrabackup")
DUMP_PAYLOAD = "dump.sql"
STREAM_PAYLOAD = "backup.xbstream"
# Where the minimum client version for sandbox mode comes from: MariaDB 10.5.25 / 10.6.18 / 10.11.8 / 11.0.6.
SANDBOX_MINIMUM = "MariaDB client 10.5.25, 10.6.18, 10.11.8 or 11.0.6 (the first with --sandbox)"

# The one place where mariabackup and xtrabackup differ.
TOOLS = {
    "mariabackup": {"binaries": ("mariabackup", "mariadb-backup"), "extractor": ("mbstream",),
                    "package": "mariadb-backup", "apply_log_only": False},
    "xtrabackup": {"binaries": ("xtrabackup",), "extractor": ("xbstream",),
                   "package": "percona-xtrabackup", "apply_log_only": True},
}
DUMP_BINARIES = ("mariadb-dump", "mysqldump")
CLIENT_BINARIES = ("mariadb", "mysql")


class MysqlError(LifeboatError):
    """A MySQL/MariaDB tool or query failed; the message is one sentence."""


def connection_argument_spec():
    """Connection options (doc fragment lifeboat.backup._mysql); community.mysql's names."""
    return dict(
        login_host=dict(type="str"),
        login_port=dict(type="int", default=3306),
        login_user=dict(type="str"),
        login_password=dict(type="str", no_log=True),
        login_unix_socket=dict(type="str"),
        config_file=dict(type="path"),
        ca_cert=dict(type="path", aliases=["ssl_ca"]),
        client_cert=dict(type="path", aliases=["ssl_cert"]),
        client_key=dict(type="path", aliases=["ssl_key"]),
        check_hostname=dict(type="bool"),
        connect_timeout=dict(type="int", default=30),
    )


def option_value(value):
    """A value for a MySQL option file: double-quoted, with backslash escapes."""
    text = str(value)
    for old, new in (("\\", "\\\\"), ('"', '\\"'), ("\n", "\\n"), ("\r", "\\r"), ("\t", "\\t")):
        text = text.replace(old, new)
    return '"%s"' % text


def client_options(params):
    """The ``[client]`` section for these connection params (the password included), as text."""
    lines = ["[client]"]
    if params.get("login_user"):
        lines.append("user=%s" % option_value(params["login_user"]))
    if params.get("login_password") is not None:
        lines.append("password=%s" % option_value(params["login_password"]))
    if params.get("login_unix_socket"):
        lines.append("socket=%s" % option_value(params["login_unix_socket"]))
        lines.append("protocol=socket")
    elif params.get("login_host"):
        lines.append("host=%s" % option_value(params["login_host"]))
        lines.append("port=%d" % int(params.get("login_port") or 3306))
        lines.append("protocol=tcp")
    for key, option in (("ca_cert", "ssl-ca"), ("client_cert", "ssl-cert"), ("client_key", "ssl-key")):
        if params.get(key):
            lines.append("%s=%s" % (option, option_value(params[key])))
    if params.get("check_hostname") is True:
        lines.append("ssl-verify-server-cert")
    if params.get("connect_timeout"):
        # loose-: mysqldump and mariabackup do not know it and would refuse to start.
        lines.append("loose-connect-timeout=%d" % int(params["connect_timeout"]))
    return "\n".join(lines) + "\n"


class Credentials(object):
    """The connection as an option file that only the tools we start can open.

    ``defaults`` is the argv prefix every client tool takes first:
    ``[--defaults-file=CONFIG] --defaults-extra-file=/dev/fd/N``.
    """

    def __init__(self, params, tmpdir=None):
        self.params = params
        self.tmpdir = tmpdir
        self._secret = None

    @property
    def pass_fds(self):
        return self._secret.pass_fds if self._secret is not None else ()

    @property
    def defaults(self):
        return defaults_args(self.params.get("config_file"), self._secret.path if self._secret else "<options>")

    def __enter__(self):
        config = self.params.get("config_file")
        if config and not os.path.isfile(config):
            raise MysqlError("config_file %s does not exist." % config)
        self._secret = SecretFile(client_options(self.params), "lifeboat-mycnf-", self.tmpdir).open()
        return self

    def __exit__(self, *exc_info):
        if self._secret is not None:
            self._secret.close()
            self._secret = None
        return False


def defaults_args(config_file, extra_file):
    """Option-file arguments; they must come first on a MySQL tool's command line."""
    argv = []
    if config_file:
        argv.append("--defaults-file=%s" % config_file)
    argv.append("--defaults-extra-file=%s" % extra_file)
    return argv


# ---------------------------------------------------------------------------------------------- binaries

def find_one(module, names, package):
    for name in names:
        path = module.get_bin_path(name)
        if path:
            return path
    raise MysqlError("%s was not found on PATH; install the %s package." % (" or ".join(names), package))


def pick_physical(module, method):
    """``auto`` picks the backup tool that is installed (mariabackup first)."""
    if method != "auto":
        return method
    for tool in PHYSICAL_METHODS:
        if any(module.get_bin_path(name) for name in TOOLS[tool]["binaries"]):
            return tool
    raise MysqlError("Neither mariabackup nor xtrabackup was found on PATH; install mariadb-backup (MariaDB) "
                     "or percona-xtrabackup (MySQL).")


def tool_binary(module, tool):
    return find_one(module, TOOLS[tool]["binaries"], TOOLS[tool]["package"])


def extractor_binary(module, tool):
    return find_one(module, TOOLS[tool]["extractor"], TOOLS[tool]["package"])


# ---------------------------------------------------------------------------------------------- argv builders

def dump_argv(binary, defaults, databases, single_transaction=True, routines=True, events=True, triggers=True,
              binlog=True):
    """mysqldump / mariadb-dump of ``databases`` (always with CREATE DATABASE and USE) to stdout.

    With ``binlog`` the dump's header carries the exact binlog file, position
    and GTID as comments (``--master-data=2 --gtid``).
    """
    if not databases:
        raise MysqlError("No database to dump.")
    argv = [binary] + list(defaults) + ["--default-character-set=utf8mb4", "--hex-blob", "--quick",
                                        "--add-drop-table", "--create-options", "--tz-utc"]
    if single_transaction:
        argv.append("--single-transaction")
    argv.append("--routines" if routines else "--skip-routines")
    argv.append("--events" if events else "--skip-events")
    argv.append("--triggers" if triggers else "--skip-triggers")
    if binlog:
        argv += ["--master-data=2", "--gtid"]
    argv += ["--databases", "--"] + list(databases)
    return argv


def backup_argv(tool, binary, defaults, target_dir, extra_lsndir, incremental_lsn=None, parallel=1):
    """A streaming physical backup (xbstream on stdout); scratch goes to ``target_dir`` / ``extra_lsndir``."""
    argv = [binary] + list(defaults) + ["--backup", "--stream=xbstream", "--target-dir=%s" % target_dir,
                                        "--extra-lsndir=%s" % extra_lsndir]
    if parallel and int(parallel) > 1:
        argv.append("--parallel=%d" % int(parallel))
    if incremental_lsn is not None:
        argv.append("--incremental-lsn=%d" % int(incremental_lsn))
    return argv


def extract_argv(tool, binary, target_dir):
    """mbstream / xbstream: extract a stream on stdin into ``target_dir``."""
    return [binary, "-x", "-C", target_dir]


def prepare_argv(tool, binary, target_dir, incremental_dir=None, last=True):
    """Prepare the full backup in ``target_dir``, or apply ``incremental_dir`` to it.

    xtrabackup needs ``--apply-log-only`` on every prepare but the last one of a
    chain; mariabackup rejects that option (it never rolls back uncommitted
    transactions before the last step).
    """
    argv = [binary, "--prepare", "--target-dir=%s" % target_dir]
    if incremental_dir is not None:
        argv.append("--incremental-dir=%s" % incremental_dir)
    if TOOLS[tool]["apply_log_only"] and not last:
        argv.append("--apply-log-only")
    return argv


def copy_back_argv(tool, binary, target_dir, datadir, config_file=None):
    """Copy a prepared backup into ``datadir`` (the server's option file, if any, names the InnoDB paths)."""
    argv = [binary]
    argv.append("--defaults-file=%s" % config_file if config_file else "--no-defaults")
    return argv + ["--copy-back", "--target-dir=%s" % target_dir, "--datadir=%s" % datadir]


def client_argv(binary, defaults, sandbox=True, database=None, execute=None):
    """The mariadb/mysql client: ``--sandbox`` refuses every client command (``\\!``, ``\\.``, ...)."""
    argv = [binary] + list(defaults) + ["--batch", "--skip-column-names", "--default-character-set=utf8mb4"]
    if sandbox:
        argv.append("--sandbox")
    if execute is not None:
        argv += ["--execute", execute]
    if database:
        argv.append(database)
    return argv


# ---------------------------------------------------------------------------------------------- parsers

def _key_values(text, what):
    found = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if "=" not in line:
            raise MysqlError("%s has a line without '=': %r." % (what, line[:80]))
        key, value = line.split("=", 1)
        found[key.strip()] = value.strip()
    return found


def parse_checkpoints(text, what="xtrabackup_checkpoints"):
    """xtrabackup_checkpoints / mariadb_backup_checkpoints -> {backup_type, from_lsn, to_lsn, last_lsn, ...}."""
    values = _key_values(text, what)
    if "backup_type" not in values or "to_lsn" not in values:
        raise MysqlError("%s lacks backup_type or to_lsn." % what)
    result = {"backup_type": values["backup_type"]}
    for key in ("from_lsn", "to_lsn", "last_lsn", "flushed_lsn"):
        if key in values:
            if not re.match(r"^\d{1,20}\Z", values[key]):
                raise MysqlError("%s has a %s that is not a number: %r." % (what, key, values[key][:40]))
            result[key] = int(values[key])
    for key in ("compact", "recover_binlog_info"):
        if key in values:
            result[key] = values[key]
    return result


def parse_binlog_info(text):
    """xtrabackup_binlog_info -> {binlog_file, binlog_position, gtid}.

    MariaDB writes ``FILE<TAB>POS<TAB>DOMAIN-SERVER-SEQ[,...]``; Percona writes
    ``FILE<TAB>POS[<TAB>UUID:RANGES,...]``, a long GTID set wrapped over lines
    that end with a comma.
    """
    text = text.strip()
    if not text:
        return {}
    joined = re.sub(r",\s*\n\s*", ",", text)
    fields = joined.split("\t") if "\t" in joined else joined.split()
    if len(fields) < 2 or not re.match(r"^\d+\Z", fields[1].strip()):
        raise MysqlError("xtrabackup_binlog_info is not FILE, POSITION[, GTID]: %r." % text[:120])
    result = {"binlog_file": fields[0].strip(), "binlog_position": int(fields[1])}
    gtid = " ".join(f.strip() for f in fields[2:]).strip()
    if gtid:
        result["gtid"] = gtid
    return result


INFO_BINLOG_RE = re.compile(r"^binlog_pos = filename '([^']*)', position '(\d+)'(?:, GTID of the last change '([^']*)')?",
                            re.M)


def parse_info_binlog(text):
    """The ``binlog_pos`` line of xtrabackup_info (mariabackup writes no xtrabackup_binlog_info with --stream)."""
    match = INFO_BINLOG_RE.search(text)
    if not match:
        return {}
    result = {"binlog_file": match.group(1), "binlog_position": int(match.group(2))}
    if match.group(3):
        result["gtid"] = match.group(3)
    return result


DUMP_POSITION_RE = re.compile(r"^-- CHANGE MASTER TO MASTER_LOG_FILE='([^']+)', MASTER_LOG_POS=(\d+);", re.M)
DUMP_GTID_RE = re.compile(r"^-- SET GLOBAL gtid_slave_pos='([^']*)';", re.M)


def parse_dump_header(text):
    """The binlog position and GTID that ``--master-data=2 --gtid`` writes as comments at the top of a dump."""
    result = {}
    match = DUMP_POSITION_RE.search(text)
    if match:
        result["binlog_file"] = match.group(1)
        result["binlog_position"] = int(match.group(2))
    match = DUMP_GTID_RE.search(text)
    if match:
        result["gtid"] = match.group(1)
    return result


def parse_version(text):
    """'mariadb  Ver 15.1 Distrib 10.11.19-MariaDB, ...' or 'mysql  Ver 8.0.36 for Linux' -> (flavour, (x, y, z))."""
    match = re.search(r"Distrib (\d+)\.(\d+)\.(\d+)(-MariaDB)?", text) or \
        re.search(r"(\d+)\.(\d+)\.(\d+)(-MariaDB)", text) or \
        re.search(r"Ver (\d+)\.(\d+)\.(\d+)(-MariaDB)?", text)
    if not match:
        return None, None
    flavour = "mariadb" if (match.group(4) or "mariadb" in text.lower()) else "mysql"
    return flavour, tuple(int(match.group(i)) for i in (1, 2, 3))


def sandbox_supported(version):
    """Does a MariaDB client of ``version`` know --sandbox?"""
    if version is None:
        return False
    major_minor = version[:2]
    firsts = {(10, 5): 25, (10, 6): 18, (10, 11): 8, (11, 0): 6, (11, 1): 5, (11, 2): 4, (11, 4): 2}
    if major_minor in firsts:
        return version[2] >= firsts[major_minor]
    return version >= (11, 5, 0)


# ---------------------------------------------------------------------------------------------- xbstream check

XB_MAGIC = b"XBSTCK01"
XB_MAX_PATH = 4096


class StreamError(LifeboatError):
    pass


def _read_exact(handle, count, what):
    data = handle.read(count)
    if len(data) != count:
        raise StreamError("The backup stream ends inside %s." % what)
    return data


def safe_member(name):
    """A member name that stays inside the target directory: relative, no '..', no empty parts."""
    if not name or name.startswith("/") or "\\" in name or "\0" in name:
        return False
    parts = name.split("/")
    return all(part not in ("", ".", "..") for part in parts)


def check_xbstream(path):
    """Walk an xbstream file chunk by chunk; refuse unsafe member names or a malformed stream; return the names.

    Chunk: magic, flags (1), type (1: P payload, E end of file, S sparse), path
    length (4, little endian), path; payload chunks add length (8), offset (8),
    checksum (4) and, for S, a sparse map count (4) before those, and its map.
    """
    names = set()
    with open(path, "rb") as handle:
        while True:
            magic = handle.read(len(XB_MAGIC))
            if not magic:
                break
            if magic != XB_MAGIC:
                raise StreamError("The backup stream is not an xbstream (bad chunk magic at byte %d)."
                                  % (handle.tell() - len(magic)))
            flags_type = _read_exact(handle, 2, "a chunk header")
            chunk_type = flags_type[1:2]
            (path_len,) = struct.unpack("<I", _read_exact(handle, 4, "a chunk header"))
            if path_len == 0 or path_len > XB_MAX_PATH:
                raise StreamError("The backup stream has a member name of %d bytes." % path_len)
            raw = _read_exact(handle, path_len, "a member name")
            name = raw.decode("utf-8", "replace")
            if not safe_member(name):
                raise StreamError("The backup stream has an unsafe member name %r (absolute, '..' or empty "
                                  "parts); refusing to extract it." % name[:200])
            names.add(name)
            if chunk_type == b"E":
                continue
            sparse = 0
            if chunk_type == b"S":
                (sparse,) = struct.unpack("<I", _read_exact(handle, 4, "a chunk header"))
            elif chunk_type != b"P":
                raise StreamError("The backup stream has a chunk of unknown type %r." % chunk_type)
            length, dummy_offset, dummy_checksum = struct.unpack("<QQI", _read_exact(handle, 20, "a chunk header"))
            skip = length + sparse * 8
            start = handle.tell()
            handle.seek(skip, os.SEEK_CUR)
            if handle.tell() != start + skip or handle.tell() > os.fstat(handle.fileno()).st_size:
                raise StreamError("The backup stream ends inside the data of %s." % name[:200])
    if not names:
        raise StreamError("The backup stream is empty.")
    return sorted(names)


# ---------------------------------------------------------------------------------------------- errors

def explain(stderr, params, tool):
    """One sentence for a failed client tool, from its stderr."""
    text = (stderr or "").strip()
    last = text.splitlines()[-1] if text else "no output"
    where = params.get("login_unix_socket") or "%s:%s" % (params.get("login_host") or "localhost",
                                                          params.get("login_port") or 3306)
    if "Access denied" in text:
        return ("%s could not log in to %s as %s: access denied (wrong login_password or missing privilege)."
                % (tool, where, params.get("login_user") or "the default user"))
    if "Can't connect" in text or "Connection refused" in text or "Lost connection" in text:
        return "%s could not connect to the server at %s: %s" % (tool, where, last)
    if "Unknown database" in text or "Got error: 1049" in text:
        match = re.search(r"Unknown database '([^']*)'", text)
        return "%s: database %s does not exist on %s." % (tool, match.group(1) if match else "?", where)
    if "sandbox" in text.lower():
        return ("%s refused a client command in the payload (sandbox mode): %s; nothing from it ran." % (tool, last))
    return "%s failed: %s" % (tool, last)


# ---------------------------------------------------------------------------------------------- server queries

def query(module, client_bin, creds, sql, database=None):
    """Run ``sql`` (batch mode, tab separated); return rows as lists of strings."""
    argv = client_argv(client_bin, creds.defaults, sandbox=False, database=database, execute=sql)
    rc, out, err = runner_for(module).run(argv, pass_fds=creds.pass_fds)
    if rc != 0:
        raise MysqlError(explain(err, creds.params, os.path.basename(client_bin)))
    return [line.split("\t") for line in out.splitlines()]


def probe(module, client_bin, creds):
    """The server's version, datadir, binlog state and GTID position."""
    sql = "SELECT VERSION(), @@datadir, @@log_bin, IFNULL(@@global.gtid_binlog_pos, ''), @@version_comment"
    rows = query(module, client_bin, creds, sql)
    version, datadir, log_bin, gtid, comment = (rows[0] + [""] * 5)[:5]
    facts = {"server_version": version, "datadir": datadir, "log_bin": log_bin in ("1", "ON"),
             "flavour": "mariadb" if "mariadb" in (version + comment).lower() else "mysql"}
    if gtid:
        facts["gtid"] = gtid
    return facts


def list_databases(module, client_bin, creds):
    rows = query(module, client_bin, creds, "SHOW DATABASES")
    return [row[0] for row in rows if row and row[0] not in SYSTEM_DATABASES]


def quote_ident(name):
    return "`%s`" % name.replace("`", "``")


def quote_string(text):
    return "'%s'" % text.replace("\\", "\\\\").replace("'", "\\'")


# ---------------------------------------------------------------------------------------------- backup engines

# A pass-through stage that keeps the first and last 64 KiB of the dump: its header and footer carry
# the binlog position and the GTID (``--master-data=2 --gtid``).
HEADER_TEE = r"""
import os, sys
keep = 65536
head = b""
tail = b""
while True:
    block = os.read(0, 1048576)
    if not block:
        break
    if len(head) < keep:
        head += block[:keep - len(head)]
    tail = block[-keep:] if len(block) >= keep else (tail + block)[-keep:]
    view = memoryview(block)
    while view:
        view = view[os.write(1, view):]
with open(sys.argv[1], "wb") as handle:
    handle.write(head + b"\n" + tail)
"""


class _BackupHooks(object):
    """The _jobs.run_backup_module hooks both backup engines share: credentials, probe, versions."""

    client_bin = None
    tool_bin = None
    tool_name = None

    def session(self):
        return self.creds

    def probe(self, decision):
        self.facts = probe(self.module, self.client_bin, self.creds)

    def check_result(self, decision):
        return {"position": {"server_version": self.facts["server_version"]}}

    def tool_versions(self, codec):
        versions = {"server": self.facts["server_version"]}
        try:
            versions[self.tool_name] = _jobs.version_line(self.module, self.tool_bin)
        except LifeboatError:
            pass
        versions.update(codec.versions(self.module))
        self.facts["versions"] = versions
        return versions


class DumpEngine(_BackupHooks):
    """mysqldump / mariadb-dump into one payload; the dump's header gives the exact binlog position."""

    set_type = "full"
    tool_name = "mysqldump"

    def __init__(self, module, creds, dump_bin, databases, options, python, client_bin=None):
        self.module = module
        self.creds = creds
        self.dump_bin = self.tool_bin = dump_bin
        self.client_bin = client_bin
        self.databases = databases
        self.options = options
        self.python = python
        self.facts = {}
        self.header = None

    def describe(self, codec):
        return _pipeline.describe(self.stages("<workspace>", self.facts.get("log_bin", False)) + codec.stages())

    def probe(self, decision):
        _BackupHooks.probe(self, decision)
        if self.databases == ["all"]:
            self.databases = list_databases(self.module, self.client_bin, self.creds)
            if not self.databases:
                raise MysqlError("The server holds no database besides the system ones; nothing to dump.")

    def argv(self, defaults=None, binlog=True):
        return dump_argv(self.dump_bin, defaults if defaults is not None else self.creds.defaults, self.databases,
                         self.options["single_transaction"], self.options["routines"], self.options["events"],
                         self.options["triggers"], binlog=binlog)

    def stages(self, workspace, binlog=True):
        self.header = os.path.join(workspace, "header.sql")
        return [_pipeline.Stage(os.path.basename(self.dump_bin), self.argv(binlog=binlog), pass_fds=self.creds.pass_fds),
                _pipeline.Stage("header", [self.python, "-c", HEADER_TEE, self.header])]

    def produce(self, ctx):
        yield _jobs.Payload(DUMP_PAYLOAD, self.stages(ctx.workspace, self.facts.get("log_bin", False)))

    def explain(self, exc):
        if exc.stage in ("mariadb-dump", "mysqldump"):
            return MysqlError(explain(exc.stderr, self.creds.params, exc.stage))
        return None

    def record(self, ctx, manifest):
        position = {"server_version": self.facts.get("server_version"), "flavour": self.facts.get("flavour")}
        if self.header and os.path.exists(self.header):
            with open(self.header, "rb") as handle:
                position.update(parse_dump_header(handle.read().decode("utf-8", "replace")))
        manifest["position"] = position
        manifest["options"] = {"databases": list(self.databases), "payload": DUMP_PAYLOAD,
                               "single_transaction": self.options["single_transaction"],
                               "routines": self.options["routines"], "events": self.options["events"],
                               "triggers": self.options["triggers"]}
        manifest["tool_versions"] = dict(self.facts.get("versions") or {})


class PhysicalEngine(_BackupHooks):
    """mariabackup / xtrabackup --stream into one payload; the parent's to_lsn makes it incremental."""

    def __init__(self, module, creds, tool, binary, parallel=1, client_bin=None):
        self.module = module
        self.creds = creds
        self.tool = self.tool_name = tool
        self.binary = self.tool_bin = binary
        self.client_bin = client_bin
        self.parallel = parallel
        self.facts = {}
        self.lsndir = None

    def describe(self, codec):
        return [backup_argv(self.tool, self.binary, defaults_args(self.creds.params.get("config_file"), "<options>"),
                            "<workspace>/target", "<workspace>/lsn")] + _pipeline.describe(codec.stages())

    def incremental_lsn(self, ctx):
        if ctx.parent is None:
            return None
        lsn = ctx.parent.get("position", {}).get("to_lsn")
        if not isinstance(lsn, int) or isinstance(lsn, bool):
            raise MysqlError("Set %s records no to_lsn in its manifest; it cannot be the parent of an incremental "
                             "backup. Take a full backup." % ctx.parent["set_id"])
        return lsn

    def argv(self, ctx, defaults=None):
        workspace = ctx.workspace if ctx is not None else "<workspace>"
        return backup_argv(self.tool, self.binary, defaults if defaults is not None else self.creds.defaults,
                           os.path.join(workspace, "target"), os.path.join(workspace, "lsn"),
                           self.incremental_lsn(ctx) if ctx is not None else None, self.parallel)

    def prepare(self, ctx):
        # mariabackup does not create parent directories.
        for name in ("target", "lsn"):
            os.makedirs(os.path.join(ctx.workspace, name), mode=0o700, exist_ok=True)
        self.lsndir = os.path.join(ctx.workspace, "lsn")

    def produce(self, ctx):
        yield _jobs.Payload(STREAM_PAYLOAD, [_pipeline.Stage(self.tool, self.argv(ctx), pass_fds=self.creds.pass_fds)])

    def explain(self, exc):
        if exc.stage == self.tool:
            return MysqlError(explain(exc.stderr, self.creds.params, self.tool))
        return None

    def record(self, ctx, manifest):
        position = {"server_version": self.facts.get("server_version"), "flavour": self.facts.get("flavour")}
        checkpoints = None
        for name in ("xtrabackup_checkpoints", "mariadb_backup_checkpoints"):
            path = os.path.join(self.lsndir, name)
            if os.path.exists(path):
                with open(path, encoding="utf-8", errors="replace") as handle:
                    checkpoints = parse_checkpoints(handle.read(), name)
                break
        if checkpoints is None:
            raise MysqlError("%s wrote no xtrabackup_checkpoints into --extra-lsndir; the set is not usable." % self.tool)
        position.update(from_lsn=checkpoints.get("from_lsn"), to_lsn=checkpoints.get("to_lsn"),
                        last_lsn=checkpoints.get("last_lsn"), backup_type=checkpoints["backup_type"])
        for name, parser in (("xtrabackup_binlog_info", parse_binlog_info),
                             ("mariadb_backup_binlog_info", parse_binlog_info),
                             ("xtrabackup_info", parse_info_binlog), ("mariadb_backup_info", parse_info_binlog)):
            path = os.path.join(self.lsndir, name)
            if os.path.exists(path):
                with open(path, encoding="utf-8", errors="replace") as handle:
                    found = parser(handle.read())
                if found:
                    position.update(found)
                    break
        manifest["position"] = position
        manifest["options"] = {"payload": STREAM_PAYLOAD, "tool": self.tool, "parallel": self.parallel}
        manifest["tool_versions"] = dict(self.facts.get("versions") or {})


# ---------------------------------------------------------------------------------------------- physical restore

def datadir_server_pid(datadir):
    """The pid of a process whose working directory is ``datadir`` (mariadbd/mysqld chdir there), or None."""
    real = os.path.realpath(datadir)
    try:
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return None
    for pid in pids:
        try:
            if os.path.realpath(os.readlink("/proc/%s/cwd" % pid)) == real:
                return int(pid)
        except OSError:
            continue
    return None


def innodb_locked(datadir):
    """True when a live server holds InnoDB's lock on ibdata1 in ``datadir``."""
    path = os.path.join(datadir, "ibdata1")
    try:
        fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            return exc.errno in (errno.EACCES, errno.EAGAIN)
        fcntl.lockf(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def check_datadir(datadir, force):
    """Refuse a datadir a server runs on, and a non-empty one unless ``force``; return its entries."""
    if os.path.islink(datadir):
        raise MysqlError("datadir %s is a symbolic link; name the real directory." % datadir)
    if os.path.exists(datadir) and not os.path.isdir(datadir):
        raise MysqlError("datadir %s exists and is not a directory." % datadir)
    if not os.path.isdir(datadir):
        return []
    pid = datadir_server_pid(datadir)
    if pid is not None or innodb_locked(datadir):
        raise MysqlError("A server is running on datadir %s%s; stop it before restoring into it."
                         % (datadir, " (pid %d)" % pid if pid else ""))
    entries = sorted(os.listdir(datadir))
    if entries and not force:
        raise MysqlError("datadir %s is not empty (%d entries, such as %s); restore into an empty directory, or set "
                         "force: true to move its contents aside first." % (datadir, len(entries), entries[0]))
    return entries


def move_aside(datadir, entries, stamp):
    """Move the entries of ``datadir`` into a sibling directory (nothing deleted); return its path."""
    aside = "%s.lifeboat-aside-%s" % (os.path.normpath(datadir), stamp)
    os.mkdir(aside, 0o700)
    for name in entries:
        try:
            os.rename(os.path.join(datadir, name), os.path.join(aside, name))
        except OSError as exc:
            raise MysqlError("Could not move %s aside into %s (%s); nothing was restored."
                             % (os.path.join(datadir, name), aside, exc.strerror or exc))
    return aside


def chown_tree(path, uid, gid):
    os.lchown(path, uid, gid)
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            full = os.path.join(root, name)
            if not stat.S_ISLNK(os.lstat(full).st_mode):
                os.lchown(full, uid, gid)


def remove_tree(path):
    shutil.rmtree(path, ignore_errors=True)


class DumpRestore(object):
    """Import a mysqldump set with the client in sandbox mode.

    Databases of the set that exist on the server are replaced only with
    ``replace``; they are first dumped into a safety copy in the work
    directory, and put back from it if the import fails, so a failed restore
    loses nothing. Databases the import created are dropped on failure.
    """

    def __init__(self, module, creds, replace=False, work_dir=None):
        self.module = module
        self.creds = creds
        self.replace = replace
        self.work_dir = work_dir
        self.client_bin = None
        self.dump_bin = None
        self.databases = []
        self.existing = []
        self.safety_dir = None
        self.changed = False
        self.restored = []

    def preconditions(self, job):
        for member in job.chain:
            if member["method"] not in LOGICAL_METHODS:
                raise MysqlError("Set %s was written by %s, not mysqldump." % (member["set_id"], member["method"]))
        options = job.manifest.get("options") or {}
        databases = options.get("databases")
        if not isinstance(databases, list) or not databases or not all(isinstance(d, str) for d in databases):
            raise MysqlError("Set %s does not list its databases in the manifest; it was not written by "
                             "mysql_backup." % job.manifest["set_id"])
        self.payload_name(job.manifest)
        self.databases = databases
        self.client_bin = find_one(self.module, CLIENT_BINARIES, "mariadb-client")
        rc, out, err = runner_for(self.module).run([self.client_bin, "--version"])
        flavour, version = parse_version(out or err)
        if flavour != "mariadb" or not sandbox_supported(version):
            raise MysqlError("%s (%s) has no sandbox mode, so client commands in a payload could run; install "
                             "%s or newer." % (self.client_bin, (out or err).strip()[:80], SANDBOX_MINIMUM))
        present = set(list_databases(self.module, self.client_bin, self.creds))
        self.existing = [d for d in databases if d in present]
        if self.existing and not self.replace:
            raise MysqlError("Database(s) %s already exist on the server; set replace: true to replace them (a "
                             "safety copy puts them back if the restore fails)." % ", ".join(self.existing))
        if self.existing:
            self.dump_bin = find_one(self.module, DUMP_BINARIES, "mariadb-client")

    def payload_name(self, member):
        for entry in member["files"]:
            if entry["name"] == DUMP_PAYLOAD or entry["name"].startswith(DUMP_PAYLOAD + "."):
                return entry["name"]
        raise MysqlError("Set %s holds no %s payload." % (member["set_id"], DUMP_PAYLOAD))

    def client_stage(self):
        return _pipeline.Stage(os.path.basename(self.client_bin),
                               client_argv(self.client_bin, self.creds.defaults, sandbox=True),
                               pass_fds=self.creds.pass_fds)

    def _drop(self, databases):
        if databases:
            query(self.module, self.client_bin, self.creds,
                  "".join("DROP DATABASE IF EXISTS %s;" % quote_ident(d) for d in databases))

    def _safety_copy(self, job):
        self.safety_dir = _jobs.make_workspace(self.work_dir, "lifeboat-mysql-safety-")
        path = os.path.join(self.safety_dir, "before-restore.sql")
        argv = dump_argv(self.dump_bin, self.creds.defaults, self.existing, binlog=False)
        job.cmd.append(argv)
        with open(path, "wb") as sink:
            try:
                _pipeline.run_to_sink([_pipeline.Stage(os.path.basename(self.dump_bin), argv,
                                                       pass_fds=self.creds.pass_fds)], sink)
            except _pipeline.PipelineError as exc:
                raise MysqlError("The safety copy of %s failed, so nothing was replaced: %s"
                                 % (", ".join(self.existing), explain(exc.stderr, self.creds.params, exc.stage)))
            except (_pipeline.SinkError, OSError) as exc:
                raise MysqlError("The safety copy of %s could not be written to %s (%s), so nothing was replaced."
                                 % (", ".join(self.existing), path, getattr(exc, "os_error", exc)))
        return path

    def consume(self, job, member):
        name = self.payload_name(member)
        safety = self._safety_copy(job) if self.existing else None
        try:
            if self.existing:
                self.changed = True
                self._drop(self.existing)
            self.changed = True
            job.stream(member, name, [self.client_stage()])
        except LifeboatError as exc:
            reason = str(exc)
            if isinstance(exc, _pipeline.PipelineError):
                explained = _jobs.explain_decode_error(exc, member) if exc.stage == "age" else None
                reason = explained or explain(exc.stderr, self.creds.params, exc.stage or "mariadb")
            self._roll_back(safety, reason)
            raise MysqlError("Restoring set %s failed: %s The server was left as it was before." % (member["set_id"], reason))
        self.restored = list(self.databases)
        if self.safety_dir:
            remove_tree(self.safety_dir)
            self.safety_dir = None

    def _roll_back(self, safety, reason):
        try:
            self._drop(self.databases)
            if safety:
                with open(safety, "rb") as handle:
                    _pipeline.run_from_source([self.client_stage()], handle)
        except LifeboatError as exc:
            raise MysqlError("Restoring failed (%s) and putting the previous databases back failed too (%s); their "
                             "safety copy is kept in %s." % (reason, exc, safety or "nowhere"))
        self.changed = False
        if self.safety_dir:
            remove_tree(self.safety_dir)
            self.safety_dir = None

    def finalise(self, job):
        job.restored_databases = self.restored


class PhysicalRestore(object):
    """Extract, prepare (full, then each incremental or the differential) and copy back into ``datadir``."""

    def __init__(self, module, datadir, force=False, owner="mysql", config_file=None, stamp=None):
        self.module = module
        self.datadir = os.path.abspath(datadir) if datadir else None
        self.force = force
        self.owner = owner
        self.config_file = config_file
        self.stamp = stamp
        self.tool = None
        self.binary = None
        self.extractor = None
        self.entries = []
        self.base = None
        self.moved_aside = None
        self.ids = None
        self.changed = False

    def preconditions(self, job):
        tools = set()
        for member in job.chain:
            if member["method"] not in PHYSICAL_METHODS:
                raise MysqlError("Set %s was written by %s, not by mariabackup or xtrabackup; it cannot be part of "
                                 "a physical chain." % (member["set_id"], member["method"]))
            tools.add(member["method"])
        if len(tools) != 1:
            raise MysqlError("The chain of set %s mixes %s." % (job.manifest["set_id"], " and ".join(sorted(tools))))
        if not self.datadir:
            raise MysqlError("datadir is required to restore a %s set." % job.manifest["method"])
        self.tool = tools.pop()
        self.binary = tool_binary(self.module, self.tool)
        self.extractor = extractor_binary(self.module, self.tool)
        import pwd  # pylint: disable=import-outside-toplevel
        try:
            entry = pwd.getpwnam(self.owner)
        except KeyError:
            raise MysqlError("owner %s is not a user on this host; name the user the server runs as." % self.owner)
        self.ids = (entry.pw_uid, entry.pw_gid)
        if self.config_file and not os.path.isfile(self.config_file):
            raise MysqlError("config_file %s does not exist." % self.config_file)
        self.entries = check_datadir(self.datadir, self.force)

    def _run(self, job, argv, what):
        job.cmd.append(argv)
        rc, out, err = runner_for(self.module).run(argv)
        if rc != 0:
            lines = [ln for ln in (err or out).splitlines() if ln.strip()]
            raise MysqlError("%s failed (exit status %d): %s" % (what, rc, lines[-1].strip() if lines else "no output"))

    def consume(self, job, member):
        index = job.chain.index(member)
        last = index == len(job.chain) - 1
        target = os.path.join(job.workspace, "%02d-%s" % (index, member["set_id"]))
        os.mkdir(target, 0o700)
        payload = None
        for entry in member["files"]:
            if entry["name"] == STREAM_PAYLOAD or entry["name"].startswith(STREAM_PAYLOAD + "."):
                payload = entry["name"]
        if payload is None:
            raise MysqlError("Set %s holds no %s payload." % (member["set_id"], STREAM_PAYLOAD))
        stream = os.path.join(job.workspace, "stream.xb")
        try:
            job.unpack(member, payload, stream)
        except _pipeline.PipelineError as exc:
            raise MysqlError(_jobs.explain_decode_error(exc, member) or str(exc))
        try:
            check_xbstream(stream)
        except StreamError as exc:
            raise MysqlError("Set %s: %s" % (member["set_id"], exc))
        with open(stream, "rb") as handle:
            stage = _pipeline.Stage(os.path.basename(self.extractor), extract_argv(self.tool, self.extractor, target))
            job.cmd.append(stage.argv)
            try:
                _pipeline.run_from_source([stage], handle)
            except _pipeline.PipelineError as exc:
                raise MysqlError("Extracting set %s failed: %s" % (member["set_id"], exc))
        os.unlink(stream)
        if index == 0:
            self.base = target
            self._run(job, prepare_argv(self.tool, self.binary, target, last=last),
                      "Preparing full set %s" % member["set_id"])
        else:
            self._run(job, prepare_argv(self.tool, self.binary, self.base, incremental_dir=target, last=last),
                      "Applying %s set %s" % (member["type"], member["set_id"]))
            remove_tree(target)

    def finalise(self, job):
        # Re-check: a server may have started on the datadir while the chain was prepared.
        self.entries = check_datadir(self.datadir, self.force)
        if self.entries:
            self.moved_aside = move_aside(self.datadir, self.entries, self.stamp or job.manifest["set_id"])
        if not os.path.isdir(self.datadir):
            os.makedirs(self.datadir, 0o750)
        self.changed = True
        self._run(job, copy_back_argv(self.tool, self.binary, self.base, self.datadir, self.config_file),
                  "Copying set %s back into %s" % (job.manifest["set_id"], self.datadir))
        try:
            chown_tree(self.datadir, self.ids[0], self.ids[1])
        except OSError as exc:
            raise MysqlError("Could not give %s to %s: %s." % (self.datadir, self.owner, exc.strerror or exc))
