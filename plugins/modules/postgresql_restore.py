#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: postgresql_restore
short_description: Restore a PostgreSQL backup set into a database
version_added: 0.1.0
description:
  - Restores the newest complete set of a source, or the set O(set_id), written by
    M(lifeboat.backup.postgresql_backup).
  - Before anything touches the server, every payload file of the set is re-hashed and compared with
    the manifest; a corrupt, incomplete or unreadable set is refused. That proves the set intact, not
    who wrote it; the rest of the restore treats the set as untrusted input (see C(docs/security.md)).
  - A C(pg_dump) set is restored into a fresh scratch database which takes the name O(target_db)
    only when the restore succeeded. An existing O(target_db) is replaced only with O(clean=true), in one
    transaction that renames the old database aside and the restored copy in, so that a failure at
    any point leaves the old database as it was.
  - For V(custom) and V(directory) sets the whole database comes back as C(pg_restore --create) would
    bring it, with encoding and locale, owner, privileges, C(ALTER DATABASE ... SET) and per-role settings,
    connection limit and comment. These entries of the archive are parsed strictly and rebuilt for
    O(target_db); anything else is not run and is listed in RV(not_carried). V(plain) sets hold no
    database-level properties.
  - Plain and C(pg_dumpall) sets are SQL for C(psql). They run in psql's restricted mode (C(\restrict)
    with a fresh random key), behind a reader that refuses every psql meta-command of the set, naming it,
    before psql sees it. Such sets need a psql with C(\restrict) (13.22, 14.19, 15.14, 16.10, 17.6, 18.0
    or later).
  - A C(pg_dumpall) set is replayed with C(psql) against O(login_db), one restricted psql per database
    it connects to (the module's host, port and user; the set's database name only). Errors about objects
    that already exist (such as the bootstrap role) are reported in RV(warnings_sql), any other error fails.
    A whole-cluster set (made without C(globals_only)) is restored only into a cluster that holds no
    database but C(postgres) and the templates.
  - A scratch database left by a run that was killed is found by the next restore of the same
    O(target_db), dropped and reported in RV(removed_scratch).
  - Database names always reach the PostgreSQL tools as C(dbname='...'), never as a connection string.
  - With O(method=pitr) it restores a physical base backup (a C(pg_basebackup) set) into an empty or new
    data directory and replays archived WAL up to O(target_time), O(target_lsn), O(target_name) or the end
    of the archive (O(latest)), as C(docs/pitr.md) describes. The base backup is the newest one that ends
    before the target. A target outside the recoverable window fails, naming the window, before anything
    is written. The restored cluster is started as O(os_user) on O(cluster_port), with its sockets in
    O(socket_dir) and C(archive_mode=off), and is left running once recovery has promoted it. A failed
    restore stops it and leaves O(data_dir) as it found it (absent or empty).
author:
  - Lifeboat maintainers (@lifeboat-backup)
extends_documentation_fragment:
  - lifeboat.backup._postgres
  - lifeboat.backup._store
  - lifeboat.backup._signing.trust
attributes:
  check_mode:
    support: full
    description: Verifies the set and checks the target, changes nothing.
  diff_mode:
    support: none
    description: Nothing to diff; the result describes the sets.
  idempotent:
    support: none
    description: Every run restores again; an existing O(target_db) makes it fail unless O(clean=true).
