# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The s3 store beyond the contract suite, on moto's server mode (real HTTP on 127.0.0.1).

moto does not validate Content-MD5 or S3 checksums and completes whatever
multipart upload it is asked to, so the store's own checks are exercised here
by changing requests on their way out (botocore events), as a faulty network
or endpoint would.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import io
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from ansible.module_utils.basic import missing_required_lib

from ansible_collections.lifeboat.backup.plugins.module_utils import _aws
from ansible_collections.lifeboat.backup.plugins.module_utils import _manifest
from ansible_collections.lifeboat.backup.plugins.module_utils import _pipeline
from ansible_collections.lifeboat.backup.plugins.module_utils import _store_kinds
from ansible_collections.lifeboat.backup.plugins.module_utils import _store_s3
from ansible_collections.lifeboat.backup.plugins.module_utils import _stores
from ansible_collections.lifeboat.backup.plugins.module_utils._common import LifeboatError, format_ts
from ansible_collections.lifeboat.backup.tests.unit.plugins.module_utils import moto_harness
from ansible_collections.lifeboat.backup.tests.unit.plugins.module_utils.test_store_contract import (
    SET_ID,
    manifest_for,
    write_set,
)

MIB = 1024 * 1024
PREFIX = "backups/lifeboat"
HERE = os.path.dirname(os.path.abspath(__file__))
# <root>/ansible_collections/lifeboat/backup/plugins/module_utils/_store_s3.py, links not resolved
COLLECTIONS_ROOT = os.path.abspath(_store_s3.__file__)
for _dummy in range(6):
    COLLECTIONS_ROOT = os.path.dirname(COLLECTIONS_ROOT)


@pytest.fixture
def bucket(moto):
    name = moto.new_bucket()
    yield name
    moto.empty_bucket(name)


def open_s3(moto, bucket_name, **options):
    spec = dict(kind="s3", bucket=bucket_name, prefix=PREFIX, **moto.connection())
    spec.update(options)
    return _store_kinds.open_store(spec)


@pytest.fixture
def store(moto, bucket):
    return open_s3(moto, bucket)


def key(*parts):
    return "/".join((PREFIX,) + parts)


def all_keys(moto, bucket_name):
    pages = moto.client().get_paginator("list_objects_v2").paginate(Bucket=bucket_name)
    return sorted(item["Key"] for page in pages for item in page.get("Contents") or [])


def uploads(moto, bucket_name):
    return moto.client().list_multipart_uploads(Bucket=bucket_name).get("Uploads") or []


def requests_of(store, operation):
    """A list that collects the requests ``store`` makes for ``operation``."""
    seen = []
    store.client.meta.events.register("before-send.s3.%s" % operation, lambda request, **kw: seen.append(request))
    return seen


def one_sentence(text):
    assert "\n" not in text and "Traceback" not in text
    assert text.endswith(".") and len(text) < 400
    return text


# ------------------------------------------------------------------ layout and listing

def test_layout_keys_and_the_marker_of_a_run_in_progress(moto, bucket, store):
    writer = store.begin("db1", "app", SET_ID)
    assert all_keys(moto, bucket) == [key("db1", "app", SET_ID, ".writing")]
    sink = writer.open("dump.pgc")
    sink.write(b"payload")
    sink.close()
    manifest = manifest_for(SET_ID, {"dump.pgc": b"payload"})
    writer.commit(_manifest.dumps(manifest), ["dump.pgc"])
    assert all_keys(moto, bucket) == [key("db1", "app", SET_ID, "dump.pgc"), key("db1", "app", SET_ID, "manifest.json")]
    assert store.location("db1", "app", SET_ID) == "s3://%s/%s" % (bucket, key("db1", "app", SET_ID))


def test_manifest_is_written_last(moto, bucket, store):
    sent = requests_of(store, "PutObject")
    write_set(store, files={"a.bin": b"a", "b.bin": b"b"})
    puts = [r.url.split("?")[0].rsplit("/", 1)[-1] for r in sent]
    assert puts[-1] == "manifest.json" and sorted(puts[-3:-1]) == ["a.bin", "b.bin"]


def test_listing_reads_names_only_in_pages(moto, bucket, store):
    ids = ["2026110%dT000000Z-full" % day for day in range(1, 8)]
    for set_id in ids:
        write_set(store, set_id, files={"dump.pgc": b"x", "toc.dat": b"t"})
    store.list_page = 4  # 7 sets x 3 keys: 6 pages of names
    listed = requests_of(store, "ListObjectsV2")
    gets = requests_of(store, "GetObject")
    heads = requests_of(store, "HeadObject")
    assert store.set_ids("db1", "app") == ids
    assert (len(listed), len(gets), len(heads)) == (6, 0, 0)


def test_objects_and_lock_are_not_listed_with_the_sets(moto, bucket, store):
    write_set(store)
    for number in range(5):
        store.put_object("db1", "app", "wal/%024d" % number, io.BytesIO(b"seg"))
    store.list_page = 2
    listed = requests_of(store, "ListObjectsV2")
    with store.lock("db1", "app"):
        assert store.set_ids("db1", "app") == [SET_ID]
    # 2 keys of the set (manifest, payload): 1 full page + 1 page that reaches past the set ids
    assert len(listed) == 2


def test_strays_and_partials_from_names(moto, bucket, store):
    client = moto.client()
    write_set(store)
    client.put_object(Bucket=bucket, Key=key("db1", "app", "20261101T000000Z-full"), Body=b"an object, not a prefix")
    client.put_object(Bucket=bucket, Key=key("db1", "app", "20261102T000000Z-full", "dump.pgc"), Body=b"no manifest")
    client.put_object(Bucket=bucket, Key=key("db1", "app", "20261103T000000Z-full.partial", "x"), Body=b"copied dir")
    client.put_object(Bucket=bucket, Key=key("db1", "app", "2026-not-a-set", "manifest.json"), Body=b"{}")
    client.put_object(Bucket=bucket, Key=key("db1", "app", "20261104T000000Z-full\x01bad", "manifest.json"), Body=b"{}")
    listing = store.listing("db1", "app")
    assert listing.sets == [SET_ID]
    assert listing.partials == ["20261102T000000Z-full.partial", "20261103T000000Z-full.partial"]
    assert listing.strays == [{"name": "20261101T000000Z-full", "problem": "an object, not a set prefix"}]
    removed = store.remove_partials("db1", "app")
    assert removed == ["20261102T000000Z-full.partial", "20261103T000000Z-full.partial"]
    assert key("db1", "app", SET_ID, "manifest.json") in all_keys(moto, bucket)
    assert key("db1", "app", "20261101T000000Z-full") in all_keys(moto, bucket)  # strays are left alone


