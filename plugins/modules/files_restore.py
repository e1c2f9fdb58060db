#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: files_restore
short_description: Restore a directory tree from a tar chain or an rsync snapshot, safely
version_added: 0.2.0
description:
  - Restores a set written by M(lifeboat.backup.files_backup) into O(target). For a tar chain
    (full, then incrementals, or full and a differential) every member of the chain is verified
    (sizes and SHA-256 of every stored file) before anything is read; for an rsync snapshot every
    file of the tree is re-hashed against the tree's index, and hashed again while it is copied, and
    every symbolic link is checked against the snapshot's links file.
  - An rsync snapshot is copied in Python from the store's tree, walked without following any link; an
    entry the index and links file do not list (a planted file or link, a FIFO, a device, a link where a
    file is listed) makes the restore fail with a sentence naming it, and nothing reaches O(target).
    Files that are one inode in the snapshot are restored as hard links.
  - The store is untrusted input. Archives are extracted in Python, member by member, into a private
    staging directory inside O(target); a member with an absolute path or C(..), a symbolic link
    that leads out of the target, a member written through a symbolic link, a hard link to anything
    outside the tree, or a device or FIFO (unless O(devices=true)) makes the restore fail with a
    sentence naming the member, and nothing reaches O(target).
  - Files deleted between the sets of a chain are deleted in the restored tree too.
  - When the whole chain extracted cleanly, the staging tree is moved into O(target) (renames)
    under the O(overwrite) policy, and the result lists what was replaced.
  - As root, files keep their numeric owner and group, modes (setuid, setgid and sticky bits included),
    times, extended attributes and ACLs, hard links and symbolic links. As another user they belong
    to that user and lose setuid, setgid and sticky bits.
author:
  - Lifeboat maintainers (@lifeboat-backup)
extends_documentation_fragment:
  - lifeboat.backup._store
  - lifeboat.backup._signing.trust
attributes:
  check_mode:
    support: full
    description: Verifies the chain and checks the target, writes nothing.
  diff_mode:
    support: none
    description: The result lists what was replaced.
  idempotent:
    support: partial
    description: >-
      With O(overwrite=if_changed) a rerun replaces nothing, and reports C(changed=false) when
      nothing was placed or replaced.
options:
  source:
    description:
      - Name of the source in the store (as O(lifeboat.backup.files_backup#module:source) wrote it).
    type: str
    required: true
  set_id:
    description:
      - The set to restore. Defaults to the newest complete set of the source.
    type: str
  target:
    description:
      - Absolute path of the directory to restore into. Created (with its parent existing) when missing.
    type: path
    required: true
  paths:
    description:
      - Restore only these paths of the tree (relative, for example V(etc/nginx)), or the paths
        matching these patterns (for example V(*.conf); C(*) also matches C(/)). Defaults to everything.
    type: list
    elements: str
    default: []
  allow_nonempty:
    description:
      - Restore into a O(target) that already holds entries. Without it such a target is refused.
    type: bool
    default: false
  overwrite:
    description:
      - What happens to an entry already in O(target) at a restored path.
      - V(never) keeps it (listed in RV(kept)); V(if_changed) replaces it when its type, content,
        link target, mode or (as root) owner differ; V(always) replaces it. Directories present on
        both sides are merged.
    type: str
    default: never
    choices: [never, if_changed, always]
  devices:
    description:
      - Restore device nodes and FIFOs found in the set (root only). Without it they are refused.
    type: bool
    default: false
  age_identity:
    description:
      - age identity (private key) of an encrypted set. Keep it in Ansible Vault. It reaches C(age)
        through an in-memory file and never appears in argv, results or logs.
    type: str
  age_identity_file:
    description:
      - File holding the age identity; alternative to O(age_identity).
    type: path
  work_dir:
    description:
      - Scratch directory for the restore job. Defaults to the module's temporary directory.
    type: path
requirements:
  - zstd, gzip or pigz, age (to decode sets written with them)
seealso:
  - module: lifeboat.backup.files_backup
  - module: lifeboat.backup.backup_verify
notes:
  - C(docs/restore-by-hand.md) explains how to restore a tar chain with stock tools only.
"""

EXAMPLES = r"""
- name: Restore the newest /srv/www set into an empty directory
  lifeboat.backup.files_restore:
    source: www
    target: /srv/www.restored
    store:
      kind: s3
      bucket: backups
    host: web1

- name: Put back only the nginx configuration, replacing files that differ
  lifeboat.backup.files_restore:
    source: etc
    target: /etc
    paths:
      - nginx
    allow_nonempty: true
    overwrite: if_changed
    store:
      path: /var/backups/lifeboat
    host: "{{ inventory_hostname }}"
"""

RETURN = r"""
set_id:
  description: The set restored.
  returned: success
  type: str
chain:
  description: The sets applied, full first.
  returned: success
  type: list
  elements: str
target:
  description: The directory restored into.
  returned: success
  type: str
restored:
  description: Files, links and devices extracted from the chain (before the overwrite policy).
  returned: success
  type: int
placed:
  description: Entries moved into O(target) where nothing was.
  returned: success
  type: int
replaced:
  description: Paths (relative to O(target)) that were already there and were replaced (at most 1000).
  returned: success
  type: list
  elements: str
replaced_count:
  description: How many entries were replaced.
  returned: success
  type: int
kept:
  description: Paths already there that O(overwrite=never) kept (at most 1000).
  returned: success
  type: list
  elements: str
kept_count:
  description: How many entries were kept.
  returned: success
  type: int
unchanged:
  description: Entries already there and identical (O(overwrite=if_changed)).
  returned: success
  type: int
verified_files:
  description: Stored files whose SHA-256 was checked.
  returned: success
  type: int
cmd:
  description: The decoding stages run.
  returned: always
  type: list
  elements: list
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.lifeboat.backup.plugins.module_utils._common import plain_results
from ansible_collections.lifeboat.backup.plugins.module_utils import _files
from ansible_collections.lifeboat.backup.plugins.module_utils import _jobs


def main():
    argument_spec = _jobs.restore_argument_spec()
    argument_spec.update(
        target=dict(type="path", required=True),
        paths=dict(type="list", elements="str", default=[]),
        allow_nonempty=dict(type="bool", default=False),
        overwrite=dict(type="str", default="never", choices=list(_files.OVERWRITE)),
        devices=dict(type="bool", default=False),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True,
                           mutually_exclusive=_jobs.RESTORE_MUTUALLY_EXCLUSIVE)
    plain_results(module)

    def pick(job, entered):
        return _files.restore_engine(job.manifest, module, module.params)

    def finish(job, engine, result):
        if module.check_mode:
            result["target"] = engine.target
            return
        result.update(engine.details())
        result["changed"] = bool(result["placed"] or result["replaced_count"] or engine.created_target)

    _jobs.run_restore_module(module, pick, finish=finish)


if __name__ == "__main__":
    main()
