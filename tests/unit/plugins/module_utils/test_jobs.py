# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import datetime
import json
import os
import shutil
import socket
import stat
import subprocess

import pytest

from ansible_collections.lifeboat.backup.plugins.module_utils import _jobs
from ansible_collections.lifeboat.backup.plugins.module_utils import _manifest
from ansible_collections.lifeboat.backup.plugins.module_utils import _pipeline
from ansible_collections.lifeboat.backup.plugins.module_utils import _store_dir
from ansible_collections.lifeboat.backup.plugins.module_utils import _stores
from ansible_collections.lifeboat.backup.plugins.module_utils._catalog import ChainError, NoSetError
from ansible_collections.lifeboat.backup.plugins.module_utils._common import LifeboatError
from ansible_collections.lifeboat.backup.plugins.module_utils._pipeline import Stage
from ansible_collections.lifeboat.backup.tests.unit.plugins.helpers import FakeModule, FakeRunner, make_set

UTC = datetime.timezone.utc
T0 = datetime.datetime(2026, 11, 26, 3, 15, 0, tzinfo=UTC)
AGE_KEYGEN = shutil.which("age-keygen")
needs_age = pytest.mark.skipif(not (AGE_KEYGEN and shutil.which("age")), reason="age is not installed")
needs_zstd = pytest.mark.skipif(not shutil.which("zstd"), reason="zstd is not installed")


class Clock(object):
    """An injectable clock: each call returns the current time; advance() moves it."""

    def __init__(self, when=T0):
        self.when = when

    def __call__(self):
        return self.when

    def advance(self, seconds):
        self.when += datetime.timedelta(seconds=seconds)


@pytest.fixture
def store(tmp_path):
    return _store_dir.DirStore({"path": str(tmp_path / "store")})


@pytest.fixture(scope="module")
def recipient(tmp_path_factory):
    if not AGE_KEYGEN:
        pytest.skip("age is not installed")
    identity = str(tmp_path_factory.mktemp("age") / "id.txt")
    subprocess.run([AGE_KEYGEN, "-o", identity], check=True, stderr=subprocess.DEVNULL)
    public = subprocess.run([AGE_KEYGEN, "-y", identity], check=True, stdout=subprocess.PIPE).stdout.decode().strip()
    return public, identity


class PrintfEngine(object):
    """A BackupJob engine: one payload ``name`` made by printf (then ``stages_after``); ``fail`` raises in record."""

    def __init__(self, data="hello backup", name="data.txt", stages_after=(), fail=None, payloads=1):
        self.data = data
        self.name = name
        self.stages_after = list(stages_after)
        self.fail = fail
        self.payloads = payloads

    def produce(self, ctx):
        for dummy in range(self.payloads):
            yield _jobs.Payload(self.name, [Stage("printf", ["printf", "%s", self.data])] + self.stages_after)

    def record(self, ctx, manifest):
        if self.fail is not None:
            raise self.fail


def printf_engine(data="hello backup", name="data.txt", stages_after=()):
    return PrintfEngine(data, name, stages_after)


def dead_pid():
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


# ------------------------------------------------------------------ Codec

@needs_age
def test_codec_accepts_age_and_ssh_recipients(recipient):
    public, dummy = recipient
    ssh = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHkq1d8fQq0m4cFJr4Ff0pX4X6sYv3y7Qd8Gz8c8dYbQ backup@example"
    codec = _jobs.Codec(FakeModule(), "zstd", 3, 2, [" %s " % public, ssh, "", "  "])
    assert codec.recipients == [public, ssh]
    assert codec.age_bin == shutil.which("age")
    assert codec.suffix() == ".zst.age"
    assert [s.name for s in codec.stages()] == ["zstd", "age"]
    assert codec.stages()[1].argv == [shutil.which("age"), "--encrypt", "-r", public, "-r", ssh]
    manifest = {}
    codec.record(manifest)
    assert manifest["compression"] == {"algorithm": "zstd", "level": 3}
    assert manifest["encryption"]["method"] == "age"
    assert manifest["encryption"]["recipients"] == [_jobs.recipient_fingerprint(public),
                                                    _jobs.recipient_fingerprint(ssh)]
    assert public not in json.dumps(manifest)


