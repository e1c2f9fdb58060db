#!/usr/bin/env python
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A private sshd on 127.0.0.1 for the ssh store's tests, demo and benchmarks.

Commands::

  sshd.py start  --dir DIR [--port N]   # idempotent; prints the facts as JSON
  sshd.py stop   --dir DIR [--remove]
  sshd.py status --dir DIR              # exit 0 running, 3 not running

DIR holds everything: ``sshd_config``, the server's own host key
(``host_ed25519``), a client key pair (``client_ed25519``) whose public half is
the only line of ``authorized_keys``, a ``known_hosts`` line for
``[127.0.0.1]:PORT``, ``sshd.pid``, ``sshd.log`` and ``server.json``. The server
accepts only that key, for the user who started it, and never a password.
It runs in the foreground (``sshd -D``) under the pidfile daemon of
harness/daemon.py, so ``stop`` ends exactly that process.

Facts printed (and kept in ``server.json``): host, port, user, dir, pid,
private_key_file, known_hosts_file, known_hosts (the line), log_file.
Expected failures print one line on stderr and exit 1.
"""

import argparse
import os
import pwd
import shutil
import sys

if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from harness.core import Fail, cli_main, dir_lock, free_port, port_answers, print_facts, read_json, run, write_json  # noqa: E402
from harness.daemon import Daemon  # noqa: E402

SSHD = "/usr/sbin/sshd"
HOST = "127.0.0.1"
OURS = {"sshd_config", "host_ed25519", "host_ed25519.pub", "client_ed25519", "client_ed25519.pub",
        "authorized_keys", "known_hosts", "sshd.pid", "sshd.log", "server.json", "server.json.tmp", ".sshd.lock"}


class Server(object):
    def __init__(self, directory):
        self.dir = os.path.abspath(directory)
        self.config = os.path.join(self.dir, "sshd_config")
        self.json_path = os.path.join(self.dir, "server.json")
        self.daemon = Daemon(self.dir, "sshd", self.config)

    def path(self, name):
        return os.path.join(self.dir, name)

    def keygen(self, name, comment):
        if not os.path.exists(self.path(name)):
            run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", self.path(name)],
                what="ssh-keygen")
        with open(self.path(name + ".pub"), encoding="ascii") as handle:
            return handle.read().split()[:2]

    def write_config(self, port):
        lines = [
            "Port %d" % port,
            "ListenAddress %s" % HOST,
            "HostKey %s" % self.path("host_ed25519"),
            "PidFile none",
            "AuthorizedKeysFile %s" % self.path("authorized_keys"),
            "PermitRootLogin prohibit-password",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "UsePAM no",
            "StrictModes no",
            "AllowAgentForwarding no",
            "AllowTcpForwarding no",
            "X11Forwarding no",
            "PrintMotd no",
            "LogLevel INFO",
        ]
        with open(self.config, "w", encoding="ascii") as handle:
            handle.write("\n".join(lines) + "\n")


def start(directory, port=None, preexec_fn=None):
    """Start (or reuse) the server for ``directory``; its facts.

    ``preexec_fn`` is handed to the daemon's child (the unit tests make the
    server die with the test process that started it).
    """
    if not os.path.isfile(SSHD):
        raise Fail("%s is missing; install openssh-server" % SSHD)
    server = Server(directory)
    os.makedirs(server.dir, mode=0o700, exist_ok=True)
    with dir_lock(server.dir, ".sshd.lock"):
        info = read_json(server.json_path)
        if server.daemon.running() and info.get("port"):
            return info
        host_key = server.keygen("host_ed25519", "lifeboat-test-host")
        client_key = server.keygen("client_ed25519", "lifeboat-test-client")
        with open(server.path("authorized_keys"), "w", encoding="ascii") as handle:
            handle.write(" ".join(client_key) + "\n")
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
        for attempt in range(3):
            chosen = port or free_port()
            server.write_config(chosen)
            try:
                pid = server.daemon.start([SSHD, "-D", "-f", server.config, "-E", server.path("sshd.log")],
                                          ready=lambda p=chosen: port_answers(p), timeout=20,
                                          preexec_fn=preexec_fn)
                break
            except Fail:
                if port or attempt == 2:
                    raise
        known = "[%s]:%d %s" % (HOST, chosen, " ".join(host_key))
        with open(server.path("known_hosts"), "w", encoding="ascii") as handle:
            handle.write(known + "\n")
        info = {
            "dir": server.dir,
            "host": HOST,
            "port": chosen,
            "pid": pid,
            "user": pwd.getpwuid(os.geteuid()).pw_name,
            "private_key_file": server.path("client_ed25519"),
            "known_hosts_file": server.path("known_hosts"),
            "known_hosts": known,
            "log_file": server.path("sshd.log"),
        }
        write_json(server.json_path, info, mode=0o600)
        return info


def stop(directory, remove=False):
    server = Server(directory)
    if not os.path.isdir(server.dir):
        return False
    with dir_lock(server.dir, ".sshd.lock"):
        was = server.daemon.stop()
        try:
            os.unlink(server.json_path)
        except FileNotFoundError:
            pass
    if remove:
        real = os.path.realpath(server.dir)
        if real == "/" or os.path.dirname(real) == "/" or not set(os.listdir(real)) <= OURS:
            raise Fail("refusing to remove %s: it does not look like an sshd directory of ours" % server.dir)
        shutil.rmtree(real)
    return was


def cmd_start(args):
    if args.port is not None and not 1 <= args.port <= 65535:
        raise Fail("--port must be between 1 and 65535")
    print_facts(start(args.dir, args.port))
    return 0


def cmd_stop(args):
    stop(args.dir, args.remove)
    return 0


def cmd_status(args):
    server = Server(args.dir)
    running = os.path.isdir(server.dir) and server.daemon.running()
    out = dict(read_json(server.json_path) if os.path.isdir(server.dir) else {}, running=running)
    print_facts(out)
    return 0 if running else 3


def build_parser():
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--dir", required=True, help="state directory (config, keys, pid, log)")
    parser = argparse.ArgumentParser(prog="sshd.py", description="A private sshd on 127.0.0.1 for lifeboat.backup tests.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("start", parents=[common], help="start (or reuse) the server; print its facts as JSON")
    p.add_argument("--port", type=int, default=None, help="TCP port (default: a free one)")
    p.set_defaults(func=cmd_start)
    p = sub.add_parser("stop", parents=[common], help="stop the server")
    p.add_argument("--remove", action="store_true", help="also delete DIR")
    p.set_defaults(func=cmd_stop)
    p = sub.add_parser("status", parents=[common], help="print the facts and running; exit 0 if running, else 3")
    p.set_defaults(func=cmd_status)
    return parser


def main(argv=None):
    return cli_main(build_parser(), argv, prog="sshd.py")


if __name__ == "__main__":
    sys.exit(main())
