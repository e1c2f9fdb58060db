# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The chain-aware backup job driving an engine: types, parents, codec stages added by the core, hooks, signing."""

from __future__ import annotations

import datetime
import shutil
import subprocess

import pytest

from ansible_collections.lifeboat.backup.plugins.module_utils import _codec
from ansible_collections.lifeboat.backup.plugins.module_utils import _jobs
from ansible_collections.lifeboat.backup.plugins.module_utils import _pipeline
from ansible_collections.lifeboat.backup.plugins.module_utils._common import LifeboatError
from ansible_collections.lifeboat.backup.tests.unit.plugins.helpers import FakeModule
from ansible_collections.lifeboat.backup.tests.unit.plugins.module_utils import store_kinds

UTC = datetime.timezone.utc


class Clock(object):
    def __init__(self):
        self.when = datetime.datetime(2026, 11, 1, 3, 0, 0, tzinfo=UTC)

    def __call__(self):
        return self.when

    def advance(self, **kw):
        self.when += datetime.timedelta(**kw)


class Engine(object):
    """Produces one printf payload; records what the hooks saw."""

    def __init__(self, text="data", fail=None):
        self.text = text
        self.fail = fail
        self.calls = []
        self.parents = []

    def prepare(self, ctx):
        self.calls.append("prepare")
        if self.fail == "prepare":
            raise LifeboatError("prepare failed")

    def produce(self, ctx):
        self.calls.append("produce")
        self.parents.append(ctx.parent["set_id"] if ctx.parent else None)
        if self.fail == "producer":
            yield _jobs.Payload("dump", [_pipeline.Stage("tool", ["sh", "-c", "echo boom >&2; exit 3"])])
            return
        yield _jobs.Payload("dump", [_pipeline.Stage("printf", ["printf", "%s", self.text])])

    def record(self, ctx, manifest):
        manifest["position"] = {"lsn": "0/1"}

    def release(self, ctx):
        self.calls.append("release")

    def explain(self, exc):
        return LifeboatError("The tool failed: %s" % exc.stderr.strip())


@pytest.fixture(params=["dir", "memory"])
def store(request, tmp_path):
    return store_kinds.FACTORIES[request.param](tmp_path)[0]


def job(store, clock, **kw):
    kw.setdefault("work_dir", None)
    return _jobs.BackupJob(store, "db1", "app", "test", "printf", now=clock, **kw)


def test_auto_writes_a_full_then_incrementals_until_full_every(store):
    clock = Clock()
    engine = Engine()
    types = []
    for day in range(9):
        manifest, extras = job(store, clock, set_type="auto", full_every="7d").run(engine)
        types.append((manifest["type"], manifest["parent_set_id"]))
        clock.advance(days=1)
    assert [t for t, p in types] == ["full"] + ["incremental"] * 6 + ["full", "incremental"]
    # each incremental's parent is the previous set of the chain
    for (t, parent), (dummy, dummy2) in zip(types[1:7], types[:6]):
        assert parent is not None
    assert engine.parents[1] == types[0][1] or engine.parents[1] is not None


def test_differential_parent_is_the_last_full(store):
    clock = Clock()
    engine = Engine()
    full, dummy = job(store, clock).run(engine)
    clock.advance(days=1)
    first, dummy = job(store, clock, set_type="differential").run(engine)
    clock.advance(days=1)
    second, dummy = job(store, clock, set_type="differential").run(engine)
    assert first["parent_set_id"] == full["set_id"] == second["parent_set_id"]
    assert engine.parents == [None, full["set_id"], full["set_id"]]


def test_incremental_without_a_full_is_one_sentence(store):
    with pytest.raises(LifeboatError) as info:
        job(store, Clock(), set_type="incremental").run(Engine())
    assert "\n" not in str(info.value) and "full" in str(info.value)


def test_auto_needs_full_every(store):
    with pytest.raises(LifeboatError, match="full_every"):
        job(store, Clock(), set_type="auto")


@pytest.mark.skipif(not shutil.which("zstd"), reason="zstd is not installed")
def test_core_adds_the_codec_and_records_it(store):
    codec = _jobs.Codec(FakeModule(), "zstd")
    manifest, dummy = job(store, Clock(), codec=codec).run(Engine("hello"))
    (entry,) = manifest["files"]
    assert entry["name"] == "dump.zst"
    assert entry["codec"] == {"compression": "zstd", "encryption": None}
    assert entry["role"] == "payload"
    assert manifest["compression"]["algorithm"] == "zstd"
    assert manifest["position"] == {"lsn": "0/1"}
    with store.open_payload("db1", "app", manifest["set_id"], "dump.zst") as handle:
        out = subprocess.run(["zstd", "-d", "-c"], input=handle.read(), stdout=subprocess.PIPE, check=True).stdout
    assert out == b"hello"


@pytest.mark.parametrize("fail", ["prepare", "producer"])
def test_release_runs_and_nothing_is_left(store, fail):
    engine = Engine(fail=fail)
    with pytest.raises(LifeboatError) as info:
        job(store, Clock()).run(engine)
    if fail == "producer":
        assert str(info.value) == "The tool failed: boom"
        assert engine.calls == ["prepare", "produce", "release"]
    else:
        assert engine.calls == ["prepare"]  # release only after a prepare that succeeded
    listing = store.listing("db1", "app")
    assert (listing.sets, listing.partials) == ([], [])


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    if not shutil.which("ssh-keygen"):
        pytest.skip("ssh-keygen is not installed")
    base = tmp_path_factory.mktemp("keys")
    found = {}
    for host in ("db1", "db2"):
        path = str(base / host)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", path], check=True)
        with open(path) as handle:
            private = handle.read()
        with open(path + ".pub") as handle:
            public = " ".join(handle.read().split()[:2])
        found[host] = (private, public)
    return found


def test_signed_set_verifies_and_forgery_is_refused(store, keys):
    signer = _codec.load_signing_key(key_text=keys["db1"][0])
    manifest, dummy = job(store, Clock(), signer=signer).run(Engine())
    read = store.read_manifest("db1", "app", manifest["set_id"])
    assert read == manifest and read["signature"]["signer"] == keys["db1"][1]
    trust = _codec.TrustedSigners(["db1 %s" % keys["db1"][1], "db2 %s" % keys["db2"][1]])
    assert trust.verify(read, "db1") == "db1"
    # db2's key cannot sign db1's sets
    forger = _codec.load_signing_key(key_text=keys["db2"][0])
    forged = dict(read, signature=None)
    forged["signature"] = forger.sign(forged)
    with pytest.raises(_codec.SignatureError, match="another host"):
        trust.verify(forged, "db1")
    # an altered manifest is refused
    altered = dict(read, labels={"edited": "yes"})
    with pytest.raises(_codec.SignatureError, match="altered"):
        trust.verify(altered, "db1")
