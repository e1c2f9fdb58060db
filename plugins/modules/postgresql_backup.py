#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: postgresql_backup
short_description: Back up a PostgreSQL database or cluster into a verified backup set
version_added: 0.1.0
description:
  - Runs C(pg_dump) (one database) or C(pg_dumpall) (globals or the whole cluster) and streams the
    output through compression and optional age encryption into a backup set of a store.
  - The set is written under C(<set_id>.partial), its files are fsynced, C(manifest.json) (sizes,
    SHA-256, tool versions, WAL position) is written last and the directory is renamed. A run killed
    at any point leaves no set that looks complete.
  - Every stage's exit status is checked; a C(pg_dump) that fails behind the compressor fails the task.
  - One writer per source and store, guarded by a lock; a stale lock left by a dead run is reported
    in RV(stale_lock) and taken over, and that run's leftover C(.partial) directory is removed.
author:
  - Lifeboat maintainers (@lifeboat-backup)
extends_documentation_fragment:
  - lifeboat.backup._postgres
  - lifeboat.backup._store
  - lifeboat.backup._codec
attributes:
  check_mode:
    support: full
    description: Connects to read the server version and position, reports the set it would write, writes nothing.
  diff_mode:
    support: none
    description: Nothing to diff; the result describes the sets.
  idempotent:
    support: partial
    description: With O(max_age) a rerun skips while a complete set younger than that exists.
options:
  method:
    description:
      - V(pg_dump) dumps one database (O(db)); V(pg_dumpall) dumps roles and tablespaces
        (O(globals_only=true)) or the whole cluster as SQL.
    type: str
    default: pg_dump
    choices: [pg_dump, pg_dumpall]
  db:
    description:
      - Database to dump. Required with O(method=pg_dump).
    type: str
    aliases: [database]
  format:
    description:
      - C(pg_dump) archive format. V(custom) is one archive file restored with C(pg_restore);
        V(directory) dumps in parallel (O(jobs)) and is stored as a tar of the dump directory;
        V(plain) is SQL for C(psql).
      - Ignored by O(method=pg_dumpall), which always writes SQL.
    type: str
    default: custom
    choices: [custom, directory, plain]
  jobs:
    description:
      - Parallel C(pg_dump) workers; needs O(format=directory).
    type: int
    default: 1
  globals_only:
    description:
      - With O(method=pg_dumpall), dump only roles and tablespaces.
    type: bool
    default: false
  source:
    description:
      - Name of the source in the store. Defaults to O(db) for V(pg_dump), C(globals) or C(cluster)
        for V(pg_dumpall).
    type: str
  max_age:
    description:
      - Skip the backup (C(changed=false)) when a complete set of this source younger than this
        exists, for example V(20h) or V(7d). A rerun of a half-failed fleet job then redoes only the
        hosts that failed.
    type: str
  labels:
    description:
      - Free-form labels recorded in the manifest (for example the job or ticket that made the set).
    type: dict
    default: {}
requirements:
  - pg_dump / pg_dumpall and psql of a version at least as new as the server
  - zstd (for O(compression=zstd)), gzip or pigz (for O(compression=gzip))
  - age (when O(encrypt_recipients) is set)
  - tar (for O(format=directory))
seealso:
  - module: lifeboat.backup.postgresql_restore
  - module: lifeboat.backup.backup_info
  - module: lifeboat.backup.backup_verify
  - name: Restoring a set by hand
    description: docs/restore-by-hand.md in the collection explains a restore with stock tools only.
    link: https://example.invalid/lifeboat/backup/docs/restore-by-hand.md
"""

EXAMPLES = r"""
- name: Back up the app database, custom format, zstd, at most once a day
  lifeboat.backup.postgresql_backup:
    db: app
    login_unix_socket: /run/postgresql
    store:
      kind: dir
      path: /var/backups/lifeboat
    host: "{{ inventory_hostname }}"
    max_age: 20h

- name: Parallel directory-format dump, encrypted to the restore team's age key
  lifeboat.backup.postgresql_backup:
    db: warehouse
    format: directory
    jobs: 4
    login_host: 127.0.0.1
    login_user: backup
    login_password: "{{ vault_pg_backup_password }}"
    encrypt_recipients:
      - age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p
    store:
      path: /var/backups/lifeboat
    labels:
      job: nightly

- name: Roles and tablespaces
  lifeboat.backup.postgresql_backup:
    method: pg_dumpall
    globals_only: true
    store:
      path: /var/backups/lifeboat
