# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""_jobs.run_backup_module: the one main() of every backup module, around an engine's hooks."""

from __future__ import annotations

import uuid

import pytest

from ansible_collections.lifeboat.backup.plugins.module_utils import _jobs
from ansible_collections.lifeboat.backup.plugins.module_utils import _pipeline
from ansible_collections.lifeboat.backup.plugins.module_utils import _store_kinds
from ansible_collections.lifeboat.backup.plugins.module_utils._common import LifeboatError
from ansible_collections.lifeboat.backup.tests.unit.plugins.helpers import FakeModule


class Exited(Exception):
    def __init__(self, failed, result):
        Exception.__init__(self, result.get("msg", ""))
        self.failed = failed
        self.result = result


class Module(FakeModule):
    def __init__(self, params, tmp_path, check_mode=False):
        FakeModule.__init__(self, params)
        self.check_mode = check_mode
        self.tmpdir = str(tmp_path)
        self.warnings = []

    def exit_json(self, **result):
        raise Exited(False, result)

    def fail_json(self, **result):
        raise Exited(True, result)

    def warn(self, text):
        self.warnings.append(text)


def params(store, **extra):
    base = dict(store=store, host="db1", compression="none", compression_level=None, compression_threads=0,
                encrypt_recipients=[], sign_key=None, sign_key_file=None, type="full", full_every=None,
                between="incremental", labels={}, max_age=None, work_dir=None)
    base.update(extra)
    return base


class Session(object):
    def __init__(self, calls):
        self.calls = calls

    def __enter__(self):
        self.calls.append("enter")
        return self

    def __exit__(self, *exc_info):
        self.calls.append("exit")
        return False


class Engine(object):
    """Every hook, each recording that it ran."""

    def __init__(self, fail_probe=False):
        self.calls = []
        self.fail_probe = fail_probe
        self.versions = None

    def describe(self, codec):
        self.calls.append("describe")
        return ["printf %s data"]

    def session(self):
        return Session(self.calls)

    def probe(self, decision):
        self.calls.append("probe")
        assert decision["job"].source == "app"
        if self.fail_probe:
            raise LifeboatError("The server db1 refused the connection.")

    def check_result(self, decision):
        self.calls.append("check_result")
        return {"position": {"would": decision["set_id"]}}

    def tool_versions(self, codec):
        self.calls.append("tool_versions")
        return {"tool": "1.0"}

    def produce(self, ctx):
        self.calls.append("produce")
        yield _jobs.Payload("dump", [_pipeline.Stage("printf", ["printf", "%s", "data"])])

    def record(self, ctx, manifest):
        self.calls.append("record")
        manifest["tool_versions"] = self.versions
        manifest["position"] = {"lsn": "0/1"}

    def result(self, manifest, extras):
        self.calls.append("result")
        return {"extra": "skipped" if extras.get("skipped") else "written"}


class Bare(object):
    """Only the required hooks."""

    def describe(self, codec):
        return ["printf"]

    def produce(self, ctx):
        yield _jobs.Payload("dump", [_pipeline.Stage("printf", ["printf", "%s", "bare"])])

    def record(self, ctx, manifest):
        manifest["position"] = {}


@pytest.fixture
def store_options():
    return {"kind": "memory", "name": "run-backup-module-%s" % uuid.uuid4().hex}


def run(module, engine, **kw):
    with pytest.raises(Exited) as info:
        _jobs.run_backup_module(module, engine, "app", "test", "printf", **kw)
    return info.value


def test_a_run_calls_every_hook_in_order_and_merges_the_result(tmp_path, store_options):
    engine = Engine()
    exited = run(Module(params(store_options), tmp_path), engine)
    assert not exited.failed
    assert engine.calls == ["describe", "enter", "probe", "describe", "tool_versions", "produce", "record",
                            "exit", "result"]
    result = exited.result
    assert result["changed"] is True and result["type"] == "full" and result["parent_set_id"] is None
    assert result["extra"] == "written" and result["cmd"] == ["printf %s data"]
    assert result["manifest"]["tool_versions"] == {"tool": "1.0"}
    store = _store_kinds.open_store(store_options)
    assert store.set_ids("db1", "app") == [result["set_id"]]


def test_check_mode_writes_nothing_and_merges_the_check_result(tmp_path, store_options):
    engine = Engine()
    exited = run(Module(params(store_options), tmp_path, check_mode=True), engine)
    assert not exited.failed and exited.result["changed"] is True
    assert exited.result["position"] == {"would": exited.result["set_id"]}
    assert exited.result["skipped_reason"] is None and exited.result["type"] == "full"
    assert "produce" not in engine.calls and engine.calls[-1] == "exit"
    assert _store_kinds.open_store(store_options).set_ids("db1", "app") == []


def test_a_fresh_set_skips_without_probing(tmp_path, store_options):
    run(Module(params(store_options), tmp_path), Engine())
    engine = Engine()
    exited = run(Module(params(store_options, max_age="1d"), tmp_path), engine)
    assert exited.result["changed"] is False and exited.result["extra"] == "skipped"
    assert "probe" not in engine.calls and "produce" not in engine.calls


def test_an_engine_error_is_one_sentence_with_the_command(tmp_path, store_options):
    engine = Engine(fail_probe=True)
    exited = run(Module(params(store_options), tmp_path), engine)
    assert exited.failed
    assert exited.result == {"msg": "The server db1 refused the connection.", "cmd": ["printf %s data"]}
    assert engine.calls[-1] == "exit"
    assert _store_kinds.open_store(store_options).set_ids("db1", "app") == []


def test_the_engine_set_type_overrides_the_type_option(tmp_path, store_options):
    engine = Bare()
    engine.set_type = "full"
    exited = run(Module(params(store_options, type="incremental"), tmp_path), engine)
    assert exited.result["type"] == "full"


def test_an_engine_with_only_the_required_hooks_runs(tmp_path, store_options):
    exited = run(Module(params(store_options), tmp_path), Bare())
    assert not exited.failed and exited.result["cmd"] == ["printf"]
    assert [f["name"] for f in exited.result["files"]] == ["dump"]


def test_bad_options_fail_before_any_hook(tmp_path, store_options):
    engine = Engine()
    exited = run(Module(params(store_options, compression_threads=-1), tmp_path), engine)
    assert exited.failed and "compression_threads" in exited.result["msg"] and exited.result["cmd"] == []
    assert engine.calls == []
