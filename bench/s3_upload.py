#!/usr/bin/env python
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Benchmark of an upload of 1 GiB into an s3 store against boto3's upload_file of the same bytes.

Run through bench/run.sh (``bench/run.sh s3_upload``). It needs the collection's
``s3`` store kind (plugins/module_utils/_store_s3.py), boto3, and moto's server
(``moto[server]``, tests/requirements.txt); without one of them it says which
and stops, exit status 0.

One run starts moto's S3 server on 127.0.0.1 and a free port (through
scripts/motoserver.py when the tree has it, else ``python -m moto.server``
through the test harness's pidfile daemon), writes 1 GiB of random bytes to
$LIFEBOAT_BENCH_DIR/s3/data.bin once, and times, interleaved, --reps times each,
every variant in a Python process of its own:

  lifeboat   the store contract as a backup uses it: open_store({"kind": "s3", ...}),
             begin a set, writer.open(name) as the sink of _pipeline.run_to_sink
             with `cat data.bin` as the stage, sink.close(), commit the manifest
  boto3      boto3's S3 client upload_file(data.bin) with its default transfer
             settings (multipart, 8 MiB parts, 10 threads)

Peak RSS is the largest VmHWM of each variant's Python process (a 50 ms /proc
sampler); moto's server is sampled too. Every upload is deleted after its run,
untimed. Writes bench/results/s3_upload.md and .json.
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request

from lib import MIB, PY, SCRIPTS, BenchError, Skip, cli, log, private_dir
from lib.modules import import_collection
from lib.procs import timed, watch_pid
from lib.report import fmt_peak, fmt_s, loadavg, machine_info, machine_table, table, write_results
from lib.timing import interleaved, med, paired_ratios, spread

SIZE = 1024 * MIB
BUCKET = "lifeboat-bench"
HOST = "bench"
SOURCE = "upload"
ACCESS_KEY = "testing"  # moto accepts any credentials; these are not secrets
SECRET_KEY = "testing"
REGION = "us-east-1"
VARIANTS = ["lifeboat", "boto3"]
TARGET_RSS_MB = 100.0


def s3_spec(facts):
    spec = {"kind": "s3", "bucket": BUCKET, "endpoint_url": facts["endpoint_url"], "region": REGION,
            "access_key": ACCESS_KEY, "secret_key": SECRET_KEY}
    if facts.get("part_mib"):
        spec["part_size"] = facts["part_mib"]
    return spec


def client(facts):
    import boto3  # pylint: disable=import-outside-toplevel
    return boto3.client("s3", endpoint_url=facts["endpoint_url"], region_name=REGION,
                        aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY)


# -------------------------------------------------------------------------- the variants (child processes)

def child(variant, data, facts_json, set_id):
    facts = json.loads(facts_json)
    if variant == "boto3":
        client(facts).upload_file(data, BUCKET, "boto3/%s/data.bin" % set_id)
        print(json.dumps({"bytes": os.path.getsize(data)}))
        return
    import_collection()
    # pylint: disable=import-outside-toplevel
    from ansible_collections.lifeboat.backup.plugins.module_utils import _manifest, _pipeline, _store_kinds
    from ansible_collections.lifeboat.backup.plugins.module_utils._common import utcnow
    store = _store_kinds.open_store(s3_spec(facts))
    started = utcnow()
    manifest = _manifest.new_manifest(set_id, HOST, SOURCE, "files", "cat")
    writer = store.begin(HOST, SOURCE, set_id)
    try:
        sink = writer.open("data.bin")
        try:
            size, digest = _pipeline.run_to_sink([_pipeline.Stage("cat", ["cat", data])], sink)
            sink.close()
        except BaseException:
            sink.abort()
            raise
        _manifest.add_file(manifest, "data.bin", size, digest)
        _manifest.finish(manifest, started, utcnow())
        writer.commit(_manifest.dumps(manifest), ["data.bin"])
    finally:
        writer.abort()
    print(json.dumps({"bytes": size, "sha256": digest}))


# -------------------------------------------------------------------------- the run

def need(kind_ok):
    """Skip with one sentence when the s3 kind, boto3 or moto is missing."""
    try:
        import boto3  # noqa: F401  pylint: disable=unused-import,import-outside-toplevel
    except ImportError:
        raise Skip("boto3 is not installed in %s (requirements.txt lists it)" % PY)
    if not kind_ok:
        raise Skip("this tree has no s3 store kind (plugins/module_utils/_store_s3.py registered in _store_kinds); "
                   "the benchmark runs once it is there")
    try:
        import moto.server  # noqa: F401  pylint: disable=unused-import,import-outside-toplevel
    except ImportError:
        raise Skip("moto's server is not installed in %s (pip install 'moto[server]', tests/requirements.txt)" % PY)


def s3_kind_present():
    import_collection()
    from ansible_collections.lifeboat.backup.plugins.module_utils import _stores, _store_kinds  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
    return any(k.name == "s3" for k in _stores.kinds())