options:
  method:
    description:
      - V(logical) restores a C(pg_dump) or C(pg_dumpall) set into a database.
      - V(pitr) restores a C(pg_basebackup) set and replays archived WAL to a point in time into a new cluster.
        The connection options, O(target_db), O(clean), O(jobs) and O(no_owner) do not apply.
    type: str
    choices: [logical, pitr]
    default: logical
  target_time:
    description:
      - With O(method=pitr), recover up to this time (inclusive), an ISO 8601 time with a zone, such as
        C(2026-12-01T04:10:00Z).
      - One of O(target_time), O(target_lsn), O(target_name) and O(latest) is required with O(method=pitr).
    type: str
  target_lsn:
    description:
      - With O(method=pitr), recover up to this WAL location (inclusive), such as C(0/3000060).
    type: str
  target_name:
    description:
      - With O(method=pitr), recover up to the restore point of this name (made with C(pg_create_restore_point)).
        The newest base backup is used unless O(set_id) names an older one.
    type: str
  latest:
    description:
      - With O(method=pitr), replay all the archived WAL (up to the first missing segment, which is warned about).
    type: bool
    default: false
  data_dir:
    description:
      - With O(method=pitr), the data directory of the restored cluster. It must be empty, or absent under an
        existing parent (then it is created). Required with O(method=pitr).
    type: path
  cluster_port:
    description:
      - With O(method=pitr), the port of the restored cluster, so that it can run beside the live one. Required
        with O(method=pitr); it must be free.
    type: int
  socket_dir:
    description:
      - With O(method=pitr), the directory of the restored cluster's Unix sockets. The module checks recovery
        through it, connecting as O(os_user) to the database C(postgres).
    type: path
    default: /var/run/postgresql
  os_user:
    description:
      - With O(method=pitr), the OS user that owns the restored data directory and runs the server.
    type: str
    default: postgres
  pg_bin_dir:
    description:
      - With O(method=pitr), the directory of C(pg_ctl) and C(psql) of the base backup's major version.
      - Defaults to C(/usr/lib/postgresql/<major>/bin) when it exists, else C(pg_ctl) on PATH.
    type: path
  wal_command_dir:
    description:
      - With O(method=pitr), the directory this collection's WAL fetch command (C(restore_command)) and its
        settings are installed into, for O(os_user). It must be empty or absent. It is removed once recovery
        has promoted, or when the restore fails.
      - The settings file (mode 0600) holds the store options and, for an encrypted archive, O(age_identity),
        for as long as recovery runs; O(age_identity_file) is named there instead, and must be readable by O(os_user).
      - Defaults to O(data_dir) followed by C(.lifeboat-wal), beside the data directory.
    type: path
  wal_command_python:
    description:
      - With O(method=pitr), the Python interpreter that runs the WAL fetch command; O(os_user) must be able to
        run it. Defaults to the interpreter this module runs under.
    type: path
  recovery_timeout:
    description:
      - With O(method=pitr), seconds to wait for recovery to reach its target and promote.
    type: int
    default: 3600
  source:
    description:
      - Source name in the store (for a C(pg_dump) set, the database name unless set otherwise at backup).
    type: str
    required: true
  set_id:
    description:
      - Set to restore. The newest complete set of O(source) when unset.
    type: str
  target_db:
    description:
      - Database to restore a C(pg_dump) set into. Required for C(pg_dump) sets.
    type: str
    aliases: [db]
  clean:
    description:
      - Replace O(target_db) if it exists. Its sessions (and any on the scratch database) are terminated
        when the new copy is swapped in.
      - O(target_db) cannot be O(login_db), the database the module connects to.
    type: bool
    default: false
  jobs:
    description:
      - Parallel C(pg_restore) workers for V(custom) and V(directory) sets. A V(custom) set is
        first decompressed into O(work_dir) when O(jobs) is above 1.
    type: int
    default: 1
  no_owner:
    description:
      - Skip ownership and privilege commands (C(pg_restore --no-owner --no-privileges)), for a
        restore as a role that is not a superuser or into a server without the original roles.
      - The database's owner, privileges and per-role settings are not carried either; its settings
        and comment are.
      - Applies to V(custom) and V(directory) sets; the SQL of a V(plain) set runs as pg_dump wrote it.
    type: bool
    default: false
  age_identity:
    description:
      - age identity (private key, C(AGE-SECRET-KEY-1...)) of an encrypted set. Keep it in Ansible Vault.
      - C(age -i) reads it from an in-memory file (a C(memfd), handed over as C(/dev/fd/N)); it is never
        written to disk and never appears in argv, results or logs.
    type: str
  age_identity_file:
    description:
      - File holding the age identity; alternative to O(age_identity).
    type: path
  work_dir:
    description:
      - Scratch directory for sets that must be unpacked before C(pg_restore) (V(directory) format,
        or V(custom) with O(jobs) above 1). Needs room for the uncompressed dump.
      - The tar of a V(directory) set is checked member by member before anything is extracted; a member
        that is not a regular file or directory with a plain relative name makes the restore fail, naming it.
      - Defaults to the module's temporary directory.
    type: path
requirements:
  - pg_restore and psql, zstd or gzip as the set needs, age for encrypted sets
  - for V(plain) and C(pg_dumpall) sets, a psql with C(\restrict) (13.22, 14.19, 15.14, 16.10, 17.6, 18.0 or later)
seealso:
  - module: lifeboat.backup.postgresql_backup
  - module: lifeboat.backup.backup_verify
"""

EXAMPLES = r"""
- name: Restore the newest set of app, backed up on db1, into app_restored
  lifeboat.backup.postgresql_restore:
    source: app
    target_db: app_restored
    login_unix_socket: /run/postgresql
    store:
      path: /var/backups/lifeboat
    host: db1

- name: Replace app with a given encrypted set, four workers
  lifeboat.backup.postgresql_restore:
    source: app
    set_id: 20261126T031500Z-full
    target_db: app
    clean: true
    jobs: 4
    age_identity: "{{ vault_lifeboat_age_identity }}"
    store:
      path: /var/backups/lifeboat
    host: db1

- name: Recover the cluster to the second before a bad DROP TABLE, beside the live one
  lifeboat.backup.postgresql_restore:
    method: pitr
    source: main
    target_time: "2026-12-01T04:09:59Z"
    data_dir: /var/lib/postgresql/15/pitr
    cluster_port: 5433
    store:
      path: /var/backups/lifeboat
    host: db1
"""

RETURN = r"""
set_id:
  description: The set restored.
  returned: always
  type: str
  sample: 20261126T031500Z-full
target_db:
  description: The database restored into (for C(pg_dump) sets).
  returned: always
  type: str
  sample: app_restored
path:
  description: Location of the set in the store.
  returned: always
  type: str
verified_files:
  description: Number of payload files whose SHA-256 matched the manifest before the restore.
  returned: always
  type: int
bytes:
  description: Stored size of the set.
  returned: always
  type: int
duration_s:
  description: Seconds the restore took, verification included.
  returned: success
  type: float
replaced:
  description: Whether an existing O(target_db) was replaced.
  returned: success
  type: bool
