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
    the manifest; a corrupt, incomplete or unreadable set is refused.
  - A C(pg_dump) set is restored into a fresh scratch database which takes the name O(target_db)
    only when the restore succeeded. An existing O(target_db) is replaced only with O(clean=true),
    and only after the new copy is complete, so a failed restore loses nothing.
  - A C(pg_dumpall) set is replayed with C(psql) against O(login_db); errors about objects that
    already exist (such as the bootstrap role) are reported in RV(warnings_sql), any other error fails.
    A whole-cluster set (made without C(globals_only)) is restored only into a cluster that holds no
    database but C(postgres) and the templates.
author:
  - Lifeboat maintainers (@lifeboat-backup)
extends_documentation_fragment:
  - lifeboat.backup._postgres
  - lifeboat.backup._store
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
      - Replace O(target_db) if it exists. Its sessions are terminated when the new copy is swapped in.
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
  description: Ignored "already exists" errors of a C(pg_dumpall) replay.
  returned: when a pg_dumpall set was restored
  type: list
  elements: str
cmd:
  description: The argv of every restore stage. The age identity is passed as a file path only.
  returned: always
  type: list
  elements: list
"""

import os
import re
import shutil
import tempfile
import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.lifeboat.backup.plugins.module_utils._common import LifeboatError, plain_results
from ansible_collections.lifeboat.backup.plugins.module_utils import _archive
from ansible_collections.lifeboat.backup.plugins.module_utils import _jobs
from ansible_collections.lifeboat.backup.plugins.module_utils import _pipeline
from ansible_collections.lifeboat.backup.plugins.module_utils import _postgres
from ansible_collections.lifeboat.backup.plugins.module_utils import _store_kinds
from ansible_collections.lifeboat.backup.plugins.module_utils import _stores
from ansible_collections.lifeboat.backup.plugins.module_utils._runner import runner_for

MAX_IDENT = 63
IGNORABLE_SQL_ERROR = re.compile(r"ERROR:\s+(role|database|tablespace|schema) \"[^\"]*\" already exists")


def scratch_name(target):
    suffix = "_lifeboat_%d" % os.getpid()
    return target[:MAX_IDENT - len(suffix)] + suffix


class Restore(object):
    """One restore of a verified set."""

    def __init__(self, module, creds, manifest, store):
        self.module = module
        self.params = module.params
        self.creds = creds
        self.manifest = manifest
        self.store = store
        self.bin_dir = self.params["pg_bin_dir"]
        self.psql = _postgres.find_binary(module, "psql", self.bin_dir)
        self.maintenance = self.params["login_db"]
        self.cmd = []

    def env(self, db=None):
        return self.creds.env(db)

    def sql(self, statement, db=None):
        return _postgres.run_sql(self.module, self.psql, self.env(db or self.maintenance), db or self.maintenance, statement)

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
                return _pipeline.run_from_source(stages, handle, env=dict(os.environ, **self.env()))
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

    def unpack(self, identity, work):
        """Decode the payload into ``work``: a file (custom) or a directory (directory format).

        A directory-format payload is a tar from the store, which is untrusted:
        every member is checked before anything is extracted, then the members
        are extracted in Python under the same check (_archive).
        """
        m = self.manifest
        if m["options"].get("format") == "directory":
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
                    _pipeline.run_to_sink(decode, sink, stdin=handle, env=dict(os.environ, **self.env()))
                except _pipeline.PipelineError as exc:
                    raise LifeboatError(self.explain(exc))
                except _pipeline.SinkError as exc:
                    raise LifeboatError(_stores.describe_os_error(exc.os_error, "work_dir %s" % work))
        return target

    def restore_database(self, identity, db, work):
        """Load a pg_dump set into the (empty) database ``db``."""
        fmt = self.manifest["options"].get("format", "custom")
        jobs = self.params["jobs"]
        if fmt == "plain":
            argv = _postgres.psql_argv(self.psql, db, single_transaction=True) + ["-f", "-"]
            self.stream(identity, [_pipeline.Stage("psql", argv)])
            return
        pg_restore = _postgres.find_binary(self.module, "pg_restore", self.bin_dir)
        if fmt == "custom" and jobs <= 1:
            argv = _postgres.pg_restore_argv(pg_restore, db, fmt, no_owner=self.params["no_owner"])
            self.stream(identity, [_pipeline.Stage("pg_restore", argv)])
            return
        path = self.unpack(identity, work)
        argv = _postgres.pg_restore_argv(pg_restore, db, fmt, jobs, path, self.params["no_owner"])
        self.cmd.append([argv])
        rc, dummy, err = runner_for(self.module).run(argv, env=self.env(db), pass_fds=self.creds.pass_fds)
        if rc != 0:
            raise LifeboatError(_postgres.explain_error(err, self.params, "pg_restore"))

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

    def restore_dumpall(self, identity):
        argv = _postgres.psql_argv(self.psql, self.maintenance, stop_on_error=False) + ["-f", "-"]
        dummy, err = self.stream(identity, [_pipeline.Stage("psql", argv)])
        errors = [line for line in err.splitlines() if "ERROR:" in line]
        fatal = [line for line in errors if not IGNORABLE_SQL_ERROR.search(line)]
        if fatal:
            raise LifeboatError("Replaying the pg_dumpall set hit %d error(s), first: %s" % (len(fatal), fatal[0].strip()))
        return errors


def main():
    argument_spec = _postgres.connection_argument_spec()
    argument_spec.update(_jobs.store_argument_spec())
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
    )
    module = AnsibleModule(
        argument_spec=argument_spec,
        supports_check_mode=True,
        mutually_exclusive=[("age_identity", "age_identity_file")],
    )
    plain_results(module)
    params = module.params
    started = time.monotonic()
    result = dict(changed=False, set_id=None, target_db=params["target_db"], cmd=[])
    try:
        if params["jobs"] < 1:
            raise LifeboatError("jobs must be 1 or more, not %d." % params["jobs"])
        store = _store_kinds.open_store(params["store"])
        host = _jobs.default_host(params)
        manifest, chain = _jobs.load_set(store, host, params["source"], params["set_id"])
        result.update(set_id=manifest["set_id"], bytes=manifest["bytes"], verified_files=len(manifest["files"]),
                      path=store.location(host, params["source"], manifest["set_id"]))
        if manifest["engine"] != "postgresql":
            raise LifeboatError("Set %s was made by %s, not PostgreSQL; use that engine's restore module."
                                % (manifest["set_id"], manifest["engine"]))
        dumpall = manifest["method"] == "pg_dumpall"
        if not dumpall and not params["target_db"]:
            raise LifeboatError("target_db is required to restore a pg_dump set.")
        if manifest["encryption"] and not (params["age_identity"] or params["age_identity_file"]):
            raise LifeboatError("Set %s is encrypted with age; pass age_identity (from Ansible Vault) or age_identity_file."
                                % manifest["set_id"])
        with _postgres.Credentials(params, tmpdir=module.tmpdir) as creds:
            restore = Restore(module, creds, manifest, store)
            exists = False
            if not dumpall:
                exists = _postgres.database_exists(module, restore.psql, creds.env(restore.maintenance),
                                                   restore.maintenance, params["target_db"])
                if exists and not params["clean"]:
                    raise LifeboatError('Database "%s" already exists; set clean: true to replace it, or pick another target_db.'
                                        % params["target_db"])
            else:
                restore.check_empty_cluster()
            # Cheap checks above; now re-hash the whole chain before anything touches the server.
            _jobs.verify_chain(store, chain)
            if module.check_mode:
                result.update(changed=True, replaced=exists, duration_s=round(time.monotonic() - started, 3))
                module.exit_json(**result)
            work = tempfile.mkdtemp(prefix="lifeboat-restore-", dir=params["work_dir"] or module.tmpdir)
            try:
                with _jobs.Identity(params["age_identity"], params["age_identity_file"], tmpdir=work) as identity:
                    if dumpall:
                        result["warnings_sql"] = restore.restore_dumpall(identity)
                    else:
                        restore_into_scratch(restore, identity, work, exists)
            finally:
                shutil.rmtree(work, ignore_errors=True)
                result["cmd"] = restore.cmd
        result.update(changed=True, replaced=exists, duration_s=round(time.monotonic() - started, 3))
    except LifeboatError as exc:
        result["msg"] = str(exc)
        module.fail_json(**result)
    module.exit_json(**result)


def restore_into_scratch(restore, identity, work, exists):
    """Restore into a scratch database, then swap it in as the target."""
    target = restore.params["target_db"]
    scratch = scratch_name(target)
    q = _postgres.quote_ident
    restore.sql("DROP DATABASE IF EXISTS %s WITH (FORCE);\n" % q(scratch))
    restore.sql("CREATE DATABASE %s TEMPLATE template0;\n" % q(scratch))
    try:
        restore.restore_database(identity, scratch, work)
        if exists:
            restore.sql("DROP DATABASE %s WITH (FORCE);\n" % q(target))
        restore.sql("ALTER DATABASE %s RENAME TO %s;\n" % (q(scratch), q(target)))
    except LifeboatError:
        try:
            restore.sql("DROP DATABASE IF EXISTS %s WITH (FORCE);\n" % q(scratch))
        except LifeboatError:
            pass
        raise


if __name__ == "__main__":
    main()
