# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A private sshd on 127.0.0.1 for the unit tests (scripts/harness/sshd.py), started once per session.

The server dies with the process that started it (``PR_SET_PDEATHSIG``), so a
test run in a forked child (``ansible-test units`` forks each test) leaves no
server behind. A forked child shares the server of the process it was forked
from while that server runs (tests/unit/plugins/conftest.py starts it in the
pytest worker before the fork), and starts its own only when there is none;
``stop`` ends only a server this process started.
"""

from __future__ import annotations

import atexit
import importlib
import os
import sys
import tempfile

from ansible_collections.lifeboat.backup.plugins.module_utils import _runner

SCRIPTS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.dirname(os.path.abspath(__file__)))))), "scripts")

_STATE = {}


def _module():
    if SCRIPTS not in sys.path:
        sys.path.insert(0, SCRIPTS)
    return importlib.import_module("harness.sshd")


def server():
    """The session's server facts (host, port, user, private_key_file, known_hosts...)."""
    if _STATE.get("owner") != os.getpid() and not _parents_server_runs():
        _STATE.clear()
        _sweep()
        directory = tempfile.mkdtemp(prefix="lifeboat-unit-sshd-")
        _STATE.update(owner=os.getpid(), dir=directory)
        _STATE["info"] = _module().start(directory, preexec_fn=_runner._die_with_parent(os.getpid()))  # pylint: disable=protected-access
        atexit.register(stop)
    return _STATE["info"]


def _parents_server_runs():
    """Is there a server started by the process this one was forked from, and does it still run?"""
    if not _STATE.get("owner"):
        return False
    try:
        return _module().Server(_STATE["dir"]).daemon.running()
    except Exception:  # pylint: disable=broad-except
        return False


def _sweep(min_age=600.0):
    """Remove directories of servers that died with a forked test process (no atexit runs there)."""
    import glob
    import time
    sshd = _module()
    for directory in glob.glob(os.path.join(tempfile.gettempdir(), "lifeboat-unit-sshd-*")):
        try:
            if time.time() - os.stat(directory).st_mtime < min_age or sshd.Server(directory).daemon.running():
                continue
            sshd.stop(directory, remove=True)
        except Exception:  # pylint: disable=broad-except
            continue


def stop():
    if _STATE.get("owner") == os.getpid():
        directory = _STATE["dir"]
        _STATE.clear()
        _module().stop(directory, remove=True)


def spec(path, inline_key=True, **options):
    """The options of an ssh store at ``path`` on the session's server."""
    info = server()
    out = dict(kind="ssh", host=info["host"], port=info["port"], user=info["user"], path=str(path),
               known_hosts=info["known_hosts"])
    if inline_key:
        with open(info["private_key_file"], encoding="ascii") as handle:
            out["private_key"] = handle.read()
    else:
        out["private_key_file"] = info["private_key_file"]
    out.update(options)
    return out
