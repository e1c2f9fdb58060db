#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: backup_info
short_description: List the backup sets of a store, the newest per source, its age and RPO status
version_added: 0.1.0
description:
  - Reads the manifests of every complete set in a store, for every engine alike.
  - C(.partial) directories (runs in progress or crashed runs) are never listed as sets; they are
    reported apart in RV(partials). Sets whose manifest fails validation are reported in RV(invalid).
  - Read-only; safe in check mode.
author:
  - Lifeboat maintainers (@lifeboat-backup)
extends_documentation_fragment:
  - lifeboat.backup._store
  - lifeboat.backup._readonly
options:
  host:
    description:
      - Only sets filed under this host. All hosts when unset.
    type: str
  source:
    description:
      - Only sets of this source.
    type: str
  rpo:
    description:
      - Recovery point objective, for example V(26h). Each source's newest set is compared with it
        and RV(rpo_status) says V(ok) or V(violated); a source named by O(source) with no set is V(missing).
    type: str
  fail_on_rpo_violation:
    description:
      - Fail the task when any source violates O(rpo) or is missing.
    type: bool
    default: false
requirements: []
seealso:
  - module: lifeboat.backup.backup_verify
  - module: lifeboat.backup.postgresql_backup
"""

EXAMPLES = r"""
- name: What does the store hold for this host?
  lifeboat.backup.backup_info:
    store:
      path: /var/backups/lifeboat
    host: "{{ inventory_hostname }}"
    rpo: 26h
  register: lifeboat_info

- name: Fail the job when any source is older than its RPO
  lifeboat.backup.backup_info:
    store:
      path: /var/backups/lifeboat
    rpo: 26h
    fail_on_rpo_violation: true
"""

RETURN = r"""
sets:
  description: Every complete set, oldest first within each host and source.
  returned: always
  type: list
  elements: dict
  sample:
    - host: db1
      source: app
      set_id: 20261126T031500Z-full
      engine: postgresql
      method: pg_dump
      type: full
      bytes: 1048576
      age_s: 3600.5
latest:
  description: The newest set per C(host/source).
  returned: always
  type: dict
rpo_status:
  description: Per C(host/source) RPO verdict (C(status), C(age_s), C(rpo_s)).
  returned: always
  type: dict
  sample: {"db1/app": {status: ok, age_s: 3600.5, rpo_s: 93600.0}}
partials:
  description: C(.partial) directories found (never backups).
  returned: always
  type: list
  elements: dict
future:
  description:
    - Sets dated in the future beyond the tolerance of 5 minutes, from a wrong clock or a forged set.
      They never count as the latest set, as fresh for C(max_age), or for the RPO status.
  returned: always
  type: list
  elements: dict
invalid:
  description: Directories that look like sets but whose manifest is missing fields or broken.
  returned: always
  type: list
  elements: dict
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.lifeboat.backup.plugins.module_utils._common import LifeboatError, parse_duration, plain_results, utcnow
from ansible_collections.lifeboat.backup.plugins.module_utils import _catalog
from ansible_collections.lifeboat.backup.plugins.module_utils import _jobs
from ansible_collections.lifeboat.backup.plugins.module_utils import _store_kinds


def report(store, host, source, rpo_s, now):
    """Pure given the store contents: the whole info result."""
    sets, invalid, partials = _catalog.scan(store, host, source)
    latest = _catalog.latest_per_source(sets, now=now)
    status = dict((key, _catalog.rpo_status(manifest, rpo_s, now)) for key, manifest in latest.items())
    if host and source and "%s/%s" % (host, source) not in status:
        status["%s/%s" % (host, source)] = _catalog.rpo_status(None, rpo_s, now)
    return dict(
        sets=[_catalog.summary(m, now) for m in sets],
        latest=dict((key, _catalog.summary(m, now)) for key, m in latest.items()),
        rpo_status=status,
        partials=partials,
        invalid=invalid,
        future=_catalog.future_sets(sets, now=now),
    )


def main():
    argument_spec = _jobs.store_argument_spec()
    argument_spec.update(
        source=dict(type="str"),
        rpo=dict(type="str"),
        fail_on_rpo_violation=dict(type="bool", default=False),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    plain_results(module)
    params = module.params
    try:
        store = _store_kinds.open_store(params["store"])
        if not store.exists():
            raise LifeboatError("The store %s does not exist." % store.location())
        rpo_s = parse_duration(params["rpo"], "rpo")
        result = report(store, params["host"], params["source"], rpo_s, utcnow())
    except LifeboatError as exc:
        module.fail_json(msg=str(exc))
    result["store"] = store.describe()
    bad = sorted(key for key, value in result["rpo_status"].items() if value["status"] in ("violated", "missing"))
    if params["fail_on_rpo_violation"] and bad:
        module.fail_json(msg="RPO %s is not met by %s." % (params["rpo"], ", ".join(bad)), **result)
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