warnings_sql:
  description: Ignored "already exists" errors of a C(pg_dumpall) replay (the first 100).
  returned: when a pg_dumpall set was restored
  type: list
  elements: str
removed_scratch:
  description:
    - Scratch databases (and old copies) that killed runs of a restore into O(target_db) left behind,
      dropped before this restore. In check mode, those that would be dropped.
  returned: for pg_dump sets
  type: list
  elements: str
  sample: [app_lifeboat_1f2e3d4c]
database_sql:
  description: The statements that gave O(target_db) the database-level properties of the set, as run.
  returned: success, for pg_dump sets
  type: list
  elements: str
  sample: ['ALTER DATABASE "app" OWNER TO "app_owner";', 'REVOKE CONNECT,TEMPORARY ON DATABASE "app" FROM PUBLIC;']
not_carried:
  description: Database-level entries of the set that were not carried (unknown forms, or left out by O(no_owner)).
  returned: for custom and directory sets
  type: list
  elements: str
kept_old:
  description: The name the old O(target_db) was kept under because dropping it after the swap failed.
  returned: when that happened
  type: str
data_dir:
  description: With O(method=pitr), the data directory of the restored cluster.
  returned: with method pitr
  type: str
cluster_port:
  description: With O(method=pitr), the port of the restored cluster.
  returned: with method pitr
  type: int
target:
  description: With O(method=pitr), the recovery target in words.
  returned: with method pitr, once the target is known
  type: str
  sample: target time 2026-12-01T04:09:59Z
window:
  description:
    - With O(method=pitr), the recoverable window, with C(earliest) and C(latest) (C(time), C(lsn), C(set_id)),
      C(ranges) (one per base backup, with C(from_time), C(from_lsn), C(to_lsn), C(missing_wal)), C(gaps) (missing WAL
      segments since the oldest base backup) and C(segments).
  returned: with method pitr, once the store was read
  type: dict
reached:
  description:
    - With O(method=pitr), the point recovery reached, read from the promoted server. C(lsn) (the last WAL
      record replayed), C(time) (the commit time of the last transaction replayed, UTC, or null) and
      C(timeline) (the new timeline).
  returned: with method pitr, on success, not in check mode
  type: dict
  sample: {lsn: 0/3000060, time: "2026-12-01T04:09:58.123456Z", timeline: 2}
log:
  description: With O(method=pitr), the server log of the recovery, in O(data_dir).
  returned: with method pitr
  type: str
cmd:
  description: The argv of every restore stage. The age identity is passed as a file path only.
  returned: always
  type: list
  elements: list