def test_strays_are_bounded_in_results(moto, bucket, store):
    client = moto.client()
    for number in range(_store_s3.MAX_STRAYS + 5):
        client.put_object(Bucket=bucket, Key=key("db1", "app", "20261101T%06dZ-full" % number), Body=b"")
    strays = store.listing("db1", "app").strays
    assert len(strays) == _store_s3.MAX_STRAYS + 1
    assert strays[-1] == {"name": "...", "problem": "5 more entries not shown"}


def test_hosts_and_sources_skip_names_that_are_not_ours(moto, bucket, store):
    write_set(store)
    write_set(store, host="db2", source="crm")
    moto.client().put_object(Bucket=bucket, Key=key("..", "x", "y"), Body=b"")
    moto.client().put_object(Bucket=bucket, Key=key("-bad", "x", "y"), Body=b"")
    moto.client().put_object(Bucket=bucket, Key=key("file-at-host-level"), Body=b"")
    assert store.hosts() == ["db1", "db2"]
    assert store.sources("db2") == ["crm"]


# ------------------------------------------------------------------ writing

def test_small_payload_is_one_put_with_content_md5_and_sha256(moto, bucket, store):
    sent = requests_of(store, "PutObject")
    data = b"small payload"
    writer = store.begin("db1", "app", SET_ID)
    sink = writer.open("dump.pgc")
    sink.write(data)
    sink.close()
    writer.abort()
    payload = [r for r in sent if r.url.split("?")[0].endswith("/dump.pgc")]
    assert len(payload) == 1
    headers = payload[0].headers
    assert _header(headers, "Content-MD5") == base64.b64encode(hashlib.md5(data).digest()).decode()  # nosec
    assert _header(headers, "x-amz-checksum-sha256") == base64.b64encode(hashlib.sha256(data).digest()).decode()
    assert not uploads(moto, bucket)


def _header(headers, name):
    value = headers.get(name)
    return value.decode() if isinstance(value, bytes) else value


def test_storage_class_encryption_and_tags_on_every_object(moto, bucket):
    store = open_s3(moto, bucket, storage_class="standard_ia", sse="AES256", tags={"team": "dba", "env": "prod"},
                    part_size=5)
    with store.lock("db1", "app"):
        write_set(store, files={"big.bin": os.urandom(6 * MIB), "small.bin": b"s"})
        store.put_object("db1", "app", "state.snar", io.BytesIO(b"state"))
    client = moto.client()
    for name in ("big.bin", "small.bin", "manifest.json"):
        head = client.head_object(Bucket=bucket, Key=key("db1", "app", SET_ID, name))
        assert head.get("ServerSideEncryption") == "AES256", name
        tags = client.get_object_tagging(Bucket=bucket, Key=key("db1", "app", SET_ID, name))["TagSet"]
        assert sorted((t["Key"], t["Value"]) for t in tags) == [("env", "prod"), ("team", "dba")], name
        # payloads take the storage class; the manifest stays readable in the default class
        assert head.get("StorageClass", "STANDARD") == ("STANDARD" if name == "manifest.json" else "STANDARD_IA")
    head = client.head_object(Bucket=bucket, Key=key("db1", "app", "objects", "state.snar"))
    assert (head.get("StorageClass"), head.get("ServerSideEncryption")) == ("STANDARD_IA", "AES256")


def test_sse_kms_is_asked_for(moto, bucket):
    store = open_s3(moto, bucket, sse="aws:kms", kms_key_id="alias/lifeboat")
    sent = requests_of(store, "PutObject")
    write_set(store)
    for request in sent:
        assert _header(request.headers, "x-amz-server-side-encryption") == "aws:kms"
        assert _header(request.headers, "x-amz-server-side-encryption-aws-kms-key-id") == "alias/lifeboat"


def test_multipart_upload_streams_parts_and_checks_the_result(moto, bucket):
    store = open_s3(moto, bucket, part_size=5)
    data = os.urandom(5 * 5 * MIB + 123)
    parts = requests_of(store, "UploadPart")
    manifest = write_set(store, files={"big.bin": data})
    assert len(parts) == 6
    # Every part carries its SHA-256; the first also its Content-MD5 (dropped once the endpoint shows it checks the SHA-256).
    assert all(_header(request.headers, "x-amz-checksum-sha256") for request in parts)
    assert _header(parts[0].headers, "Content-MD5")
    assert store.verify_set(manifest) == []
    head = moto.client().head_object(Bucket=bucket, Key=key("db1", "app", SET_ID, "big.bin"), PartNumber=1)
    assert head["PartsCount"] == 6
    assert not uploads(moto, bucket)


def test_a_completed_upload_that_lost_a_part_is_refused(moto, bucket):
    """An endpoint that answers 200 to CompleteMultipartUpload but assembles less (moto #8380): caught by size."""
    store = open_s3(moto, bucket, part_size=5)

    def drop_last_part(params, **kwargs):
        params["MultipartUpload"]["Parts"] = params["MultipartUpload"]["Parts"][:-1]
    store.client.meta.events.register("before-parameter-build.s3.CompleteMultipartUpload", drop_last_part)
    writer = store.begin("db1", "app", SET_ID)
    sink = writer.open("big.bin")
    sink.write(os.urandom(11 * MIB))
    with pytest.raises(_stores.StoreError, match=r"holds 10485760 bytes after the upload, but 11534336 were sent"):
        sink.close()
    writer.abort()
    assert store.listing("db1", "app").sets == []


def test_a_part_corrupted_on_the_way_is_refused(moto, bucket):
    """moto takes a body that does not match its Content-MD5; the ETag it returns gives it away.

    Parts go up in the background, so the failure is raised by the next write or by close at the latest.
    """
    store = open_s3(moto, bucket, part_size=5)

    def corrupt(request, **kwargs):
        body = request.body.read()
        request.body = body[:-1] + bytes([body[-1] ^ 1])
    store.client.meta.events.register("before-send.s3.UploadPart", corrupt)
    writer = store.begin("db1", "app", SET_ID)
    sink = writer.open("big.bin")
    sink.write(os.urandom(6 * MIB))
    with pytest.raises(_stores.StoreError, match="the data was corrupted on the way"):
        sink.close()
    assert sink.state == "aborted"
    writer.abort()
    assert not uploads(moto, bucket)


