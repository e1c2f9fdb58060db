#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: backup_verify
short_description: Recompute the checksums of backup sets and name every bad file
version_added: 0.1.0
description:
  - Re-reads every payload file of one set, or of all sets matching the filters, and compares size
    and SHA-256 with the manifest. Missing, truncated, altered and unlisted files are named.
  - Works for every engine; reads each file once, in bounded memory.
  - Read-only; safe in check mode.
author:
  - Lifeboat maintainers (@lifeboat-backup)
extends_documentation_fragment:
  - lifeboat.backup._store
  - lifeboat.backup._signing.trust
  - lifeboat.backup._readonly
options:
  host:
    description:
      - Only sets filed under this host. All hosts when unset.
    type: str
  source:
    description:
      - Only sets of this source. Required with O(set_id).
    type: str
  set_id:
    description:
      - Verify only this set.
    type: str
  fail_on_error:
    description:
      - Fail the task when any set is bad. With V(false) the result still lists every problem.
    type: bool
    default: true
requirements: []
seealso:
  - module: lifeboat.backup.backup_info
  - module: lifeboat.backup.postgresql_restore
"""

EXAMPLES = r"""
- name: Verify every set of this host
  lifeboat.backup.backup_verify:
    store:
      path: /var/backups/lifeboat
    host: "{{ inventory_hostname }}"

- name: Verify one set, report without failing
  lifeboat.backup.backup_verify:
    store:
      path: /var/backups/lifeboat
    host: db1
    source: app
    set_id: 20261126T031500Z-full
    fail_on_error: false
  register: lifeboat_verify
"""

RETURN = r"""
checked:
  description: Number of sets verified.
  returned: always
  type: int
  sample: 12
bytes:
  description: Bytes read and hashed.
  returned: always
  type: int
ok:
  description: Whether every set verified.
  returned: always
  type: bool
results:
  description: One entry per set with C(host), C(source), C(set_id), C(ok) and C(problems)
    (each with C(name), C(problem) = missing, size, sha256, unreadable or unlisted, and the
    expected and actual values).
  returned: always
  type: list
  elements: dict
bad_files:
  description: C(host/source/set_id/file) of every bad file.
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.lifeboat.backup.plugins.module_utils._common import LifeboatError, plain_results
from ansible_collections.lifeboat.backup.plugins.module_utils import _catalog
from ansible_collections.lifeboat.backup.plugins.module_utils import _codec
from ansible_collections.lifeboat.backup.plugins.module_utils import _jobs
from ansible_collections.lifeboat.backup.plugins.module_utils._runner import runner_for
from ansible_collections.lifeboat.backup.plugins.module_utils import _store_kinds


def verify(store, host, source, set_id, trust=None):
    sets, invalid, dummy = _catalog.scan(store, host, source)
    results = []
    if set_id:
        sets = [m for m in sets if m["set_id"] == set_id]
        invalid = [i for i in invalid if i["set_id"] == set_id]
        if not sets and not invalid:
            raise LifeboatError("Set %s/%s/%s is not in the store (or is incomplete)." % (host, source, set_id))
    for manifest in sets:
        problems = []
        if trust is not None:
            try:
                _jobs.check_signature(trust, manifest)
            except _codec.SignatureError as exc:
                problems.append({"name": "manifest.json", "problem": "signature", "detail": str(exc)})
        problems += store.verify_set(manifest)
        results.append(dict(host=manifest["host"], source=manifest["source"], set_id=manifest["set_id"],
                            ok=not problems, problems=problems, bytes=manifest["bytes"]))
    for bad in invalid:
        results.append(dict(host=bad["host"], source=bad["source"], set_id=bad["set_id"], ok=False, bytes=0,
                            problems=[{"name": "manifest.json", "problem": "invalid", "detail": bad["error"]}]))
    return results


def main():
    argument_spec = _jobs.store_argument_spec()
    argument_spec.update(_codec.trust_argument_spec())
    argument_spec.update(
        source=dict(type="str"),
        set_id=dict(type="str"),
        fail_on_error=dict(type="bool", default=True),
    )
    module = AnsibleModule(
        argument_spec=argument_spec,
        supports_check_mode=True,
        required_by={"set_id": ["source", "host"]},
        mutually_exclusive=_codec.TRUST_MUTUALLY_EXCLUSIVE,
    )
    plain_results(module)
    params = module.params
    try:
        store = _store_kinds.open_store(params["store"])
        if not store.exists():
            raise LifeboatError("The store %s does not exist." % store.location())
        trust = _codec.trust_from_params(params, runner_for(module))
        results = verify(store, params["host"], params["source"], params["set_id"], trust)
    except LifeboatError as exc:
        module.fail_json(msg=str(exc))
    bad = [r for r in results if not r["ok"]]
    bad_files = ["%s/%s/%s/%s" % (r["host"], r["source"], r["set_id"], p["name"]) for r in bad for p in r["problems"]]
    result = dict(changed=False, checked=len(results), ok=not bad, results=results, bad_files=bad_files,
                  bytes=sum(r["bytes"] for r in results if r["ok"]), store=store.describe())
    if bad and params["fail_on_error"]:
        module.fail_json(
            msg="%d of %d set(s) failed verification: %s." % (
                len(bad), len(results),
                "; ".join("%s/%s/%s (%s)" % (r["host"], r["source"], r["set_id"], _jobs.describe_problems(r["problems"]))
                          for r in bad)),
            **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
