"""Hold connections open on the scratch database of a restore, as a monitoring agent would.

Usage: hold.py --psql BIN --socket DIR --port N --target NAME --out DIR [--reconnect]

Polls the cluster for a scratch database of a restore into TARGET
(TARGET_lifeboat_...) and keeps a session open on it. With --reconnect it opens a new session
at once whenever its session is ended (an agent that insists). Appends one
line per session it opened to OUT/held; stops, closing its sessions, when
OUT/stop exists (or after 300 s).
"""

import argparse
import json
import os
import subprocess
import sys
import time


def conninfo(socket, port, db):
    def q(value):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return "host=%s port=%d user=postgres dbname=%s" % (q(socket), port, q(db))


def find_scratch(args):
    """A scratch database of the target: TARGET_lifeboat_<run> (not an old copy, TARGET_lifeboat_old_<run>)."""
    query = "SELECT coalesce(json_agg(datname), '[]') FROM pg_database"
    proc = subprocess.run([args.psql, "-X", "-A", "-t", "-d", conninfo(args.socket, args.port, "postgres"),
                           "-c", query], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, check=False)
    if proc.returncode != 0:
        return None
    prefix = args.target + "_lifeboat_"
    for name in json.loads(proc.stdout.decode("utf-8") or "[]"):
        if name.startswith(prefix) and not name.startswith(prefix + "old_"):
            return name
    return None


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--psql", required=True)
    parser.add_argument("--socket", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--target", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--reconnect", action="store_true")
    parser.add_argument("--once", dest="reconnect", action="store_false")
    args = parser.parse_args()
    stop = os.path.join(args.out, "stop")
    held = os.path.join(args.out, "held")
    session = None
    sessions = 0
    deadline = time.monotonic() + 300
    while not os.path.exists(stop) and time.monotonic() < deadline:
        if session is not None and session.poll() is not None:
            session = None
        if session is None and (args.reconnect or sessions == 0):
            name = find_scratch(args)
            if name:
                session = subprocess.Popen([args.psql, "-X", "-q", "-d", conninfo(args.socket, args.port, name),
                                            "-c", "SELECT pg_sleep(600)"],
                                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                time.sleep(0.05)
                if session.poll() is None:
                    sessions += 1
                    with open(held, "a") as handle:
                        handle.write(name + "\n")
                continue
        time.sleep(0.01)
    if session is not None and session.poll() is None:
        session.kill()
        session.wait()
    print(json.dumps({"sessions": sessions}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