def test_writer_abort_removes_parts_and_objects(moto, bucket):
    store = open_s3(moto, bucket, part_size=5)
    writer = store.begin("db1", "app", SET_ID)
    done = writer.open("a.bin")
    done.write(b"a")
    done.close()
    sink = writer.open("big.bin")
    sink.write(os.urandom(6 * MIB))
    assert len(uploads(moto, bucket)) == 1
    writer.abort()
    assert not uploads(moto, bucket)
    assert all_keys(moto, bucket) == []


def test_commit_refuses_when_the_bucket_lost_a_file(moto, bucket, store):
    writer = store.begin("db1", "app", SET_ID)
    for name in ("a.bin", "b.bin"):
        sink = writer.open(name)
        sink.write(name.encode())
        sink.close()
    moto.client().delete_object(Bucket=bucket, Key=key("db1", "app", SET_ID, "b.bin"))
    manifest = manifest_for(SET_ID, {"a.bin": b"a.bin", "b.bin": b"b.bin"})
    with pytest.raises(_stores.StoreError, match="the bucket holds"):
        writer.commit(_manifest.dumps(manifest), ["a.bin", "b.bin"])
    writer.abort()
    assert store.set_ids("db1", "app") == []


def test_begin_refuses_a_set_id_in_use(store):
    write_set(store)
    with pytest.raises(_stores.StoreError, match="already exists"):
        store.begin("db1", "app", SET_ID)


def test_delete_set_removes_the_manifest_first(moto, bucket, store):
    write_set(store, files={"a.bin": b"a", "b.bin": b"b"})
    deleted = requests_of(store, "DeleteObject")
    store.delete_set("db1", "app", SET_ID)
    assert deleted[0].url.split("?")[0].endswith("/%s/manifest.json" % SET_ID)
    assert all_keys(moto, bucket) == []


# ------------------------------------------------------------------ the pipeline, memory, a killed run

def run_child(moto, bucket_name, set_id, size, part_size, **popen):
    spec = dict(kind="s3", bucket=bucket_name, prefix=PREFIX, part_size=part_size, **moto.connection())
    argv = [sys.executable, os.path.join(HERE, "s3_upload_child.py"), COLLECTIONS_ROOT, json.dumps(spec), set_id,
            str(size)]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **popen)  # pylint: disable=consider-using-with


