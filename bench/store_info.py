#!/usr/bin/env python
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Benchmark of backup_info and the max_age decision over 10,000 sets in a dir store.

Run through bench/run.sh (``bench/run.sh store_info``). Two dir stores of
10,000 complete sets each are generated once under $LIFEBOAT_BENCH_DIR/info/
and reused by later runs:

  fleet   100 hosts x 4 sources x 25 sets (a daily set per source)
  deep    1 host x 1 source x 10,000 sets (an hourly set, 14 months of them)

Each set is a directory with a small payload and a manifest built by the
collection's own _manifest code (so it validates like a real one), written
straight to disk without fsync. The generated stores are checked through the
store contract: the listing finds every set, sampled manifests read back.

Timed, interleaved, --reps times each, on each store:

  direct       python -m ...backup_info ARGS.json (no ansible), page cache and bytecode cache
               warm, default max_sets (100 sets listed; set_count, sources, latest cover all 10,000)
  direct-nopyc the same with PYTHONDONTWRITEBYTECODE=1 and no bytecode cache: every module is
               compiled on each run, as under Ansible, which ships modules in a zip
  raw-cat      the floor for reading: `find ROOT -name manifest.json -print0 | xargs -0 cat`
  raw-json     the floor for Python: a fresh interpreter that reads every manifest (os.walk,
               open, read) and json.loads it, with no check at all
  direct-all   the same with max_sets -1 (every set listed, the result before max_sets)
  direct-cold  the same after every manifest's pages were dropped from the page
               cache (posix_fadvise DONTNEED); directory entries and inodes stay
               cached, so this is cold-ish. --drop-caches adds `cold`, after
               `echo 3 > /proc/sys/vm/drop_caches` (root; it affects the whole machine)
  ansible      ansible localhost -m lifeboat.backup.backup_info (warm)
  report       backup_info's report() in this process (no interpreter start-up)
  scan         _catalog.scan alone in this process (listing and every manifest, validated)
  exit         what AnsibleModule.exit_json does with report()'s result: the no_log
               scrub (remove_values) and the JSON encoding, in this process
  exit-latest  the same for a result without the list of every set (latest,
               rpo_status, invalid, partials only), to show what the list costs
  direct@REV   with --compare REV: `direct` with the collection as of git revision REV
  plan         BackupJob.plan() with max_age 1d in this process: the decision a
               backup with max_age takes before it runs (deep: one source with
               10,000 sets; fleet: one source with 25)