@pytest.mark.parametrize(
    "bad",
    [
        "not-a-key",
        "age1tooshort",
        "AGE1" + "Q" * 58,
        "age1" + "q" * 57,
        "age1" + "q" * 59,
        "AGE-SECRET-KEY-1QQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQ",
        "ssh-dss AAAAB3NzaC1kc3M=",
        "age1" + "q" * 58 + " trailing",
    ],
)
def test_codec_rejects_bad_recipient(bad):
    with pytest.raises(LifeboatError) as info:
        _jobs.Codec(FakeModule(), "none", recipients=[bad])
    message = str(info.value)
    assert "is not an age public key" in message
    # A long value is cut: a pasted private key must not be echoed in full.
    assert bad not in message or len(bad) <= 24


@pytest.mark.parametrize(
    "compression, level, threads, fragment",
    [
        ("zstd", 0, 0, "compression_level for zstd must be between 1 and 22, not 0."),
        ("zstd", 23, 0, "compression_level for zstd must be between 1 and 22, not 23."),
        ("zstd", -1, 0, "compression_level for zstd must be between 1 and 22, not -1."),
        ("gzip", 10, 0, "compression_level for gzip must be between 1 and 9, not 10."),
        ("gzip", 0, 0, "compression_level for gzip must be between 1 and 9, not 0."),
        ("zstd", None, -1, "compression_threads must be 0 (all cores) or more, not -1."),
    ],
)
def test_codec_rejects_levels(compression, level, threads, fragment):
    with pytest.raises(LifeboatError) as info:
        _jobs.Codec(FakeModule(), compression, level, threads)
    assert str(info.value) == fragment


@pytest.mark.parametrize(
    "compression, level, missing, binary, suffix",
    [
        ("zstd", 1, (), "zstd", ".zst"),
        ("zstd", 22, (), "zstd", ".zst"),
        ("gzip", 9, (), "pigz", ".gz"),
        ("gzip", 1, ("pigz",), "gzip", ".gz"),
        ("none", 99, (), None, ""),
    ],
)
def test_codec_levels_and_binaries(compression, level, missing, binary, suffix):
    if binary and not shutil.which(binary):
        pytest.skip("%s is not installed" % binary)
    codec = _jobs.Codec(FakeModule(missing=missing), compression, level)
    assert codec.compress_bin == (shutil.which(binary) if binary else None)
    assert codec.age_bin is None
    assert codec.suffix() == suffix
    manifest = {"encryption": None}
    codec.record(manifest)
    assert manifest == {"compression": {"algorithm": compression, "level": level}, "encryption": None}


@pytest.mark.parametrize(
    "compression, missing, fragment",
    [
        ("zstd", ("zstd",), "zstd was not found on PATH; install the zstd package."),
        ("gzip", ("pigz", "gzip"), "gzip was not found on PATH; install the gzip package."),
    ],
)
def test_codec_missing_binary(compression, missing, fragment):
    with pytest.raises(LifeboatError) as info:
        _jobs.Codec(FakeModule(missing=missing), compression)
    assert str(info.value) == fragment


@needs_age
def test_codec_missing_age(recipient):
    with pytest.raises(LifeboatError, match="age was not found on PATH; install the age package."):
        _jobs.Codec(FakeModule(missing=["age"]), "none", recipients=[recipient[0]])


class VersionModule(FakeModule):
    """Its runner answers --version like the real tools (or fails)."""

    def __init__(self, answers, **kwargs):
        super(VersionModule, self).__init__(**kwargs)
        self._lifeboat_runner = FakeRunner(lambda argv: answers.get(os.path.basename(argv[0]), (1, "", "unknown")))

    @property
    def commands(self):
        return [(call["argv"], call["env"]) for call in self._lifeboat_runner.calls]


