#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: backup_metrics
short_description: Write the Prometheus textfile-collector metrics of a backup run
version_added: 0.1.0
description:
  - Writes one file in the Prometheus text exposition format for the node_exporter textfile collector,
    from the per-source outcomes of a backup run (the C(lifeboat.backup.backup) role passes them) and
    from what each store of the 3-2-1 job holds.
  - Per source it gives the time of the last success, the status, duration and time of the last attempt,
    the bytes of the newest set, the RPO and whether it is breached (0/1), whether each copy was verified,
    and per store the time and age of the newest copy, how many sets and how many bytes the store holds
    of the source, and how many entries in it are broken or dated in the future. Per store it says whether
    the store could be read and, for a V(dir) store, the free and total bytes of its filesystem.
  - The metric names and labels are listed in the collection's docs/metrics.md, with example alert rules
    under examples/prometheus/.
  - The file is written to a temp file in the same directory (a dot name ending in C(.tmp), which the
    collector ignores), synced and renamed over O(path), mode 0644. Missing parent directories are created.
  - Stores are untrusted input. A store that cannot be read, or holds broken or forged sets, gives an
    entry in RV(errors) and a C(lifeboat_backup_store_read_error) sample with the reason as label; the other
    metrics are still written.
author:
  - Lifeboat maintainers (@lifeboat-backup)
extends_documentation_fragment:
  - lifeboat.backup._metrics_stores
attributes:
  check_mode:
    support: full
    description: Reads the stores and returns the metrics it would write; the file is not touched.
  diff_mode:
    support: none
    description: The file is a generated report; RV(metrics) lists what it holds.
  idempotent:
    support: none
    description: The file holds the time it was written, so every run rewrites it.
options:
  path:
    description:
      - The file to write, normally in the directory of the node_exporter textfile collector
        (its C(--collector.textfile.directory)); the name must end in C(.prom) for the collector to read it.
    type: path
    required: true
  host:
    description:
      - Host name the sets of the sources are filed under in the stores, and the C(host) label of every sample.
      - Defaults to the short host name of the machine the module runs on; roles pass C(inventory_hostname).
    type: str
  sources:
    description:
      - The outcome of the run for each source, one entry per source.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: Name of the source, as in the stores.
        type: str
        required: true
      engine:
        description: Engine of the source, such as V(postgresql), V(mysql) or V(files).
        type: str
      method:
        description: Backup method, such as V(pg_dump) or V(mariabackup).
        type: str
      status:
        description: What the last attempt did. V(skipped) means a fresh enough set existed already.
        type: str
        required: true
        choices: [ok, failed, skipped]
      error:
        description: Why the attempt failed, one sentence. Kept in the result only, never in a label.
        type: str
      set_id:
        description: The set the attempt wrote (or found fresh).
        type: str
      type:
        description: Type of that set (V(full), V(incremental) or V(differential)).
        type: str
      bytes:
        description: Bytes stored for that set.
        type: int
      duration_s:
        description: Seconds the attempt took.
        type: float
      started:
        description: When the attempt started, an ISO 8601 time with a time zone.
        type: str
      finished:
        description: When the attempt ended, an ISO 8601 time with a time zone.
        type: str
      copies:
        description:
          - The copies of the set by store role (V(primary), V(secondary), V(offsite)); each a dict with
            C(set_id), C(verified) (bool) and C(error).
        type: dict
      rpo:
        description: The recovery point objective of the source, a duration such as V(26h).
        type: str
      rpo_breach:
        description:
          - Whether the newest set is older than O(sources[].rpo). When unset and O(sources[].rpo) is
            given, the module works it out from the newest set the stores hold.
        type: bool
  store_usage:
    description:
      - Read every manifest of each source in each store to add up the bytes held
        (C(lifeboat_backup_store_bytes)). With V(false) only the set names and the newest manifest are read,
        which is quicker on a remote store holding many sets, and C(lifeboat_backup_store_bytes) is left out.
    type: bool
    default: true
requirements:
  - boto3 and botocore, for a store of kind V(s3)
seealso:
  - module: lifeboat.backup.backup_info
  - name: node_exporter textfile collector
    description: How node_exporter reads C(*.prom) files.
    link: https://github.com/prometheus/node_exporter#textfile-collector