then profiles one direct run per store with cProfile and writes
bench/results/store_info.md and .json.
"""

import datetime
import hashlib
import json
import os
import shutil
import sys
import time

from lib import BenchError, cli, log, private_dir
from lib.modules import ansible_env, collection_at, collections_path, import_collection, profile_direct, run_ansible, run_direct
from lib.procs import timed
from lib.report import fmt_peak, fmt_s, loadavg, machine_info, machine_table, table, verdict, write_results
from lib.timing import interleaved, med, spread

SETS = 10000
SHAPES = {
    "fleet": {"hosts": 100, "sources": 4, "sets": 25, "step": datetime.timedelta(days=1)},
    "deep": {"hosts": 1, "sources": 1, "sets": 10000, "step": datetime.timedelta(hours=1)},
}
TARGET_S = 1.0
LAYOUT_VERSION = 1  # bump when the generated layout changes, so old stores are regenerated
PROFILE_ROWS = [
    ("whole module (python, under cProfile)", lambda f, fn: fn == "<module>" and f == "<string>", "ct"),
    ("_catalog.scan (listing + every manifest)", lambda f, fn: fn == "scan" and f.endswith("_catalog.py"), "ct"),
    ("store listing (names only)", lambda f, fn: fn == "listing" and f.endswith("_store_dir.py"), "ct"),
    ("manifest reads (open + read)", lambda f, fn: fn in ("read_manifest_bytes", "read_manifests_bytes")
     and f.endswith("_store_dir.py"), "ct"),
    ("JSON parsing (json.loads)", lambda f, fn: fn == "loads" and f.endswith("json/__init__.py"), "ct"),
    ("manifest validation", lambda f, fn: fn == "validate" and f.endswith("_manifest.py"), "ct"),
    ("time parsing (parse_ts)", lambda f, fn: fn == "parse_ts", "ct"),
    ("summaries (_catalog.summary)", lambda f, fn: fn == "summary" and f.endswith("_catalog.py"), "ct"),
    ("exit_json (result to JSON, no_log scrubbing)", lambda f, fn: fn == "exit_json", "ct"),
    ("imports", lambda f, fn: fn == "_find_and_load", "ct"),
]


def host_name(index):
    return "host%03d" % index


def generate(root, shape, now):
    """Write ``shape``'s sets under ``root`` with valid manifests; return the newest set's end."""
    from ansible_collections.lifeboat.backup.plugins.module_utils import _manifest  # pylint: disable=import-outside-toplevel
    spec = SHAPES[shape]
    newest = now.replace(microsecond=0) - datetime.timedelta(hours=1)
    os.makedirs(root, mode=0o700)
    for h in range(spec["hosts"]):
        host = host_name(h)
        for s in range(spec["sources"]):
            source = "db%02d" % s
            src_dir = os.path.join(root, host, source)
            os.makedirs(src_dir, mode=0o700)
            for k in range(spec["sets"]):
                ended = newest - k * spec["step"]
                started = ended - datetime.timedelta(seconds=42)
                set_id = _manifest.make_set_id(started, "full")
                payload = b"%s/%s/%s\n" % (host.encode(), source.encode(), set_id.encode())
                manifest = _manifest.new_manifest(set_id, host, source, "postgresql", "pg_dump")
                _manifest.add_file(manifest, "%s.pgc.zst" % source, len(payload), hashlib.sha256(payload).hexdigest())
                manifest["compression"] = {"algorithm": "zstd", "level": None}
                manifest["tool_versions"] = {"pg_dump": "pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)",
                                             "zstd": "*** Zstandard CLI (64-bit) v1.5.4, by Yann Collet ***"}
                manifest["options"] = {"format": "custom", "db": source}
                manifest["position"] = {"server_version": "15.18"}
                _manifest.finish(manifest, started, ended)
                set_dir = os.path.join(src_dir, set_id)
                os.mkdir(set_dir, 0o700)
                with open(os.path.join(set_dir, "%s.pgc.zst" % source), "wb") as handle:
                    handle.write(payload)
                with open(os.path.join(set_dir, _manifest.MANIFEST_NAME), "wb") as handle:
                    handle.write(_manifest.dumps(manifest))
    return newest


def check_store(root, shape):
    """The generated store through the contract: every set listed, some manifests read back."""
    from ansible_collections.lifeboat.backup.plugins.module_utils import _store_kinds  # pylint: disable=import-outside-toplevel
    store = _store_kinds.open_store({"kind": "dir", "path": root})
    spec = SHAPES[shape]
    total = 0
    for host in store.hosts():
        for source in store.sources(host):
            listing = store.listing(host, source)
            if listing.strays or listing.partials:
                raise BenchError("generated store %s has strays or partials under %s/%s" % (root, host, source))
            total += len(listing.sets)
    if total != spec["hosts"] * spec["sources"] * spec["sets"]:
        raise BenchError("generated store %s lists %d sets, not %d" % (root, total, SETS))
    host, source = host_name(0), "db00"
    ids = store.listing(host, source).sets
    for set_id in (ids[0], ids[len(ids) // 2], ids[-1]):
        store.read_manifest(host, source, set_id)
    return store


def ensure_store(info_dir, shape):
    """The shape's store, generated unless a complete one of this layout is there."""
    root = os.path.join(info_dir, shape)
    stamp_path = os.path.join(info_dir, shape + ".json")
    try:
        with open(stamp_path, encoding="utf-8") as handle:
            stamp = json.load(handle)
    except (OSError, ValueError):
        stamp = {}
    if stamp.get("layout") == LAYOUT_VERSION and os.path.isdir(root):
        try:
            check_store(root, shape)
            log("REUSING the %s store generated at %s" % (shape, stamp.get("generated")))
            return root, stamp, True
        except BenchError as exc:
            log("regenerating the %s store: %s" % (shape, exc))
    shutil.rmtree(root, ignore_errors=True)
    t0 = time.perf_counter()
    now = datetime.datetime.now(datetime.timezone.utc)
    newest = generate(root, shape, now)
    seconds = time.perf_counter() - t0
    check_store(root, shape)
    stamp = {"layout": LAYOUT_VERSION, "generated": now.strftime("%Y-%m-%d %H:%M UTC"),
             "newest_ended_at": newest.strftime("%Y-%m-%dT%H:%M:%SZ"), "seconds": round(seconds, 2)}
    with open(stamp_path, "w", encoding="utf-8") as handle:
        json.dump(stamp, handle)
    log("generated the %s store (%d sets) in %.1f s" % (shape, SETS, seconds))
    return root, stamp, False