@pytest.mark.parametrize(
    "compression, recipients, answers, expected",
    [
        ("zstd", False, {"zstd": (0, "*** Zstandard CLI (64-bit) v1.5.4, by Yann Collet ***\n", "")},
         {"zstd": "*** Zstandard CLI (64-bit) v1.5.4, by Yann Collet ***"}),
        ("zstd", True, {"zstd": (0, "zstd v1\n", ""), "age": (0, "v1.1.1\n", "")}, {"zstd": "zstd v1", "age": "v1.1.1"}),
        ("zstd", False, {"zstd": (1, "", "boom")}, {}),
        ("zstd", False, {"zstd": (0, "", "")}, {}),
        ("none", False, {}, {}),
    ],
)
def test_codec_versions(compression, recipients, answers, expected):
    recipient_list = ["age1" + "q" * 58] if recipients else []
    if recipients and not shutil.which("age"):
        pytest.skip("age is not installed")
    module = VersionModule(answers)
    codec = _jobs.Codec(module, compression, recipients=recipient_list)
    assert codec.versions(module) == expected
    for argv, env in module.commands:
        assert argv[1:] == ["--version"]
        assert env == {"LANG": "C", "LC_ALL": "C"}


def test_recipient_fingerprint():
    key = "age1" + "q" * 58
    fingerprint = _jobs.recipient_fingerprint(key)
    assert fingerprint == _jobs.recipient_fingerprint("  %s\n" % key)
    assert fingerprint != _jobs.recipient_fingerprint("age1" + "z" * 58)
    assert fingerprint.startswith("sha256:") and len(fingerprint) == len("sha256:") + 32
    assert key not in fingerprint and "q" * 8 not in fingerprint
    assert int(fingerprint[7:], 16) >= 0


def test_argument_specs():
    store = _jobs.store_argument_spec()
    assert store["store"]["required"] is True
    assert store["store"]["options"]["kind"]["choices"] == ["dir", "s3", "ssh"]
    codec = _jobs.codec_argument_spec()
    assert codec["compression"]["default"] == "zstd"
    assert codec["encrypt_recipients"]["elements"] == "str"


def test_default_host():
    assert _jobs.default_host({"host": "db9"}) == "db9"
    assert _jobs.default_host({"host": None}) == socket.gethostname().split(".")[0]


# ------------------------------------------------------------------ BackupJob

def job(store, clock, **kwargs):
    kwargs.setdefault("max_age", None)
    return _jobs.BackupJob(store, "db1", "app", "test", "printf", now=clock, **kwargs)


def test_plan_and_run_commit_a_set(store):
    clock = Clock()
    one = job(store, clock, labels={"env": "prod", "tier": 1})
    plan = one.plan()
    assert plan == {"action": "backup", "set_id": "20261126T031500Z-full", "type": "full", "parent": None,
                    "reason": "a full backup was asked for",
                    "path": store.location("db1", "app", "20261126T031500Z-full")}
    # plan touches nothing
    assert not os.path.exists(store.root)

    manifest, extras = one.run(printf_engine("hello backup"))
    assert extras == {"removed_partials": [], "skipped": False, "type_reason": "a full backup was asked for"}
    assert manifest["set_id"] == "20261126T031500Z-full"
    assert manifest["labels"] == {"env": "prod", "tier": "1"}
    assert manifest["files"][0]["name"] == "data.txt"
    assert manifest["bytes"] == len("hello backup")
    assert store.set_ids("db1", "app") == ["20261126T031500Z-full"]
    assert store.read_manifest("db1", "app", "20261126T031500Z-full") == manifest
    assert store.verify_set(manifest) == []
    with store.open_payload("db1", "app", manifest["set_id"], "data.txt") as handle:
        assert handle.read() == b"hello backup"
    # lock released, no partial left
    assert sorted(os.listdir(store.location("db1", "app"))) == ["20261126T031500Z-full"]


@needs_zstd
def test_run_with_compression_round_trips(store, tmp_path):
    codec = _jobs.Codec(FakeModule(), "zstd", 3)
    manifest, dummy = job(store, Clock(), codec=codec).run(printf_engine("z" * 5000))
    assert manifest["files"][0]["name"] == "data.txt.zst"
    assert manifest["compression"] == {"algorithm": "zstd", "level": 3}
    loaded, chain = _jobs.load_verified(store, "db1", "app")
    stages = _jobs.decode_stages(FakeModule(), loaded, None)
    out = str(tmp_path / "restored")
    with store.open_payload("db1", "app", loaded["set_id"], "data.txt.zst") as handle:
        with open(out, "wb") as sink:
            _pipeline.run_to_sink(stages, sink, stdin=handle)
    with open(out, "rb") as handle:
        assert handle.read() == b"z" * 5000