def test_a_set_larger_than_the_memory_bound_uploads_with_rss_under_100_mb(moto, bucket):
    size = 120 * MIB + 4321  # 25 parts of 5 MiB: larger than the whole memory bound
    child = run_child(moto, bucket, SET_ID, size, part_size=5)
    out, err = child.communicate(timeout=600)
    assert child.returncode == 0, err.decode()[-2000:]
    result = json.loads(out.decode().strip().splitlines()[-1])
    assert result["size"] == size
    peak_mib = result["peak_kib"] / 1024.0
    print("upload of %d MiB in 5 MiB parts: RSS %.1f MiB before, peak %.1f MiB"
          % (size // MIB, result["rss_before_kib"] / 1024.0, peak_mib))
    assert peak_mib < 100, result
    # The upload itself costs the parts in flight plus the one filling, whatever the payload size.
    assert (result["peak_kib"] - result["rss_before_kib"]) / 1024.0 < (_store_s3.parts_in_flight(5 * MIB) + 1) * 5 + 10, result
    store = open_s3(moto, bucket)
    manifest = store.read_manifest("db1", "app", SET_ID)
    assert manifest["files"][0]["sha256"] == result["sha256"]
    assert store.verify_set(manifest) == []
    head = moto.client().head_object(Bucket=bucket, Key=key("db1", "app", SET_ID, "big.bin"), PartNumber=1)
    assert head["PartsCount"] == 25


def test_a_run_killed_during_the_upload_leaves_nothing_listable(moto, bucket):
    child = run_child(moto, bucket, SET_ID, 4096 * MIB, part_size=5)
    try:
        deadline = time.monotonic() + 120
        parts = []
        while time.monotonic() < deadline and len(parts) < 2:
            assert child.poll() is None, child.stderr.read().decode()[-2000:]
            found = uploads(moto, bucket)
            if found:
                parts = moto.client().list_parts(Bucket=bucket, Key=found[0]["Key"],
                                                 UploadId=found[0]["UploadId"]).get("Parts") or []
            time.sleep(0.05)
        assert len(parts) >= 2
    finally:
        child.send_signal(signal.SIGKILL)
        child.communicate()
    store = open_s3(moto, bucket)
    listing = store.listing("db1", "app")
    assert listing.sets == []
    upload_name = "%s/big.bin%s" % (SET_ID, _store_s3.UPLOAD_SUFFIX)
    assert listing.partials == [SET_ID + ".partial", upload_name]
    # The next run: the dead run's lock is stale, the leftovers are removed and reported, the backup completes.
    with store.lock("db1", "app") as lock:
        assert lock.stale["reason"] == "its process %d is gone" % child.pid
        assert lock.stale["set_id"] == SET_ID
        assert store.remove_partials("db1", "app") == [SET_ID + ".partial", upload_name]
        assert not uploads(moto, bucket)
        assert [k for k in all_keys(moto, bucket) if SET_ID in k] == []
        manifest = write_set(store, "20261126T031600Z-full")
    assert store.set_ids("db1", "app") == ["20261126T031600Z-full"]
    assert store.verify_set(manifest) == []


def test_a_payload_streams_from_s3_into_a_pipeline(moto, bucket, store):
    data = os.urandom(3 * MIB)
    write_set(store, files={"dump.bin": data})
    reader = store.open_payload("db1", "app", SET_ID, "dump.bin")
    assert not hasattr(reader, "fileno")
    sink = io.BytesIO()
    size, digest = _pipeline.run_to_sink([_pipeline.Stage("cat", ["cat"])], sink, stdin=reader)
    reader.close()
    assert (size, digest) == (len(data), hashlib.sha256(data).hexdigest())


def test_a_read_cut_off_resumes_where_it_stopped(moto, bucket, store):
    data = os.urandom(2 * MIB)
    write_set(store, files={"dump.bin": data})
    ranges = []
    store.client.meta.events.register(
        "before-send.s3.GetObject", lambda request, **kw: ranges.append(_header(request.headers, "Range")))
    reader = store.open_payload("db1", "app", SET_ID, "dump.bin")
    first = reader.read(1000)
    reader.body._raw_stream.close()  # pylint: disable=protected-access  # the connection drops
    rest = reader.read()
    assert first + rest == data
    assert ranges == [None, "bytes=1000-"]


def test_a_corrupted_object_is_named_by_verify(moto, bucket, store):
    data = os.urandom(MIB)
    manifest = write_set(store, files={"dump.pgc": data, "toc.dat": b"toc"})
    moto.client().put_object(Bucket=bucket, Key=key("db1", "app", SET_ID, "dump.pgc"),
                             Body=data[:-1] + bytes([data[-1] ^ 0xff]))
    moto.client().put_object(Bucket=bucket, Key=key("db1", "app", SET_ID, "extra"), Body=b"planted")
    problems = store.verify_set(manifest)
    assert [(p["name"], p["problem"]) for p in problems] == [("dump.pgc", "sha256"), ("extra", "unlisted")]


# ------------------------------------------------------------------ the lock

def plant_lock(moto, bucket_name, **info):
    body = dict(pid=4242, node="other-node", start_ticks=None, started_at="2026-11-26T03:00:00.000Z",
                expires_at=format_ts(datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1)),
                set_id=None)
    body.update(info)
    moto.client().put_object(Bucket=bucket_name, Key=key("db1", "app", ".lock"), Body=json.dumps(body).encode())


def test_a_live_lock_of_another_node_is_respected(moto, bucket, store):
    plant_lock(moto, bucket)
    with pytest.raises(_stores.LockedError, match="pid 4242 on other-node"):
        store.lock("db1", "app").acquire()


def test_an_expired_lock_is_taken_over_and_reported(moto, bucket, store):
    plant_lock(moto, bucket, expires_at="2026-01-01T00:00:00.000Z", set_id="20260101T000000Z-full")
    with store.lock("db1", "app") as lock:
        assert lock.stale["reason"].startswith("it expired at 2026-01-01")
        assert lock.stale["node"] == "other-node"
        info = json.loads(moto.client().get_object(Bucket=bucket, Key=key("db1", "app", ".lock"))["Body"].read())
        assert info["pid"] == os.getpid()
    assert key("db1", "app", ".lock") not in all_keys(moto, bucket)


def test_an_oversized_lock_is_read_bounded_and_taken_over(moto, bucket, store):
    moto.client().put_object(Bucket=bucket, Key=key("db1", "app", ".lock"), Body=b"{" * (1024 * 1024))
    gets = requests_of(store, "GetObject")
    with store.lock("db1", "app") as lock:
        assert lock.stale["reason"] == "the lock file is unreadable"
    assert all(_header(r.headers, "Range") == "bytes=0-%d" % _stores.MAX_LOCK_BYTES for r in gets)


def test_a_lock_taken_over_meanwhile_stops_the_run(moto, bucket, store):
    lock = store.lock("db1", "app")
    lock.acquire()
    plant_lock(moto, bucket)  # another run took it over (our lease looked expired to it)
    with pytest.raises(_stores.StoreError, match="was taken over by another run"):
        lock.update(SET_ID)
    lock.release()
    assert key("db1", "app", ".lock") in all_keys(moto, bucket)  # not ours: left alone


def ignore_conditions(store):
    """Make the endpoint ignore If-None-Match / If-Match, as some S3-compatible services do."""
    def strip(request, **kwargs):
        for name in ("If-None-Match", "If-Match"):
            if name in request.headers:
                del request.headers[name]
    store.client.meta.events.register("before-send.s3.*", strip)


def test_without_conditional_writes_the_lock_falls_back_to_owner_and_expiry(moto, bucket, store):
    ignore_conditions(store)
    first = store.lock("db1", "app")
    with first:
        assert first.conditional is False
        assert "conditional_put" not in store.capabilities
        with pytest.raises(_stores.LockedError):
            open_s3(moto, bucket).lock("db1", "app").acquire()
        first.update(SET_ID)
    assert key("db1", "app", ".lock") not in all_keys(moto, bucket)
    plant_lock(moto, bucket, expires_at="2026-01-01T00:00:00.000Z")
    with store.lock("db1", "app") as again:
        assert again.stale["reason"].startswith("it expired")


def test_without_conditional_writes_objects_are_still_put_if_absent(moto, bucket, store):
    ignore_conditions(store)
    assert store.put_object("db1", "app", "wal/1", io.BytesIO(b"seg")) == "created"
    assert store.put_object("db1", "app", "wal/1", io.BytesIO(b"seg")) == "identical"
    with pytest.raises(_stores.ObjectExistsError):
        store.put_object("db1", "app", "wal/1", io.BytesIO(b"other"))


def test_capabilities(moto, bucket, store):
    assert store.capabilities == frozenset(["conditional_put"])
    locked = moto.new_bucket(ObjectLockEnabledForBucket=True)
    try:
        assert "immutability" in open_s3(moto, locked).capabilities
    finally:
        moto.empty_bucket(locked)


def test_object_lock_retention_on_payloads_and_manifests(moto):
    locked = moto.new_bucket(ObjectLockEnabledForBucket=True)
    store = open_s3(moto, locked, object_lock_mode="GOVERNANCE", object_lock_days=7)
    write_set(store)
    for name in ("dump.pgc", "manifest.json"):
        head = moto.client().head_object(Bucket=locked, Key=key("db1", "app", SET_ID, name))
        assert head["ObjectLockMode"] == "GOVERNANCE", name
        until = head["ObjectLockRetainUntilDate"]
        assert datetime.timedelta(days=6) < until - datetime.datetime.now(datetime.timezone.utc) <= datetime.timedelta(days=7)


# ------------------------------------------------------------------ objects, untrusted

def test_put_object_recomputes_rather_than_trusting_metadata(moto, bucket, store):
    assert store.put_object("db1", "app", "state", io.BytesIO(b"AAAA")) == "created"
    digest = hashlib.sha256(b"AAAA").hexdigest()
    # Same size and the right metadata, other bytes: not identical.
    moto.client().put_object(Bucket=bucket, Key=key("db1", "app", "objects", "state"), Body=b"BBBB",
                             Metadata={"sha256": digest})
    with pytest.raises(_stores.ObjectExistsError):
        store.put_object("db1", "app", "state", io.BytesIO(b"AAAA"))


def test_an_oversized_manifest_is_refused_unread(moto, bucket, store):
    write_set(store)
    moto.client().put_object(Bucket=bucket, Key=key("db1", "app", SET_ID, "manifest.json"),
                             Body=b" " * (_stores.MAX_MANIFEST_BYTES + 1))
    with pytest.raises(_manifest.ManifestError, match="is %d bytes, more than the limit of %d; it is refused unread"
                       % (_stores.MAX_MANIFEST_BYTES + 1, _stores.MAX_MANIFEST_BYTES)):
        store.read_manifest("db1", "app", SET_ID)


# ------------------------------------------------------------------ errors: one sentence each

def test_missing_bucket(moto):
    store = open_s3(moto, "lb-no-such-bucket")
    assert store.exists() is False
    with pytest.raises(_stores.StoreError) as info:
        store.listing("db1", "app")
    assert one_sentence(str(info.value)) == (
        "The bucket lb-no-such-bucket does not exist at %s; create it, or correct bucket, region or endpoint_url."
        % moto.endpoint_url)


def test_endpoint_down():
    port = moto_harness.free_port()
    store = _store_kinds.open_store(dict(kind="s3", bucket="lb-any", access_key="k", secret_key="s", region="us-east-1",
                                         endpoint_url="http://127.0.0.1:%d" % port, max_attempts=2))
    tries = requests_of(store, "ListObjectsV2")
    with pytest.raises(_stores.StoreError) as info:
        store.hosts()
    assert len(tries) == 2
    assert one_sentence(str(info.value)) == (
        "Cannot reach the S3 endpoint http://127.0.0.1:%d for s3://lb-any/ after 2 attempts; check endpoint_url "
        "(or region), the network and that the service is running." % port)


@pytest.fixture(scope="module")
def auth_moto():
    """A moto server that checks credentials (IAM) after its first five requests."""
    server = moto_harness.MotoServer(env={"INITIAL_NO_AUTH_ACTION_COUNT": "5"}).start()
    import boto3  # pylint: disable=import-outside-toplevel
    iam = boto3.client("iam", endpoint_url=server.endpoint_url, aws_access_key_id="x", aws_secret_access_key="x",
                       region_name="us-east-1")
    iam.create_user(UserName="writer")
    writer = iam.create_access_key(UserName="writer")["AccessKey"]
    iam.put_user_policy(UserName="writer", PolicyName="s3", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
    iam.create_user(UserName="nobody")
    nobody = iam.create_access_key(UserName="nobody")["AccessKey"]
    spec = dict(kind="s3", bucket="lb-auth", region="us-east-1", endpoint_url=server.endpoint_url, max_attempts=1)
    boto3.client("s3", endpoint_url=server.endpoint_url, aws_access_key_id=writer["AccessKeyId"],
                 aws_secret_access_key=writer["SecretAccessKey"], region_name="us-east-1").create_bucket(Bucket="lb-auth")
    yield server, spec, writer, nobody
    server.stop()


def test_right_credentials_work(auth_moto):
    dummy, spec, writer, dummy2 = auth_moto
    store = _store_kinds.open_store(dict(spec, access_key=writer["AccessKeyId"], secret_key=writer["SecretAccessKey"]))
    write_set(store)
    assert store.set_ids("db1", "app") == [SET_ID]


@pytest.mark.parametrize("case, expected", [
    ("unknown key", "%s does not know the access key used for s3://lb-auth/db1/app/; check access_key "
                    "(or AWS_ACCESS_KEY_ID, or the profile) on the host that talks to the store."),
    ("wrong secret", "%s rejected the request signature for s3://lb-auth/db1/app/: the secret key does not belong "
                     "to the access key; check secret_key (or AWS_SECRET_ACCESS_KEY, or the profile)."),
    ("no permission", "Access denied at %s for ListObjectsV2 on s3://lb-auth/db1/app/; grant these credentials "
                      "s3:ListBucket there (with tags also s3:PutObjectTagging, with SSE-KMS also "
                      "kms:GenerateDataKey and kms:Decrypt)."),
])
def test_wrong_credentials(auth_moto, case, expected):
    server, spec, writer, nobody = auth_moto
    keys = {"unknown key": ("AKIAIOSFODNN7EXAMPLE", "not-the-secret-either"),
            "wrong secret": (writer["AccessKeyId"], "not-the-secret"),
            "no permission": (nobody["AccessKeyId"], nobody["SecretAccessKey"])}[case]
    store = _store_kinds.open_store(dict(spec, access_key=keys[0], secret_key=keys[1]))
    with pytest.raises(_stores.StoreError) as info:
        store.listing("db1", "app")
    message = one_sentence(str(info.value))
    assert message == expected % server.endpoint_url
    for secret in keys:
        assert secret not in message


def test_no_credentials_anywhere(moto, monkeypatch, tmp_path):
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    store = _store_kinds.open_store(dict(kind="s3", bucket="lb-x", endpoint_url=moto.endpoint_url, region="us-east-1"))
    with pytest.raises(_stores.StoreError) as info:
        store.hosts()
    assert one_sentence(str(info.value)).startswith("No AWS credentials were found for s3://lb-x/: set access_key")


def test_unknown_profile_is_one_sentence_without_its_name(tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    with pytest.raises(LifeboatError) as info:
        _store_kinds.open_store(dict(kind="s3", bucket="lb-x", profile="ops-secret-profile"))
    assert "does not exist on this host" in one_sentence(str(info.value))
    assert "ops-secret-profile" not in str(info.value)


def test_boto3_missing_gives_missing_required_lib(monkeypatch):
    monkeypatch.setattr(_aws, "HAS_BOTO3", False)
    monkeypatch.setattr(_aws, "BOTO3_IMPORT_ERROR", "Traceback ...\nModuleNotFoundError: No module named 'boto3'")
    with pytest.raises(_aws.MissingLibraryError) as info:
        _store_kinds.open_store(dict(kind="s3", bucket="lb-x"))
    assert isinstance(info.value, LifeboatError)
    assert str(info.value) == missing_required_lib("boto3")
    assert info.value.library == "boto3" and "No module named" in info.value.import_error


def test_a_dir_store_never_needs_boto3(monkeypatch, tmp_path):
    monkeypatch.setattr(_aws, "HAS_BOTO3", False)
    store = _store_kinds.open_store(dict(kind="dir", path=str(tmp_path / "store")))
    write_set(store)
    assert store.set_ids("db1", "app") == [SET_ID]


_NO_BOTO3 = """
import json, sys
sys.modules["boto3"] = sys.modules["botocore"] = None  # as on a host without them: import fails
from ansible_collections.lifeboat.backup.plugins.module_utils import _aws, _store_kinds
out = {"has": _aws.HAS_BOTO3, "errors": list(_aws.BOTO_ERRORS)}
try:
    _store_kinds.open_store(dict(kind="s3", bucket="lb-x"))
except _aws.MissingLibraryError as exc:
    out.update(msg=str(exc), library=exc.library, trace="ModuleNotFoundError" in exc.import_error)
print(json.dumps(out))
"""


def test_without_boto3_installed_the_s3_kind_fails_with_missing_required_lib():
    """The lazy import: a host without boto3 imports every kind, and an s3 store says what to install."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    proc = subprocess.run([sys.executable, "-c", _NO_BOTO3], env=env, capture_output=True, text=True, timeout=120,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"has": False, "errors": [], "msg": missing_required_lib("boto3"),
                                       "library": "boto3", "trace": True}


def test_boto_errors_catch_botocore_failures_once_loaded():
    import botocore.exceptions  # pylint: disable=import-outside-toplevel
    assert _aws.HAS_BOTO3 is True
    assert _aws.BOTO_ERRORS == (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError)
    assert _aws.is_client_error(client_error("NoSuchKey", 404)) and not _aws.is_client_error(OSError())
    with pytest.raises(AttributeError):
        _aws.NOT_A_NAME  # pylint: disable=pointless-statement


# ------------------------------------------------------------------ options

def test_connection_settings_follow_amazon_aws_names_and_environment():
    environ = {"AWS_ACCESS_KEY": "AKIAENV", "AWS_SECRET_KEY": "env-secret", "AWS_SESSION_TOKEN": "env-token",
               "AWS_DEFAULT_REGION": "eu-west-3", "AWS_URL": "https://s3.example.net", "AWS_CA_BUNDLE": "/etc/ca.pem",
               "AWS_PROFILE": "ignored-with-keys"}
    conn = _aws.Connection({}, environ)
    assert (conn.access_key, conn.secret_key, conn.session_token, conn.profile) == (
        "AKIAENV", "env-secret", "env-token", None)
    assert (conn.region, conn.endpoint_url, conn.ca_bundle) == ("eu-west-3", "https://s3.example.net", "/etc/ca.pem")
    conn = _aws.Connection({"aws_access_key_id": "AKIAOPT", "aws_secret_access_key": "opt-secret",
                            "aws_region": "us-west-2", "aws_endpoint_url": "http://u:p@minio:9000"}, environ)
    assert (conn.access_key, conn.secret_key, conn.region) == ("AKIAOPT", "opt-secret", "us-west-2")
    assert conn.endpoint == "http://minio:9000"
    conn = _aws.Connection({}, {"AWS_PROFILE": "ops", "AWS_REGION": "eu-north-1", "AWS_DEFAULT_REGION": "x"})
    assert (conn.profile, conn.access_key, conn.region) == ("ops", None, "eu-north-1")
    assert conn.redact("key ops here") == "key ******** here"
    with pytest.raises(LifeboatError, match="mutually exclusive"):
        _aws.Connection({"profile": "ops", "access_key": "AKIA"}, {})


def test_retries_use_botocore_standard_mode_with_max_attempts(moto, bucket):
    store = open_s3(moto, bucket, max_attempts=3)
    assert store.client.meta.config.retries == {"mode": "standard", "total_max_attempts": 3}


@pytest.mark.parametrize("options, fragment", [
    ({"bucket": None}, "needs bucket"),
    ({"bucket": "a/b"}, "needs bucket"),
    ({"prefix": "a/../b"}, "prefix 'a/../b' is not plain"),
    ({"part_size": 4}, "part_size must be a whole number of MiB from 5 to 5120"),
    ({"kms_key_id": "k"}, "kms_key_id needs sse: aws:kms"),
    ({"tags": dict(("t%d" % i, "v") for i in range(11))}, "at most 10 tags"),
    ({"object_lock_mode": "GOVERNANCE"}, "give both or neither"),
    ({"storage_class": "standard ia"}, "not a storage class name"),
    ({"max_attempts": 0}, "max_attempts must be a whole number from 1 to 20"),
    ({"path": "/srv"}, "Store option path applies to store kind dir or ssh, not s3"),
])
def test_option_errors(options, fragment):
    spec = dict(kind="s3", bucket="lb-x", access_key="k", secret_key="s", region="us-east-1")
    spec.update(options)
    with pytest.raises(LifeboatError) as info:
        _store_kinds.open_store(spec)
    assert fragment in one_sentence(str(info.value))


def test_describe_has_no_secret(moto, bucket):
    store = open_s3(moto, bucket, access_key="AKIASECRETLOOKING", secret_key="very-secret", session_token="session-tok-123")
    text = json.dumps(store.describe())
    for secret in ("AKIASECRETLOOKING", "very-secret", "session-tok-123"):
        assert secret not in text
    assert store.describe() == {"kind": "s3", "bucket": bucket, "prefix": PREFIX, "endpoint_url": moto.endpoint_url,
                                "region": "us-east-1"}


# ------------------------------------------------------------------ endpoints with fewer features

class _Raw(object):
    def __init__(self, body):
        self.body = body

    def stream(self, **kwargs):
        yield self.body


def refuse_requests(store, predicate, code="NotImplemented", status=501):
    """Answer requests matching ``predicate`` with an S3 error, as an endpoint lacking a feature does."""
    import botocore.awsrequest  # pylint: disable=import-outside-toplevel
    refused = []

    def answer(request, **kwargs):
        if predicate(request):
            refused.append(request)
            body = ("<Error><Code>%s</Code><Message>A header you provided implies functionality that is not "
                    "implemented</Message></Error>" % code).encode()
            return botocore.awsrequest.AWSResponse(request.url, status, {"Content-Type": "application/xml"}, _Raw(body))
        return None
    store.client.meta.events.register_first("before-send.s3.*", answer)
    return refused


def test_an_endpoint_without_s3_checksums_gets_content_md5_only(moto, bucket):
    store = open_s3(moto, bucket, part_size=5)
    refused = refuse_requests(store, lambda r: "x-amz-checksum-sha256" in r.headers
                              or "x-amz-checksum-algorithm" in r.headers)
    sent = requests_of(store, "UploadPart")
    manifest = write_set(store, files={"big.bin": os.urandom(6 * MIB), "small.bin": b"small"})
    assert refused and store.checksums is False
    assert sent and all("x-amz-checksum-sha256" not in r.headers and "Content-MD5" in r.headers for r in sent)
    assert store.verify_set(manifest) == []


def test_an_old_botocore_without_conditional_parameters_falls_back(moto, bucket, store):
    import botocore.exceptions  # pylint: disable=import-outside-toplevel

    def refuse(params, **kwargs):
        for name in ("IfNoneMatch", "IfMatch"):
            if name in params:
                raise botocore.exceptions.ParamValidationError(report="Unknown parameter in input: %r" % name)
    store.client.meta.events.register("provide-client-params.s3.PutObject", refuse)
    store.client.meta.events.register("provide-client-params.s3.DeleteObject", refuse)
    with store.lock("db1", "app") as lock:
        assert lock.conditional is False
        write_set(store)
        assert store.put_object("db1", "app", "state", io.BytesIO(b"s")) == "created"
    assert store.set_ids("db1", "app") == [SET_ID]
    assert key("db1", "app", ".lock") not in all_keys(moto, bucket)


def test_incomplete_uploads_are_listed_page_by_page_and_aborted(moto, bucket, store):
    client = moto.client()
    write_set(store)
    names = []
    for set_id, name in (("20261101T000000Z-full", "a.bin"), ("20261101T000000Z-full", "b.bin"),
                         ("20261102T000000Z-full", "c.bin"), (SET_ID, "late.bin")):
        client.create_multipart_upload(Bucket=bucket, Key=key("db1", "app", set_id, name))
        names.append("%s/%s.upload" % (set_id, name))
    client.create_multipart_upload(Bucket=bucket, Key=key("db1", "app", "objects", "x"))  # not a set: left alone
    store.list_page = 1
    listing = store.listing("db1", "app")
    assert listing.sets == [SET_ID]
    assert listing.partials == sorted(names)
    assert store.remove_partials("db1", "app") == sorted(names)
    assert [u["Key"] for u in uploads(moto, bucket)] == [key("db1", "app", "objects", "x")]
    assert store.set_ids("db1", "app") == [SET_ID]


# ------------------------------------------------------------------ every error sentence

def client_error(code, status, message="", operation="PutObject", region=None):
    import botocore.exceptions  # pylint: disable=import-outside-toplevel
    response = {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status}}
    if region:
        response["ResponseMetadata"]["HTTPHeaders"] = {"x-amz-bucket-region": region}
    return botocore.exceptions.ClientError(response, operation)


@pytest.mark.parametrize("error, fragment", [
    (client_error("NoSuchBucket", 404), "The bucket lb-b does not exist at https://s3.example.net"),
    (client_error("InvalidAccessKeyId", 403), "does not know the access key used for s3://lb-b/k"),
    (client_error("SignatureDoesNotMatch", 403), "the secret key does not belong to the access key"),
    (client_error("ExpiredToken", 400), "the session token is expired or invalid; renew session_token"),
    (client_error("PermanentRedirect", 301, region="eu-west-1"),
     "The bucket lb-b is in another region (eu-west-1) than the one in use (us-east-1); set region to eu-west-1."),
    (client_error("AccessDenied", 403, operation="DeleteObject"), "grant these credentials s3:DeleteObject there"),
    (client_error("InvalidObjectState", 403, operation="GetObject"), "is in an archive storage class"),
    (client_error("KMS.NotFoundException", 400), "SSE-KMS failed for s3://lb-b/k"),
    (client_error("SlowDown", 503), "kept failing (SlowDown) for s3://lb-b/k after 4 attempts"),
    (client_error("InvalidRequest", 400, "Bucket is missing Object Lock Configuration"),
     "object_lock_mode needs a bucket created with Object Lock enabled"),
    (client_error("WeirdError", 400, "the key AKIAEXAMPLEKEY and s3cr3t-value were wrong"),
     "S3 PutObject for s3://lb-b/k at https://s3.example.net failed: WeirdError (the key ******** and ******** "
     "were wrong)."),
])
def test_each_error_is_one_sentence_without_secrets(error, fragment):
    connection = _aws.Connection(dict(access_key="AKIAEXAMPLEKEY", secret_key="s3cr3t-value", region="us-east-1",
                                      endpoint_url="https://s3.example.net", max_attempts=4), {})
    message = one_sentence(_aws.describe_error(error, connection, "s3://lb-b/k", "lb-b"))
    assert fragment in message
    assert "AKIAEXAMPLEKEY" not in message and "s3cr3t-value" not in message


@pytest.mark.parametrize("name, fragment", [
    ("NoCredentialsError", "No AWS credentials were found for s3://lb-b/k"),
    ("PartialCredentialsError", "Only part of the AWS credentials"),
    ("NoRegionError", "No AWS region is set"),
    ("SSLError", "TLS verification failed for https://s3.example.net"),
    ("ConnectTimeoutError", "Cannot reach the S3 endpoint https://s3.example.net for s3://lb-b/k after 4 attempts"),
    ("ReadTimeoutError", "Cannot reach the S3 endpoint"),
])
def test_each_botocore_failure_is_one_sentence(name, fragment):
    import botocore.exceptions  # pylint: disable=import-outside-toplevel
    cls = getattr(botocore.exceptions, name)
    kwargs = {"PartialCredentialsError": dict(provider="env", cred_var="secret"),
              "SSLError": dict(endpoint_url="https://s3.example.net", error="bad cert"),
              "ConnectTimeoutError": dict(endpoint_url="https://s3.example.net"),
              "ReadTimeoutError": dict(endpoint_url="https://s3.example.net")}.get(name, {})
    connection = _aws.Connection(dict(endpoint_url="https://s3.example.net", max_attempts=4), {})
    assert fragment in one_sentence(_aws.describe_error(cls(**kwargs), connection, "s3://lb-b/k", "lb-b"))


# ---------------------------------------------------------------- parts uploaded in parallel

def _slow_parts(store, delay=0.3):
    """Record the part numbers sent, in order, and the most parts ever in flight at once."""
    import threading
    import time
    state = {"now": 0, "most": 0, "numbers": []}
    guard = threading.Lock()

    def before(request, **kwargs):
        with guard:
            state["now"] += 1
            state["most"] = max(state["most"], state["now"])
            state["numbers"].append(_part_number(request))
        time.sleep(delay)

    def after(**kwargs):
        with guard:
            state["now"] -= 1
    store.client.meta.events.register("before-send.s3.UploadPart", before)
    store.client.meta.events.register("after-call.s3.UploadPart", after)
    return state


def test_parts_go_up_in_parallel_within_the_bound_and_in_order(moto, bucket):
    store = open_s3(moto, bucket, part_size=5)
    bound = _store_s3.parts_in_flight(5 * MIB)
    assert bound > 1
    state = _slow_parts(store)
    data = os.urandom(6 * 5 * MIB + 12345)
    writer = store.begin("db1", "app", SET_ID)
    sink = writer.open("big.bin")
    for start in range(0, len(data), 3 * MIB):
        sink.write(data[start:start + 3 * MIB])
    sink.close()
    writer.commit(_manifest.dumps(manifest_for(SET_ID, {"big.bin": data})), ["big.bin"])
    assert state["most"] == bound
    assert sorted(state["numbers"]) == list(range(1, 8))
    body = moto.client().get_object(Bucket=bucket, Key=key("db1", "app", SET_ID, "big.bin"))["Body"].read()
    assert hashlib.sha256(body).hexdigest() == hashlib.sha256(data).hexdigest()
    with store.open_payload("db1", "app", SET_ID, "big.bin") as reader:
        assert reader.read() == data


def _part_number(request):
    return int(request.url.split("partNumber=")[1].split("&")[0])


def test_a_failed_part_in_flight_aborts_the_whole_upload(moto, bucket):
    store = open_s3(moto, bucket, part_size=5)
    sent = []

    def lose_third(request, **kwargs):
        sent.append(_part_number(request))
        if sent[-1] == 3:  # an upload id the endpoint does not know: a refusal that is not retried
            request.url = re.sub(r"uploadId=[^&]+", "uploadId=gone", request.url)
    store.client.meta.events.register("before-send.s3.UploadPart", lose_third)
    writer = store.begin("db1", "app", SET_ID)
    sink = writer.open("big.bin")
    with pytest.raises(_stores.StoreError, match="part 3 of "):
        for dummy in range(40):
            sink.write(os.urandom(MIB))
        sink.close()
    assert sink.state == "aborted" and sink.pool is None
    # The upload stopped within the parts in flight after the failure, and nothing of it is left.
    assert max(sent) <= 3 + _store_s3.parts_in_flight(5 * MIB) + 1
    assert not uploads(moto, bucket)
    with pytest.raises(_stores.StoreError, match="aborted"):
        sink.write(b"more")
    writer.abort()
    assert all_keys(moto, bucket) == []


def test_content_md5_is_dropped_once_the_endpoint_checks_the_sha256(moto, bucket):
    store = open_s3(moto, bucket, part_size=5)
    md5s = {}
    store.client.meta.events.register(
        "before-send.s3.UploadPart",
        lambda request, **kw: md5s.__setitem__(_part_number(request), "Content-MD5" in request.headers))
    data = os.urandom(5 * 5 * MIB)
    writer = store.begin("db1", "app", SET_ID)
    sink = writer.open("big.bin")
    sink.write(data)
    sink.close()
    writer.commit(_manifest.dumps(manifest_for(SET_ID, {"big.bin": data})), ["big.bin"])
    assert md5s[1] is True and md5s[5] is False
    with store.open_payload("db1", "app", SET_ID, "big.bin") as reader:
        assert reader.read() == data


def test_a_later_part_corrupted_on_the_way_fails_the_composite_checksum(moto, bucket):
    """A part sent without Content-MD5 that the endpoint stored wrong: the object's composite SHA-256 gives it away."""
    store = open_s3(moto, bucket, part_size=5)

    def corrupt_fifth(request, **kwargs):
        if _part_number(request) == 5:
            assert "Content-MD5" not in request.headers
            body = request.body.read()
            request.body = body[:-1] + bytes([body[-1] ^ 1])
    store.client.meta.events.register("before-send.s3.UploadPart", corrupt_fifth)
    writer = store.begin("db1", "app", SET_ID)
    sink = writer.open("big.bin")
    sink.write(os.urandom(5 * 5 * MIB + 7))
    with pytest.raises(_stores.StoreError, match="SHA-256 checksum .* the data was corrupted on the way"):
        sink.close()
    writer.abort()
    assert not uploads(moto, bucket)
    assert all_keys(moto, bucket) == []


def test_memory_of_the_parts_in_flight_stays_within_the_budget():
    for mib in range(_store_s3.MIN_PART_MIB, 200):
        count = _store_s3.parts_in_flight(mib * MIB)
        assert 0 <= count <= _store_s3.UPLOAD_THREADS
        assert count == 0 or (count + 1) * mib * MIB <= _store_s3.UPLOAD_MEMORY
    # The default part size keeps one part in memory, as a module under 100 MB needs.
    assert _store_s3.parts_in_flight(_store_s3.DEFAULT_PART_MIB * MIB) == 0


def test_a_part_size_with_none_in_flight_uploads_each_part_when_full(moto, bucket):
    store = open_s3(moto, bucket)
    state = _slow_parts(store, delay=0)
    data = os.urandom(2 * _store_s3.DEFAULT_PART_MIB * MIB + 5)
    writer = store.begin("db1", "app", SET_ID)
    sink = writer.open("big.bin")
    sink.write(data[:_store_s3.DEFAULT_PART_MIB * MIB])
    assert state["numbers"] == [1] and sink.pool is None
    sink.write(data[_store_s3.DEFAULT_PART_MIB * MIB:])
    sink.close()
    writer.commit(_manifest.dumps(manifest_for(SET_ID, {"big.bin": data})), ["big.bin"])
    assert state["most"] == 1 and state["numbers"] == [1, 2, 3]
    with store.open_payload("db1", "app", SET_ID, "big.bin") as reader:
        assert reader.read() == data