def exit_encoder():
    """A function doing what exit_json does to a result (no_log scrub, JSON for the controller); returns its size."""
    # pylint: disable=import-outside-toplevel
    from ansible.module_utils.common.parameters import remove_values
    try:
        from ansible.module_utils.common import json as module_json
        encoder = module_json.get_module_encoder("legacy", module_json.Direction.MODULE_TO_CONTROLLER)
    except (ImportError, AttributeError, ValueError):
        encoder = None

    def cost(result):
        scrubbed = remove_values(result, set())
        return len(json.dumps(scrubbed, cls=encoder) if encoder else json.dumps(scrubbed))
    return cost


def evict_manifests(root):
    """Drop the page-cache pages of every file in the store (clean pages only; dentries and inodes stay)."""
    count = 0
    for dirpath, dummy, filenames in os.walk(root):
        for name in filenames:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY | os.O_NOFOLLOW)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)
            count += 1
    return count


def drop_caches():
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w", encoding="ascii") as handle:
        handle.write("3\n")


# raw-json: the least a Python program can do to read every manifest of a store.
RAW_JSON = """
import json, os, sys
count = 0
for top, dirs, files in os.walk(sys.argv[1]):
    if "manifest.json" in files:
        with open(os.path.join(top, "manifest.json"), "rb") as handle:
            json.loads(handle.read())
        count += 1
print(count)
"""


def raw_run(name, root):
    """Time one raw baseline over ``root``; it must read every set's manifest."""
    if name == "raw-cat":
        run = timed(["sh", "-c", 'find "$1" -name manifest.json -print0 | xargs -0 cat | wc -c', "sh", root])
        count = None
    else:
        run = timed([sys.executable, "-c", RAW_JSON, root])
        count = int(run.stdout.strip() or 0)
    if run.returncode != 0 or (count is not None and count != SETS):
        raise BenchError("%s over %s failed (exit %s, %s manifests): %s" % (name, root, run.returncode, count, run.stderr[-300:]))
    return {"wall": run.wall, "cpu": run.tree_cpu}


def direct_env(bytecode):
    """The environment of a direct run: bytecode cached (warm) or compiled every time (as under Ansible)."""
    env = ansible_env()
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    if not bytecode:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def clear_bytecode(collections):
    """Remove the collection's cached bytecode, so direct-nopyc compiles it as Ansible's zip import does."""
    for top, dirs, dummy in os.walk(os.path.join(collections, "ansible_collections", "lifeboat", "backup", "plugins")):
        if "__pycache__" in dirs:
            shutil.rmtree(os.path.join(top, "__pycache__"), ignore_errors=True)


