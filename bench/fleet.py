#!/usr/bin/env python
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Benchmark of the fleet playbook: backup.yml across N local-connection hosts, forks 1 against forks 10.

Run through bench/run.sh (``bench/run.sh fleet``). Each host has one small file-tree source
(--files files of 4 KiB) and two dir stores (primary, secondary); the policy writes a full each run.
Timed, interleaved, --reps times each:

  forks=1    ansible-playbook lifeboat.backup.backup -f 1
  forks=10   the same with -f 10

Each run starts from empty stores. Targets: forks=10 takes <= 0.25x the wall time of forks=1; the
per-source cost of Ansible (wall time of forks=1 per source, less the modules' own work: the
duration_s the backup records, plus the copy and the verifications, measured as each task's
module time from the manifests) is <= 2 s. Writes bench/results/fleet.md and .json.
"""

import glob
import json
import os
import shutil
import subprocess
import sys
import time

from lib import BenchError, VENV_BIN, cli, log, private_dir
from lib.modules import ansible_env
from lib.report import fmt_s, loadavg, machine_info, machine_table, table, verdict, write_results
from lib.timing import med

TARGET_RATIO = 0.25
TARGET_OVERHEAD_S = 2.0


def write_fleet(work, hosts, files):
    data = os.path.join(work, "data")
    if not os.path.isdir(data):
        os.makedirs(data)
        for i in range(files):
            with open(os.path.join(data, "f%03d.bin" % i), "wb") as handle:
                handle.write(os.urandom(4096))
    inventory = {"all": {"vars": {
        "ansible_connection": "local",
        "ansible_python_interpreter": sys.executable,
        "backup_metrics_enabled": False,
        "backup_policy": {"type": "full", "rpo": "1h"},
    }, "hosts": {}}}
    for n in range(hosts):
        name = "h%02d" % n
        inventory["all"]["hosts"][name] = {
            "backup_stores": {"primary": {"kind": "dir", "path": os.path.join(work, "stores", "p", name)},
                              "secondary": {"kind": "dir", "path": os.path.join(work, "stores", "s", name)}},
            "backup_sources": [{"name": "tree", "engine": "files", "path": data}],
        }
    path = os.path.join(work, "inventory.json")
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(inventory, handle)
    return path


def one_run(work, inventory, forks):
    stores = os.path.join(work, "stores")
    shutil.rmtree(stores, ignore_errors=True)
    os.makedirs(os.path.join(stores, "p"))
    os.makedirs(os.path.join(stores, "s"))
    env = ansible_env()
    env["ANSIBLE_STDOUT_CALLBACK"] = "default"
    started = time.monotonic()
    proc = subprocess.run([os.path.join(VENV_BIN, "ansible-playbook"), "-i", inventory, "-f", str(forks),
                           "lifeboat.backup.backup"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          check=False)
    wall = time.monotonic() - started
    if proc.returncode != 0:
        raise BenchError("the playbook failed with forks=%d: %s" % (forks, proc.stdout.decode()[-2000:]))
    work_s = 0.0
    for path in glob.glob(os.path.join(stores, "p", "*", "*", "*", "*", "manifest.json")):
        with open(path, encoding="utf-8") as handle:
            work_s += json.load(handle)["duration_s"]
    return wall, work_s


def run_bench(args):
    work = private_dir("fleet")
    inventory = write_fleet(work, args.hosts, args.files)
    machine = machine_info(work, tools=("zstd",))
    runs = {1: [], 10: []}
    for rep in range(args.reps):
        for forks in ((1, 10) if rep % 2 == 0 else (10, 1)):
            wall, work_s = one_run(work, inventory, forks)
            log("rep %d forks=%d: %.1f s (backups' own work %.1f s)" % (rep + 1, forks, wall, work_s))
            runs[forks].append({"wall_s": wall, "backup_work_s": work_s})
    machine["loadavg_end"] = loadavg()
    w1 = med([r["wall_s"] for r in runs[1]])
    w10 = med([r["wall_s"] for r in runs[10]])
    work1 = med([r["backup_work_s"] for r in runs[1]])
    ratio = w10 / w1
    overhead = (w1 - work1) / args.hosts
    md = ["# Benchmark: the fleet playbook (%d hosts, one small file tree each)" % args.hosts, ""]
    md += machine_table(machine, extra=[("fleet", "%d local-connection hosts, %d x 4 KiB files per source, "
                                                  "primary + secondary dir stores, %d reps" % (args.hosts, args.files, args.reps))])
    md += [""] + table(["variant", "median wall s", "runs"],
                       [["forks=1", fmt_s(w1), " ".join(fmt_s(r["wall_s"]) for r in runs[1])],
                        ["forks=10", fmt_s(w10), " ".join(fmt_s(r["wall_s"]) for r in runs[10])]])
    md += ["", "- forks=10 / forks=1: %.2f (target <= %.2f): %s" % (ratio, TARGET_RATIO, verdict(ratio <= TARGET_RATIO)),
           "- per source with forks=1: %.2f s wall, of which the backup's own work %.2f s; the rest (Ansible, "
           "and the copy and verify steps) %.2f s (target <= %.1f s): %s"
           % (w1 / args.hosts, work1 / args.hosts, overhead, TARGET_OVERHEAD_S, verdict(overhead <= TARGET_OVERHEAD_S))]
    data = {"machine": machine, "runs": runs, "ratio": ratio, "overhead_per_source_s": overhead, "hosts": args.hosts}
    write_results("fleet", "\n".join(md) + "\n", data)


def main(argv=None):
    p = cli.parser(__doc__, reps=2)
    p.add_argument("--hosts", type=int, default=20, help="inventory hosts (default 20)")
    p.add_argument("--files", type=int, default=50, help="4 KiB files per source (default 50)")

    def run(args_):
        run_bench(cli.parse(p, args_))
    return cli.main("fleet", run, argv)


if __name__ == "__main__":
    sys.exit(main())