"""

import hashlib
import json
import os
import re
import secrets
import shutil
import subprocess
import tempfile
import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.lifeboat.backup.plugins.module_utils._common import LifeboatError, plain_results
from ansible_collections.lifeboat.backup.plugins.module_utils import _archive
from ansible_collections.lifeboat.backup.plugins.module_utils import _codec
from ansible_collections.lifeboat.backup.plugins.module_utils import _jobs
from ansible_collections.lifeboat.backup.plugins.module_utils import _pgdatabase
from ansible_collections.lifeboat.backup.plugins.module_utils import _pipeline
from ansible_collections.lifeboat.backup.plugins.module_utils import _pitr
from ansible_collections.lifeboat.backup.plugins.module_utils import _postgres
from ansible_collections.lifeboat.backup.plugins.module_utils import _store_kinds
from ansible_collections.lifeboat.backup.plugins.module_utils import _psqlscript
from ansible_collections.lifeboat.backup.plugins.module_utils import _runner
from ansible_collections.lifeboat.backup.plugins.module_utils import _stores
from ansible_collections.lifeboat.backup.plugins.module_utils._runner import runner_for

MAX_IDENT = 63  # PostgreSQL cuts names at 63 bytes (NAMEDATALEN - 1)
# The server quotes names in its messages without escaping, so a role called we"ird reads
# role "we"ird" already exists: match to the end of the line.
IGNORABLE_SQL_ERROR = re.compile(r"ERROR:\s+(role|database|tablespace|schema) \".*\" already exists\s*\Z")
MARKER = "lifeboat.backup restore "
SCRATCH = "scratch"
OLD_COPY = "old copy"
SWAP_ATTEMPTS = 3
MAX_RENDER = 16 * 1024 * 1024
MAX_WARNINGS = 100


def derived_name(target, tag):
    """``target`` cut to fit ``tag`` within 63 bytes, at a character boundary, then ``tag``."""
    room = MAX_IDENT - len(tag.encode("utf-8"))
    return target.encode("utf-8")[:room].decode("utf-8", "ignore") + tag


def scratch_name(target, run):
    return derived_name(target, "_lifeboat_%s" % run)


def aside_name(target, run):
    return derived_name(target, "_lifeboat_old_%s" % run)


def marker(kind, target, run):
    """The comment that makes a database of this module recognisable to the next restore of ``target``."""
    return MARKER + kind + " " + json.dumps({"target": target, "run": run}, sort_keys=True)


def parse_marker(comment):
    """(kind, target, run) of a marker comment, or None."""
    if not isinstance(comment, str) or not comment.startswith(MARKER):
        return None
    for kind in (SCRATCH, OLD_COPY):
        prefix = MARKER + kind + " "
        if comment.startswith(prefix):
            try:
                data = json.loads(comment[len(prefix):])
            except ValueError:
                return None
            if isinstance(data, dict) and isinstance(data.get("target"), str) and isinstance(data.get("run"), str):
                return kind, data["target"], data["run"]
    return None


def lock_key(target):
    """A signed 64-bit advisory lock key for restores into ``target``."""
    digest = hashlib.sha256(b"lifeboat.backup restore\0" + target.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def q(name):
    return _postgres.quote_ident(name)


def lit(value):
    return _postgres.quote_literal(value)


class TargetLock(object):
    """A session-level advisory lock on the restore target, held by a psql for the whole restore.

    It keeps two restores of one target apart, and lets the next restore tell a
    scratch database of a dead run (its psql died with it, the lock is free) from
    one in use. The lock lives in the maintenance database.
    """

    def __init__(self, restore, target):
        self.restore = restore
        self.target = target
        self.proc = None
        self.log = None

    def __enter__(self):
        restore = self.restore
        argv = _postgres.psql_query_argv(restore.psql, restore.maintenance)
        self.log = tempfile.TemporaryFile()
        self.proc = restore.runner.popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log,
                                         env=restore.full_env(restore.maintenance))
        try:
            self.proc.stdin.write(b"SELECT pg_try_advisory_lock(%d);\n" % lock_key(self.target))
            self.proc.stdin.flush()
            answer = self.proc.stdout.readline().strip()
        except OSError:
            answer = b""
        if answer == b"t":
            return self
        self.log.seek(0)
        err = self.log.read().decode("utf-8", "replace")
        self.__exit__()
        if answer == b"f":
            raise LifeboatError('Another restore into database "%s" is running on PostgreSQL at %s; wait for it to finish.'
                                % (self.target, _postgres.where(restore.params)))
        raise LifeboatError(_postgres.explain_error(err, restore.params, "psql"))

    def __exit__(self, *exc_info):
        if self.proc is not None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
            try:
                self.proc.stdout.close()
            except OSError:
                pass
            self.proc.wait()
            self.proc = None
        if self.log is not None:
            self.log.close()
            self.log = None
        return False


class Restore(object):
    """One restore of a verified set."""

    def __init__(self, module, creds, manifest, store):
        self.module = module
        self.params = module.params
        self.creds = creds
        self.manifest = manifest
        self.store = store
        self.runner = _runner.runner_for(module)
        self.bin_dir = self.params["pg_bin_dir"]
        self.psql = _postgres.find_binary(module, "psql", self.bin_dir)
        self.maintenance = self.params["login_db"]
        self.cmd = []
        self.changed = False
        self.dumpall = manifest["method"] == "pg_dumpall"
        self.fmt = self.check_format()

    def check_format(self):
        """The set's dump format, checked before anything happens: a set's options come from the store."""
        options = self.manifest["options"]
        fmt = options.get("format", "plain" if self.dumpall else "custom")
        allowed = ("plain",) if self.dumpall else tuple(_postgres.DUMP_FORMATS)
        if not isinstance(fmt, str) or fmt not in allowed:
            raise LifeboatError("Set %s names the dump format %r, which postgresql_restore cannot restore (it knows %s)."
                                % (self.manifest["set_id"], fmt, ", ".join(allowed)))
        return fmt

    def env(self, db=None):
        return self.creds.env(db)

    def full_env(self, db=None):
        return dict(os.environ, **self.env(db))

    def sql(self, statement, db=None):
        return _postgres.run_sql(self.module, self.psql, self.env(db or self.maintenance), db or self.maintenance, statement)

    def json(self, query):
        return _postgres.run_json(self.module, self.psql, self.env(self.maintenance), self.maintenance, query)

    def check_restrict(self):
        _postgres.check_restrict(self.module, self.psql, self.env(self.maintenance), self.maintenance)

    def payload(self):
        return self.manifest["files"][0]["name"]

    def open_payload(self):
        m = self.manifest
        return self.store.open_payload(m["host"], m["source"], m["set_id"], self.payload())

    def stream(self, identity, consumer):
        """Run decode stages + ``consumer`` with the payload on stdin."""
        for stage in consumer:
            # The stage that connects reads the passfile through an inherited descriptor.
            stage.pass_fds = tuple(stage.pass_fds) + tuple(self.creds.pass_fds)
        stages = _jobs.decode_stages(self.module, self.manifest, identity) + consumer
        self.cmd.append(_pipeline.describe(stages))
        with self.open_payload() as handle:
            try:
                return _pipeline.run_from_source(stages, handle, env=self.full_env())
            except _pipeline.PipelineError as exc:
                raise LifeboatError(self.explain(exc))

    def explain(self, exc):
        better = _jobs.explain_decode_error(exc, self.manifest)
        if better:
            return better
        if exc.stage in ("pg_restore", "psql"):
            return _postgres.explain_error(exc.stderr, self.params, exc.stage)
        return str(exc)

    def read_payload(self, identity, consume):
        """Hand the decoded payload, as a binary stream, to ``consume``; return what it returns."""
        decode = _jobs.decode_stages(self.module, self.manifest, identity)
        with self.open_payload() as handle:
            if not decode:
                return consume(handle)
            try:
                return _pipeline.run_to_consumer(decode, consume, stdin=handle, env=dict(os.environ, **self.env()))
            except _pipeline.PipelineError as exc:
                raise LifeboatError(self.explain(exc))
    # ---------------------------------------------------------------- archives

    def unpack(self, identity, work):
        """Decode the payload into ``work``: a file (custom) or a directory (directory format).

        A directory-format payload is a tar from the store, which is untrusted:
        every member is checked before anything is extracted, then the members
        are extracted in Python under the same check (_archive).
        """
        m = self.manifest
        if self.fmt == "directory":
            target = os.path.join(work, "dump")
            os.mkdir(target, 0o700)
            what = "the payload %s of set %s" % (self.payload(), m["set_id"])
            decode = _jobs.decode_stages(self.module, m, identity)
            if decode:
                self.cmd.append(_pipeline.describe(decode))
            self.read_payload(identity, lambda stream: _archive.check_tar(stream, what=what))
            self.read_payload(identity, lambda stream: _archive.extract_tar(stream, target, what=what))
            return target
        decode = _jobs.decode_stages(self.module, m, identity)
        target = os.path.join(work, "dump.pgc")
        if not decode:
            with self.open_payload() as handle:
                with open(target, "wb") as sink:
                    try:
                        shutil.copyfileobj(handle, sink, 1024 * 1024)
                    except OSError as exc:
                        raise LifeboatError(_stores.describe_os_error(exc, "work_dir %s" % work))
            return target
        self.cmd.append(_pipeline.describe(decode))
        with self.open_payload() as handle:
            with open(target, "wb") as sink:
                try:
                    # A scratch copy for pg_restore -j: no write-back, no fsync.
                    _pipeline.run_to_sink(decode, sink, stdin=handle, env=self.full_env())
                except _pipeline.PipelineError as exc:
                    raise LifeboatError(self.explain(exc))
                except _pipeline.SinkError as exc:
                    raise LifeboatError(_stores.describe_os_error(exc.os_error, "work_dir %s" % work))
        return target

    def archive(self, identity, work):
        """A path pg_restore can read (unpacked if need be), or None to stream a custom archive."""
        if self.fmt == "directory":
            return self.unpack(identity, work)
        if self.params["jobs"] > 1 or not _jobs.decode_stages(self.module, self.manifest, identity):
            return self.unpack(identity, work)
        return None

    def render_entries(self, identity, archive, work):
        """The archive's database entries, as pg_restore --create renders them, parsed strictly."""
        pg_restore = _postgres.find_binary(self.module, "pg_restore", self.bin_dir)
        # A schema filter that matches nothing leaves only the entries about the database itself.
        argv = [pg_restore, "--create", "-n", "lifeboat_no_schema_%s" % secrets.token_hex(8), "-f", "-",
                "-F", _postgres.DUMP_FORMATS[self.fmt][0]]
        if archive:
            argv.append(archive)
        self.cmd.append([argv])
        with tempfile.TemporaryFile(dir=work) as out, tempfile.TemporaryFile(dir=work) as err:
            proc = self.runner.popen(argv, stdin=subprocess.PIPE if not archive else None, stdout=out, stderr=err,
                                     env=self.full_env())
            try:
                if not archive:
                    self.feed_head(identity, proc)
            finally:
                if proc.stdin:
                    try:
                        proc.stdin.close()
                    except OSError:
                        pass
                proc.wait()
            if proc.returncode != 0:
                err.seek(0)
                raise LifeboatError("pg_restore cannot read the database entries of set %s: %s"
                                    % (self.manifest["set_id"], _last_line(err.read())))
            if out.tell() > MAX_RENDER:
                raise LifeboatError("The database entries of set %s are larger than %d bytes; refusing them."
                                    % (self.manifest["set_id"], MAX_RENDER))
            out.seek(0)
            return _pgdatabase.parse(out.read())

    def feed_head(self, identity, proc):
        """Stream the decoded payload into ``proc`` until it stops reading (it needs only the archive's head)."""
        fd = proc.stdin.fileno()

        def consume(block):
            view = memoryview(block)
            try:
                while view:
                    view = view[os.write(fd, view):]
            except BrokenPipeError:
                return False
            finally:
                view.release()
            return True

        stages = _jobs.decode_stages(self.module, self.manifest, identity)
        with self.open_payload() as handle:
            try:
                _pipeline.pump(stages, handle, consume, env=self.full_env())
            except _pipeline.PipelineError as exc:
                raise LifeboatError(self.explain(exc))

    # ---------------------------------------------------------------- psql replay

    def replay(self, identity, db, work, allow_connect, single_transaction, stop_on_error):
        """Replay the set's SQL in restricted psql sessions; returns the finished Replay (close it)."""

        def argv_for(name):
            return _postgres.psql_argv(self.psql, name, single_transaction=single_transaction,
                                       stop_on_error=stop_on_error) + ["-f", "-"]

        stages = _jobs.decode_stages(self.module, self.manifest, identity)
        self.cmd.append(_pipeline.describe(stages) + [argv_for(db)])
        replay = _psqlscript.Replay(argv_for, self.full_env, db, allow_connect=allow_connect, spool_dir=work,
                                    runner=self.runner)
        try:
            with self.open_payload() as handle:
                try:
                    _pipeline.pump(stages, handle, self._feeder(replay), env=self.full_env())
                except _pipeline.PipelineError as exc:
                    raise LifeboatError(self.explain(exc))
            replay.finish()
        except _psqlscript.ReplayError as exc:
            try:
                message = self.explain_session(exc.session)
            finally:
                replay.close()
            raise LifeboatError(message)
        except BaseException:
            replay.close()
            raise
        return replay

    def _feeder(self, replay):
        def feed(block):
            try:
                replay.feed(block)
            finally:
                # A pg_dumpall replay changes the cluster as soon as its first psql runs.
                if self.dumpall and replay.started:
                    self.changed = True
        return feed

    def explain_session(self, session):
        """One sentence for a psql of the replay that failed."""
        for line, dummy, text in session.messages():
            if "backslash commands are restricted" in text:
                # The reader missed it (psql lexed the set otherwise); restricted mode refused it.
                return ("psql refused a meta-command at line %s of the set's SQL (restricted mode); a restore never "
                        "runs client-side commands from a set, so it stopped (the set may have been tampered with)."
                        % (line if line is not None else "?"))
            missing = re.search(r'role "(.*)" does not exist', text)
            if missing and not self.dumpall:
                # no_owner does not apply to the SQL of a plain set: do not point there
                sentence = ('The set refers to role "%s", which does not exist on PostgreSQL at %s; create that role '
                            "first, since a plain set's SQL runs as written" % (missing.group(1), _postgres.where(self.params)))
            else:
                sentence = _postgres.explain_error(text, self.params, "psql")
            if line is not None and line > 0:
                sentence = "%s (line %d of the set's SQL)" % (sentence.rstrip("."), line)
            return sentence.rstrip(".") + "."
        session.log.seek(0)
        return "psql on database %s stopped with exit status %s: %s" % (
            session.db, session.returncode, _last_line(session.log.read()))

    # ---------------------------------------------------------------- pg_dump sets

    def restore_database(self, identity, db, archive, work):
        """Load a pg_dump set into the (empty) database ``db``."""
        if self.fmt == "plain":
            self.replay(identity, db, work, allow_connect=False, single_transaction=True, stop_on_error=True).close()
            return
        pg_restore = _postgres.find_binary(self.module, "pg_restore", self.bin_dir)
        if archive is None:
            argv = _postgres.pg_restore_argv(pg_restore, db, self.fmt, no_owner=self.params["no_owner"])
            self.stream(identity, [_pipeline.Stage("pg_restore", argv)])
            return
        argv = _postgres.pg_restore_argv(pg_restore, db, self.fmt, self.params["jobs"], archive, self.params["no_owner"])
        self.cmd.append([argv])
        rc, dummy, err = self.runner.run(argv, env=self.full_env(db))
        if rc != 0:
            raise LifeboatError(_postgres.explain_error(err, self.params, "pg_restore"))

    def leftovers(self, target):
        """Databases that earlier restores of ``target`` left behind (a killed run): [(name, kind)]."""
        rows = self.json(
            "SELECT coalesce(json_agg(json_build_object('name', d.datname, 'comment', c.description) ORDER BY d.datname), "
            "'[]') FROM pg_database d JOIN pg_shdescription c ON c.objoid = d.oid "
            "AND c.classoid = 'pg_database'::regclass WHERE c.description LIKE %s;\n" % lit(MARKER + "%"))
        found = []
        for row in rows if isinstance(rows, list) else []:
            parsed = parse_marker(row.get("comment")) if isinstance(row, dict) else None
            if parsed and parsed[1] == target and isinstance(row.get("name"), str) and row["name"] != target:
                found.append((row["name"], parsed[0]))
        return found

    def drop(self, name):
        self.sql("DROP DATABASE IF EXISTS %s WITH (FORCE);\n" % q(name))

    def drop_quietly(self, name):
        try:
            self.drop(name)
        except Exception:  # best effort: the next restore of the target finds it by its marker
            pass

    def pick_names(self, target):
        """Scratch and aside names (63 bytes at most, checked by the server) that no database has."""
        for dummy in range(5):
            run = secrets.token_hex(4)
            scratch, aside = scratch_name(target, run), aside_name(target, run)
            facts = self.json(
                "SELECT json_build_object('taken', (SELECT coalesce(json_agg(datname), '[]') FROM pg_database "
                "WHERE datname IN (%(s)s, %(a)s)), 'fits', (%(s)s::name::text = %(s)s AND %(a)s::name::text = %(a)s "
                "AND %(t)s::name::text = %(t)s), 'template', (SELECT datistemplate FROM pg_database "
                "WHERE datname = %(t)s));\n" % dict(s=lit(scratch), a=lit(aside), t=lit(target)))
            if not facts.get("fits"):
                raise LifeboatError('PostgreSQL at %s cannot hold a scratch name for "%s" within 63 bytes in its '
                                    'encoding; restore into a shorter target_db.' % (_postgres.where(self.params), target))
            if not facts.get("taken") and scratch != target and aside != target:
                return run, scratch, aside, bool(facts.get("template"))
        raise LifeboatError('Cannot find a free scratch name for "%s" on PostgreSQL at %s.'
                            % (target, _postgres.where(self.params)))

    def create_scratch(self, scratch, target, run, entries):
        create = entries.create_sql(scratch) if entries else "CREATE DATABASE %s TEMPLATE template0;" % q(scratch)
        try:
            self.sql(create + "\n")
        except LifeboatError as exc:
            if entries and entries.create:
                raise LifeboatError("Cannot create the database with the set's encoding and locale (%s): %s"
                                    % (", ".join("%s %s" % (k.upper(), v) for k, v in entries.create), exc))
            raise
        try:
            self.sql("COMMENT ON DATABASE %s IS %s;\n" % (q(scratch), lit(marker(SCRATCH, target, run))))
        except BaseException:
            self.drop_quietly(scratch)
            raise

    def swap(self, target, scratch, aside, run, exists, template, entries):
        """Put the restored copy in place in one transaction: the old database is renamed aside and the
        copy renamed in together, or neither is. Returns the statements that carried the database's properties."""
        props = entries.sql(target, self.params["no_owner"]) if entries else []
        statements = [
            "BEGIN;",
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname IN (%s, %s) "
            "AND pid <> pg_backend_pid();" % (lit(target), lit(scratch)),
        ]
        if exists:
            statements.append("ALTER DATABASE %s RENAME TO %s;" % (q(target), q(aside)))
            if template:
                statements.append("ALTER DATABASE %s IS_TEMPLATE false;" % q(aside))
            statements.append("COMMENT ON DATABASE %s IS %s;" % (q(aside), lit(marker(OLD_COPY, target, run))))
        statements += ["ALTER DATABASE %s RENAME TO %s;" % (q(scratch), q(target)),
                       "COMMENT ON DATABASE %s IS NULL;" % q(target)]
        statements += props + ["COMMIT;"]
        script = "\n".join(statements) + "\n"
        for attempt in range(1, SWAP_ATTEMPTS + 1):
            try:
                self.sql(script)
                return props
            except LifeboatError as exc:
                busy = "being accessed by other users" in str(exc)
                if busy and attempt < SWAP_ATTEMPTS:
                    continue
                if exists:
                    raise LifeboatError('Swapping the restored copy in as "%s" failed, so the old "%s" was kept as it '
                                        'was and the restored copy dropped: %s' % (target, target, exc))
                raise LifeboatError('Renaming the restored copy to "%s" failed, so it was dropped: %s' % (target, exc))
        return props  # not reached

    def restore_dumpall(self, identity, work):
        replay = self.replay(identity, self.maintenance, work, allow_connect=True, single_transaction=False,
                             stop_on_error=False)
        try:
            ignored, fatal = [], []
            for session in replay.sessions:
                for line, kind, text in session.messages():
                    if kind == "ERROR" and IGNORABLE_SQL_ERROR.search(text):
                        if len(ignored) < MAX_WARNINGS:
                            ignored.append(text.strip())
                    else:
                        fatal.append((line, text.strip()))
        finally:
            replay.close()
        if fatal:
            line, text = fatal[0]
            where = (" at line %d of the set's SQL" % line) if line else ""
            raise LifeboatError("Replaying the pg_dumpall set hit %d error(s), the first%s: %s"
                                % (len(fatal), where, text))
        return ignored

    def check_empty_cluster(self):
        """A whole-cluster set replays over a live cluster badly (rows appended twice): refuse that."""
        if self.manifest["options"].get("globals_only"):
            return
        out = self.sql("SELECT datname FROM pg_database WHERE datname NOT IN ('template0', 'template1', 'postgres') "
                       "ORDER BY 1;\n")
        names = [line.strip() for line in out.splitlines() if line.strip()]
        if names:
            raise LifeboatError(
                "A whole-cluster pg_dumpall set restores only into an empty cluster, but this one holds %s; "
                "restore into a freshly initialised cluster." % ", ".join(names))