def run_bench(args):
    import_collection()
    from ansible_collections.lifeboat.backup.plugins.module_utils import _catalog, _jobs, _store_kinds  # pylint: disable=import-outside-toplevel
    from ansible_collections.lifeboat.backup.plugins.modules import backup_info  # pylint: disable=import-outside-toplevel
    from ansible_collections.lifeboat.backup.plugins.module_utils._common import utcnow  # pylint: disable=import-outside-toplevel

    info_dir = private_dir("info")
    r = {"machine": machine_info(info_dir, tools=()), "reps": args.reps, "shapes": {}, "notes": []}
    variants = (["direct", "direct-nopyc", "direct-all", "direct-cold", "ansible", "raw-cat", "raw-json", "report", "scan",
                 "exit", "exit-latest", "plan"]
                + (["cold"] if args.drop_caches else []) + (["direct@" + args.compare] if args.compare else []))
    other = collection_at(args.compare) if args.compare else None
    exit_cost = exit_encoder()
    for shape in SHAPES:
        root, stamp, reused = ensure_store(info_dir, shape)
        spec = dict(SHAPES[shape], step=str(SHAPES[shape]["step"]))
        res = r["shapes"][shape] = {"spec": spec, "stamp": stamp, "reused": reused, "runs": {}}
        store = _store_kinds.open_store({"kind": "dir", "path": root})
        module_args = {"store": {"kind": "dir", "path": root}}
        host, source = host_name(0), "db00"
        run_direct("backup_info", module_args, env=direct_env(True))  # warm the page cache, imports and bytecode

        def one(name):
            if name in ("raw-cat", "raw-json"):
                return raw_run(name, root)
            if name in ("direct", "direct-nopyc", "direct-all", "direct-cold", "cold") or name.startswith("direct@"):
                if name == "direct-cold":
                    evict_manifests(root)
                elif name == "cold":
                    drop_caches()
                elif name == "direct-nopyc":
                    clear_bytecode(collections_path())
                run, result = run_direct("backup_info", dict(module_args, max_sets=-1) if name == "direct-all" else module_args,
                                         env=direct_env(name != "direct-nopyc"), collections=other if "@" in name else None)
                count = result.get("set_count", len(result["sets"]))  # a tree before max_sets lists every set
                if count != SETS or result["invalid"]:
                    raise BenchError("backup_info found %d sets and %d invalid entries in %s, not %d and 0"
                                     % (count, len(result["invalid"]), root, SETS))
                return {"wall": run.wall, "cpu": run.tree_cpu, "peak_mib": run.peaks.get("module"),
                        "result_bytes": len(run.stdout)}
            if name == "ansible":
                run, result = run_ansible("lifeboat.backup.backup_info", module_args)
                return {"wall": run.wall, "cpu": run.tree_cpu, "peak_mib": run.peaks.get("module"),
                        "result_bytes": len(run.stdout), "sets": result.get("set_count", len(result["sets"]))}
            if name == "report":
                t0 = time.perf_counter()
                result = backup_info.report(store, None, None, None, utcnow())
                wall = time.perf_counter() - t0
                return {"wall": wall, "sets": len(result["sets"])}
            if name == "scan":
                t0 = time.perf_counter()
                sets, dummy, dummy2 = _catalog.scan(store)
                return {"wall": time.perf_counter() - t0, "sets": len(sets)}
            if name in ("exit", "exit-latest"):
                result = backup_info.report(store, None, None, None, utcnow())
                if name == "exit-latest":
                    result.pop("sets")
                t0 = time.perf_counter()
                size = exit_cost(result)
                return {"wall": time.perf_counter() - t0, "result_bytes": size}
            job = _jobs.BackupJob(store, host, source, "postgresql", "pg_dump", max_age="1d")
            t0 = time.perf_counter()
            plan = job.plan()
            wall = time.perf_counter() - t0
            return {"wall": wall, "action": plan["action"]}

        for rep, name in interleaved(variants, args.reps):
            out = one(name)
            out["rep"] = rep
            res["runs"].setdefault(name, []).append(out)
            log("store_info %s %-11s wall %.3f s%s" % (shape, name, out["wall"],
                                                       "" if "peak_mib" not in out else ", peak %s MiB" % out["peak_mib"]))
        if args.profile:
            prof = profile_direct("backup_info", module_args, "store-info-" + shape, rows=PROFILE_ROWS)
            prof.pop("result", None)
            res["profile"] = prof
    r["machine"]["loadavg_end"] = loadavg()
    write_results("store_info", render(r), r)


