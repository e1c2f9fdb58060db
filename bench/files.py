#!/usr/bin/env python
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Benchmark of files_backup, methods rsync_snapshot and tar, against the raw tools.

Run through bench/run.sh (``bench/run.sh files``), or directly with options:

  --files N     files in the generated tree (default 20,000)
  --mib N       total size of the tree in MiB (default 1,024)
  --changed P   percent of the files rewritten before each incremental (default 1)
  --only PART   ``rsync`` or ``tar``: run only that part (default both, in one run)

One run: a first snapshot through the engine (``_files.RsyncEngine`` driven by ``_jobs.BackupJob`` into a
dir store, index with every file's SHA-256 included) against raw ``rsync -a``; then, with P % of the files
changed, the incremental snapshot against raw ``rsync -a --link-dest``. The new bytes on disk of the
incremental snapshot (the blocks of files with one link, from ``du`` semantics: st_blocks of inodes not
shared with the previous snapshot) are compared with the bytes changed. Page cache is dropped (sync) but
not flushed between runs, so every run reads a warm tree. Each run's CPU seconds (the engine's threads and
every child it waited for) are reported beside its wall time, and the load average around the runs: on a
shared machine the CPU figures are the steadier ones.

Then the tar chain on the same tree: a full set through the engine (``_files.TarEngine`` driven by
``_jobs.BackupJob`` with the module's default codec, zstd at its default level with ``-T0``, into the same
dir store; the tar state kept as an object of the store) against raw ``tar | zstd -T0 > file``, plain and
with the engine's own tar flags (``_files.tar_argv``: posix format, sparse, xattrs, ACLs, listed-incremental);
then, with P % of the files changed again, the incremental set against raw ``tar --listed-incremental``
(plain, and with the engine's flags) from a copy of the state the raw full left. The raw archives are written
to files in the bench directory (the store's file system) and fsynced before the clock stops, as the store
fsyncs each payload. Results go to bench/results/files.md and files.json.
"""

import argparse
import os
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib import BenchError, log, private_dir  # noqa: E402  pylint: disable=wrong-import-position
from lib import report  # noqa: E402  pylint: disable=wrong-import-position
from lib.modules import import_collection  # noqa: E402  pylint: disable=wrong-import-position

C_LOCALE = {"LANG": "C", "LC_ALL": "C"}
TAR_METHOD = "tar"


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


class Tools(object):
    """What ``_jobs.Codec`` asks of a module: the path of a tool (the module's get_bin_path)."""

    @staticmethod
    def get_bin_path(name):
        return shutil.which(name)


def pipe_to_file(argvs, path):
    """Run ``argvs`` as a pipeline (C locale) into the new file ``path``, fsync it; return its size."""
    env = dict(os.environ, **C_LOCALE)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    procs = []
    try:
        upstream = None
        for index, argv in enumerate(argvs):
            last = index == len(argvs) - 1
            # pylint: disable-next=consider-using-with
            proc = subprocess.Popen(argv, stdin=upstream, stdout=fd if last else subprocess.PIPE, env=env)
            if upstream is not None:
                upstream.close()
            upstream = proc.stdout
            procs.append(proc)
        failed = [(argv[0], proc.wait()) for argv, proc in zip(argvs, procs)]
        failed = [(name, rc) for name, rc in failed if rc != 0]
        if failed:
            raise BenchError("raw pipeline into %s failed: %s" % (path, ", ".join("%s exit %d" % f for f in failed)))
        os.fsync(fd)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        os.close(fd)
    return os.path.getsize(path)


def rsync_part(args, work, src, store, mods):
    """First and incremental rsync_snapshot against raw rsync: (markdown lines, json data)."""
    _files, _jobs = mods
    rsync = shutil.which("rsync")
    if not rsync:
        raise BenchError("rsync was not found on PATH; install the rsync package.")

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
    t_eng1, dummy = timed(engine_run, cpu)
    count, changed = change(src, args.files, args.changed)
    t_raw2, dummy = timed(lambda: quiet([rsync, "-a", "--link-dest=" + raw1, src + "/", raw2 + "/"]), cpu)
    t_same2, dummy = timed(lambda: quiet(_files.rsync_argv(rsync, src, same2, [same1])), cpu)
    t_eng2, second = timed(engine_run, cpu)
    load.append(os.getloadavg()[0])
    tree2 = os.path.join(store.location("bench", "tree", second["set_id"]), "tree")
    added = new_bytes(tree2)
    for path in (raw1, raw2, same1, same2):
        shutil.rmtree(path, ignore_errors=True)
    rows = [
        ("first snapshot", t_raw1, t_same1, t_eng1) + tuple(cpu[0:3]),
        ("%d%% changed (%d files, %d bytes), incremental" % (args.changed, count, changed), t_raw2, t_same2, t_eng2)
        + tuple(cpu[3:6]),
    ]
    lines = ["### rsync_snapshot against raw rsync", "",
             "| what | raw `rsync -a` s | rsync, the engine's flags, s | rsync_snapshot s | ratio to raw "
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
    return lines, {"rows": rows, "new_bytes": added, "changed_bytes": changed, "load": load}


def tar_part(args, work, src, store, mods):
    """Full and incremental tar sets against raw ``tar | zstd -T0`` and ``tar --listed-incremental``."""
    _files, _jobs = mods
    tar = shutil.which("tar")
    if not tar:
        raise BenchError("tar was not found on PATH; install the tar package.")
    codec = _jobs.Codec(Tools(), "zstd", None, 0)  # the module's defaults: compression zstd, level unset, threads 0
    zstd = codec.stages()  # [zstd -q -c -T0], the very stage the engine's pipeline ends with
    zstd_argv = [stage.argv for stage in zstd]
    out = private_dir("files", "tar")

    def engine_run(set_type):
        def run():
            engine = _files.TarEngine(store, src, tar)
            job = _jobs.BackupJob(store, "bench", "tartree", _files.ENGINE, TAR_METHOD, set_type=set_type,
                                  work_dir=work, codec=codec)
            return job.run(engine)[0]
        return run

    def raw(tar_argv, name):
        return lambda: pipe_to_file([tar_argv] + zstd_argv, os.path.join(out, name))

    plain_full = [tar, "--create", "--file=-", "--directory=%s" % src, "."]
    flags_snar = os.path.join(out, "flags.snar")
    load = [os.getloadavg()[0]]
    cpu = []
    t_plain1, b_plain1 = timed(raw(plain_full, "plain-full.tar.zst"), cpu)
    t_flags1, b_flags1 = timed(raw(_files.tar_argv(tar, src, flags_snar), "flags-full.tar.zst"), cpu)
    t_eng1, first = timed(engine_run("full"), cpu)
    count, changed = change(src, args.files, args.changed)
    # Both raw incrementals start from a copy of the state the raw full with the engine's flags left (level 0);
    # tar rewrites the state it is given. The state does not depend on the format or xattr flags.
    plain_snar = os.path.join(out, "plain-incr.snar")
    flags_snar2 = os.path.join(out, "flags-incr.snar")
    shutil.copyfile(flags_snar, plain_snar)
    shutil.copyfile(flags_snar, flags_snar2)
    plain_incr = [tar, "--create", "--file=-", "--directory=%s" % src, "--listed-incremental=%s" % plain_snar, "."]
    t_plain2, b_plain2 = timed(raw(plain_incr, "plain-incr.tar.zst"), cpu)
    t_flags2, b_flags2 = timed(raw(_files.tar_argv(tar, src, flags_snar2), "flags-incr.tar.zst"), cpu)
    t_eng2, second = timed(engine_run("incremental"), cpu)
    load.append(os.getloadavg()[0])
    if second["type"] != "incremental" or second["parent_set_id"] != first["set_id"]:
        raise BenchError("the second tar set is %s on %s, not an incremental on %s"
                         % (second["type"], second["parent_set_id"], first["set_id"]))
    shutil.rmtree(out, ignore_errors=True)
    rows = [
        ("full", t_plain1, t_flags1, t_eng1) + tuple(cpu[0:3]) + (b_plain1, b_flags1, first["bytes"]),
        ("%d%% changed (%d files, %d bytes), incremental" % (args.changed, count, changed), t_plain2, t_flags2,
         t_eng2) + tuple(cpu[3:6]) + (b_plain2, b_flags2, second["bytes"]),
    ]
    lines = ["### tar chain against raw `tar | zstd -T0`", "",
             "| what | raw tar s | raw tar, the engine's flags, s | method tar s | ratio to raw "
             "| ratio to the engine's flags | CPU s: raw / engine's flags / method tar | CPU ratio to raw "
             "| CPU ratio to the engine's flags | bytes: raw / engine's flags / method tar |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for what, t_pl, t_fl, t_en, c_pl, c_fl, c_en, by_pl, by_fl, by_en in rows:
        lines.append("| %s | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f / %.2f / %.2f | %.2f | %.2f | %d / %d / %d |" % (
            what, t_pl, t_fl, t_en, t_en / t_pl if t_pl else 0, t_en / t_fl if t_fl else 0, c_pl, c_fl, c_en,
            c_en / c_pl if c_pl else 0, c_en / c_fl if c_fl else 0, by_pl, by_fl, by_en))
    lines.append("")
    lines.append("Raw full: `%s | %s > file`; raw incremental: `%s | ...`; engine's flags: `%s`. Each raw archive "
                 "is fsynced before the clock stops." % (" ".join(plain_full), " ".join(zstd_argv[0]),
                                                         " ".join(plain_incr), " ".join(_files.tar_argv(
                                                             tar, src, "STATE"))))
    lines.append("Load average (1 min) at the start and the end of the timed tar runs: %.1f, %.1f; %d CPUs."
                 % (load[0], load[1], os.cpu_count() or 0))
    lines.append("Bytes of the incremental set: %d (changed bytes %d, %.2fx)."
                 % (second["bytes"], changed, second["bytes"] / float(changed or 1)))
    return lines, {"tar_rows": rows, "tar_changed_bytes": changed, "tar_load": load,
                   "tar_sets": [first["set_id"], second["set_id"]]}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--files", type=int, default=20000)
    p.add_argument("--mib", type=int, default=1024)
    p.add_argument("--changed", type=int, default=1)
    p.add_argument("--only", choices=("rsync", "tar"))
    args = p.parse_args()
    import_collection()
    from ansible_collections.lifeboat.backup.plugins.module_utils import _files, _jobs, _store_kinds  # noqa

    work = private_dir("files")
    shutil.rmtree(work)
    work = private_dir("files")
    src = os.path.join(work, "src")
    log("generating %d files, %d MiB" % (args.files, args.mib))
    make_tree(src, args.files, args.mib * 1024 * 1024)
    store = _store_kinds.open_store({"kind": "dir", "path": os.path.join(work, "store")})
    machine = report.machine_info(work, tools=("rsync", "tar", "zstd"))
    lines = ["## files_backup against rsync and tar (bench/files.py)", "",
             "%d files, %d MiB, %d %% changed before each incremental; started %s."
             % (args.files, args.mib, args.changed, machine["started"]), ""]
    data = {"files": args.files, "mib": args.mib, "changed_percent": args.changed}
    mods = (_files, _jobs)
    try:
        for name, part in (("rsync", rsync_part), ("tar", tar_part)):
            if args.only in (None, name):
                log("timing the %s part" % name)
                more, values = part(args, work, src, store, mods)
                lines += more + [""]
                data.update(values)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    machine["loadavg_end"] = report.loadavg()
    lines += report.machine_table(machine, extra=[
        ("tools", "%s; %s; %s" % (machine["rsync"], machine["tar"], machine["zstd"]))])
    data["machine"] = machine
    report.write_results("files", "\n".join(lines) + "\n", data)


if __name__ == "__main__":
    main()
