# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils is PRIVATE to this collection. It may change without notice.

"""The physical PostgreSQL backup engine: ``pg_basebackup`` as one tar, driven by _jobs.run_backup_module.

``pg_basebackup -D - -Ft -X fetch`` writes one tar to its standard output:
the data directory, the WAL the backup needs to be consistent (``pg_wal/``)
and ``backup_manifest``. The job appends the codec and streams it into the
store as ``base.tar`` (+ the codec's suffix): nothing is staged on disk.

The manifest's ``position`` (docs/pitr.md) records what point-in-time
recovery needs: the server version, the system identifier, the timeline, the
start and stop LSN and WAL file names, the start and stop times, and
``objects_prefix``/``objects_from`` (``wal/`` and the first WAL file the
backup needs), which retention reads to keep that WAL.

A cluster with tablespaces besides pg_default and pg_global is refused: the
tar format writes one more tar per tablespace, which a stream to standard
output cannot carry.
"""

from __future__ import annotations

import os
import re

from ansible_collections.lifeboat.backup.plugins.module_utils import _jobs
from ansible_collections.lifeboat.backup.plugins.module_utils import _pipeline
from ansible_collections.lifeboat.backup.plugins.module_utils import _postgres
from ansible_collections.lifeboat.backup.plugins.module_utils import _wal
from ansible_collections.lifeboat.backup.plugins.module_utils._common import LifeboatError, format_ts, utcnow
from ansible_collections.lifeboat.backup.plugins.module_utils._pgbackup import _Session

METHOD = "pg_basebackup"
PAYLOAD = "base.tar"
DEFAULT_SOURCE = "physical"
LOG_NAME = "pg_basebackup.log"

PROBE_SQL = (
    "SELECT json_build_object("
    "'server_version_num', current_setting('server_version_num')::int, "
    "'server_version', split_part(current_setting('server_version'), ' ', 1), "
    "'system_identifier', (SELECT system_identifier::text FROM pg_control_system()), "
    "'in_recovery', pg_is_in_recovery(), "
    "'wal_level', current_setting('wal_level'), "
    "'wal_segment_size', pg_size_bytes(current_setting('wal_segment_size')), "
    "'tablespaces', (SELECT coalesce(json_agg(spcname::text ORDER BY spcname), '[]'::json) FROM pg_tablespace "
    "WHERE spcname NOT IN ('pg_default', 'pg_global')))"
)

START_RE = re.compile(r"write-ahead log start point: ([0-9A-F]+/[0-9A-F]+) on timeline (\d+)")
END_RE = re.compile(r"write-ahead log end point: ([0-9A-F]+/[0-9A-F]+)")


def parse_lsn(text):
    """'16/B374D848' -> int."""
    match = re.match(r"^([0-9A-Fa-f]{1,8})/([0-9A-Fa-f]{1,8})\Z", text or "")
    if not match:
        raise LifeboatError("%r is not a WAL location (like 0/3000028)." % (text,))
    return (int(match.group(1), 16) << 32) | int(match.group(2), 16)


def format_lsn(value):
    return "%X/%X" % (value >> 32, value & 0xFFFFFFFF)