class Moto(object):
    """moto's S3 server on 127.0.0.1: scripts/motoserver.py when present, else the harness's pidfile daemon."""

    def __init__(self, directory):
        self.dir = directory
        self.script = os.path.join(SCRIPTS, "motoserver.py")
        self.daemon = None
        self.facts = None

    def start(self):
        if os.path.exists(self.script):
            out = subprocess.run([PY, self.script, "start", "--dir", self.dir], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, check=False)
            if out.returncode != 0:
                raise BenchError("motoserver.py start failed: %s" % out.stderr.decode().strip()[-500:])
            facts = json.loads(out.stdout)
            self.facts = {"endpoint_url": facts["endpoint_url"], "pid": facts.get("pid"), "how": "scripts/motoserver.py"}
        else:
            from harness.core import Fail, free_port  # pylint: disable=import-outside-toplevel
            from harness.daemon import Daemon  # pylint: disable=import-outside-toplevel
            port = free_port()
            url = "http://127.0.0.1:%d" % port
            env = {k: v for k, v in os.environ.items() if not (k.startswith("AWS_") or k.startswith("MOTO_"))}
            self.daemon = Daemon(self.dir, "moto", "moto.server")
            try:
                pid = self.daemon.start([PY, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                        ready=lambda: _answers(url + "/moto-api/"), env=env)
            except Fail as exc:
                raise BenchError("starting moto's server: %s" % exc)
            self.facts = {"endpoint_url": url, "pid": pid, "how": "python -m moto.server (harness daemon)"}
        client(self.facts).create_bucket(Bucket=BUCKET)
        log("moto's S3 server at %s (%s)" % (self.facts["endpoint_url"], self.facts["how"]))
        return self.facts

    def stop(self):
        if self.daemon is not None:
            self.daemon.stop()
        elif os.path.exists(self.script):
            subprocess.run([PY, self.script, "stop", "--dir", self.dir], stdout=subprocess.DEVNULL, check=False)


def _answers(url):
    try:
        with urllib.request.urlopen(url, timeout=1.0):  # nosec - 127.0.0.1 only
            return True
    except urllib.error.HTTPError:
        return True
    except (OSError, ValueError):
        return False


def empty_bucket(facts):
    """Delete every object and abort every multipart upload (untimed, between runs: moto keeps data in memory)."""
    s3 = client(facts)
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
        keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        if keys:
            s3.delete_objects(Bucket=BUCKET, Delete={"Objects": keys})
    for upload in s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []):
        s3.abort_multipart_upload(Bucket=BUCKET, Key=upload["Key"], UploadId=upload["UploadId"])


