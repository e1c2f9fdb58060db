# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils is PRIVATE to this collection. It may change without notice.

"""The PostgreSQL logical restore engine, driven by _jobs.RestoreJob.

``LogicalRestore`` restores a ``pg_dump`` set into a scratch database and
swaps it in as the target, or replays a ``pg_dumpall`` set in restricted psql
sessions. Its hooks map onto the job: ``preconditions`` (the set's format,
the target, the ``\\restrict`` probe), ``check`` (what a run would drop),
``consume`` (lock, leftovers of killed runs, load into the scratch database),
``finalise`` (the swap) and ``release`` (drop the scratch copy, unlock). It
reads the payload only through the job (``stream``, ``unpack``, ``read``,
``pump``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import subprocess
import tempfile

from ansible_collections.lifeboat.backup.plugins.module_utils._common import LifeboatError
from ansible_collections.lifeboat.backup.plugins.module_utils import _archive
from ansible_collections.lifeboat.backup.plugins.module_utils import _jobs
from ansible_collections.lifeboat.backup.plugins.module_utils import _pgdatabase
from ansible_collections.lifeboat.backup.plugins.module_utils import _pipeline
from ansible_collections.lifeboat.backup.plugins.module_utils import _postgres
from ansible_collections.lifeboat.backup.plugins.module_utils import _psqlscript
from ansible_collections.lifeboat.backup.plugins.module_utils import _runner

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


class LogicalRestore(object):
    """The restore engine of a ``pg_dump`` or ``pg_dumpall`` set (one member: such sets have no parent).

    Built from the module's parameters before the set is known; ``session()``
    holds the credentials around the job's run. ``changed`` tells whether the
    server was changed, for a failed run too. ``result(job)`` gives the keys
    postgresql_restore adds to the job's result.
    """

    def __init__(self, module):
        self.module = module
        self.params = module.params
        self.runner = _runner.runner_for(module)
        self.bin_dir = self.params["pg_bin_dir"]
        self.maintenance = self.params["login_db"]
        self.target = self.params["target_db"]
        self.creds = None
        self.job = None
        self.manifest = None
        self.member = None
        self.psql = None
        self.dumpall = False
        self.fmt = None
        self.changed = False
        self.exists = False
        self.extras = {}
        # the pg_dump path: what consume leaves for finalise and release
        self.lock = None
        self.names = None
        self.entries = None
        self.scratch = None

    @contextlib.contextmanager
    def session(self):
        with _postgres.Credentials(self.params, tmpdir=self.module.tmpdir) as creds:
            self.creds = creds
            try:
                yield self
            finally:
                self.creds = None

    def result(self, job):
        return dict(self.extras, target_db=self.target)

    # ---------------------------------------------------------------- job hooks

    def preconditions(self, job):
        """Cheap checks before the chain is hashed: the set, its format, the target, psql's restricted mode."""
        if self.params["jobs"] < 1:
            raise LifeboatError("jobs must be 1 or more, not %d." % self.params["jobs"])
        self.job = job
        self.manifest = manifest = job.manifest
        self.member = job.chain[-1]
        if manifest["engine"] != "postgresql":
            raise LifeboatError("Set %s was made by %s, not PostgreSQL; use that engine's restore module."
                                % (manifest["set_id"], manifest["engine"]))
        self.dumpall = manifest["method"] == "pg_dumpall"
        target = self.target
        if not self.dumpall and not target:
            raise LifeboatError("target_db is required to restore a pg_dump set.")
        if not self.dumpall and len(target.encode("utf-8")) > MAX_IDENT:
            raise LifeboatError('target_db "%s" is %d bytes long; PostgreSQL names hold at most %d bytes.'
                                % (target, len(target.encode("utf-8")), MAX_IDENT))
        self.psql = _postgres.find_binary(self.module, "psql", self.bin_dir)
        self.fmt = self.check_format()
        if not self.dumpall:
            self.exists = _postgres.database_exists(self.module, self.psql, self.env(self.maintenance),
                                                    self.maintenance, target)
            if self.exists and not self.params["clean"]:
                raise LifeboatError('Database "%s" already exists; set clean: true to replace it, or pick another '
                                    'target_db.' % target)
            if self.exists and target == self.maintenance:
                raise LifeboatError('target_db "%s" is login_db, the database this module connects to; set login_db '
                                    'to another database (such as postgres) to replace it.' % target)
        else:
            self.check_empty_cluster()
        if self.fmt == "plain":
            self.check_restrict()

    def check(self, job):
        """Check mode: the leftovers a real run would drop."""
        if not self.dumpall:
            self.extras["removed_scratch"] = [name for name, dummy in self.leftovers(self.target)]
        self.extras["replaced"] = self.exists

    def consume(self, job, member):
        """Replay a pg_dumpall set; or, under the target's lock, load a pg_dump set into a scratch database."""
        if self.dumpall:
            self.extras["warnings_sql"] = self.restore_dumpall(job.workspace)
            return
        target = self.target
        self.lock = TargetLock(self, target).__enter__()
        removed = []
        for name, dummy in self.leftovers(target):
            self.drop(name)
            self.changed = True
            removed.append(name)
        self.extras["removed_scratch"] = removed
        archive = None
        if self.fmt != "plain":
            archive = self.archive(job.workspace)
            self.entries = self.render_entries(archive, job.workspace)
            self.extras["not_carried"] = self.entries.not_carried(self.params["no_owner"])
            if self.entries.skipped:
                self.module.warn("Set %s holds database entries that were not carried: %s"
                                 % (self.manifest["set_id"], "; ".join(self.entries.skipped)))
        self.names = self.pick_names(target)
        run, scratch, dummy, dummy2 = self.names
        self.create_scratch(scratch, target, run, self.entries)
        self.scratch = scratch
        self.restore_database(scratch, archive, job.workspace)

    def finalise(self, job):
        """Swap the restored copy in as the target; drop the old copy it replaced."""
        if not self.dumpall:
            target = self.target
            run, scratch, aside, template = self.names
            self.extras["database_sql"] = self.swap(target, scratch, aside, run, self.exists, template, self.entries)
            self.scratch = None  # it is the target now
            if self.exists:
                try:
                    self.drop(aside)
                except LifeboatError as exc:
                    self.extras["kept_old"] = aside
                    self.module.warn('The old copy of "%s" was kept as "%s" because dropping it failed (%s); the next '
                                     'restore of "%s" drops it, or drop it by hand.' % (target, aside, exc, target))
        self.extras["replaced"] = self.exists

    def release(self, job):
        """Whatever went wrong (not only our own errors), the scratch copy goes; then the lock."""
        try:
            if self.scratch is not None:
                self.drop_quietly(self.scratch)
                self.scratch = None
        finally:
            if self.lock is not None:
                self.lock.__exit__()
                self.lock = None

    # ---------------------------------------------------------------- helpers

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
        return self.member["files"][0]["name"]

    def decode_stages(self):
        return self.job.decode_stages(self.member, self.payload())

    def explain(self, exc):
        better = _jobs.explain_decode_error(exc, self.member)
        if better:
            return better
        if exc.stage in ("pg_restore", "psql"):
            return _postgres.explain_error(exc.stderr, self.params, exc.stage)
        return str(exc)

    @contextlib.contextmanager
    def explained(self):
        """A failed pipeline stage becomes one sentence."""
        try:
            yield
        except _pipeline.PipelineError as exc:
            raise LifeboatError(self.explain(exc))

    def stream(self, consumer):
        """Decode the payload into the ``consumer`` stages (through the job)."""
        for stage in consumer:
            # The stage that connects reads the passfile through an inherited descriptor.
            stage.pass_fds = tuple(stage.pass_fds) + tuple(self.creds.pass_fds)
        with self.explained():
            return self.job.stream(self.member, self.payload(), consumer, env=self.full_env())

    def read_payload(self, consume):
        """Hand the decoded payload, as a binary stream, to ``consume``; return what it returns."""
        with self.explained():
            return self.job.read(self.member, self.payload(), consume, env=self.full_env())

    # ---------------------------------------------------------------- archives

    def unpack(self, work):
        """Decode the payload into ``work``: a file (custom) or a directory (directory format).

        A directory-format payload is a tar from the store, which is untrusted:
        every member is checked before anything is extracted, then the members
        are extracted in Python under the same check (_archive).
        """
        if self.fmt == "directory":
            target = os.path.join(work, "dump")
            os.mkdir(target, 0o700)
            what = "the payload %s of set %s" % (self.payload(), self.member["set_id"])
            self.read_payload(lambda stream: _archive.check_tar(stream, what=what))
            cmd = len(self.job.cmd)
            self.read_payload(lambda stream: _archive.extract_tar(stream, target, what=what))
            del self.job.cmd[cmd:]  # the same decode stages, listed once
            return target
        target = os.path.join(work, "dump.pgc")
        with self.explained():
            # A scratch copy for pg_restore -j: no write-back, no fsync.
            return self.job.unpack(self.member, self.payload(), target, env=self.full_env())

    def archive(self, work):
        """A path pg_restore can read (unpacked if need be), or None to stream a custom archive."""
        if self.fmt == "directory":
            return self.unpack(work)
        if self.params["jobs"] > 1 or not self.decode_stages():
            return self.unpack(work)
        return None

    def render_entries(self, archive, work):
        """The archive's database entries, as pg_restore --create renders them, parsed strictly."""
        pg_restore = _postgres.find_binary(self.module, "pg_restore", self.bin_dir)
        # A schema filter that matches nothing leaves only the entries about the database itself.
        argv = [pg_restore, "--create", "-n", "lifeboat_no_schema_%s" % secrets.token_hex(8), "-f", "-",
                "-F", _postgres.DUMP_FORMATS[self.fmt][0]]
        if archive:
            argv.append(archive)
        self.job.cmd.append([argv])
        with tempfile.TemporaryFile(dir=work) as out, tempfile.TemporaryFile(dir=work) as err:
            proc = self.runner.popen(argv, stdin=subprocess.PIPE if not archive else None, stdout=out, stderr=err,
                                     env=self.full_env())
            try:
                if not archive:
                    self.feed_head(proc)
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

    def feed_head(self, proc):
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

        with self.explained():
            self.job.pump(self.member, self.payload(), consume, env=self.full_env())

    # ---------------------------------------------------------------- psql replay

    def replay(self, db, work, allow_connect, single_transaction, stop_on_error):
        """Replay the set's SQL in restricted psql sessions; returns the finished Replay (close it)."""

        def argv_for(name):
            return _postgres.psql_argv(self.psql, name, single_transaction=single_transaction,
                                       stop_on_error=stop_on_error) + ["-f", "-"]

        self.job.cmd.append(_pipeline.describe(self.decode_stages()) + [argv_for(db)])
        replay = _psqlscript.Replay(argv_for, self.full_env, db, allow_connect=allow_connect, spool_dir=work,
                                    runner=self.runner)
        try:
            with self.explained():
                self.job.pump(self.member, self.payload(), self._feeder(replay), env=self.full_env())
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

    def restore_database(self, db, archive, work):
        """Load a pg_dump set into the (empty) database ``db``."""
        if self.fmt == "plain":
            self.replay(db, work, allow_connect=False, single_transaction=True, stop_on_error=True).close()
            return
        pg_restore = _postgres.find_binary(self.module, "pg_restore", self.bin_dir)
        if archive is None:
            argv = _postgres.pg_restore_argv(pg_restore, db, self.fmt, no_owner=self.params["no_owner"])
            self.stream([_pipeline.Stage("pg_restore", argv)])
            return
        argv = _postgres.pg_restore_argv(pg_restore, db, self.fmt, self.params["jobs"], archive, self.params["no_owner"])
        self.job.cmd.append([argv])
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

    def restore_dumpall(self, work):
        replay = self.replay(self.maintenance, work, allow_connect=True, single_transaction=False,
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
