# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""_jobs.run_restore_module: the glue every restore module shares, run as a module on the memory store."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import types
import uuid

import pytest

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.lifeboat.backup.plugins.module_utils import _jobs
from ansible_collections.lifeboat.backup.plugins.module_utils import _store_kinds
from ansible_collections.lifeboat.backup.plugins.module_utils._common import LifeboatError
from ansible_collections.lifeboat.backup.tests.unit.plugins.helpers import make_set, run_module

FULL = "20261101T000000Z-full"
INC = "20261102T000000Z-incremental"


@pytest.fixture
def store_spec():
    spec = {"kind": "memory", "name": uuid.uuid4().hex}
    store = _store_kinds.open_store(spec)
    make_set(store, "db1", "app", FULL, files={"data": b"full data"})
    make_set(store, "db1", "app", INC, files={"data": b"inc data"}, parent=FULL)
    return spec


class Engine(object):
    """Reads every payload through the job; can fail at a chosen hook; records the order of everything."""

    def __init__(self, log, fail=None, error=None):
        self.log = log
        self.fail = fail
        self.error = error or LifeboatError("The target is gone.")
        self.read = {}
        self.changed = False

    def _maybe_fail(self, hook):
        if self.fail == hook:
            raise self.error

    def preconditions(self, job):
        self.log.append("preconditions")
        self._maybe_fail("preconditions")

    def check(self, job):
        self.log.append("check")

    def consume(self, job, member):
        self.log.append("consume " + member["set_id"])
        self.changed = True
        self._maybe_fail("consume")
        for entry in member["files"]:
            self.read[member["set_id"]] = job.read(member, entry["name"], lambda stream: stream.read())

    def finalise(self, job):
        self.log.append("finalise")

    def release(self, job):
        self.log.append("release")

    def result(self, job):
        return {"restored": sorted(self.read)}


def module_for(build):
    """A module namespace whose main() builds an AnsibleModule and calls ``build(module)``."""

    def main():
        spec = _jobs.restore_argument_spec()
        spec["store"] = dict(type="dict", required=True)  # the memory kind is not a public choice
        module = AnsibleModule(argument_spec=spec, supports_check_mode=True,
                               mutually_exclusive=_jobs.RESTORE_MUTUALLY_EXCLUSIVE)
        build(module)

    return types.SimpleNamespace(main=main)


def run(monkeypatch, tmp_path, store_spec, build, check_mode=False, **extra):
    args = dict(store=store_spec, host="db1", source="app", work_dir=str(tmp_path))
    args.update(extra)
    return run_module(monkeypatch, tmp_path, module_for(build), args, check_mode=check_mode)


def test_success_merges_summary_engine_result_and_finish(monkeypatch, tmp_path, store_spec):
    log = []
    engine = Engine(log)

    def finish(job, picked, result):
        log.append("finish")
        assert picked is engine
        result["extra"] = len(job.chain)

    outcome = run(monkeypatch, tmp_path, store_spec, lambda m: _jobs.run_restore_module(m, engine, finish=finish))
    assert not outcome.failed, outcome.result
    result = outcome.result
    assert log == ["preconditions", "consume " + FULL, "consume " + INC, "finalise", "release", "finish"]
    assert engine.read == {FULL: b"full data", INC: b"inc data"}
    assert result["changed"] is True
    assert result["set_id"] == INC and result["chain"] == [FULL, INC]
    assert result["verified_files"] == 2 and result["store"]["kind"] == "memory"
    assert result["restored"] == [FULL, INC] and result["extra"] == 2
    assert result["cmd"] == [] and "msg" not in result


def test_check_mode_runs_check_and_consumes_nothing(monkeypatch, tmp_path, store_spec):
    log = []
    outcome = run(monkeypatch, tmp_path, store_spec, lambda m: _jobs.run_restore_module(m, Engine(log)),
                  check_mode=True)
    assert not outcome.failed, outcome.result
    assert log == ["preconditions", "check"]
    assert outcome.result["changed"] is True and outcome.result["restored"] == []


def test_a_factory_picks_the_engine_once_the_set_is_loaded_inside_the_session(monkeypatch, tmp_path, store_spec):
    log = []

    @contextlib.contextmanager
    def session():
        log.append("enter")
        yield "credentials"
        log.append("exit")

    def pick(job, entered):
        log.append("pick %s %s" % (job.manifest["set_id"], entered))
        return Engine(log)

    outcome = run(monkeypatch, tmp_path, store_spec,
                  lambda m: _jobs.run_restore_module(m, pick, session=session()), set_id=FULL)
    assert not outcome.failed, outcome.result
    assert log == ["enter", "pick %s credentials" % FULL, "preconditions", "consume " + FULL, "finalise", "release",
                   "exit"]
    assert outcome.result["chain"] == [FULL]


