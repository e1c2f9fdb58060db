"""Watch every process's command line for a secret.

Usage: watch_cmdline.py --secret-file F --stop-file S --ready-file R --out O [--interval-ms N]

The secret is read from a 0600 file (never from argv); the file is not
modified. Every few milliseconds /proc/*/cmdline of every process is read and
searched for the secret (and for its first 12 characters, in case a tool
rewrote its escaping). The watcher writes R after its first full scan and stops
when S appears, then writes O as JSON:

  {"scans": N, "hits": [{"pid":, "comm":, "match":}], "seen": ["comm", ...]}

A hit's command line is never written out, only which part matched.
"""

import argparse
import json
import os
import sys
import time


def read(path):
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError:
        return None


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--secret-file", required=True)
    parser.add_argument("--stop-file", required=True)
    parser.add_argument("--ready-file", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--interval-ms", type=float, default=2.0)
    parser.add_argument("--max-seconds", type=float, default=600.0)
    args = parser.parse_args()

    secret = (read(args.secret_file) or b"").rstrip(b"\n")
    if len(secret) < 12:
        print("watch_cmdline: the secret file is missing or too short", file=sys.stderr)
        return 2
    needles = {"full": secret, "prefix": secret[:12]}
    me = os.getpid()
    scans = 0
    seen = set()
    hits = {}
    deadline = time.monotonic() + args.max_seconds
    while True:
        for name in os.listdir("/proc"):
            if not name.isdigit() or int(name) == me:
                continue
            cmdline = read("/proc/%s/cmdline" % name)
            if not cmdline:
                continue
            comm = (read("/proc/%s/comm" % name) or b"?").decode("utf-8", "replace").strip()
            seen.add(comm)
            for label, needle in needles.items():
                if needle in cmdline:
                    hits.setdefault((int(name), comm, label), None)
        scans += 1
        if scans == 1:
            with open(args.ready_file, "w") as handle:
                handle.write("ready\n")
        if os.path.exists(args.stop_file) or time.monotonic() > deadline:
            break
        time.sleep(args.interval_ms / 1000.0)
    result = {
        "scans": scans,
        "hits": [{"pid": pid, "comm": comm, "match": label} for pid, comm, label in sorted(hits)],
        "seen": sorted(seen),
    }
    tmp = args.out + ".tmp"
    with open(tmp, "w") as handle:
        json.dump(result, handle)
    os.rename(tmp, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
