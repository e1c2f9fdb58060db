# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils is PRIVATE to this collection. It may change without notice.

"""The PostgreSQL backup engine: ``pg_dump`` or ``pg_dumpall`` as one payload, driven by _jobs.BackupJob.

The engine returns its producer stage only; the job appends the codec
(compression, encryption), writes the payload, records the codec and commits.
"""

from __future__ import annotations

import errno
import os

from ansible_collections.lifeboat.backup.plugins.module_utils import _jobs
from ansible_collections.lifeboat.backup.plugins.module_utils import _pipeline
from ansible_collections.lifeboat.backup.plugins.module_utils import _postgres
from ansible_collections.lifeboat.backup.plugins.module_utils import _stores
from ansible_collections.lifeboat.backup.plugins.module_utils._common import LifeboatError
from ansible_collections.lifeboat.backup.plugins.module_utils._runner import runner_for

STAGING = "<staging>"


class _Session(object):
    def __init__(self, engine):
        self.engine = engine
        self.credentials = _postgres.Credentials(engine.params, tmpdir=engine.module.tmpdir)

    def __enter__(self):
        self.engine.creds = self.credentials.__enter__()
        return self

    def __exit__(self, *exc_info):
        return self.credentials.__exit__(*exc_info)


class PgDumpEngine(object):
    """One ``pg_dump`` (a database) or ``pg_dumpall`` (globals or the whole cluster) into one payload.

    Checks the options and finds the binaries when built; ``creds`` (session),
    ``position`` (probe) and ``versions`` are set before ``BackupJob.run`` by _jobs.run_backup_module.
    """

    def __init__(self, module):
        params = module.params
        self.module = module
        self.params = params
        self.method = params["method"]
        if self.method == "pg_dumpall" and params["jobs"] != 1:
            raise LifeboatError("jobs applies to method pg_dump with format directory, not to pg_dumpall.")
        if self.method == "pg_dump" and params["globals_only"]:
            raise LifeboatError("globals_only applies to method pg_dumpall only.")
        if params["jobs"] < 1:
            raise LifeboatError("jobs must be 1 or more, not %d." % params["jobs"])
        if self.method == "pg_dump" and params["jobs"] > 1 and params["format"] != "directory":
            raise LifeboatError("jobs > 1 needs format: directory (pg_dump dumps in parallel only then).")
        self.format = params["format"] if self.method == "pg_dump" else "plain"
        self.directory = self.method == "pg_dump" and self.format == "directory"
        bin_dir = params["pg_bin_dir"]
        self.psql = _postgres.find_binary(module, "psql", bin_dir)
        if self.method == "pg_dump":
            self.dump_bin = _postgres.find_binary(module, "pg_dump", bin_dir)
            self.name = _postgres.DUMP_FORMATS[self.format][1]
            self.probe_db = params["db"]
            self.tar = _jobs.need_binary(module, "tar", "tar") if self.directory else None
        else:
            self.dump_bin = _postgres.find_binary(module, "pg_dumpall", bin_dir)
            self.name = _postgres.DUMPALL_NAME
            self.probe_db = params["login_db"]
        self.creds = None
        self.position = None
        self.versions = None

    def default_source(self):
        if self.method == "pg_dump":
            return self.params["db"]
        return "globals" if self.params["globals_only"] else "cluster"

    def directory_argv(self, staging):
        return _postgres.pg_dump_argv(self.dump_bin, self.params["db"], "directory", self.params["jobs"], staging)

    def producer(self, env, staging=None, pass_fds=()):
        """The stage whose output is the payload (for directory format: a tar of the dump that ran).

        ``pass_fds`` (the passfile descriptor) goes to the stage that connects, and to no other.
        """
        params = self.params
        if self.method == "pg_dumpall":
            argv = _postgres.pg_dumpall_argv(self.dump_bin, params["globals_only"], login_db=params["login_db"])
            return _pipeline.Stage("pg_dumpall", argv, env, pass_fds=pass_fds)
        if self.directory:
            return _pipeline.Stage("tar", [self.tar, "-C", staging or STAGING, "-cf", "-", "."])
        return _pipeline.Stage("pg_dump", _postgres.pg_dump_argv(self.dump_bin, params["db"], self.format), env,
                               pass_fds=pass_fds)

    def describe(self, codec):
        """The argv of every stage, for the result (never a secret)."""
        cmd = _pipeline.describe([self.producer({})] + codec.stages())
        if self.directory:
            cmd.insert(0, self.directory_argv(STAGING + "/dump"))
        return cmd

    def session(self):
        """The connection credentials (a passfile on a memfd), held around plan, probe and run."""
        return _Session(self)

    def probe(self, decision=None):
        """The server's position and version, through psql (also proves the connection works)."""
        self.position = _postgres.run_probe(self.module, self.psql, self.creds.env(self.probe_db), self.probe_db)
        return self.position

    def check_result(self, decision):
        return {"position": self.position}

    def tool_versions(self, codec):
        versions = {self.method: _postgres.parse_tool_version(_jobs.version_line(self.module, self.dump_bin)),
                    "server": self.position["server_version"]}
        versions.update(codec.versions(self.module))
        return versions

    # ------------------------------------------------------------ the BackupJob engine API

    def produce(self, ctx):
        env = self.creds.env(self.probe_db)
        staging = None
        if self.directory:
            staging = os.path.join(ctx.workspace, "dump")
            rc, dummy, err = runner_for(self.module).run(self.directory_argv(staging), env=env,
                                                         pass_fds=self.creds.pass_fds)
            if rc != 0:
                # pg_dump -Fd writes into the local workspace: a full disk there names that directory.
                for code in (errno.ENOSPC, errno.EDQUOT):
                    if os.strerror(code) in err:
                        raise _stores.StoreError(_stores.describe_os_error(OSError(code, os.strerror(code)), staging))
                raise _postgres.PostgresError(_postgres.explain_error(err, self.params, "pg_dump"))
        yield _jobs.Payload(self.name, [self.producer(env, staging, self.creds.pass_fds)],
                            env=dict(os.environ, **env))

    def explain(self, exc):
        if exc.stage in ("pg_dump", "pg_dumpall"):
            return _postgres.PostgresError(_postgres.explain_error(exc.stderr, self.params, exc.stage))
        return None

    def record(self, ctx, manifest):
        params = self.params
        manifest["tool_versions"] = self.versions
        manifest["position"] = self.position
        manifest["options"] = {
            "format": self.format,
            "database": params["db"] if self.method == "pg_dump" else None,
            "jobs": params["jobs"],
            "globals_only": params["globals_only"],
            "payload": manifest["files"][0]["name"],
        }