def test_an_engine_session_hook_is_held_around_the_run(monkeypatch, tmp_path, store_spec):
    log = []
    engine = Engine(log)

    @contextlib.contextmanager
    def hook():
        log.append("session")
        yield
        log.append("session closed")

    engine.session = hook
    outcome = run(monkeypatch, tmp_path, store_spec, lambda m: _jobs.run_restore_module(m, engine))
    assert not outcome.failed, outcome.result
    assert log[0] == "session" and log[-1] == "session closed" and "finalise" in log


def test_a_failure_reports_one_sentence_what_was_loaded_and_the_engine_state(monkeypatch, tmp_path, store_spec):
    log = []
    engine = Engine(log, fail="consume")
    outcome = run(monkeypatch, tmp_path, store_spec, lambda m: _jobs.run_restore_module(m, engine))
    assert outcome.failed
    result = outcome.result
    assert result["msg"] == "The target is gone."
    assert result["set_id"] == INC and result["chain"] == [FULL, INC] and result["bytes"] > 0
    assert result["changed"] is True  # the engine said it changed something before failing
    assert result["restored"] == []
    assert log[-1] == "release"


def test_an_unexpected_error_is_one_sentence(monkeypatch, tmp_path, store_spec):
    engine = Engine([], fail="preconditions", error=KeyError("format"))
    outcome = run(monkeypatch, tmp_path, store_spec, lambda m: _jobs.run_restore_module(m, engine))
    assert outcome.failed
    assert outcome.result["msg"] == "The restore failed unexpectedly (KeyError: 'format')."
    assert outcome.result["changed"] is False
    assert "Traceback" not in json.dumps(outcome.result)


def test_changed_on_failure_has_the_last_word(monkeypatch, tmp_path, store_spec):
    engine = Engine([], fail="consume")
    seen = []

    def changed_on_failure(job, picked):
        seen.append((job.manifest["set_id"], picked is engine))
        return False

    outcome = run(monkeypatch, tmp_path, store_spec,
                  lambda m: _jobs.run_restore_module(m, engine, changed_on_failure=changed_on_failure))
    assert outcome.failed and outcome.result["changed"] is False
    assert seen == [(INC, True)]


def test_a_missing_set_fails_before_any_engine_is_picked(monkeypatch, tmp_path, store_spec):
    picked = []
    outcome = run(monkeypatch, tmp_path, store_spec,
                  lambda m: _jobs.run_restore_module(m, lambda job, entered: picked.append(job)), source="other")
    assert outcome.failed
    assert "holds no complete set for host db1, source other; sources of db1 there: app." in outcome.result["msg"]
    assert outcome.result["set_id"] is None and outcome.result["changed"] is False and outcome.result["cmd"] == []
    assert picked == []


def test_an_encrypted_set_without_identity_is_refused_before_the_engine(monkeypatch, tmp_path, store_spec):
    store = _store_kinds.open_store(store_spec)
    make_set(store, "db1", "sealed", FULL, files={"data.age": b"x"},
             encryption={"method": "age", "recipients": ["sha256:" + "0" * 32]})
    log = []
    outcome = run(monkeypatch, tmp_path, store_spec, lambda m: _jobs.run_restore_module(m, Engine(log)),
                  source="sealed")
    assert outcome.failed
    assert outcome.result["msg"] == ("Set %s is encrypted with age; pass age_identity (from Ansible Vault) or "
                                     "age_identity_file." % FULL)
    assert log == []


@pytest.mark.skipif(not shutil.which("ssh-keygen"), reason="ssh-keygen is not installed")
def test_trusted_signers_refuse_an_unsigned_set(monkeypatch, tmp_path, store_spec):
    key = tmp_path / "signer"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    signers = "db1 " + (tmp_path / "signer.pub").read_text().strip()
    log = []
    outcome = run(monkeypatch, tmp_path, store_spec, lambda m: _jobs.run_restore_module(m, Engine(log)),
                  trusted_signers=[signers])
    assert outcome.failed
    assert "unsigned" in outcome.result["msg"] or "not signed" in outcome.result["msg"]
    assert log == []