@pytest.mark.parametrize(
    "max_age, advance, skipped",
    [
        ("1h", 60, True),
        ("1h", 3599, True),
        ("1h", 3601, False),    # the first set ended at T0: now it is 3601 s old
        (3600, 60, True),
        (None, 60, False),
        ("0s", 0, False),
    ],
)
def test_second_run_with_max_age(store, max_age, advance, skipped):
    clock = Clock()
    first, dummy = job(store, clock).run(printf_engine())
    clock.advance(advance)
    second_job = job(store, clock, max_age=max_age)
    plan = second_job.plan()
    manifest, extras = second_job.run(printf_engine("other"))
    assert extras["skipped"] is skipped
    assert (plan["action"] == "skip") is skipped
    if skipped:
        assert manifest == first
        assert plan["set_id"] == first["set_id"]
        assert store.set_ids("db1", "app") == [first["set_id"]]
    else:
        assert manifest["set_id"] != first["set_id"]
        assert len(store.set_ids("db1", "app")) == 2


def test_same_second_runs_get_suffixes(store):
    clock = Clock()
    ids = [job(store, clock).run(printf_engine(str(n)))[0]["set_id"] for n in range(3)]
    assert ids == ["20261126T031500Z-full", "20261126T031500Z-full-2", "20261126T031500Z-full-3"]
    assert store.set_ids("db1", "app") == ids


def test_run_cleans_stale_partial_and_lock(store):
    clock = Clock()
    base = store.location("db1", "app")
    os.makedirs(base)
    # A run that crashed: its partial set and its lock (a pid that no longer exists) are left behind.
    crashed = os.path.join(base, "20261126T020000Z-full.partial")
    os.makedirs(os.path.join(crashed, "staging"))
    with open(os.path.join(crashed, "data.txt"), "wb") as handle:
        handle.write(b"half")
    pid = dead_pid()
    with open(os.path.join(base, ".lock"), "w") as handle:
        json.dump({"pid": pid, "node": socket.gethostname(), "started_at": "2026-11-26T02:00:00.000Z",
                   "expires_at": "2026-11-27T02:00:00.000Z", "set_id": "20261126T020000Z-full"}, handle)
    manifest, extras = job(store, clock).run(printf_engine())
    assert extras["removed_partials"] == ["20261126T020000Z-full.partial"]
    assert extras["stale_lock"] == {"reason": "its process %d is gone" % pid, "pid": pid,
                                    "node": socket.gethostname(), "started_at": "2026-11-26T02:00:00.000Z",
                                    "set_id": "20261126T020000Z-full"}
    assert extras["skipped"] is False
    assert sorted(os.listdir(base)) == [manifest["set_id"]]


def test_run_refused_while_another_run_holds_the_lock(store):
    clock = Clock()
    with store.lock("db1", "app"):
        with pytest.raises(_stores.LockedError, match="pid %d" % os.getpid()):
            job(store, clock).run(printf_engine())
    assert store.set_ids("db1", "app") == [] and store.partials("db1", "app") == []


class Boom(Exception):
    pass


class FailingPipeline(PrintfEngine):
    def produce(self, ctx):
        yield _jobs.Payload("data.txt", [Stage("producer", ["sh", "-c", "echo oops >&2; exit 2"])])


@pytest.mark.parametrize(
    "engine, error",
    [
        (PrintfEngine("x", fail=Boom("engine failed")), Boom),  # after the payload was written
        (FailingPipeline(), _pipeline.PipelineError),
        (PrintfEngine(payloads=2), _stores.StoreError),  # one name twice
        (PrintfEngine(payloads=0), _manifest.ManifestError),  # no payload file at all
    ],
)
def test_failed_produce_leaves_nothing(store, engine, error):
    with pytest.raises(error):
        job(store, Clock()).run(engine)
    # No set, no .partial, no lock: only the failure record that retention reads (docs/retention.md).
    assert os.listdir(store.location("db1", "app")) == ["objects"]
    records = store.list_objects("db1", "app")
    assert len(records) == 1 and records[0].startswith("attempts/") and records[0].endswith("-full.failed")
    # The next run is not disturbed.
    manifest, extras = job(store, Clock()).run(printf_engine())
    assert extras == {"removed_partials": [], "skipped": False, "type_reason": "a full backup was asked for"}