def make_data(work):
    path = os.path.join(work, "data.bin")
    if os.path.exists(path) and os.path.getsize(path) == SIZE:
        log("REUSING %s (1 GiB of random bytes)" % path)
    else:
        log("writing 1 GiB of random bytes to %s" % path)
        with open(path + ".tmp", "wb") as handle:
            for dummy in range(SIZE // MIB):
                handle.write(os.urandom(MIB))
        os.replace(path + ".tmp", path)
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while True:
            block = handle.read(8 * MIB)
            if not block:
                break
            digest.update(block)
    return path, digest.hexdigest()


def run_bench(args):
    need(s3_kind_present())
    work = private_dir("s3")
    moto_dir = private_dir("s3", "moto")
    data, sha = make_data(work)
    r = {"machine": machine_info(work, tools=()), "reps": args.reps, "bytes": SIZE, "runs": {}}
    moto = Moto(moto_dir)
    facts = moto.start()
    r["moto"] = dict(facts)
    try:
        import boto3  # pylint: disable=import-outside-toplevel
        import moto as moto_pkg  # pylint: disable=import-outside-toplevel
        r["versions"] = {"boto3": boto3.__version__, "moto": moto_pkg.__version__}
        from ansible_collections.lifeboat.backup.plugins.module_utils import _stores  # pylint: disable=import-outside-toplevel
        r["part_mib"] = args.part_mib or _stores.get_kind("s3").options.get("part_size", {}).get("default")
        r["part_mib_is_default"] = not args.part_mib
        from ansible_collections.lifeboat.backup.plugins.module_utils import _store_s3  # pylint: disable=import-outside-toplevel
        r["parts_in_flight"] = _store_s3.parts_in_flight(r["part_mib"] * MIB) if hasattr(_store_s3, "parts_in_flight") else 0
        facts = dict(facts, part_mib=args.part_mib)
        moto_peak = watch_pid(facts["pid"], markers=[(b"moto.server", "moto")]) if facts.get("pid") else None
        markers = [(b"s3_upload.py", "child")]
        for rep, name in interleaved(VARIANTS, args.reps):
            set_id = "20261126T%06dZ-full" % (rep * 10 + VARIANTS.index(name))
            run = timed([PY, os.path.abspath(__file__), "--child", name, data, json.dumps(facts), set_id],
                        markers=markers)
            if run.returncode != 0:
                raise BenchError("%s upload failed: %s" % (name, run.stderr.strip()[-1000:]))
            told = json.loads(run.stdout.strip().splitlines()[-1])
            if told["bytes"] != SIZE or told.get("sha256", sha) != sha:
                raise BenchError("%s uploaded %s bytes with SHA-256 %s, not %d and %s"
                                 % (name, told["bytes"], told.get("sha256"), SIZE, sha))
            entry = {"rep": rep, "wall": run.wall, "cpu": run.tree_cpu, "peak_mib": run.peaks.get("child")}
            r["runs"].setdefault(name, []).append(entry)
            log("s3_upload %-8s wall %.2f s (%.0f MiB/s), CPU %.2f s, peak RSS %s MiB"
                % (name, run.wall, SIZE / MIB / run.wall, run.tree_cpu, entry["peak_mib"]))
            empty_bucket(facts)
        if moto_peak is not None:
            moto_peak.stop()
            r["moto_peak_mib"] = moto_peak.peaks_mib().get("moto")
    finally:
        moto.stop()
    r["machine"]["loadavg_end"] = loadavg()
    write_results("s3_upload", render(r), r)


def render(r):
    m, runs = r["machine"], r["runs"]
    L = ["# lifeboat.backup benchmark: 1 GiB into an s3 store against boto3's upload_file", "",
         "Generated by `bench/run.sh s3_upload` (bench/s3_upload.py) on %s. %d repetitions per variant, interleaved; "
         "medians (min–max). Endpoint: moto's S3 server on 127.0.0.1 (%s). Peak RSS is the largest VmHWM of the "
         "variant's Python process." % (m["started"], r["reps"], r["moto"]["how"]), ""]
    L += machine_table(m, [("boto3, moto", "%s, %s" % (r["versions"]["boto3"], r["versions"]["moto"])),
                           ("s3 store part size", "%s MiB (%s), %s part(s) uploaded in the background while the next "
                            "fills" % (r.get("part_mib"), "the kind's default" if r.get("part_mib_is_default", True)
                                       else "--part-mib", r.get("parts_in_flight", 0)))]) + [""]
    names = {"lifeboat": "`_pipeline.run_to_sink` (`cat data.bin`) into an s3 store sink, then commit",
             "boto3": "`boto3.client('s3').upload_file` (default TransferConfig)"}
    rows = []
    for name in VARIANTS:
        walls = [x["wall"] for x in runs[name]]
        lo, hi = spread(walls)
        rows.append((name, names[name], "%s (%s–%s)" % (fmt_s(med(walls)), fmt_s(lo), fmt_s(hi)),
                     "%.0f" % (SIZE / MIB / med(walls)), fmt_s(med([x["cpu"] for x in runs[name]])),
                     fmt_peak(max([x["peak_mib"] or 0 for x in runs[name]]) or None)))
    L += table(["variant", "what", "wall s", "MiB/s", "CPU s (process tree)", "peak RSS MiB"], rows,
               ["l", "l", "r", "r", "r", "r"])
    ratio = med([x["wall"] for x in runs["lifeboat"]]) / med([x["wall"] for x in runs["boto3"]])
    pair, pairs = paired_ratios(runs["lifeboat"], runs["boto3"])
    peak = max([x["peak_mib"] or 0 for x in runs["lifeboat"]])
    L += ["", "Ratio lifeboat ÷ boto3 (median walls): **%.3f**; paired per repetition: %.3f (%s)."
          % (ratio, pair, " / ".join("%.3f" % x for x in pairs)),
          "Peak RSS of the lifeboat upload: **%.1f MiB** (target < %.0f MB, %.1f MiB: %s)."
          % (peak, TARGET_RSS_MB, TARGET_RSS_MB * 1e6 / MIB, "met" if peak < TARGET_RSS_MB * 1e6 / MIB else "missed")]
    if r.get("moto_peak_mib"):
        L.append("moto's server peaked at %.0f MiB (it keeps every object in memory)." % r["moto_peak_mib"])
    r["ratio"] = ratio
    return "\n".join(L).rstrip() + "\n"


def main(argv=None):
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5])
        return 0
    p = cli.parser(__doc__, reps=3)
    p.add_argument("--clean", action="store_true", help="delete the 1 GiB data file at the end")
    p.add_argument("--part-mib", type=int, default=None,
                   help="the s3 store's part_size in MiB (default: the kind's default)")

    def run(args_):
        args = cli.parse(p, args_)
        try:
            run_bench(args)
        finally:
            if args.clean:
                shutil.rmtree(os.path.join(private_dir("s3")), ignore_errors=True)
    return cli.main("s3_upload", run, argv)


if __name__ == "__main__":
    sys.exit(main())
