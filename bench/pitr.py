#!/usr/bin/env python
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Benchmark of the WAL archive command against cp: segments per second.

Run through bench/run.sh (``bench/run.sh pitr``). One run:

1. makes --segments WAL-like files of 16 MiB (each 8 KiB page: 2 KiB of random
   bytes and 6 KiB of repeated text, so zstd finds about what it finds in WAL);
2. installs the archive command (_wal.install_command) for a dir store;
3. archives every file the way PostgreSQL does, one process after the other,
   --reps times, interleaved with the same files through
     cp          cp FILE DEST
     cp+sync     cp FILE DEST && sync DEST (the command fsyncs what it stores)
   each into a fresh directory;
4. writes bench/results/pitr.md and .json and prints the Markdown.

The base backup against raw ``pg_basebackup -Ft -D - | zstd -T0`` is not timed
here yet (docs/performance.md says so).
"""

import os
import shutil
import subprocess
import sys
import time

from lib import MIB, cli, log, private_dir
from lib.modules import import_collection
from lib.report import machine_info, machine_table, table, write_results
from lib.timing import med

SEGMENT = 16 * MIB


def make_segments(directory, count):
    os.makedirs(directory, exist_ok=True)
    names = []
    text = (b"INSERT INTO orders VALUES (42, 'lifeboat', now()); " * 200)[:6 * 1024]
    for number in range(count):
        name = "%08X%08X%08X" % (1, 0, number + 1)
        path = os.path.join(directory, name)
        if not os.path.exists(path) or os.path.getsize(path) != SEGMENT:
            with open(path, "wb") as handle:
                for dummy in range(SEGMENT // 8192):
                    handle.write(os.urandom(2048) + text)
        names.append(name)
    return names


def run_push(argv, src, names):
    for name in names:
        subprocess.run(argv + ["push", os.path.join(src, name), name], check=True)


def run_cp(src, dest, names, sync):
    os.makedirs(dest, exist_ok=True)
    for name in names:
        target = os.path.join(dest, name)
        subprocess.run(["cp", os.path.join(src, name), target], check=True)
        if sync:
            subprocess.run(["sync", target], check=True)


def bench(args):
    import_collection()
    from ansible_collections.lifeboat.backup.plugins.module_utils import _wal  # pylint: disable=import-outside-toplevel
    work = private_dir("pitr")
    src = os.path.join(work, "pg_wal")
    names = make_segments(src, args.segments)
    results = {"push": [], "cp": [], "cp+sync": []}
    for rep in range(args.reps):
        for label in ("push", "cp", "cp+sync"):
            dest = os.path.join(work, "dest")
            shutil.rmtree(dest, ignore_errors=True)
            subprocess.run(["sync"], check=True)
            if label == "push":
                settings = _wal.Settings({"kind": "dir", "path": os.path.join(dest, "store")}, "bench", "physical")
                argv = _wal.install_command(os.path.join(dest, "cmd"), settings)["argv"]
                start = time.monotonic()
                run_push(argv, src, names)
            else:
                start = time.monotonic()
                run_cp(src, dest, names, label == "cp+sync")
            elapsed = time.monotonic() - start
            results[label].append(elapsed)
            log("rep %d %s: %.2f s, %.1f segments/s" % (rep + 1, label, elapsed, len(names) / elapsed))
    rows = []
    for label in ("push", "cp", "cp+sync"):
        seconds = med(results[label])
        rows.append([label, "%.2f" % seconds, "%.1f" % (len(names) / seconds), "%.0f" % (len(names) * 16 / seconds)])
    lines = ["# WAL archive command against cp", ""]
    lines += machine_table(machine_info(work, tools=("zstd",)))
    lines += ["", "%d segments of 16 MiB, one process per segment as PostgreSQL runs archive_command; median of %d "
              "runs." % (len(names), args.reps), ""]
    lines += table(["", "seconds", "segments/s", "MiB/s"], rows)
    markdown = "\n".join(lines) + "\n"
    write_results("pitr", markdown, {"segments": len(names), "reps": args.reps, "seconds": results})
    print(markdown)


def main(argv=None):
    p = cli.parser(__doc__, reps=3)
    p.add_argument("--segments", type=int, default=64, help="WAL files to archive per run (default 64)")

    def run(args_):
        bench(cli.parse(p, args_))
    return cli.main("pitr", run, argv)


if __name__ == "__main__":
    sys.exit(main())