class FullDiskWriter(object):
    """A set writer whose payload sink is /dev/full: every write that reaches the disk fails with ENOSPC."""

    def __init__(self, path):
        self.path = path

    def open(self, name):
        return _store_dir.DirSink(os.open("/dev/full", os.O_WRONLY), os.path.join(self.path, name))


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full")
@pytest.mark.parametrize("head", ["", "abc"])
def test_write_stream_full_disk_is_one_sentence(tmp_path, head):
    stages = [Stage("producer", ["sh", "-c", "printf '%s'; sleep 0.2; head -c 3000000 /dev/zero" % head])]
    with pytest.raises(_stores.StoreError) as info:
        _jobs.write_stream(FullDiskWriter(str(tmp_path)), _manifest.new_manifest(
            "20261126T031500Z-full", "db1", "app", "test", "printf"), "dump.pgc", stages)
    assert str(info.value) == ("No space left on the device holding %s; free space or choose another store."
                               % os.path.join(str(tmp_path), "dump.pgc"))


def test_write_stream_full_disk_at_the_final_close(tmp_path):
    """All data was accepted: only the sink's close (fsync, upload completion) meets the full disk."""

    class Sink(_stores.Sink):
        name = str(tmp_path / "dump.pgc")
        aborted = False

        def write(self, data):
            return len(data)

        def close(self):
            raise OSError(28, "No space left on device")

        def abort(self):
            Sink.aborted = True

    class ClosingFull(FullDiskWriter):
        def open(self, name):
            return Sink()

    with pytest.raises(_stores.StoreError, match="^No space left on the device holding .*dump.pgc"):
        _jobs.write_stream(ClosingFull(str(tmp_path)), _manifest.new_manifest(
            "20261126T031500Z-full", "db1", "app", "test", "printf"), "dump.pgc", [Stage("printf", ["printf", "abc"])])
    assert Sink.aborted


def test_write_stream_full_disk_is_a_store_error(store, monkeypatch):
    def full(stages, sink, stdin=None, env=None):
        raise _pipeline.SinkError("No space left on device", os_error=OSError(28, "No space left on device"))

    monkeypatch.setattr(_pipeline, "run_to_sink", full)
    with pytest.raises(_stores.StoreError) as info:
        job(store, Clock()).run(printf_engine())
    assert str(info.value).startswith("No space left on the device holding ")
    assert "data.txt" in str(info.value)
    assert os.listdir(store.location("db1", "app")) == ["objects"]  # only the failure record


@pytest.mark.parametrize(
    "host, source",
    [("../etc", "app"), ("db1", "a/b"), ("", "app"), ("db1", "..")],
)
def test_backup_job_checks_names(store, host, source):
    with pytest.raises(LifeboatError, match="is not usable as a directory name"):
        _jobs.BackupJob(store, host, source, "test", "printf")


def test_backup_job_checks_max_age(store):
    with pytest.raises(LifeboatError, match="max_age must be a duration"):
        _jobs.BackupJob(store, "db1", "app", "test", "printf", max_age="soon")


def test_backup_result(store):
    manifest, extras = job(store, Clock()).run(printf_engine())
    result = _jobs.backup_result(store, manifest, [["printf", "x"]], extras)
    assert result["changed"] is True
    assert result["skipped_reason"] is None
    assert result["set_id"] == manifest["set_id"]
    assert result["store"] == {"kind": "dir", "path": store.root}
    assert result["path"] == store.location("db1", "app", manifest["set_id"])
    assert result["bytes"] == manifest["bytes"] and result["files"] == manifest["files"]
    assert result["cmd"] == [["printf", "x"]]
    assert "stale_lock" not in result
    skipped = _jobs.backup_result(store, manifest, [], {"skipped": True, "stale_lock": {"reason": "r"}})
    assert skipped["changed"] is False
    assert skipped["skipped_reason"] == "a complete set younger than max_age exists"
    assert skipped["stale_lock"] == {"reason": "r"}
    assert skipped["removed_partials"] == []