"""

RETURN = r"""
set_id:
  description: Id of the set written (or of the fresh set that made the run skip).
  returned: always
  type: str
  sample: 20261126T031500Z-full
store:
  description: The store, as kind and location.
  returned: always
  type: dict
  sample: {kind: dir, path: /var/backups/lifeboat}
path:
  description: Location of the set in the store.
  returned: always
  type: str
  sample: /var/backups/lifeboat/db1/app/20261126T031500Z-full
bytes:
  description: Total size of the stored payload files.
  returned: success
  type: int
  sample: 1048576
duration_s:
  description: Seconds the backup took.
  returned: success
  type: float
  sample: 2.41
files:
  description: Payload files with size and SHA-256.
  returned: success
  type: list
  elements: dict
  sample: [{name: dump.pgc.zst, size: 1048576, sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08}]
position:
  description: Server state when the dump began (C(lsn), C(timeline), C(in_recovery), C(server_version)).
  returned: success
  type: dict
  sample: {lsn: 0/3000148, timeline: 1, in_recovery: false, server_version: "15.18"}
manifest:
  description: The whole manifest of the set.
  returned: success
  type: dict
cmd:
  description: The argv of every pipeline stage. No secret is ever part of it.
  returned: always
  type: list
  elements: list
skipped_reason:
  description: Why no backup ran, when C(changed=false).
  returned: always
  type: str
removed_partials:
  description: Leftover C(.partial) directories of crashed runs that were removed.
  returned: success
  type: list
  elements: str
stale_lock:
  description: The stale lock that was taken over (its pid, node, start time and why it was stale).
  returned: when a stale lock was found
  type: dict
