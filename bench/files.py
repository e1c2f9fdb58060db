#!/usr/bin/env python
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Benchmark of files_backup method rsync_snapshot against raw rsync.

Run through bench/run.sh (``bench/run.sh files``), or directly with options:

  --files N     files in the generated tree (default 20,000)
  --mib N       total size of the tree in MiB (default 1,024)
  --changed P   percent of the files rewritten before the second snapshot (default 1)

One run: a first snapshot through the engine (``_files.RsyncEngine`` driven by ``_jobs.BackupJob`` into a
dir store, index with every file's SHA-256 included) against raw ``rsync -a``; then, with P % of the files
changed, the incremental snapshot against raw ``rsync -a --link-dest``. The new bytes on disk of the
incremental snapshot (the blocks of files with one link, from ``du`` semantics: st_blocks of inodes not
shared with the previous snapshot) are compared with the bytes changed. Page cache is dropped (sync) but
not flushed between runs, so every run reads a warm tree. Each run's CPU seconds (the engine's threads and
every child it waited for) are reported beside its wall time, and the load average around the runs: on a
shared machine the CPU figures are the steadier ones. Results go to bench/results/files.json.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib import log, private_dir  # noqa: E402  pylint: disable=wrong-import-position
from lib.modules import import_collection  # noqa: E402  pylint: disable=wrong-import-position


def make_tree(root, files, total):
    size = max(1, total // files)
    block = os.urandom(1024 * 1024)
    for index in range(files):
        sub = os.path.join(root, "d%03d" % (index % 200))
        os.makedirs(sub, exist_ok=True)
        with open(os.path.join(sub, "f%06d" % index), "wb") as handle:
            offset = (index * 7919) % (len(block) - 1)
            data = (block[offset:] + block)[:size]
            handle.write(data)


def change(root, files, percent):
    count = max(1, files * percent // 100)
    changed = 0
    for index in range(0, files, max(1, files // count))[:count]:
        path = os.path.join(root, "d%03d" % (index % 200), "f%06d" % index)
        with open(path, "r+b") as handle:
            handle.write(os.urandom(16))
        changed += os.path.getsize(path)
    return count, changed


def new_bytes(tree):
    """Bytes of the files in ``tree`` that have a single link (not shared with the previous snapshot)."""
    total = 0
    for base, dummy, names in os.walk(tree):
        for name in names:
            st = os.lstat(os.path.join(base, name))
            if st.st_nlink == 1:
                total += st.st_blocks * 512
    return total


def cpu_now():
    """CPU seconds of this process (all threads) and of its waited-for children (rsync, cat)."""
    own = os.times()
    return own.user + own.system + own.children_user + own.children_system


def timed(fn, cpu=None):
    """Wall seconds of ``fn()`` after a sync; its CPU seconds go to ``cpu`` (a list) when given."""
    subprocess.run(["sync"], check=True)
    start, cpu0 = time.monotonic(), cpu_now()
    out = fn()
    if cpu is not None:
        cpu.append(cpu_now() - cpu0)
    return time.monotonic() - start, out


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--files", type=int, default=20000)
    p.add_argument("--mib", type=int, default=1024)
    p.add_argument("--changed", type=int, default=1)
    args = p.parse_args()
    import_collection()
    from ansible_collections.lifeboat.backup.plugins.module_utils import _files, _jobs, _store_kinds  # noqa

    work = private_dir("files")
    shutil.rmtree(work)
    work = private_dir("files")
    src = os.path.join(work, "src")
    log("generating %d files, %d MiB" % (args.files, args.mib))
    make_tree(src, args.files, args.mib * 1024 * 1024)
    rsync = shutil.which("rsync")
    store = _store_kinds.open_store({"kind": "dir", "path": os.path.join(work, "store")})

    def engine_run():
        engine = _files.RsyncEngine(store, src, rsync)
        job = _jobs.BackupJob(store, "bench", "tree", _files.ENGINE, _files.RSYNC_METHOD, work_dir=work)
        return job.run(engine)[0]

    raw1 = os.path.join(work, "raw1")
    raw2 = os.path.join(work, "raw2")
    same1 = os.path.join(work, "same1")
    same2 = os.path.join(work, "same2")

    def quiet(argv):
        return subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)

    load = [os.getloadavg()[0]]
    cpu = []
    t_raw1, dummy = timed(lambda: quiet([rsync, "-a", src + "/", raw1 + "/"]), cpu)
    # rsync with the engine's own flags (hard links, xattrs, ACLs, numeric ids), without the engine around it
    t_same1, dummy = timed(lambda: quiet(_files.rsync_argv(rsync, src, same1)), cpu)
    t_eng1, first = timed(engine_run, cpu)
    count, changed = change(src, args.files, args.changed)
    t_raw2, dummy = timed(lambda: quiet([rsync, "-a", "--link-dest=" + raw1, src + "/", raw2 + "/"]), cpu)
    t_same2, dummy = timed(lambda: quiet(_files.rsync_argv(rsync, src, same2, [same1])), cpu)
    t_eng2, second = timed(engine_run, cpu)
    load.append(os.getloadavg()[0])
    tree2 = os.path.join(store.location("bench", "tree", second["set_id"]), "tree")
    added = new_bytes(tree2)
    rows = [
        ("first snapshot", t_raw1, t_same1, t_eng1) + tuple(cpu[0:3]),
        ("%d%% changed (%d files, %d bytes), incremental" % (args.changed, count, changed), t_raw2, t_same2, t_eng2)
        + tuple(cpu[3:6]),
    ]
    lines = ["| what | raw `rsync -a` s | rsync, the engine's flags, s | rsync_snapshot s | ratio to raw "
             "| CPU s: raw / engine's flags / rsync_snapshot | CPU ratio to raw |",
             "|---|---|---|---|---|---|---|"]
    for what, raw, same, eng, c_raw, c_same, c_eng in rows:
        lines.append("| %s | %.2f | %.2f | %.2f | %.2f | %.2f / %.2f / %.2f | %.2f |" % (
            what, raw, same, eng, eng / raw if raw else 0, c_raw, c_same, c_eng, c_eng / c_raw if c_raw else 0))
    lines.append("")
    lines.append("Load average (1 min) at the start and the end of the timed runs: %.1f, %.1f; %d CPUs."
                 % (load[0], load[1], os.cpu_count() or 0))
    lines.append("New bytes on disk of the incremental snapshot: %d (changed bytes %d, %.2fx); "
                 "bytes_transferred %d." % (added, changed, added / float(changed or 1),
                                            second["options"]["bytes_transferred"]))
    text = "\n".join(lines)
    print(text)
    results = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
    os.makedirs(results, exist_ok=True)
    with open(os.path.join(results, "files.json"), "w", encoding="utf-8") as handle:
        json.dump({"rows": rows, "new_bytes": added, "changed_bytes": changed, "files": args.files,
                   "mib": args.mib, "load": load}, handle, indent=1)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
