#!/usr/bin/env python
"""A throwaway S3 endpoint (moto's server mode) for the lifeboat.backup tests, demo and benchmark.

Commands::

  motoserver.py start  --dir DIR [--port N] [--bucket NAME ...]
  motoserver.py stop   --dir DIR [--remove]
  motoserver.py status --dir DIR          # exit 0 running, 3 not running

The server listens on 127.0.0.1 only and runs from the Python that runs this
script (``python -m moto.server``), so moto[server] must be installed there
(tests/requirements.txt). ``start`` is idempotent: a server already running
for DIR is reused. It prints the connection facts as JSON, also kept in
``DIR/server.json``: endpoint_url, host, port, pid, region and the dummy
access_key / secret_key (moto accepts any). ``--bucket`` creates buckets
(needs boto3), keeping those that exist.

Layout of DIR: ``server.json``, ``pid``, ``log``.

Expected failures print one line on stderr and exit 1.
"""

import argparse
import contextlib
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

ACCESS_KEY = "testing"
SECRET_KEY = "testing"
REGION = "us-east-1"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0


class Fail(Exception):
    """An expected error: reported as one line, exit status 1."""


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def answers(url, timeout=1.0):
    """Does an HTTP server answer at ``url`` (any status)?"""
    try:
        with urllib.request.urlopen(url, timeout=timeout):  # nosec - 127.0.0.1 only
            return True
    except urllib.error.HTTPError:
        return True
    except (OSError, ValueError):
        return False


def proc_cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as handle:
            return handle.read().split(b"\0")
    except OSError:
        return []


class Server:
    def __init__(self, directory):
        self.dir = os.path.abspath(directory)
        self.json_path = os.path.join(self.dir, "server.json")
        self.pid_path = os.path.join(self.dir, "pid")
        self.log = os.path.join(self.dir, "log")

    def info(self):
        try:
            with open(self.json_path, encoding="utf-8") as handle:
                data = json.load(handle)
            return data if isinstance(data, dict) else {}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise Fail("cannot read %s: %s" % (self.json_path, exc))

    def pid(self):
        try:
            with open(self.pid_path, encoding="ascii") as handle:
                return int(handle.read().strip())
        except (OSError, ValueError):
            return None

    def ours(self, pid, port):
        """Is ``pid`` a moto server on ``port`` (not a reused pid)?"""
        argv = proc_cmdline(pid)
        return b"moto.server" in argv and str(port).encode() in argv

    def running(self):
        info = self.info()
        pid = self.pid()
        if pid is None or not info.get("port") or not self.ours(pid, info["port"]):
            return False
        return answers(info["endpoint_url"] + "/moto-api/")

    @contextlib.contextmanager
    def lock(self):
        """Serialise start/stop on the same DIR."""
        path = os.path.join(self.dir, ".motoserver.lock")
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise Fail("cannot create lock file %s: %s" % (path, exc.strerror))
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def write_info(self, info):
        tmp = self.json_path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump(info, handle, indent=2, sort_keys=True)
            handle.write("\n")
        os.replace(tmp, self.json_path)