def _last_line(raw):
    lines = [line.strip() for line in raw.decode("utf-8", "replace").splitlines() if line.strip()]
    return lines[-1] if lines else "no error output"


def restore_pg_dump(restore, identity, work, exists, result):
    """Restore into a scratch database, then swap it in as the target."""
    target = restore.params["target_db"]
    with TargetLock(restore, target):
        removed = []
        for name, kind in restore.leftovers(target):
            restore.drop(name)
            restore.changed = True
            removed.append(name)
        result["removed_scratch"] = removed
        archive, entries = None, None
        if restore.fmt != "plain":
            archive = restore.archive(identity, work)
            entries = restore.render_entries(identity, archive, work)
            notes = entries.not_carried(restore.params["no_owner"])
            result["not_carried"] = notes
            if entries.skipped:
                restore.module.warn("Set %s holds database entries that were not carried: %s"
                                    % (restore.manifest["set_id"], "; ".join(entries.skipped)))
        run, scratch, aside, template = restore.pick_names(target)
        restore.create_scratch(scratch, target, run, entries)
        try:
            restore.restore_database(identity, scratch, archive, work)
            result["database_sql"] = restore.swap(target, scratch, aside, run, exists, template, entries)
        except BaseException:
            # Whatever went wrong (not only our own errors), the scratch copy goes.
            restore.drop_quietly(scratch)
            raise
        if exists:
            try:
                restore.drop(aside)
            except LifeboatError as exc:
                result["kept_old"] = aside
                restore.module.warn('The old copy of "%s" was kept as "%s" because dropping it failed (%s); the next '
                                    'restore of "%s" drops it, or drop it by hand.' % (target, aside, exc, target))


