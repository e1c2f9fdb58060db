# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The restore job skeleton: load, preconditions, verify the chain, identity, workspace, consume, finalise."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from ansible_collections.lifeboat.backup.plugins.module_utils import _jobs
from ansible_collections.lifeboat.backup.plugins.module_utils._common import LifeboatError
from ansible_collections.lifeboat.backup.plugins.module_utils._pipeline import Stage
from ansible_collections.lifeboat.backup.tests.unit.plugins.helpers import FakeModule, make_set
from ansible_collections.lifeboat.backup.tests.unit.plugins.module_utils import store_kinds

FULL = "20261101T000000Z-full"
INC = "20261102T000000Z-incremental"


@pytest.fixture(params=["dir", "memory"])
def kind(request, tmp_path):
    return store_kinds.FACTORIES[request.param](tmp_path)


class Engine(object):
    """Streams every payload through cat into a file per member; records the order of calls."""

    def __init__(self, out_dir, fail_preconditions=False):
        self.out_dir = out_dir
        self.calls = []
        self.fail_preconditions = fail_preconditions
        self.workspaces = []

    def preconditions(self, job):
        self.calls.append("preconditions")
        if self.fail_preconditions:
            raise LifeboatError("The target exists.")

    def consume(self, job, member):
        self.calls.append(member["set_id"])
        self.workspaces.append(job.workspace)
        assert os.path.isdir(job.workspace)
        for entry in member["files"]:
            target = os.path.join(self.out_dir, member["set_id"] + "-" + entry["name"])
            job.unpack(member, entry["name"], target)

    def finalise(self, job):
        self.calls.append("finalise")


def chain_store(kind):
    store, tamper = kind
    make_set(store, "db1", "app", FULL, files={"data": b"full data"})
    make_set(store, "db1", "app", INC, files={"data": b"inc data"}, parent=FULL)
    return store, tamper


def test_chain_is_consumed_full_first(kind, tmp_path):
    store, dummy = chain_store(kind)
    engine = Engine(str(tmp_path))
    job = _jobs.RestoreJob(FakeModule(), store, "db1", "app", work_dir=str(tmp_path))
    result = job.run(engine)
    assert engine.calls == ["preconditions", FULL, INC, "finalise"]
    assert (tmp_path / (FULL + "-data")).read_bytes() == b"full data"
    assert (tmp_path / (INC + "-data")).read_bytes() == b"inc data"
    assert result["set_id"] == INC and result["chain"] == [FULL, INC]
    assert result["verified_files"] == 2 and result["changed"] is True
    assert not os.path.exists(engine.workspaces[0])


def test_check_mode_verifies_but_consumes_nothing(kind, tmp_path):
    store, dummy = chain_store(kind)
    engine = Engine(str(tmp_path))
    result = _jobs.RestoreJob(FakeModule(), store, "db1", "app", work_dir=str(tmp_path)).run(engine, check_mode=True)
    assert engine.calls == ["preconditions"]
    assert result["chain"] == [FULL, INC]


def test_preconditions_come_before_hashing(kind, tmp_path):
    store, tamper = chain_store(kind)
    tamper("db1", "app", FULL, "data", b"tampered!")
    engine = Engine(str(tmp_path), fail_preconditions=True)
    with pytest.raises(LifeboatError, match="The target exists"):
        _jobs.RestoreJob(FakeModule(), store, "db1", "app").run(engine)


def test_a_corrupt_parent_stops_before_anything_is_consumed(kind, tmp_path):
    store, tamper = chain_store(kind)
    tamper("db1", "app", FULL, "data", b"tampered!")
    engine = Engine(str(tmp_path))
    with pytest.raises(LifeboatError, match="%s failed verification" % FULL):
        _jobs.RestoreJob(FakeModule(), store, "db1", "app", work_dir=str(tmp_path)).run(engine)
    assert engine.calls == ["preconditions"]


def test_an_encrypted_set_needs_an_identity(kind):
    store, dummy = kind
    make_set(store, "db1", "app", FULL, encryption={"method": "age", "recipients": ["sha256:" + "0" * 32]})
    with pytest.raises(LifeboatError, match="pass age_identity"):
        _jobs.RestoreJob(FakeModule(), store, "db1", "app").load()