def render(r):
    m = r["machine"]
    L = ["# lifeboat.backup benchmark: backup_info and max_age over 10,000 sets", "",
         "Generated by `bench/run.sh store_info` (bench/store_info.py) on %s. %d repetitions per variant, variants "
         "interleaved; figures are medians (min–max in brackets)." % (m["started"], r["reps"]), ""]
    L += machine_table(m) + [""]
    names = {
        "direct": "`python -m …backup_info` (no ansible), warm page cache and bytecode cache",
        "direct-nopyc": "the same compiling every module on each run (`PYTHONDONTWRITEBYTECODE=1`, as Ansible's zip "
                        "import does)",
        "raw-cat": "floor: `find STORE -name manifest.json -print0 | xargs -0 cat` (no parsing, no checks)",
        "raw-json": "floor: a fresh Python that walks the store and `json.loads` every manifest (no checks)",
        "direct-all": "the same with `max_sets: -1` (every set listed, as before `max_sets`)",
        "direct-cold": "the same, every manifest's pages dropped first (`posix_fadvise` DONTNEED; dentries and inodes "
                       "stay cached)",
        "cold": "the same after `echo 3 > /proc/sys/vm/drop_caches`",
        "ansible": "`ansible localhost -m lifeboat.backup.backup_info` (warm)",
        "report": "backup_info's `report()` in-process (no interpreter start-up, no JSON output)",
        "scan": "`_catalog.scan` alone, in-process: listing and every manifest read and validated",
        "exit": "exit_json's work on that result (every set listed), in-process: no_log scrub (`remove_values`) "
                "and JSON",
        "exit-latest": "the same for a result without the list of every set",
        "plan": "`BackupJob.plan()` with `max_age: 1d`, in-process: the decision before a backup",
    }
    for shape, res in r["shapes"].items():
        spec = res["spec"]
        L += ["## Store `%s`: %d hosts × %d sources × %d sets" % (shape, spec["hosts"], spec["sources"], spec["sets"]),
              "", "Generated %s%s." % (res["stamp"].get("generated"), ", reused" if res["reused"] else
                                       " in %s s" % res["stamp"].get("seconds")), ""]
        for name in res["runs"]:
            if name.startswith("direct@"):
                names[name] = "`direct` with the collection as of commit %s" % name.split("@", 1)[1]
        rows = []
        for name, label in names.items():
            runs = res["runs"].get(name)
            if not runs:
                continue
            walls = [x["wall"] for x in runs]
            lo, hi = spread(walls)
            peak = max([x.get("peak_mib") or 0 for x in runs]) or None
            size = runs[-1].get("result_bytes")
            extra = runs[-1].get("action", "")
            rows.append((name, label, "%s (%s–%s)" % (fmt_s(med(walls), 3), fmt_s(lo, 3), fmt_s(hi, 3)),
                         fmt_s(med([x.get("cpu") for x in runs])), fmt_peak(peak),
                         "%.1f" % (size / 1e6) if size else "—", extra))
        L += table(["variant", "what", "wall s", "CPU s", "peak RSS MiB", "output MB", "decision"], rows,
                   ["l", "l", "r", "r", "r", "r", "l"])
        warm = med([x["wall"] for x in res["runs"]["direct"]])
        L += ["", "Target: `backup_info` under %.0f s warm: %s s, %s." % (TARGET_S, fmt_s(warm, 3),
                                                                          verdict(warm < TARGET_S)), ""]
        prof = res.get("profile")
        if prof:
            L += ["Where a direct run's time goes (cProfile, one run; cumulative seconds, inflated by the profiler):", ""]
            L += table(["", "s", "calls"], [(label, fmt_s(value, 3), calls) for label, value, calls in prof["rows"]])
            L.append("")
    for note in r["notes"]:
        L.append("Note: " + note)
    return "\n".join(L).rstrip() + "\n"


def main(argv=None):
    p = cli.parser(__doc__, reps=5)
    p.add_argument("--drop-caches", action="store_true",
                   help="also time a truly cold run after dropping the whole machine's caches (root)")
    p.add_argument("--no-profile", dest="profile", action="store_false", help="skip the cProfile runs")
    p.add_argument("--compare", metavar="REV", help="also time the direct run with the collection as of git revision REV")

    def run(args_):
        args = cli.parse(p, args_)
        if args.drop_caches and os.geteuid() != 0:
            p.error("--drop-caches needs root")
        run_bench(args)
    return cli.main("store_info", run, argv)


if __name__ == "__main__":
    sys.exit(main())
