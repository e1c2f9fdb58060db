# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A private sshd on 127.0.0.1 for the unit tests (scripts/harness/sshd.py), started once per session."""

from __future__ import annotations

import importlib
import os
import sys
import tempfile

SCRIPTS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.dirname(os.path.abspath(__file__)))))), "scripts")

_STATE = {}


def _module():
    if SCRIPTS not in sys.path:
        sys.path.insert(0, SCRIPTS)
    return importlib.import_module("harness.sshd")


def server():
    """The session's server facts (host, port, user, private_key_file, known_hosts...)."""
    if "info" not in _STATE:
        directory = tempfile.mkdtemp(prefix="lifeboat-unit-sshd-")
        _STATE["dir"] = directory
        _STATE["info"] = _module().start(directory)
    return _STATE["info"]


def stop():
    if "dir" in _STATE:
        _module().stop(_STATE.pop("dir"), remove=True)
        _STATE.pop("info", None)


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