"""

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.lifeboat.backup.plugins.module_utils._common import LifeboatError
from ansible_collections.lifeboat.backup.plugins.module_utils import _jobs
from ansible_collections.lifeboat.backup.plugins.module_utils import _pipeline
from ansible_collections.lifeboat.backup.plugins.module_utils import _postgres
from ansible_collections.lifeboat.backup.plugins.module_utils import _stores


def build_plan(module):
    """Resolve options into the job, the binaries and the stages (pure apart from PATH lookups)."""
    params = module.params
    method = params["method"]
    if method == "pg_dumpall" and params["jobs"] != 1:
        raise LifeboatError("jobs applies to method pg_dump with format directory, not to pg_dumpall.")
    if method == "pg_dump" and params["globals_only"]:
        raise LifeboatError("globals_only applies to method pg_dumpall only.")
    if params["jobs"] < 1:
        raise LifeboatError("jobs must be 1 or more, not %d." % params["jobs"])
    if method == "pg_dump" and params["jobs"] > 1 and params["format"] != "directory":
        raise LifeboatError("jobs > 1 needs format: directory (pg_dump dumps in parallel only then).")
    fmt = params["format"] if method == "pg_dump" else "plain"
    default_source = params["db"] if method == "pg_dump" else ("globals" if params["globals_only"] else "cluster")
    store = _stores.open_store(params["store"])
    codec = _jobs.Codec(module, params["compression"], params["compression_level"],
                        params["compression_threads"], params["encrypt_recipients"])
    job = _jobs.BackupJob(store, _jobs.default_host(params), params["source"] or default_source,
                          "postgresql", method, labels=params["labels"], max_age=params["max_age"])
    bin_dir = params["pg_bin_dir"]
    plan = dict(store=store, codec=codec, job=job, method=method, format=fmt,
                psql=_postgres.find_binary(module, "psql", bin_dir))
    if method == "pg_dump":
        plan["dump_bin"] = _postgres.find_binary(module, "pg_dump", bin_dir)
        plan["name"] = _postgres.DUMP_FORMATS[fmt][1] + codec.suffix()
        plan["probe_db"] = params["db"]
        if fmt == "directory":
            plan["tar"] = _jobs.need_binary(module, "tar", "tar")
    else:
        plan["dump_bin"] = _postgres.find_binary(module, "pg_dumpall", bin_dir)
        plan["name"] = _postgres.DUMPALL_NAME + codec.suffix()
        plan["probe_db"] = params["login_db"]
    return plan


def dump_stages(module, plan, env, staging=None):
    """The pipeline that produces the payload file (for directory format: after the dump ran)."""
    params = module.params
    if plan["method"] == "pg_dumpall":
        argv = _postgres.pg_dumpall_argv(plan["dump_bin"], params["globals_only"], login_db=params["login_db"])
        producer = _pipeline.Stage("pg_dumpall", argv, env)
    elif plan["format"] == "directory":
        producer = _pipeline.Stage("tar", [plan["tar"], "-C", staging or "<staging>", "-cf", "-", "."])
    else:
        producer = _pipeline.Stage("pg_dump", _postgres.pg_dump_argv(plan["dump_bin"], params["db"], plan["format"]), env)
    return [producer] + plan["codec"].stages()


def produce(module, plan, creds, position, versions):
    """The callable that fills a set: dump, stream, record."""
    params = module.params

    def _produce(writer, manifest):
        env = creds.env(plan["probe_db"])
        staging = None
        if plan["format"] == "directory" and plan["method"] == "pg_dump":
            staging = os.path.join(writer.staging_dir("staging"), "dump")
            argv = _postgres.pg_dump_argv(plan["dump_bin"], params["db"], "directory", params["jobs"], staging)
            rc, dummy, err = module.run_command(argv, environ_update=env)
            if rc != 0:
                raise _postgres.PostgresError(_postgres.explain_error(err, params, "pg_dump"))
        stages = dump_stages(module, plan, env, staging)
        try:
            _jobs.write_stream(writer, manifest, plan["name"], stages, env=dict(os.environ, **env))
        except _pipeline.PipelineError as exc:
            if exc.stage in ("pg_dump", "pg_dumpall"):
                raise _postgres.PostgresError(_postgres.explain_error(exc.stderr, params, exc.stage))
            raise
        plan["codec"].record(manifest)
        manifest["tool_versions"] = versions
        manifest["position"] = position
        manifest["options"] = {
            "format": plan["format"],
            "database": params["db"] if plan["method"] == "pg_dump" else None,
            "jobs": params["jobs"],
            "globals_only": params["globals_only"],
            "payload": plan["name"],
        }
    return _produce


def main():
    argument_spec = _postgres.connection_argument_spec()
    argument_spec.update(_jobs.store_argument_spec())
    argument_spec.update(_jobs.codec_argument_spec())
    argument_spec.update(
        method=dict(type="str", default="pg_dump", choices=["pg_dump", "pg_dumpall"]),
        db=dict(type="str", aliases=["database"]),
        format=dict(type="str", default="custom", choices=["custom", "directory", "plain"]),
        jobs=dict(type="int", default=1),
        globals_only=dict(type="bool", default=False),
        source=dict(type="str"),
        max_age=dict(type="str"),
        labels=dict(type="dict", default={}),
    )
    module = AnsibleModule(
        argument_spec=argument_spec,
        supports_check_mode=True,
        required_if=[("method", "pg_dump", ["db"])],
    )
    cmd = []
    try:
        plan = build_plan(module)
        cmd = _pipeline.describe(dump_stages(module, plan, {}))
        if plan["format"] == "directory" and plan["method"] == "pg_dump":
            cmd.insert(0, _postgres.pg_dump_argv(plan["dump_bin"], module.params["db"], "directory",
                                                 module.params["jobs"], "<staging>/dump"))
        job = plan["job"]
        with _postgres.Credentials(module.params, tmpdir=module.tmpdir) as creds:
            decision = job.plan()
            if decision["action"] == "skip":
                module.exit_json(**_jobs.backup_result(plan["store"], decision["manifest"], cmd, {"skipped": True}))
            probe = _postgres.run_probe(module, plan["psql"], creds.env(plan["probe_db"]), plan["probe_db"])
            if module.check_mode:
                module.exit_json(changed=True, set_id=decision["set_id"], path=decision["path"],
                                 store=plan["store"].describe(), cmd=cmd, position=probe,
                                 skipped_reason=None)
            versions = {plan["method"]: _postgres.parse_tool_version(_jobs.version_line(module, plan["dump_bin"])),
                        "server": probe["server_version"]}
            versions.update(plan["codec"].versions(module))
            manifest, extras = job.run(produce(module, plan, creds, probe, versions))
    except LifeboatError as exc:
        module.fail_json(msg=str(exc), cmd=cmd)
    result = _jobs.backup_result(plan["store"], manifest, cmd, extras)
    if extras.get("stale_lock"):
        module.warn("Took over a stale lock on %s/%s: %s." % (job.host, job.source, extras["stale_lock"]["reason"]))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