# ------------------------------------------------------------------ load_verified

def test_load_verified_newest_and_by_id(store):
    make_set(store, "db1", "app", "20261101T000000Z-full")
    make_set(store, "db1", "app", "20261102T000000Z-incremental", parent="20261101T000000Z-full")
    manifest, chain = _jobs.load_verified(store, "db1", "app")
    assert manifest["set_id"] == "20261102T000000Z-incremental"
    assert [m["set_id"] for m in chain] == ["20261101T000000Z-full", "20261102T000000Z-incremental"]
    manifest, chain = _jobs.load_verified(store, "db1", "app", "20261101T000000Z-full")
    assert [m["set_id"] for m in chain] == ["20261101T000000Z-full"]


@pytest.mark.parametrize("victim", ["20261101T000000Z-full", "20261102T000000Z-incremental"])
def test_load_verified_refuses_flipped_byte(store, victim):
    make_set(store, "db1", "app", "20261101T000000Z-full", files={"dump.pgc": b"base data"})
    make_set(store, "db1", "app", "20261102T000000Z-incremental", parent="20261101T000000Z-full",
             files={"delta.xb": b"delta data"})
    name = "dump.pgc" if victim.endswith("full") else "delta.xb"
    path = os.path.join(store.location("db1", "app", victim), name)
    with open(path, "r+b") as handle:
        first = handle.read(1)
        handle.seek(0)
        handle.write(bytes([first[0] ^ 0x01]))
    with pytest.raises(LifeboatError) as info:
        _jobs.load_verified(store, "db1", "app")
    assert str(info.value) == ("Set db1/app/%s failed verification (%s: SHA-256 mismatch); refusing to restore "
                               "from it." % (victim, name))


def test_load_verified_errors(store):
    with pytest.raises(NoSetError):
        _jobs.load_verified(store, "db1", "app")
    make_set(store, "db1", "app", "20261102T000000Z-incremental", parent="20261101T000000Z-full")
    with pytest.raises(ChainError, match="its parent 20261101T000000Z-full is missing"):
        _jobs.load_verified(store, "db1", "app")
    with pytest.raises(NoSetError, match="Set 20261231T000000Z-full is not in the store"):
        _jobs.load_verified(store, "db1", "app", "20261231T000000Z-full")
    make_set(store, "db1", "app", "20261103T000000Z-full")
    with open(os.path.join(store.location("db1", "app", "20261103T000000Z-full"), "manifest.json"), "w") as handle:
        handle.write("{}")
    with pytest.raises(_manifest.ManifestError, match="has no 'format_version' field"):
        _jobs.load_verified(store, "db1", "app", "20261103T000000Z-full")


def test_load_set_does_not_hash_and_verify_chain_does(store):
    make_set(store, "db1", "app", "20261101T000000Z-full", files={"dump.pgc": b"base"})
    make_set(store, "db1", "app", "20261102T000000Z-incremental", parent="20261101T000000Z-full",
             files={"delta": b"delta"})
    os.unlink(os.path.join(store.location("db1", "app", "20261101T000000Z-full"), "dump.pgc"))
    manifest, chain = _jobs.load_set(store, "db1", "app")
    assert manifest["set_id"] == "20261102T000000Z-incremental"
    assert [m["set_id"] for m in chain] == ["20261101T000000Z-full", "20261102T000000Z-incremental"]
    with pytest.raises(LifeboatError) as info:
        _jobs.verify_chain(store, chain)
    assert str(info.value) == ("Set db1/app/20261101T000000Z-full failed verification (dump.pgc: missing); "
                               "refusing to restore from it.")
    _jobs.verify_chain(store, chain[1:])  # the incremental alone is intact