def log_tail(path):
    try:
        with open(path, "rb") as handle:
            handle.seek(max(0, os.path.getsize(path) - 2000))
            lines = [ln.strip() for ln in handle.read().decode("utf-8", "replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return lines[-1] if lines else ""


def spawn(server, port):
    """Start a detached moto server on ``port``; its pid, or None if it exited at once."""
    env = {k: v for k, v in os.environ.items() if not (k.startswith("AWS_") or k.startswith("MOTO_"))}
    with open(server.log, "ab") as log:
        proc = subprocess.Popen(  # pylint: disable=consider-using-with
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=server.dir,
            start_new_session=True,  # outlives this script: `stop` ends it
        )
    with open(server.pid_path, "w", encoding="ascii") as handle:
        handle.write("%d\n" % proc.pid)
    url = "http://127.0.0.1:%d" % port
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return None
        if answers(url + "/moto-api/"):
            return proc.pid
        time.sleep(0.1)
    proc.kill()
    proc.wait()
    raise Fail("moto did not answer on %s within %d s (see %s)" % (url, START_TIMEOUT, server.log))


def create_buckets(info, names):
    if not names:
        return
    try:
        import boto3  # pylint: disable=import-outside-toplevel
        import botocore.config  # pylint: disable=import-outside-toplevel
        import botocore.exceptions  # pylint: disable=import-outside-toplevel
    except ImportError:
        raise Fail("--bucket needs boto3 in %s" % sys.executable)
    client = boto3.client("s3", endpoint_url=info["endpoint_url"], aws_access_key_id=ACCESS_KEY,
                          aws_secret_access_key=SECRET_KEY, region_name=REGION,
                          config=botocore.config.Config(s3={"addressing_style": "path"}))
    for name in names:
        try:
            client.create_bucket(Bucket=name)
        except botocore.exceptions.ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            if code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise Fail("cannot create bucket %s: %s" % (name, code or exc))


def cmd_start(args):
    server = Server(args.dir)
    if args.port is not None and not 1 <= args.port <= 65535:
        raise Fail("--port must be between 1 and 65535")
    try:
        import moto.server  # noqa: F401  pylint: disable=unused-import,import-outside-toplevel
    except ImportError:
        raise Fail("moto[server] is not installed in %s (pip install 'moto[server]')" % sys.executable)
    try:
        os.makedirs(server.dir, mode=0o700, exist_ok=True)
    except OSError as exc:
        raise Fail("cannot create %s: %s" % (server.dir, exc.strerror))
    with server.lock():
        info = server.info()
        if server.running():
            if args.port is not None and info.get("port") != args.port:
                print("motoserver: already running on port %s; --port %d ignored" % (info.get("port"), args.port),
                      file=sys.stderr)
        else:
            for attempt in range(3):
                port = args.port if args.port is not None else free_port()
                pid = spawn(server, port)
                if pid is not None:
                    break
                if args.port is not None or attempt == 2:
                    raise Fail("moto exited at start on port %d: %s" % (port, log_tail(server.log)))
            info = {
                "dir": server.dir,
                "host": "127.0.0.1",
                "port": port,
                "endpoint_url": "http://127.0.0.1:%d" % port,
                "pid": pid,
                "region": REGION,
                "access_key": ACCESS_KEY,
                "secret_key": SECRET_KEY,
                "log_file": server.log,
            }
            server.write_info(info)
        create_buckets(info, args.bucket)
    print(json.dumps(info, indent=2, sort_keys=True))
    return 0


def cmd_stop(args):
    server = Server(args.dir)
    if not os.path.isdir(server.dir):
        return 0
    with server.lock():
        info = server.info()
        pid = server.pid()
        if pid is not None and info.get("port") and server.ours(pid, info["port"]):
            try:
                os.killpg(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            deadline = time.monotonic() + STOP_TIMEOUT
            while time.monotonic() < deadline and server.ours(pid, info["port"]):
                time.sleep(0.1)
            if server.ours(pid, info["port"]):
                try:
                    os.killpg(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for path in (server.pid_path, server.json_path):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
    if args.remove:
        real = os.path.realpath(server.dir)
        ours = {"log", ".motoserver.lock", "pid", "server.json", "server.json.tmp"}
        if real == "/" or os.path.dirname(real) == "/" or not set(os.listdir(real)) <= ours:
            raise Fail("refusing to remove %s: it does not look like a motoserver directory" % server.dir)
        shutil.rmtree(real)
    return 0


def cmd_status(args):
    server = Server(args.dir)
    running = os.path.isdir(server.dir) and server.running()
    out = dict(server.info(), running=running)
    out.setdefault("dir", server.dir)
    print(json.dumps(out, indent=2, sort_keys=True))
    return 0 if running else 3


def build_parser():
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--dir", required=True, help="state directory (server.json, pid, log)")
    parser = argparse.ArgumentParser(description="Throwaway moto S3 server on 127.0.0.1 for lifeboat.backup tests.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("start", parents=[common], help="start (or reuse) a server; print its facts as JSON")
    p.add_argument("--port", type=int, default=None, help="TCP port (default: a free one)")
    p.add_argument("--bucket", action="append", default=[], help="create this bucket (repeatable)")
    p.set_defaults(func=cmd_start)
    p = sub.add_parser("stop", parents=[common], help="stop the server")
    p.add_argument("--remove", action="store_true", help="also delete DIR")
    p.set_defaults(func=cmd_stop)
    p = sub.add_parser("status", parents=[common], help="print server.json and running; exit 0 if running, else 3")
    p.set_defaults(func=cmd_status)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except Fail as exc:
        print("motoserver.py %s: error: %s" % (args.command, exc), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("motoserver.py: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:
        print("motoserver.py %s: error: %s" % (args.command, exc), file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