"""

EXAMPLES = r"""
- name: Write the metrics of this run for node_exporter
  lifeboat.backup.backup_metrics:
    path: /var/lib/node_exporter/textfile/lifeboat.prom
    host: "{{ inventory_hostname }}"
    sources:
      - name: app
        engine: postgresql
        method: pg_dump
        status: ok
        set_id: 20261126T031500Z-full
        type: full
        bytes: 1048576
        duration_s: 12.5
        started: "2026-11-26T03:15:00Z"
        finished: "2026-11-26T03:15:12.500Z"
        copies:
          primary: {set_id: 20261126T031500Z-full, verified: true, error: null}
          offsite: {set_id: 20261126T031500Z-full, verified: true, error: null}
        rpo: 26h
        rpo_breach: false
    stores:
      primary:
        path: /var/backups/lifeboat
      offsite:
        kind: s3
        bucket: lifeboat-offsite
"""

RETURN = r"""
path:
  description: The file written (or that would be written in check mode).
  returned: always
  type: str
  sample: /var/lib/node_exporter/textfile/lifeboat.prom
metrics:
  description: Every sample written, in the order of the file, as C(name), C(labels) and C(value).
  returned: always
  type: list
  elements: dict
  sample:
    - name: lifeboat_backup_rpo_breach
      labels: {host: db1, source: app}
      value: 0
families:
  description: The names of the metric families written.
  returned: always
  type: list
  elements: str
  sample: [lifeboat_backup_last_success_timestamp_seconds, lifeboat_backup_rpo_breach]
errors:
  description:
    - Stores that could not be read, each C(store) (the role), C(source) (null for the store as a whole)
      and C(error), one sentence.
  returned: always
  type: list
  elements: dict
failed_sources:
  description: The sources whose last attempt failed, each C(name) and C(error).
  returned: always
  type: list
  elements: dict
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.lifeboat.backup.plugins.module_utils._common import LifeboatError, plain_results, utcnow
from ansible_collections.lifeboat.backup.plugins.module_utils import _jobs
from ansible_collections.lifeboat.backup.plugins.module_utils import _metrics
from ansible_collections.lifeboat.backup.plugins.module_utils import _store_kinds
from ansible_collections.lifeboat.backup.plugins.module_utils._stores import escape


def argument_spec():
    optional_store = _store_kinds.store_option_spec()
    optional_store["required"] = False
    return dict(
        path=dict(type="path", required=True),
        host=dict(type="str"),
        sources=dict(type="list", elements="dict", required=True, options=dict(
            name=dict(type="str", required=True),
            engine=dict(type="str"),
            method=dict(type="str"),
            status=dict(type="str", required=True, choices=list(_metrics.STATUSES)),
            error=dict(type="str"),
            set_id=dict(type="str"),
            type=dict(type="str"),
            bytes=dict(type="int"),
            duration_s=dict(type="float"),
            started=dict(type="str"),
            finished=dict(type="str"),
            copies=dict(type="dict"),
            rpo=dict(type="str"),
            rpo_breach=dict(type="bool"),
        )),
        stores=dict(type="dict", options=dict(
            primary=_store_kinds.store_option_spec(),
            secondary=optional_store,
            offsite=dict(optional_store),
        )),
        store_usage=dict(type="bool", default=True),
    )


def open_stores(specs):
    """Role -> Store for each store given; an error sentence naming the role when one cannot be built."""
    stores = {}
    for role in _metrics.STORE_ROLES:
        spec = (specs or {}).get(role)
        if spec is None:
            continue
        try:
            stores[role] = _store_kinds.open_store(spec)
        except LifeboatError as exc:
            raise LifeboatError("Store %s: %s" % (role, exc))
    return stores


def run(params, now, check_mode):
    host = params["host"] or _jobs.default_host(params)
    stores = open_stores(params["stores"])
    samples, errors = _metrics.collect(host, params["sources"], stores, now, params["store_usage"])
    changed = _metrics.write_atomically(params["path"], samples.render(), check_mode)
    listing = samples.listing()
    families = []
    for sample in listing:
        if sample["name"] not in families:
            families.append(sample["name"])
    failed = [{"name": o["name"], "error": o.get("error")} for o in params["sources"] if o["status"] == "failed"]
    return dict(changed=changed, path=params["path"], metrics=listing, families=families, errors=errors,
                failed_sources=failed)


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    plain_results(module)
    try:
        result = run(module.params, utcnow(), module.check_mode)
    except LifeboatError as exc:
        module.fail_json(msg=str(exc))
    if result["errors"]:
        module.warn("Some stores could not be read: %s" % "; ".join(
            "%s%s: %s" % (e["store"], "" if e["source"] is None else " (source %s)" % escape(e["source"], 60),
                          e["error"]) for e in result["errors"][:5]))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