def wal_file(timeline, lsn, segment_size, previous=False):
    """The WAL file holding ``lsn`` (or, with ``previous``, the byte before it: a stop point's last file)."""
    if previous and lsn > 0:
        lsn -= 1
    return _wal.segment_name(timeline, lsn // segment_size, segment_size)


def parse_log(text):
    """(start_lsn, timeline, stop_lsn) from pg_basebackup -v's messages."""
    start = START_RE.search(text or "")
    end = END_RE.search(text or "")
    if not start or not end:
        raise LifeboatError("pg_basebackup did not report its start and end WAL locations; its messages were: %s"
                            % ((text or "").strip().splitlines() or ["none"])[-1])
    return start.group(1), int(start.group(2)), end.group(1)


class BaseBackupEngine(object):
    """One ``pg_basebackup`` of the whole cluster into one tar payload (always a full set)."""

    set_type = "full"

    def __init__(self, module):
        params = module.params
        self.module = module
        self.params = params
        for option, default in (("format", "custom"), ("jobs", 1), ("globals_only", False), ("db", None)):
            if params.get(option) != default:
                raise LifeboatError("%s does not apply to method pg_basebackup, which copies the whole cluster."
                                    % option)
        bin_dir = params.get("pg_bin_dir")
        self.psql = _postgres.find_binary(module, "psql", bin_dir)
        self.basebackup = _postgres.find_binary(module, "pg_basebackup", bin_dir)
        self.probe_db = params.get("login_db") or "postgres"
        self.creds = None
        self.facts = None
        self.position = None
        self.versions = None
        self.log_path = None
        self.started = None
        self.stopped = None

    def default_source(self):
        return DEFAULT_SOURCE

    def argv(self, set_id=None):
        argv = [self.basebackup, "-D", "-", "-Ft", "-X", "fetch", "--checkpoint=fast", "-v", "--no-password"]
        argv += ["--label", "lifeboat %s" % (set_id or "<set_id>")]
        return argv

    def describe(self, codec):
        return _pipeline.describe([_pipeline.Stage("pg_basebackup", self.argv())] + codec.stages())

    def session(self):
        return _Session(self)

    def probe(self, decision=None):
        """Connect, read the facts a base backup needs and refuse what it cannot copy."""
        facts = _postgres.run_json(self.module, self.psql, self.creds.env(self.probe_db), self.probe_db,
                                   PROBE_SQL + ";\n")
        if not isinstance(facts, dict):
            raise _postgres.PostgresError("Unexpected answer from PostgreSQL at %s." % _postgres.where(self.params))
        if facts.get("tablespaces"):
            raise LifeboatError(
                "PostgreSQL at %s has tablespaces besides pg_default and pg_global (%s); method pg_basebackup "
                "streams one tar and cannot carry them: move their tables to pg_default or back them up another way."
                % (_postgres.where(self.params), ", ".join(str(t) for t in facts["tablespaces"])))
        if facts.get("wal_level") == "minimal":
            raise LifeboatError("PostgreSQL at %s runs with wal_level = minimal, which allows no base backup; set "
                                "it to replica (a restart)." % _postgres.where(self.params))
        self.facts = facts
        self.position = {
            "server_version": facts["server_version_num"],
            "system_identifier": facts["system_identifier"],
            "in_recovery": facts["in_recovery"],
            "wal_segment_size": facts["wal_segment_size"],
        }
        return self.position

    def check_result(self, decision):
        return {"position": self.position}

    def tool_versions(self, codec):
        versions = {METHOD: _postgres.parse_tool_version(_jobs.version_line(self.module, self.basebackup)),
                    "server": self.facts["server_version"]}
        versions.update(codec.versions(self.module))
        return versions

    # ------------------------------------------------------------ the BackupJob engine API

    def produce(self, ctx):
        env = self.creds.env(self.probe_db)
        self.log_path = os.path.join(ctx.workspace, LOG_NAME)
        self.started = utcnow()
        stage = _pipeline.Stage("pg_basebackup", self.argv(ctx.set_id), env, pass_fds=self.creds.pass_fds,
                                stderr_path=self.log_path)
        yield _jobs.Payload(PAYLOAD, [stage], env=dict(os.environ, **env))
        self.stopped = utcnow()

    def explain(self, exc):
        if exc.stage == "pg_basebackup":
            text = exc.stderr or ""
            if "no pg_hba.conf entry for replication connection" in text:
                return _postgres.PostgresError(
                    "PostgreSQL at %s does not allow replication connections for user %s (pg_hba.conf needs a "
                    "'replication' entry); pg_basebackup needs one." % (_postgres.where(self.params),
                                                                        self.params.get("login_user")))
            if "must be superuser or replication role" in text or "permission denied to start WAL sender" in text:
                return _postgres.PostgresError(
                    "User %s may not run pg_basebackup on PostgreSQL at %s; it needs the REPLICATION attribute."
                    % (self.params.get("login_user"), _postgres.where(self.params)))
            return _postgres.PostgresError(_postgres.explain_error(text, self.params, "pg_basebackup"))
        return None

    def record(self, ctx, manifest):
        with open(self.log_path, "rb") as handle:
            log = handle.read().decode("utf-8", "replace")
        start_lsn, timeline, stop_lsn = parse_log(log)
        size = int(self.position["wal_segment_size"])
        start_wal = wal_file(timeline, parse_lsn(start_lsn), size)
        position = dict(self.position)
        position.update(
            timeline=timeline,
            start_lsn=start_lsn,
            stop_lsn=stop_lsn,
            start_wal=start_wal,
            stop_wal=wal_file(timeline, parse_lsn(stop_lsn), size, previous=True),
            start_time=format_ts(self.started),
            stop_time=format_ts(self.stopped or utcnow()),
            objects_prefix=_wal.OBJECT_PREFIX,
            objects_from=start_wal,
        )
        manifest["position"] = position
        manifest["tool_versions"] = self.versions
        manifest["options"] = {"format": "tar", "wal": "fetch", "payload": manifest["files"][0]["name"]}