def run(module, result, state):
    """The whole restore; fills ``result``. Raises LifeboatError (or anything) on failure."""
    params = module.params
    started = time.monotonic()
    if params["jobs"] < 1:
        raise LifeboatError("jobs must be 1 or more, not %d." % params["jobs"])
    store = _store_kinds.open_store(params["store"])
    host = _jobs.default_host(params)
    trust = _codec.trust_from_params(params, runner_for(module))
    manifest, chain = _jobs.load_set(store, host, params["source"], params["set_id"], trust=trust)
    result.update(set_id=manifest["set_id"], bytes=manifest["bytes"], verified_files=len(manifest["files"]),
                  path=store.location(host, params["source"], manifest["set_id"]))
    if manifest["engine"] != "postgresql":
        raise LifeboatError("Set %s was made by %s, not PostgreSQL; use that engine's restore module."
                            % (manifest["set_id"], manifest["engine"]))
    dumpall = manifest["method"] == "pg_dumpall"
    target = params["target_db"]
    if not dumpall and not target:
        raise LifeboatError("target_db is required to restore a pg_dump set.")
    if not dumpall and len(target.encode("utf-8")) > MAX_IDENT:
        raise LifeboatError('target_db "%s" is %d bytes long; PostgreSQL names hold at most %d bytes.'
                            % (target, len(target.encode("utf-8")), MAX_IDENT))
    if manifest["encryption"] and not (params["age_identity"] or params["age_identity_file"]):
        raise LifeboatError("Set %s is encrypted with age; pass age_identity (from Ansible Vault) or age_identity_file."
                            % manifest["set_id"])
    with _postgres.Credentials(params, tmpdir=module.tmpdir) as creds:
        restore = state["restore"] = Restore(module, creds, manifest, store)
        exists = False
        if not dumpall:
            exists = _postgres.database_exists(module, restore.psql, creds.env(restore.maintenance),
                                               restore.maintenance, target)
            if exists and not params["clean"]:
                raise LifeboatError('Database "%s" already exists; set clean: true to replace it, or pick another target_db.'
                                    % target)
            if exists and target == restore.maintenance:
                raise LifeboatError('target_db "%s" is login_db, the database this module connects to; set login_db '
                                    'to another database (such as postgres) to replace it.' % target)
        else:
            restore.check_empty_cluster()
        if restore.fmt == "plain":
            restore.check_restrict()
        # Cheap checks above; now re-hash the whole chain before anything touches the server.
        _jobs.verify_chain(store, chain)
        if module.check_mode:
            if not dumpall:
                result["removed_scratch"] = [name for name, dummy in restore.leftovers(target)]
            result.update(changed=True, replaced=exists, duration_s=round(time.monotonic() - started, 3))
            return
        work = tempfile.mkdtemp(prefix="lifeboat-restore-", dir=params["work_dir"] or module.tmpdir)
        try:
            with _jobs.Identity(params["age_identity"], params["age_identity_file"], tmpdir=work) as identity:
                if dumpall:
                    result["warnings_sql"] = restore.restore_dumpall(identity, work)
                else:
                    restore_pg_dump(restore, identity, work, exists, result)
        finally:
            shutil.rmtree(work, ignore_errors=True)
            result["cmd"] = restore.cmd
    result.update(changed=True, replaced=exists, duration_s=round(time.monotonic() - started, 3))


