#!/usr/bin/env python
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Benchmark of btrfs_snapshot (send into a dir store) against raw ``btrfs send | zstd -T0``.

Run through bench/run.sh (``bench/run.sh btrfs``), or directly with options:

  --mib N     size of the subvolume's data in MiB (default 1,024; half random, half repeated text)
  --reps N    repetitions of each side (default 3; the median is reported)

Needs root: the subvolume lives on a btrfs filesystem in a loop file (scripts/btrfsloop.py) under the
bench directory. Each side takes a read-only snapshot, sends it and deletes it: the raw side with
``btrfs subvolume snapshot -r``, ``btrfs send -q snap | zstd -T0 > file`` and ``btrfs subvolume delete``;
the module side runs ``lifeboat.backup.btrfs_snapshot`` (python -m, no ansible) with compression zstd,
threads 0, writing a full set into a dir store on the same disk as the raw output. Results go to
bench/results/btrfs.json and btrfs.md.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib import BenchError, Skip, log, private_dir  # noqa: E402  pylint: disable=wrong-import-position
from lib.modules import run_direct  # noqa: E402  pylint: disable=wrong-import-position

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOOP = os.path.join(REPO, "scripts", "btrfsloop.py")


def sh(argv, **kwargs):
    proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False, **kwargs)
    if proc.returncode != 0:
        raise BenchError("%s failed: %s" % (" ".join(argv), proc.stderr.decode("utf-8", "replace").strip()))
    return proc.stdout.decode("utf-8", "replace")


def fill(path, mib):
    text = b"".join(b"line %08d of a log that compresses well\n" % i for i in range(25000))
    for index in range(mib):
        with open(os.path.join(path, "f%05d" % index), "wb") as handle:
            handle.write(os.urandom(512 * 1024) if index % 2 == 0 else (text * 2)[:1024 * 1024][:512 * 1024] * 2)


def raw_side(mount, subvolume, out):
    snap = os.path.join(mount, "raw-snap")
    start = time.perf_counter()
    sh(["btrfs", "subvolume", "snapshot", "-r", subvolume, snap])
    sh(["sh", "-c", 'btrfs send -q "$1" | zstd -q -T0 > "$2"', "sh", snap, out])
    subprocess.run(["sync", "-f", out], check=True)
    wall = time.perf_counter() - start
    sh(["btrfs", "subvolume", "delete", snap])
    return wall, os.path.getsize(out)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mib", type=int, default=1024)
    p.add_argument("--reps", type=int, default=3)
    args, dummy = p.parse_known_args()
    if os.geteuid() != 0:
        raise Skip("the btrfs benchmark needs root (a loop mount).")
    for tool in ("btrfs", "mkfs.btrfs", "zstd"):
        if not shutil.which(tool):
            raise Skip("the btrfs benchmark needs %s (btrfs-progs, zstd)." % tool)
    work = private_dir("btrfs")
    loop = os.path.join(work, "loop")
    size = "%dM" % max(1024, args.mib * 3)
    info = json.loads(sh([sys.executable, LOOP, "start", "--dir", loop, "--size", size]))
    try:
        mount = info["mount"]
        subvolume = os.path.join(mount, "data")
        if not os.path.isdir(subvolume):
            sh(["btrfs", "subvolume", "create", subvolume])
            log("filling %d MiB" % args.mib)
            fill(subvolume, args.mib)
            sh(["btrfs", "filesystem", "sync", mount])
        store = os.path.join(work, "store")
        raw, module = [], []
        for rep in range(args.reps):
            out = os.path.join(work, "raw.btrfs.zst")
            wall, raw_bytes = raw_side(mount, subvolume, out)
            raw.append(wall)
            os.unlink(out)
            shutil.rmtree(store, ignore_errors=True)
            run, result = run_direct("btrfs_snapshot", {
                "subvolume": subvolume, "source": "bench", "snapshot_dir": os.path.join(mount, ".snaps"),
                "compression": "zstd", "compression_threads": 0, "store": {"kind": "dir", "path": store},
                "host": "bench", "_ansible_check_mode": False})
            module.append(run.wall)
            module_bytes = result["bytes"]
            # the module keeps its newest snapshot as the next parent: remove it for the next repetition
            snaps = os.path.join(mount, ".snaps", "bench")
            for name in os.listdir(snaps) if os.path.isdir(snaps) else []:
                sh(["btrfs", "subvolume", "delete", os.path.join(snaps, name)])
            log("rep %d: raw %.2fs, module %.2fs" % (rep + 1, raw[-1], module[-1]))
    finally:
        sh([sys.executable, LOOP, "stop", "--dir", loop, "--remove"])
    raw_s, module_s = statistics.median(raw), statistics.median(module)
    lines = ["| what | median s (%d runs) | bytes |" % args.reps, "|---|---|---|",
             "| raw `btrfs send \\| zstd -T0 > file` (with snapshot and delete) | %.2f | %d |" % (raw_s, raw_bytes),
             "| `btrfs_snapshot`, full set into a dir store | %.2f | %d |" % (module_s, module_bytes),
             "", "Ratio module / raw: %.2f (%d MiB subvolume)." % (module_s / raw_s, args.mib)]
    text = "\n".join(lines)
    print(text)
    results = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
    os.makedirs(results, exist_ok=True)
    with open(os.path.join(results, "btrfs.json"), "w", encoding="utf-8") as handle:
        json.dump({"raw_s": raw, "module_s": module, "mib": args.mib, "raw_bytes": raw_bytes,
                   "module_bytes": module_bytes}, handle, indent=1)
    with open(os.path.join(results, "btrfs.md"), "w", encoding="utf-8") as handle:
        handle.write(text + "\n")


if __name__ == "__main__":
    try:
        main()
    except Skip as exc:
        log("skipped: %s" % exc)
    except BenchError as exc:
        log(str(exc))
        sys.exit(1)
