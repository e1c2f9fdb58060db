# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Shared helpers for the unit tests: manifest and set factories, a fake store, a fake module, a module runner.

Tests import this file as ``ansible_collections.lifeboat.backup.tests.unit.plugins.helpers``
(plain functions, not conftest fixtures), so that any single test file runs on its own
under plain pytest as well as under ``ansible-test units``.
"""

from __future__ import annotations

import ast
import contextlib
import datetime
import hashlib
import json
import os
import shutil
import sys

import pytest

from ansible.module_utils import basic

from ansible_collections.lifeboat.backup.plugins.module_utils import _manifest
from ansible_collections.lifeboat.backup.plugins.module_utils import _stores

UTC = datetime.timezone.utc


def set_id_time(set_id):
    """The UTC start time encoded in a set id."""
    return datetime.datetime.strptime(set_id[:16], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)


def make_manifest(set_id="20261126T031500Z-full", host="db1", source="app", parent=None,
                  files=None, duration=60, engine="postgresql", method="pg_dump"):
    """A valid manifest whose times derive from the set id (it ends ``duration`` seconds after it starts)."""
    set_type = _manifest.SET_ID_RE.match(set_id).group(2)
    manifest = _manifest.new_manifest(set_id, host, source, engine, method, set_type, parent)
    for name, data in (files if files is not None else {"dump.pgc.zst": b"payload"}).items():
        _manifest.add_file(manifest, name, len(data), hashlib.sha256(data).hexdigest())
    started = set_id_time(set_id)
    _manifest.finish(manifest, started, started + datetime.timedelta(seconds=duration))
    return manifest


class FakeStore(object):
    """The read side of a store, in memory: only what _catalog.scan needs."""

    def __init__(self, manifests=(), partials=None, broken=None):
        self.sets = {}
        for manifest in manifests:
            self.sets.setdefault((manifest["host"], manifest["source"]), {})[manifest["set_id"]] = manifest
        self.partial_names = dict(partials or {})
        # (host, source) -> {set_id: error message}
        for key, errors in (broken or {}).items():
            for set_id, message in errors.items():
                self.sets.setdefault(key, {})[set_id] = _manifest.ManifestError(message)
        for key in self.partial_names:
            self.sets.setdefault(key, {})
        self.reads = []

    def hosts(self):
        return sorted(set(host for host, dummy in self.sets))

    def sources(self, host):
        return sorted(source for one_host, source in self.sets if one_host == host)

    def set_ids(self, host, source):
        return sorted(self.sets.get((host, source), {}))

    def partials(self, host, source):
        return list(self.partial_names.get((host, source), []))

    def listing(self, host, source):
        return _stores.Listing(self.set_ids(host, source), self.partials(host, source))

    def read_manifest(self, host, source, set_id):
        self.reads.append((host, source, set_id))
        value = self.sets[(host, source)][set_id]
        if isinstance(value, Exception):
            raise value
        return value


class FakeModule(object):
    """Just enough of AnsibleModule for Codec, need_binary, decode_stages and find_binary."""

    def __init__(self, params=None, missing=()):
        self.params = dict(params or {})
        self.missing = set(missing)
        self.lookups = []

    def get_bin_path(self, name, required=False, opt_dirs=None):
        self.lookups.append(name)
        if name in self.missing:
            return None
        return shutil.which(name)


class FakeRunner(object):
    """Stands in for _runner.Runner: records each run and answers with ``answer(argv)`` -> (rc, out, err)."""

    def __init__(self, answer):
        self.answer = answer
        self.calls = []

    def run(self, argv, data=None, env=None, cwd=None, pass_fds=()):
        self.calls.append({"argv": list(argv), "data": data, "env": env, "cwd": cwd, "pass_fds": tuple(pass_fds)})
        return self.answer(argv)


def make_set(store, host, source, set_id, files=None, parent=None, duration=60, method="pg_dump",
             engine="postgresql", compression="none", encryption=None, options=None, codecs=None):
    """Write and commit a complete set through the store's own SetWriter; return its manifest.

    ``codecs`` maps a file name to its own codec (manifest v2 ``files[].codec``); other files take
    the set's ``compression`` and ``encryption``.
    """
    files = files if files is not None else {"dump.pgc": b"payload of %s" % set_id.encode()}
    set_type = _manifest.SET_ID_RE.match(set_id).group(2)
    manifest = _manifest.new_manifest(set_id, host, source, engine, method, set_type, parent)
    writer = store.begin(host, source, set_id)
    for name, data in files.items():
        with writer.open(name) as handle:
            handle.write(data)
        _manifest.add_file(manifest, name, len(data), hashlib.sha256(data).hexdigest(),
                           codec=(codecs or {}).get(name))
    manifest["compression"] = {"algorithm": compression, "level": None}
    manifest["encryption"] = encryption
    manifest["options"] = dict(options or {})
    started = set_id_time(set_id)
    _manifest.finish(manifest, started, started + datetime.timedelta(seconds=duration))
    writer.commit(_manifest.dumps(manifest), [f["name"] for f in manifest["files"]])
    return manifest


def at(stamp, seconds=0):
    """at('20261126T031500Z') -> aware UTC datetime; at(..., seconds=n) adds n seconds."""
    return datetime.datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC) + datetime.timedelta(
        seconds=seconds)


# ------------------------------------------------------------------ module runner

class ModuleExit(Exception):
    """exit_json or fail_json was called; ``result`` holds its keyword arguments."""

    def __init__(self, failed, result):
        super(ModuleExit, self).__init__(result.get("msg", ""))
        self.failed = failed
        self.result = result


@contextlib.contextmanager
def _module_args(args):
    try:
        from ansible.module_utils.testing import patch_module_args  # ansible-core >= 2.19
    except ImportError:  # pragma: no cover - older ansible-core
        patch_module_args = None
    if patch_module_args is not None:
        with patch_module_args(args):
            yield
        return
    from unittest import mock  # pragma: no cover
    raw = json.dumps({"ANSIBLE_MODULE_ARGS": args}).encode("utf-8")  # pragma: no cover
    with mock.patch.object(basic, "_ANSIBLE_ARGS", raw):  # pragma: no cover
        yield


def run_module(monkeypatch, tmp_path, module, args, check_mode=False):
    """Run ``module.main()`` with ``args``; return the ModuleExit (``failed`` tells fail_json from exit_json)."""

    def exit_json(self, **kwargs):
        raise ModuleExit(False, kwargs)

    def fail_json(self, msg="", **kwargs):
        kwargs["msg"] = msg
        raise ModuleExit(True, kwargs)

    monkeypatch.setattr(basic.AnsibleModule, "exit_json", exit_json)
    monkeypatch.setattr(basic.AnsibleModule, "fail_json", fail_json)
    module_tmp = tmp_path / "module-tmp"
    module_tmp.mkdir(mode=0o700, exist_ok=True)
    args = dict(args)
    args.setdefault("_ansible_tmpdir", str(module_tmp))
    args.setdefault("_ansible_check_mode", check_mode)
    with _module_args(args):
        with pytest.raises(ModuleExit) as info:
            module.main()
    return info.value


# ------------------------------------------------------------------ fake PostgreSQL client tools

FAKE_DUMP = b"PGDMP fake custom archive\n" + bytes(range(256)) * 64
FAKE_PG_TOOL = r'''#!%(python)s -S
# A stand-in for a PostgreSQL client tool, written by the unit tests. It records its argv,
# its PG* environment, the passfile it was pointed at and its stdin, then acts the part.
import os, sys, time  # no json: a faster start; records are Python literals

LOG = %(log)r
name = os.path.basename(sys.argv[0])
args = sys.argv[1:]
with open(os.path.join(LOG, "behaviour.txt")) as handle:
    behaviour = eval(handle.read()).get(name, {})
record = {"tool": name, "argv": sys.argv,
          "env": dict((k, v) for k, v in os.environ.items() if k.startswith("PG") or k in ("LANG", "LC_ALL"))}
passfile = os.environ.get("PGPASSFILE")
if passfile and passfile != os.devnull and os.path.isfile(passfile):
    with open(passfile) as handle:
        record["passfile"] = handle.read()
    record["passfile_mode"] = os.stat(passfile).st_mode & 0o777
out = b""
if args == ["--version"]:
    behaviour = {}  # --version always works
    out = ("%%s (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)\n" %% name).encode()
elif name == "psql":
    first = sys.stdin.buffer.readline()
    if b"pg_try_advisory_lock" in first:
        # The restore lock: a session that answers at once and lives until its stdin closes.
        sys.stdout.write(behaviour.get("lock", "t") + "\n")
        sys.stdout.flush()
    sql = (first + sys.stdin.buffer.read()).decode("utf-8", "replace")
    record["stdin"] = sql
    for needle, error in behaviour.get("fail_if", {}).items():
        if needle in sql:
            behaviour = {"rc": 3, "stderr": error}
    if "pg_try_advisory_lock" in sql:
        out = b""
    elif "pg_is_in_recovery" in sql:
        out = behaviour.get("probe", "15.18\tf\t0/3000148\t1\n").encode()
    elif "\\restrict lifeboatprobe" in sql and behaviour.get("no_restrict"):
        behaviour = {"rc": 3, "stderr": "psql:<stdin>:1: error: invalid command \\restrict\n"}
    elif "count(*)" in sql:
        out = behaviour.get("count", "0\n").encode()
    elif "SELECT datname" in sql:
        out = behaviour.get("datnames", "").encode()
    elif "'taken'" in sql:
        out = behaviour.get("names", '{"taken": [], "fits": true, "template": false}\n').encode()
    elif "pg_shdescription" in sql:
        out = behaviour.get("leftovers", "[]\n").encode()
elif name == "pg_dump":
    if "-f" in args:
        target = args[args.index("-f") + 1]
        os.makedirs(target)
        with open(os.path.join(target, "toc.dat"), "wb") as handle:
            handle.write(b"TOC")
        with open(os.path.join(target, "3001.dat"), "wb") as handle:
            handle.write(b"rows\n" * 100)
    else:
        out = bytes.fromhex(%(dump)r)
elif name == "pg_dumpall":
    out = b"-- fake pg_dumpall\nCREATE ROLE app;\n"
elif name == "pg_restore" and "--create" in args:
    # Rendering the archive's database entries: read the head of the archive only.
    if not (args and os.path.isabs(args[-1])):
        sys.stdin.buffer.read(16)
    out = behaviour.get("render", "").encode()
    behaviour = {}
elif name == "pg_restore":
    source = args[-1] if args and os.path.isabs(args[-1]) and os.path.exists(args[-1]) else None
    if source and os.path.isdir(source):
        data = b"".join(open(os.path.join(source, n), "rb").read() for n in sorted(os.listdir(source)))
    elif source:
        data = open(source, "rb").read()
    else:
        data = sys.stdin.buffer.read()
    with open(os.path.join(LOG, "restored-%%d.bin" %% os.getpid()), "wb") as handle:
        handle.write(data)
with open(os.path.join(LOG, "%%.6f-%%d-%%s.rec" %% (time.time(), os.getpid(), name)), "w") as handle:
    handle.write(repr(record))
sys.stderr.write(behaviour.get("stderr", ""))
sys.stdout.buffer.write(out)
sys.stdout.flush()
sys.exit(behaviour.get("rc", 0))
'''


class FakePostgres(object):
    """A pg_bin_dir of fake psql / pg_dump / pg_dumpall / pg_restore that log what they were given."""

    TOOLS = ("psql", "pg_dump", "pg_dumpall", "pg_restore")

    def __init__(self, base):
        self.bin_dir = os.path.join(str(base), "pgbin")
        self.log_dir = os.path.join(str(base), "pglog")
        os.makedirs(self.bin_dir)
        os.makedirs(self.log_dir)
        self.behave({})
        script = FAKE_PG_TOOL % {"python": sys.executable, "log": self.log_dir, "dump": FAKE_DUMP.hex()}
        for tool in self.TOOLS:
            path = os.path.join(self.bin_dir, tool)
            with open(path, "w") as handle:
                handle.write(script)
            os.chmod(path, 0o755)

    def behave(self, behaviour):
        """{tool: {rc, stderr, probe, count, datnames, names, leftovers, lock, no_restrict, fail_if, render}}
        for the next invocations (psql's ``fail_if`` maps a piece of SQL to the stderr of a failure)."""
        with open(os.path.join(self.log_dir, "behaviour.txt"), "w") as handle:
            handle.write(repr(behaviour))

    def calls(self, tool=None):
        records = []
        for name in sorted(os.listdir(self.log_dir)):
            if name.endswith(".rec"):
                with open(os.path.join(self.log_dir, name)) as handle:
                    record = ast.literal_eval(handle.read())
                if tool is None or record["tool"] == tool:
                    records.append(record)
        return records

    def restored(self):
        """What each pg_restore run received, oldest first."""
        found = []
        for name in sorted(os.listdir(self.log_dir), key=lambda n: os.path.getmtime(os.path.join(self.log_dir, n))):
            if name.startswith("restored-"):
                with open(os.path.join(self.log_dir, name), "rb") as handle:
                    found.append(handle.read())
        return found

    def sql(self):
        return [record["stdin"] for record in self.calls("psql")]