def main():
    argument_spec = _postgres.connection_argument_spec()
    argument_spec.update(_jobs.store_argument_spec())
    argument_spec.update(_codec.trust_argument_spec())
    argument_spec.update(
        source=dict(type="str", required=True),
        set_id=dict(type="str"),
        target_db=dict(type="str", aliases=["db"]),
        clean=dict(type="bool", default=False),
        jobs=dict(type="int", default=1),
        no_owner=dict(type="bool", default=False),
        age_identity=dict(type="str", no_log=True),
        age_identity_file=dict(type="path"),
        work_dir=dict(type="path"),
        method=dict(type="str", default="logical", choices=["logical", "pitr"]),
    )
    argument_spec.update(_pitr.argument_spec())
    module = AnsibleModule(
        argument_spec=argument_spec,
        supports_check_mode=True,
        mutually_exclusive=[("age_identity", "age_identity_file")] + _codec.TRUST_MUTUALLY_EXCLUSIVE,
    )
    plain_results(module)
    if module.params["method"] == "pitr":
        _pitr.run_module(module)
    result = dict(changed=False, set_id=None, target_db=module.params["target_db"], cmd=[])
    state = {"restore": None}
    failure = None
    try:
        run(module, result, state)
    except LifeboatError as exc:
        failure = str(exc)
    except Exception as exc:  # one sentence, never a traceback; the scratch copy is gone already
        failure = "The restore failed unexpectedly (%s: %s)." % (type(exc).__name__, " ".join(str(exc).split()))
    if failure is not None:
        # A failed pg_dump restore leaves the server as it was (unless it removed a killed run's
        # leftovers); a pg_dumpall replay that ran has changed the cluster.
        result["changed"] = bool(state["restore"] is not None and state["restore"].changed)
        result["msg"] = failure
        module.fail_json(**result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