@pytest.mark.skipif(not shutil.which("zstd"), reason="zstd is not installed")
def test_stream_decodes_into_the_consumer(tmp_path):
    store, dummy = store_kinds.FACTORIES["memory"](tmp_path)
    job = _jobs.BackupJob(store, "db1", "app", "test", "printf", codec=_jobs.Codec(FakeModule(), "zstd"))

    class Printf(object):
        def produce(self, ctx):
            yield _jobs.Payload("data", [Stage("printf", ["printf", "%s", "hello"])])

        def record(self, ctx, manifest):
            pass
    job.run(Printf())
    out = tmp_path / "out"

    class Cat(object):
        def preconditions(self, job):
            pass

        def consume(self, job, member):
            job.stream(member, "data.zst", [Stage("sh", ["sh", "-c", 'cat > "$0"', str(out)])])

        def finalise(self, job):
            pass
    result = _jobs.RestoreJob(FakeModule(), store, "db1", "app", work_dir=str(tmp_path)).run(Cat())
    assert out.read_bytes() == b"hello"
    assert result["cmd"][0][0][0].endswith("zstd")


@pytest.mark.skipif(not (shutil.which("zstd") and shutil.which("gzip")), reason="zstd and gzip are needed")
def test_each_payload_is_decoded_with_its_own_codec(kind, tmp_path):
    """Manifest v2: files of one set written with different codecs each come back through their own."""
    store, dummy = kind
    raw = b"rows of a table\n" * 1000
    zstd = subprocess.run(["zstd", "-q", "-c"], input=raw, stdout=subprocess.PIPE, check=True).stdout
    gzip = subprocess.run(["gzip", "-c"], input=b"a log\n", stdout=subprocess.PIPE, check=True).stdout
    make_set(store, "db1", "app", FULL, compression="zstd",
             files={"dump.zst": zstd, "log.txt": b"plain log\n", "extra.gz": gzip},
             codecs={"log.txt": {"compression": "none", "encryption": None},
                     "extra.gz": {"compression": "gzip", "encryption": None}})
    engine = Engine(str(tmp_path))
    _jobs.RestoreJob(FakeModule(), store, "db1", "app", work_dir=str(tmp_path)).run(engine)
    assert (tmp_path / (FULL + "-dump.zst")).read_bytes() == raw
    assert (tmp_path / (FULL + "-log.txt")).read_bytes() == b"plain log\n"
    assert (tmp_path / (FULL + "-extra.gz")).read_bytes() == b"a log\n"


def test_a_file_without_its_own_codec_takes_the_sets():
    """A version 1 manifest read raw has no files[].codec: the set-level codec applies."""
    manifest = {"set_id": FULL, "compression": {"algorithm": "gzip", "level": None}, "encryption": None,
                "files": [{"name": "dump.pgc.gz", "size": 1, "sha256": "0" * 64}]}
    assert [s.name for s in _jobs.decode_stages(FakeModule(), manifest, None, "dump.pgc.gz")] == ["pigz"]
    assert _jobs.file_codec(manifest, "dump.pgc.gz") == {"compression": "gzip", "encryption": None}
    manifest["files"][0]["codec"] = {"compression": "none", "encryption": None}
    assert _jobs.decode_stages(FakeModule(), manifest, None, "dump.pgc.gz") == []


class Hooked(Engine):
    """An engine with the optional hooks; ``fail`` makes consume raise."""

    def __init__(self, out_dir, fail=False):
        super(Hooked, self).__init__(out_dir)
        self.fail = fail
        self.read = []

    def check(self, job):
        self.calls.append("check")

    def consume(self, job, member):
        self.calls.append(member["set_id"])
        self.read.append(job.read(member, "data", lambda stream: stream.read()))
        blocks = []
        assert job.pump(member, "data", blocks.append) is True
        self.read.append(b"".join(blocks))
        if self.fail:
            raise LifeboatError("The load failed.")

    def release(self, job):
        self.calls.append("release")
        assert os.path.isdir(job.workspace)


def test_release_runs_after_a_failed_consumer_and_check_only_in_check_mode(kind, tmp_path):
    store, dummy = chain_store(kind)
    engine = Hooked(str(tmp_path), fail=True)
    job = _jobs.RestoreJob(FakeModule(), store, "db1", "app", work_dir=str(tmp_path))
    with pytest.raises(LifeboatError, match="The load failed"):
        job.run(engine)
    assert engine.calls == ["preconditions", FULL, "release"]
    assert engine.read == [b"full data", b"full data"]
    assert job.summary()["chain"] == [FULL, INC]
    checked = Hooked(str(tmp_path))
    _jobs.RestoreJob(FakeModule(), store, "db1", "app", work_dir=str(tmp_path)).run(checked, check_mode=True)
    assert checked.calls == ["preconditions", "check"]
