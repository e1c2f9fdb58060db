# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The test harness's shared pieces (scripts/harness): ports, one-line errors, the pidfile daemon.

Real processes: a Python HTTP server started in the background, found ready,
stopped by its pidfile; a server that dies at once; a pidfile whose pid now
belongs to someone else.
"""

from __future__ import annotations

import argparse
import importlib
import os
import subprocess
import sys
import time

import pytest

SCRIPTS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))),
                       "scripts")


@pytest.fixture(scope="module")
def harness():
    sys.path.insert(0, SCRIPTS)
    try:
        core = importlib.import_module("harness.core")
        daemon = importlib.import_module("harness.daemon")
        yield core, daemon
    finally:
        sys.path.remove(SCRIPTS)


def test_free_port_is_free_and_answers_nothing(harness):
    core, dummy = harness
    port = core.free_port()
    assert core.port_free(port)
    assert not core.port_answers(port, timeout=0.2)


def test_cli_main_turns_failures_into_one_line(harness, capsys):
    core, dummy = harness
    parser = argparse.ArgumentParser(prog="tool.py")
    sub = parser.add_subparsers(dest="command")

    def boom(args):
        raise core.Fail("the thing is %s" % args.what)
    p = sub.add_parser("go")
    p.add_argument("--what", default="broken")
    p.set_defaults(func=boom)
    assert core.cli_main(parser, ["go"]) == 1
    err = capsys.readouterr().err
    assert err == "tool.py go: error: the thing is broken\n"


def http_server(daemon, tmp_path, port):
    server = daemon.Daemon(str(tmp_path), "web", "http.server")
    argv = [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port)]
    return server, argv


def test_daemon_starts_waits_until_ready_and_stops_by_pidfile(harness, tmp_path):
    core, daemon = harness
    port = core.free_port()
    server, argv = http_server(daemon, tmp_path, port)
    pid = server.start(argv, ready=lambda: core.port_answers(port))
    try:
        assert core.port_answers(port)
        assert server.running() and server.pid() == pid
        assert server.start(argv, ready=lambda: core.port_answers(port)) == pid  # idempotent
    finally:
        assert server.stop() is True
    assert not core.proc_alive(pid)
    assert not os.path.exists(server.pid_path)
    assert server.stop() is False


def test_daemon_that_exits_at_once_fails_with_its_last_log_line(harness, tmp_path):
    core, daemon = harness
    server = daemon.Daemon(str(tmp_path), "broken", "no-such-marker")
    script = "import sys; print('starting'); print('Error: cannot bind the port', file=sys.stderr); sys.exit(3)"
    with pytest.raises(core.Fail) as info:
        server.start([sys.executable, "-c", script], ready=lambda: False, timeout=10)
    assert str(info.value) == "broken exited at once (status 3): Error: cannot bind the port"
    assert "\n" not in str(info.value)
    assert not os.path.exists(server.pid_path)


def test_daemon_that_never_answers_is_stopped(harness, tmp_path):
    core, daemon = harness
    server = daemon.Daemon(str(tmp_path), "mute", "lifeboat-mute-marker")
    argv = [sys.executable, "-c", "import time; time.sleep(60)", "lifeboat-mute-marker"]
    start = time.monotonic()
    with pytest.raises(core.Fail, match="did not answer within 1 s"):
        server.start(argv, ready=lambda: False, timeout=1)
    assert time.monotonic() - start < 15
    assert not os.path.exists(server.pid_path)


def test_stop_never_signals_a_pid_that_is_not_the_server(harness, tmp_path):
    """A stale pidfile naming a live process of something else (a reused pid) leaves that process alone."""
    core, daemon = harness
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])  # pylint: disable=consider-using-with
    try:
        server = daemon.Daemon(str(tmp_path), "web", "http.server")
        with open(server.pid_path, "w", encoding="ascii") as handle:
            handle.write("%d\n" % bystander.pid)
        assert not server.running()
        assert server.stop() is False
        assert bystander.poll() is None
        assert not os.path.exists(server.pid_path)
    finally:
        bystander.kill()
        bystander.wait()


def test_private_sshd_starts_answers_and_stops(tmp_path):
    """scripts/harness/sshd.py: a real sshd on 127.0.0.1 with its own keys, reused when running, stopped by pidfile."""
    sys.path.insert(0, SCRIPTS)
    try:
        sshd = importlib.import_module("harness.sshd")
        core = importlib.import_module("harness.core")
        directory = str(tmp_path / "sshd")
        info = sshd.start(directory)
        try:
            assert info["host"] == "127.0.0.1" and core.port_answers(info["port"])
            assert info["known_hosts"].startswith("[127.0.0.1]:%d ssh-ed25519 " % info["port"])
            assert sshd.start(directory)["pid"] == info["pid"]
            out = subprocess.run(
                ["ssh", "-F", "none", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
                 "-o", "UserKnownHostsFile=" + info["known_hosts_file"], "-o", "IdentitiesOnly=yes",
                 "-i", info["private_key_file"], "-p", str(info["port"]), "-l", info["user"], "127.0.0.1", "echo ok"],
                capture_output=True, text=True, timeout=60, check=False)
            assert out.stdout.strip() == "ok", out.stderr
        finally:
            assert sshd.stop(directory, remove=True)
        assert not core.port_answers(info["port"])
        assert not os.path.exists(directory)
    finally:
        sys.path.remove(SCRIPTS)