@pytest.mark.parametrize(
    "problems, text",
    [
        ([], ""),
        ([{"name": "a", "problem": "missing"}], "a: missing"),
        ([{"name": "a", "problem": "sha256", "expected": "x", "actual": "y"}], "a: SHA-256 mismatch"),
        ([{"name": "a", "problem": "size", "expected": 10, "actual": 3}], "a: size 3, expected 10"),
        ([{"name": "a", "problem": "unreadable", "detail": "Permission denied"}], "a: unreadable (Permission denied)"),
        ([{"name": "x.tmp", "problem": "unlisted"}], "x.tmp: unlisted"),
        ([{"name": "a", "problem": "missing"}, {"name": "b", "problem": "sha256"}], "a: missing; b: SHA-256 mismatch"),
    ],
)
def test_describe_problems(problems, text):
    assert _jobs.describe_problems(problems) == text


# ------------------------------------------------------------------ restore helpers

def test_identity_from_key_is_never_a_file_on_disk(tmp_path):
    key = "AGE-SECRET-KEY-1" + "Q" * 58
    with _jobs.Identity(key="  %s\n" % key, tmpdir=str(tmp_path)) as identity:
        (fd,) = identity.pass_fds
        assert identity.path == "/dev/fd/%d" % fd
        assert os.readlink("/proc/self/fd/%d" % fd).startswith("/memfd:lifeboat-age")
        assert stat.S_IMODE(os.stat(identity.path).st_mode) == 0o600
        with open(identity.path) as handle:
            assert handle.read() == key + "\n"
        assert os.listdir(str(tmp_path)) == []
    assert identity.path is None and identity.pass_fds == ()
    with pytest.raises(OSError):
        os.fstat(fd)


def test_identity_from_file_is_not_removed(tmp_path):
    path = tmp_path / "id.txt"
    path.write_text("AGE-SECRET-KEY-1X\n")
    with _jobs.Identity(key_file=str(path)) as identity:
        assert identity.path == str(path)
        assert identity.pass_fds == ()
    assert path.exists()
    with pytest.raises(LifeboatError, match="age_identity_file .* does not exist"):
        with _jobs.Identity(key_file=str(tmp_path / "nope.txt")):
            pass  # pragma: no cover
    with _jobs.Identity() as identity:
        assert identity.path is None


@pytest.mark.parametrize(
    "compression, encryption, identity, names",
    [
        ("none", None, None, []),
        ("zstd", None, None, ["zstd"]),
        ("gzip", None, None, ["pigz"]),
        ("zstd", {"method": "age", "recipients": ["sha256:x"]}, "/k", ["age", "zstd"]),
        ("none", {"method": "age", "recipients": ["sha256:x"]}, "/k", ["age"]),
    ],
)
def test_decode_stages(compression, encryption, identity, names):
    manifest = {"set_id": "S", "compression": {"algorithm": compression, "level": None}, "encryption": encryption}
    stages = _jobs.decode_stages(FakeModule(), manifest, identity)
    assert [s.name for s in stages] == names
    if encryption:
        assert stages[0].argv[1:] == ["--decrypt", "-i", "/k"]


def test_decode_stages_needs_identity_for_encrypted_set():
    manifest = {"set_id": "S", "compression": {"algorithm": "zstd"}, "encryption": {"method": "age"}}
    with pytest.raises(LifeboatError, match="Set S is encrypted with age; pass age_identity"):
        _jobs.decode_stages(FakeModule(), manifest, None)


@pytest.mark.parametrize(
    "stage, stderr, expected",
    [
        ("age", "age: error: no identity matched any of the recipients\n",
         "The age identity does not match any recipient of set S (recipients sha256:a, sha256:b); "
         "use the right private key."),
        ("age", "age: error: failed to read header: parsing age header: unexpected intro\n",
         "Decrypting set S with age failed: age: error: failed to read header: parsing age header: "
         "unexpected intro"),
        ("age", "", "Decrypting set S with age failed: no output"),
        ("zstd", "zstd: /*stdin*\\: unsupported format", None),
    ],
)
def test_explain_decode_error(stage, stderr, expected):
    manifest = {"set_id": "S", "encryption": {"method": "age", "recipients": ["sha256:a", "sha256:b"]}}
    exc = _pipeline.PipelineError("x", stage=stage, returncode=1, stderr=stderr.strip())
    assert _jobs.explain_decode_error(exc, manifest) == expected


