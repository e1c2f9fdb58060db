#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: postgresql_wal_archive
short_description: Archive a PostgreSQL cluster's WAL continuously into a store
version_added: 0.3.0
description:
  - Installs this collection's WAL archive command on the database host and sets C(archive_mode) and
    C(archive_command) with C(ALTER SYSTEM). PostgreSQL then runs the command for every WAL file it
    completes (segments, C(.history), C(.backup) and C(.partial) files), as the cluster's OS user,
    outside Ansible.
  - The command pushes each file into the object namespace of the store, host and source of the base
    backups (M(lifeboat.backup.postgresql_backup) with O(lifeboat.backup.postgresql_backup#module:method=pg_basebackup))
    as C(wal/<file name><codec suffix>), compressed and optionally encrypted. It never overwrites an
    object with different content, succeeds when the same content is already there (a retry is
    safe), is atomic (a killed push leaves no visible object) and exits non-zero on any failure, so
    PostgreSQL keeps the file and retries.
  - The program and its settings go into O(command_dir), owned by the cluster's OS user; the settings
    file (the store options, which may hold secrets) is mode 0600 and never on a command line.
  - A restart (C(archive_mode)) or a reload (C(archive_command)) that the change needs is reported in
    RV(restart_needed) and RV(reload_needed), never done; notify a handler.
  - Must run on the database host, as root or as the cluster's OS user, and connect as a superuser.
author:
  - Lifeboat maintainers (@lifeboat-backup)
extends_documentation_fragment:
  - lifeboat.backup._postgres
  - lifeboat.backup._store
attributes:
  check_mode:
    support: full
    description: Connects and compares the settings and the installed files; changes nothing.
  diff_mode:
    support: none
    description: The result names what changed.
  idempotent:
    support: full
    description: A rerun with the same options changes nothing.
options:
  source:
    description:
      - Name of the source in the store; the same as the base backups'
        (O(lifeboat.backup.postgresql_backup#module:source)).
    type: str
    default: physical
  archive_mode:
    description:
      - V(on) archives on a primary; V(always) on a standby too. Changing it needs a restart.
    type: str
    default: "on"
    choices: ["on", "always"]
  command_dir:
    description:
      - Directory on the database host for the program (C(lifeboat-wal)) and its settings
        (C(lifeboat-wal.json)). Created mode 0700, owned by the cluster's OS user.
      - Defaults to C(/var/lib/lifeboat-wal/<host>-<source>).
    type: path
  os_user:
    description:
      - The OS user the cluster runs as, who will own the command's files. Defaults to the owner of the
        cluster's data directory.
    type: str
  python:
    description:
      - The Python 3 the command runs with; the cluster's OS user must be able to run it, and for an
        C(s3) store it needs boto3. Defaults to the Python this module runs with.
    type: path
  probe:
    description:
      - Run the installed command once as the cluster's OS user (it writes the constant object
        C(wal-probe)), so that a store that user cannot reach fails this task instead of the archiver.
    type: bool
    default: true
  compression:
    description: Compression of each archived file.
    type: str
    default: zstd
    choices: [zstd, gzip, none]
  compression_level:
    description: Compression level (zstd 1-22, gzip 1-9); the tool's default when unset.
    type: int
  compression_threads:
    description: zstd worker threads for each file; V(0) uses every core.
    type: int
    default: 1
  encrypt_recipients:
    description:
      - age public keys (C(age1...)) or SSH public keys to encrypt each archived file to. The plain
        file's SHA-256 is stored beside it (C(wal/<file name>.sha256)) so that a retry is recognised.
    type: list
    elements: str
    default: []
  sign_key:
    description:
      - An OpenSSH ed25519 private key (unencrypted; keep it in Ansible Vault) that signs every archived
        file with C(ssh-keygen -Y sign) under the namespace C(lifeboat.backup/wal@v1), stored as
        C(wal/<file name>.sig). A point-in-time restore with
        O(lifeboat.backup.postgresql_restore#module:trusted_signers) refuses a WAL file that is unsigned,
        signed by a key not listed for O(host), or altered.
      - Use the same per-host key as the base backups' O(lifeboat.backup.postgresql_backup#module:sign_key).
      - The key is written into the command's settings file (mode 0600, owned by the cluster's OS user),
        which the command already reads; it never appears in a command line or a result.
      - Mutually exclusive with O(sign_key_file).
    type: str
  sign_key_file:
    description:
      - Path, on the database host, of the private key described in O(sign_key) (mode 0600). Its text is
        copied into the command's settings file.
      - Mutually exclusive with O(sign_key).
    type: path
requirements:
  - psql; zstd (for O(compression=zstd)), gzip (for O(compression=gzip)), age (with O(encrypt_recipients))
  - setpriv (util-linux) when the module runs as root, for O(probe)
  - ssh-keygen (openssh-client) with O(sign_key) or O(sign_key_file)
seealso:
  - module: lifeboat.backup.postgresql_backup
  - module: lifeboat.backup.backup_info
  - module: lifeboat.backup.backup_retention
notes:
  - C(docs/pitr.md) in the collection describes base backups, the archive and point-in-time recovery.
"""

EXAMPLES = r"""
- name: Archive WAL into the store of the base backups
  lifeboat.backup.postgresql_wal_archive:
    login_unix_socket: /run/postgresql
    login_user: postgres
    store:
      kind: dir
      path: /var/backups/lifeboat
    host: "{{ inventory_hostname }}"
  register: wal_archive
  notify: Restart PostgreSQL

- name: Archive straight to S3, encrypted
  lifeboat.backup.postgresql_wal_archive:
    login_unix_socket: /run/postgresql
    login_user: postgres
    python: /usr/bin/python3
    encrypt_recipients:
      - "{{ vault_lifeboat_age_recipient }}"
    store:
      kind: s3
      bucket: backups
      region: eu-west-1
    host: "{{ inventory_hostname }}"
  notify: Restart PostgreSQL
"""

RETURN = r"""
archive_command:
  description: The C(archive_command) set (paths only, never a secret).
  returned: always
  type: str
  sample: "/usr/bin/python3 -I /var/lib/lifeboat-wal/db1-physical/lifeboat-wal /var/lib/lifeboat-wal/db1-physical/lifeboat-wal.json push %p %f"
command:
  description: The argv prefix of the installed command (add C(push %p %f) or C(fetch %f %p)).
  returned: always
  type: list
  elements: str
archive_mode:
  description: The C(archive_mode) set.
  returned: always
  type: str
restart_needed:
  description: The running server's C(archive_mode) differs from the one set; restart PostgreSQL.
  returned: always
  type: bool
reload_needed:
  description: The running server's C(archive_command) differs from the one set; reload PostgreSQL.
  returned: always
  type: bool
settings_changed:
  description: C(ALTER SYSTEM) changed (or, in check mode, would change) a setting.
  returned: always
  type: bool
files_changed:
  description: The program or its settings file were (or would be) written.
  returned: always
  type: bool
signed:
  description: Every archived file is signed (O(sign_key) or O(sign_key_file) is set).
  returned: always
  type: bool
os_user:
  description: The OS user that owns the command's files.
  returned: always
  type: str
command_dir:
  description: Where the program and its settings are.
  returned: always
  type: str
store:
  description: The store (kind and location, never a secret).
  returned: always
  type: dict
host:
  description: The host name in the store.
  returned: always
  type: str
source:
  description: The source name in the store.
  returned: always
  type: str
"""

import os
import pwd

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.lifeboat.backup.plugins.module_utils._common import LifeboatError, plain_results
from ansible_collections.lifeboat.backup.plugins.module_utils import _codec
from ansible_collections.lifeboat.backup.plugins.module_utils import _jobs
from ansible_collections.lifeboat.backup.plugins.module_utils import _postgres
from ansible_collections.lifeboat.backup.plugins.module_utils import _store_kinds
from ansible_collections.lifeboat.backup.plugins.module_utils import _wal
from ansible_collections.lifeboat.backup.plugins.module_utils._runner import runner_for

STATE_SQL = (
    "SELECT json_build_object("
    "'data_directory', current_setting('data_directory'), "
    "'running', (SELECT json_object_agg(name, setting) FROM pg_settings "
    "WHERE name IN ('archive_mode', 'archive_command')), "
    "'configured', (SELECT json_object_agg(name, setting) FROM (SELECT DISTINCT ON (name) name, setting "
    "FROM pg_file_settings WHERE name IN ('archive_mode', 'archive_command') "
    "ORDER BY name, seqno DESC) AS last))"
)


def os_identity(module, params, data_directory):
    """(name, uid, gid) of the cluster's OS user: the option, else the owner of the data directory."""
    if params["os_user"]:
        try:
            entry = pwd.getpwnam(params["os_user"])
        except KeyError:
            raise LifeboatError("OS user %s does not exist on this host." % params["os_user"])
        return entry.pw_name, entry.pw_uid, entry.pw_gid
    try:
        st = os.stat(data_directory)
    except OSError:
        raise LifeboatError(
            "The cluster's data directory %s is not on this host; run postgresql_wal_archive on the database "
            "host (the archive command runs there), or set os_user." % data_directory)
    try:
        return pwd.getpwuid(st.st_uid).pw_name, st.st_uid, st.st_gid
    except KeyError:
        return str(st.st_uid), st.st_uid, st.st_gid


def run_probe(module, argv, uid, gid):
    """Run ``argv probe`` as the cluster's OS user; one sentence if it fails."""
    runner = runner_for(module)
    command = list(argv) + ["probe"]
    if os.geteuid() != uid:
        if os.geteuid() != 0:
            module.warn("Not root and not the cluster's OS user: the archive command was not probed.")
            return
        setpriv = runner.find("setpriv", "util-linux")
        command = [setpriv, "--reuid=%d" % uid, "--regid=%d" % gid, "--clear-groups", "--"] + command
    rc, out, err = runner.run(command, env={"HOME": "/"})
    if rc != 0:
        detail = (err or out).strip().splitlines()
        raise LifeboatError("The archive command failed its probe as the cluster's OS user: %s"
                            % (detail[-1] if detail else "exit status %d." % rc))


def main():
    argument_spec = _postgres.connection_argument_spec()
    argument_spec.update(_store_kinds.store_argument_spec())
    argument_spec.update(
        source=dict(type="str", default="physical"),
        archive_mode=dict(type="str", default="on", choices=["on", "always"]),
        command_dir=dict(type="path"),
        os_user=dict(type="str"),
        python=dict(type="path"),
        probe=dict(type="bool", default=True),
        compression=dict(type="str", default="zstd", choices=["zstd", "gzip", "none"]),
        compression_level=dict(type="int"),
        compression_threads=dict(type="int", default=1),
        encrypt_recipients=dict(type="list", elements="str", default=[]),
    )
    argument_spec.update(_codec.signing_argument_spec())
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True,
                           mutually_exclusive=_codec.SIGNING_MUTUALLY_EXCLUSIVE)
    plain_results(module)
    params = module.params
    result = dict(changed=False)
    try:
        store = _store_kinds.open_store(params["store"])
        host = _jobs.default_host(params)
        source = params["source"]
        _jobs.Codec(module, params["compression"], params["compression_level"], params["compression_threads"],
                    params["encrypt_recipients"])  # checks the codec options and finds the tools
        signer = _codec.signer_from_params(params, runner_for(module))  # checks the key with ssh-keygen
        result.update(store=store.describe(), host=host, source=source)
        psql = _postgres.find_binary(module, "psql", params["pg_bin_dir"])
        db = params["login_db"] or "postgres"
        with _postgres.Credentials(params, tmpdir=module.tmpdir) as creds:
            env = creds.env(db)
            state = _postgres.run_json(module, psql, env, db, STATE_SQL + ";\n")
            name, uid, gid = os_identity(module, params, state["data_directory"])
            directory = params["command_dir"] or os.path.join("/var/lib/lifeboat-wal", "%s-%s" % (host, source))
            settings = _wal.Settings(params["store"], host, source, params["compression"],
                                     params["compression_level"], params["compression_threads"],
                                     params["encrypt_recipients"],
                                     tools=dict((t, module.get_bin_path(t)) for t in _wal.TOOLS
                                                if module.get_bin_path(t)),
                                     sign_key=signer.key_text if signer is not None else None)
            installed = _wal.install_command(directory, settings, python=params["python"], uid=uid, gid=gid,
                                             check_mode=module.check_mode)
            result.update(changed=installed["changed"], files_changed=installed["changed"], command_dir=directory,
                          os_user=name)
            # The probe comes before PostgreSQL is told: a command that cannot reach the store is never set.
            if params["probe"] and not module.check_mode:
                run_probe(module, installed["argv"], uid, gid)
            command = _wal.archive_command(installed["argv"])
            wanted = {"archive_mode": params["archive_mode"], "archive_command": command}
            configured = state.get("configured") or {}
            running = state.get("running") or {}
            to_set = [key for key in ("archive_mode", "archive_command") if configured.get(key) != wanted[key]]
            if to_set and not module.check_mode:
                sql = "".join("ALTER SYSTEM SET %s = %s;\n" % (key, _postgres.quote_literal(wanted[key]))
                              for key in to_set)
                _postgres.run_sql(module, psql, env, db, sql)
        result.update(
            changed=bool(to_set) or installed["changed"],
            settings_changed=bool(to_set),
            files_changed=installed["changed"],
            archive_command=command,
            archive_mode=params["archive_mode"],
            command=installed["argv"],
            command_dir=directory,
            os_user=name,
            signed=signer is not None,
            restart_needed=running.get("archive_mode") != params["archive_mode"],
            reload_needed=running.get("archive_command") != command,
        )
    except LifeboatError as exc:
        module.fail_json(msg=str(exc), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
