#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: files_backup
short_description: Back up a directory tree as rsync snapshots or GNU tar chains
version_added: 0.2.0
description:
  - V(tar) streams C(tar --listed-incremental) through compression, optional age encryption and
    signing into a set of any store (S3 included). O(type) V(full), V(incremental), V(differential)
    or V(auto) is resolved from the sets already in the store. The tar state (C(.snar)) after each
    set is kept in the store's object namespace (C(tar/<set_id>.snar)) and its SHA-256 in the set's
    manifest, so a host rebuilt from scratch continues the chain, and a state altered in the store is
    refused.
  - V(rsync_snapshot) makes each run a new browsable snapshot set of O(path) in a C(dir) or C(ssh) store;
    rsync writes the tree in place inside the partial set (over the store's ssh connection for C(ssh)), and files unchanged since the previous snapshot are
    hard-linked to it (C(--link-dest)), so each snapshot costs only the changed bytes. The index of the set
    holds every file's SHA-256 (and its links file every symbolic link), so verify and restore check
    every file. The manifest records the file count, total bytes and the bytes rsync transferred.
  - A snapshot killed part-way stays C(.partial); the next run keeps its tree and hard-links what it
    already copied, so it resumes instead of starting over.
  - With V(rsync_snapshot), C(changed) is true only when something differs from the previous snapshot
    (rsync's itemized output, and the number of entries for deletions).
  - One writer per source and store, guarded by a lock; a set becomes visible only when complete.
author:
  - Lifeboat maintainers (@lifeboat-backup)
extends_documentation_fragment:
  - lifeboat.backup._files
  - lifeboat.backup._store
  - lifeboat.backup._codec
  - lifeboat.backup._signing
attributes:
  check_mode:
    support: full
    description: >-
      Reports the set it would write (its type and parent); nothing is written. With
      O(method=rsync_snapshot), runs C(rsync --dry-run) against the previous snapshot and reports what
      would change (C(would_change)) and whether anything would (C(changed)).
  diff_mode:
    support: none
    description: Nothing to diff; the result describes the sets.
  idempotent:
    support: partial
    description: >-
      With O(max_age) a rerun skips while a complete set younger than that exists.
options:
  method:
    description:
      - V(tar) for archives streamed into any store (the form for object storage).
      - V(rsync_snapshot) for browsable snapshots hard-linked to the previous one, in a store with the
        C(trees) capability (a C(dir) or C(ssh) store). Such a set is always a complete tree (its type is V(full)),
        it cannot be encrypted, and its files are stored uncompressed.
    type: str
    default: tar
    choices: [tar, rsync_snapshot]
  include:
    description:
      - With O(method=rsync_snapshot), rsync patterns to keep although an O(exclude) pattern matches
        them (given to rsync before the excludes, first match wins).
    type: list
    elements: str
    default: []
  bwlimit:
    description:
      - With O(method=rsync_snapshot), rsync's bandwidth limit in KiB per second (V(5000)), or with a
        suffix (V(20m)).
    type: str
  checksum:
    description:
      - With O(method=rsync_snapshot), compare files by content (rsync C(--checksum)) rather than by
        size and modification time. Slower (every file is read), but a file altered in the previous
        snapshot is then never hard-linked into the new one.
    type: bool
    default: false
  type:
    description:
      - With O(method=tar), the set to write. V(auto) writes a full set when none is usable or the
        newest full started more than O(full_every) ago, else O(between).
      - An V(incremental) holds what changed since the previous set of the chain, a V(differential)
        what changed since the chain's full set.
    type: str
    default: full
    choices: [full, incremental, differential, auto]
  full_every:
    description:
      - With O(type=auto), how often a full set is due, for example V(7d).
    type: str
  between:
    description:
      - With O(type=auto), the type written between full sets.
    type: str
    default: incremental
    choices: [incremental, differential]
  xattrs:
    description:
      - Keep extended attributes and POSIX ACLs (GNU tar C(--xattrs --acls), rsync C(--xattrs --acls)).
    type: bool
    default: true
  source:
    description:
      - Name of the source in the store. Defaults to the last component of O(path).
    type: str
  max_age:
    description:
      - Skip the backup (C(changed=false)) when a complete set of this source younger than this exists,
        for example V(20h).
    type: str
  labels:
    description:
      - Free-form labels recorded in the manifest.
    type: dict
    default: {}
  work_dir:
    description:
      - Local scratch directory (the tar state while the archive is written). Never inside the store.
      - Defaults to the module's temporary directory.
    type: path
requirements:
  - GNU tar (O(method=tar)); rsync 3.1 or later (O(method=rsync_snapshot); on the backup server too for an C(ssh) store)
  - zstd (for O(compression=zstd)), gzip or pigz (for O(compression=gzip))
  - age (when O(encrypt_recipients) is set)
seealso:
  - module: lifeboat.backup.files_restore
  - module: lifeboat.backup.backup_verify
  - module: lifeboat.backup.backup_info
notes:
  - C(docs/restore-by-hand.md) in the collection explains how to restore a tar chain with stock tools only;
    an rsync snapshot is a plain directory tree in the store (C(<set>/tree/)).
  - Device files, FIFOs and sockets are not kept in rsync snapshots.
  - GNU tar fails when a file changes while it is read; back up a quiescent tree or a file-system snapshot.
"""

EXAMPLES = r"""
- name: Hourly browsable snapshot of /srv/www into a dir store
  lifeboat.backup.files_backup:
    path: /srv/www
    method: rsync_snapshot
    exclude:
      - "*.log"
      - node_modules
    store:
      kind: dir
      path: /var/backups/lifeboat

- name: Nightly tar chain of /srv/www into S3, a full set every week
  lifeboat.backup.files_backup:
    path: /srv/www
    method: tar
    type: auto
    full_every: 7d
    exclude:
      - "*.log"
      - node_modules
    store:
      kind: s3
      bucket: backups
    host: "{{ inventory_hostname }}"
"""

RETURN = r"""
set_id:
  description: Id of the set written (or of the fresh set that made the run skip, or that would be written).
  returned: always
  type: str
  sample: 20261126T031500Z-incremental
type:
  description: The type written (after O(type=auto) was resolved).
  returned: success
  type: str
  sample: incremental
type_reason:
  description: Why that type and parent were chosen.
  returned: success
  type: str
store:
  description: The store, as kind and location.
  returned: always
  type: dict
path:
  description: Location of the set in the store.
  returned: always
  type: str
bytes:
  description: What the set occupies in the store (payload files and tree files).
  returned: success
  type: int
duration_s:
  description: Seconds the backup took.
  returned: success
  type: float
files:
  description: Payload files with size and SHA-256.
  returned: success
  type: list
  elements: dict
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
  description: Why no set was written, when C(changed=false).
  returned: always
  type: str
removed_partials:
  description: Leftover partial sets of crashed runs that were removed.
  returned: success
  type: list
  elements: str
files_count:
  description: With O(method=rsync_snapshot), the regular files in the snapshot.
  returned: success with O(method=rsync_snapshot)
  type: int
total_bytes:
  description: With O(method=rsync_snapshot), the bytes of those files.
  returned: success with O(method=rsync_snapshot)
  type: int
bytes_transferred:
  description: With O(method=rsync_snapshot), the bytes rsync copied (not hard-linked to an earlier snapshot).
  returned: success with O(method=rsync_snapshot)
  type: int
previous_set_id:
  description: With O(method=rsync_snapshot), the snapshot unchanged files were hard-linked to.
  returned: with O(method=rsync_snapshot)
  type: str
changes:
  description: With O(method=rsync_snapshot), rsync's itemized changes (at most 1000), C(<flags> <path>).
  returned: success with O(method=rsync_snapshot)
  type: list
  elements: str
changes_count:
  description: With O(method=rsync_snapshot), the number of itemized changes.
  returned: success with O(method=rsync_snapshot)
  type: int
would_change:
  description: In check mode with O(method=rsync_snapshot), what a run would change (rsync's itemized lines).
  returned: check mode with O(method=rsync_snapshot)
  type: list
  elements: str
stale_lock:
  description: The stale lock that was taken over.
  returned: when a stale lock was found
  type: dict
"""

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.lifeboat.backup.plugins.module_utils._common import LifeboatError, plain_results
from ansible_collections.lifeboat.backup.plugins.module_utils import _codec
from ansible_collections.lifeboat.backup.plugins.module_utils import _files
from ansible_collections.lifeboat.backup.plugins.module_utils import _jobs
from ansible_collections.lifeboat.backup.plugins.module_utils._runner import runner_for
from ansible_collections.lifeboat.backup.plugins.module_utils import _store_kinds


def main():
    argument_spec = _jobs.backup_argument_spec(chains=True)
    argument_spec.update(
        path=dict(type="path", required=True),
        method=dict(type="str", default="tar", choices=["tar", _files.RSYNC_METHOD]),
        include=dict(type="list", elements="str", default=[]),
        bwlimit=dict(type="str"),
        checksum=dict(type="bool", default=False),
        exclude=dict(type="list", elements="str", default=[]),
        one_file_system=dict(type="bool", default=False),
        xattrs=dict(type="bool", default=True),
    )
    module = AnsibleModule(
        argument_spec=argument_spec,
        supports_check_mode=True,
        required_if=_jobs.BACKUP_REQUIRED_IF,
        mutually_exclusive=_codec.SIGNING_MUTUALLY_EXCLUSIVE,
    )
    plain_results(module)
    params = module.params
    try:
        source_dir = _files.check_source_dir(params["path"])
        source = params["source"] or os.path.basename(source_dir.rstrip("/")) or "root"
        store = _store_kinds.open_store(params["store"])
        if params["method"] == _files.RSYNC_METHOD:
            if params["encrypt_recipients"]:
                raise _files.FilesError("method rsync_snapshot writes a browsable tree, which cannot be encrypted; "
                                        "use method tar for encrypted sets.")
            if "trees" not in store.capabilities:
                raise _files.FilesError("method rsync_snapshot needs a store that holds trees (a dir or ssh store); %s "
                                        "does not." % _jobs.describe_store(store))
            engine = _files.RsyncEngine(store, source_dir, _jobs.need_binary(module, "rsync", "rsync"),
                                        params["exclude"], params["include"], params["one_file_system"],
                                        params["bwlimit"], params["checksum"], params["xattrs"],
                                        runner=runner_for(module), warn=module.warn)
        else:
            engine = _files.TarEngine(store, source_dir, _jobs.need_binary(module, "tar", "tar"), params["exclude"],
                                      params["one_file_system"], params["xattrs"])
    except LifeboatError as exc:
        module.fail_json(msg=str(exc), cmd=[])
    _jobs.run_backup_module(module, engine, source, _files.ENGINE, params["method"], store=store)


if __name__ == "__main__":
    main()