@needs_age
@needs_zstd
def test_encrypted_backup_restores_with_identity_file_only(store, recipient):
    public, identity = recipient
    codec = _jobs.Codec(FakeModule(), "zstd", None, 0, [public])

    job(store, Clock(), codec=codec).run(printf_engine("top secret rows"))
    manifest, dummy = _jobs.load_verified(store, "db1", "app")
    assert manifest["files"][0]["name"] == "data.txt.zst.age"
    with _jobs.Identity(key_file=identity) as ident:
        stages = _jobs.decode_stages(FakeModule(), manifest, ident)
    with open(identity) as handle:
        secret = [line for line in handle.read().splitlines() if line.startswith("AGE-SECRET-KEY-")][0]
    assert all(secret not in arg for stage in stages for arg in stage.argv)
    with store.open_payload("db1", "app", manifest["set_id"], "data.txt.zst.age") as handle:
        out, dummy = _pipeline.run_from_source(stages + [Stage("cat", ["cat"])], handle)
    assert out == "top secret rows"


@needs_age
@needs_zstd
def test_encrypted_set_restores_with_an_in_memory_identity(store, recipient, tmp_path):
    """age reads the key from /dev/fd/N, a descriptor only the age stage inherits."""
    public, identity = recipient
    codec = _jobs.Codec(FakeModule(), "zstd", None, 0, [public])

    job(store, Clock(), codec=codec).run(printf_engine("top secret rows"))
    manifest, dummy = _jobs.load_verified(store, "db1", "app")
    with open(identity) as handle:
        secret = [line for line in handle.read().splitlines() if line.startswith("AGE-SECRET-KEY-")][0]
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    with _jobs.Identity(key=secret, tmpdir=str(scratch)) as ident:
        stages = _jobs.decode_stages(FakeModule(), manifest, ident)
        assert [(s.name, s.pass_fds) for s in stages] == [("age", ident.pass_fds), ("zstd", ())]
        assert stages[0].argv[-2:] == ["-i", ident.path]
        with store.open_payload("db1", "app", manifest["set_id"], "data.txt.zst.age") as handle:
            out, dummy = _pipeline.run_from_source(stages + [Stage("cat", ["cat"])], handle)
        assert out == "top secret rows"
        assert os.listdir(str(scratch)) == []


def test_no_set_names_host_source_store_and_what_exists(store):
    where = "The dir store %s holds no complete set for host db1, source app" % store.root
    with pytest.raises(NoSetError) as info:
        _jobs.load_set(store, "db1", "app")
    assert str(info.value) == where + "; it holds no set at all."
    make_set(store, "db2", "crm", "20261101T000000Z-full")
    with pytest.raises(NoSetError) as info:
        _jobs.load_set(store, "db1", "app")
    assert str(info.value) == where + "; it holds no set of host db1 at all (hosts there: db2)."
    for source in ("globals", "app_v2", "cluster"):
        make_set(store, "db1", source, "20261101T000000Z-full")
    with pytest.raises(NoSetError) as info:
        _jobs.load_set(store, "db1", "app")
    assert str(info.value) == where + "; sources of db1 there: app_v2, cluster, globals."
    # A source with only a broken set says so.
    make_set(store, "db1", "app", "20261101T000000Z-full")
    with open(os.path.join(store.location("db1", "app", "20261101T000000Z-full"), "manifest.json"), "w") as handle:
        handle.write("{}")
    with pytest.raises(NoSetError) as info:
        _jobs.load_set(store, "db1", "app")
    assert str(info.value) == (where + " (1 set(s) there have a broken manifest; backup_verify names them); "
                               "sources of db1 there: app_v2, cluster, globals.")


def test_no_set_lists_at_most_twenty_sources(store):
    for index in range(25):
        make_set(store, "db1", "s%02d" % index, "20261101T000000Z-full")
    with pytest.raises(NoSetError, match=r"sources of db1 there: s00, s01, .*, s19 and 5 more\.$"):
        _jobs.load_set(store, "db1", "app")
