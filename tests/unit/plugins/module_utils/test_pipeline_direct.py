# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""run_to_sink's direct path: the last tool writes the sink's file itself and the bytes are hashed read back.

Real processes (sh, head, cat, zstd) and real files; the path is taken only for
a ``sequential`` last stage and a sink whose ``fileno()`` is a regular file open
for reading and writing at its end, and must give the same size and SHA-256 as
copying through the pipeline, with the same errors.
"""

from __future__ import annotations

import datetime
import errno
import hashlib
import os
import shutil
import subprocess
import sys
import tracemalloc

import pytest

from ansible_collections.lifeboat.backup.plugins.module_utils import _jobs
from ansible_collections.lifeboat.backup.plugins.module_utils import _manifest
from ansible_collections.lifeboat.backup.plugins.module_utils import _pipeline
from ansible_collections.lifeboat.backup.plugins.module_utils import _store_dir
from ansible_collections.lifeboat.backup.plugins.module_utils import _store_kinds
from ansible_collections.lifeboat.backup.plugins.module_utils._pipeline import PipelineError, SinkError, Stage

ZSTD = shutil.which("zstd")
needs_zstd = pytest.mark.skipif(not ZSTD, reason="zstd is not installed")


class FileSink(object):
    """A sink over a descriptor that refuses ``write``: passing proves no byte was copied through Python."""

    def __init__(self, fd, copy_ok=False):
        self.fd = fd
        self.copy_ok = copy_ok
        self.noted = 0
        self.writes = 0

    def fileno(self):
        return self.fd

    def note_written(self, count):
        self.noted += count

    def write(self, data):
        if not self.copy_ok:
            raise AssertionError("the bytes were copied through the pipeline")
        self.writes += 1
        return os.write(self.fd, data)


def open_rw(path, flags=os.O_RDWR | os.O_CREAT | os.O_TRUNC):
    return os.open(str(path), flags, 0o600)


def content(path):
    with open(str(path), "rb") as handle:
        return handle.read()


def producer(size):
    """A stage writing ``size`` pseudo-random bytes (several pipe buffers and read chunks)."""
    return Stage("head", ["head", "-c", str(size), "/dev/urandom"])


def cat(sequential=True):
    return Stage("cat", ["cat"], sequential=sequential)


def test_sequential_last_stage_writes_the_file_itself(tmp_path):
    path = tmp_path / "out"
    fd = open_rw(path)
    try:
        sink = FileSink(fd)
        size, digest = _pipeline.run_to_sink([producer(5 * 1024 * 1024 + 17), cat()], sink, chunk=256 * 1024)
    finally:
        os.close(fd)
    data = content(path)
    assert size == len(data) == 5 * 1024 * 1024 + 17
    assert digest == hashlib.sha256(data).hexdigest()
    assert sink.noted == size


@pytest.mark.parametrize("why", ["not sequential", "write-only", "data after the position", "no fileno"])
def test_other_sinks_are_copied_through(tmp_path, why):
    path = tmp_path / "out"
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC if why == "write-only" else os.O_RDWR | os.O_CREAT | os.O_TRUNC
    fd = open_rw(path, flags)
    try:
        if why == "data after the position":
            os.write(fd, b"old bytes")
            os.lseek(fd, 0, os.SEEK_SET)
        sink = FileSink(fd, copy_ok=True)
        if why == "no fileno":
            sink.fileno = None
        size, digest = _pipeline.run_to_sink([producer(300000), cat(sequential=why != "not sequential")], sink)
    finally:
        os.close(fd)
    data = content(path)
    assert sink.writes > 0 and sink.noted == 0
    assert size == 300000 and digest == hashlib.sha256(data[:300000]).hexdigest()


def test_appends_after_what_the_file_holds(tmp_path):
    """A file object with a prefix, positioned at its end: the tool appends, the hash covers its bytes only."""
    path = tmp_path / "out"
    with open(str(path), "w+b") as handle:
        handle.write(b"prefix, buffered")  # still in the object's buffer: flushed before the tool starts
        size, digest = _pipeline.run_to_sink([producer(1000000), cat()], handle)
        handle.write(b"suffix")  # the file object knows where the descriptor is now
    data = content(path)
    assert data.startswith(b"prefix, buffered") and data.endswith(b"suffix")
    assert size == 1000000 == len(data) - len(b"prefix, buffered") - len(b"suffix")
    assert digest == hashlib.sha256(data[16:-6]).hexdigest()


def test_a_tool_that_seeks_back_is_hashed_as_the_file_ends(tmp_path):
    """A last stage marked sequential by mistake that rewrites its start: the digest is still the file's."""
    script = ("import os, sys\n"
              "out = sys.stdout.buffer\n"
              "out.write(b'A' * 3000000); out.flush()\n"
              "os.lseek(1, 0, os.SEEK_SET); os.write(1, b'HEADER')\n")
    path = tmp_path / "out"
    fd = open_rw(path)
    try:
        size, digest = _pipeline.run_to_sink([Stage("rewriter", [sys.executable, "-c", script], sequential=True)],
                                             FileSink(fd))
        assert os.lseek(fd, 0, os.SEEK_CUR) == size
    finally:
        os.close(fd)
    data = content(path)
    assert data.startswith(b"HEADER")
    assert size == len(data) == 3000000
    assert digest == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("message, number", [
    ("zstd: error 70 : Write error : cannot write block : No space left on device", errno.ENOSPC),
    ("age: error: failed to write output: write /dev/stdout: no space left on device", errno.ENOSPC),
    ("gzip: stdout: Disk quota exceeded", errno.EDQUOT),
    ("pigz: write error on <stdout> (Input/output error)", errno.EIO),
])
def test_a_tool_that_cannot_write_the_file_is_a_sink_error(tmp_path, message, number):
    path = tmp_path / "out"
    fd = open_rw(path)
    tool = Stage("writer", ["sh", "-c", "cat >/dev/null; echo '%s' >&2; exit 1" % message], sequential=True)
    try:
        with pytest.raises(SinkError) as info:
            _pipeline.run_to_sink([producer(100000), tool], FileSink(fd))
    finally:
        os.close(fd)
    assert info.value.os_error.errno == number


def test_a_failing_producer_is_still_named(tmp_path):
    path = tmp_path / "out"
    fd = open_rw(path)
    try:
        with pytest.raises(PipelineError) as info:
            _pipeline.run_to_sink([Stage("dumper", ["sh", "-c", "head -c 70000 /dev/urandom; echo 'connection refused' >&2;"
                                                    " exit 2"]), cat()], FileSink(fd))
    finally:
        os.close(fd)
    assert info.value.stage == "dumper" and "connection refused" in str(info.value)
    assert not isinstance(info.value, SinkError)


def test_interrupted_follow_stops_every_stage(tmp_path, monkeypatch):
    started = []
    real = subprocess.Popen

    class Recording(real):
        def __init__(self, *args, **kwargs):
            super(Recording, self).__init__(*args, **kwargs)
            started.append(self)

    monkeypatch.setattr(_pipeline.subprocess, "Popen", Recording)

    class Interrupting(FileSink):
        def note_written(self, count):
            raise KeyboardInterrupt()

    path = tmp_path / "out"
    fd = open_rw(path)
    try:
        with pytest.raises(KeyboardInterrupt):
            _pipeline.run_to_sink([Stage("yes", ["yes"]), cat()], Interrupting(fd))
    finally:
        os.close(fd)
    assert started and all(proc.returncode is not None for proc in started)


def test_memory_stays_flat_on_the_direct_path(tmp_path):
    path = tmp_path / "out"
    fd = open_rw(path)
    tracemalloc.start()
    try:
        size, dummy = _pipeline.run_to_sink([producer(64 * 1024 * 1024), cat()], FileSink(fd))
        dummy2, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        os.close(fd)
    assert size == 64 * 1024 * 1024
    assert peak < 3 * _pipeline.CHUNK


@needs_zstd
def test_dir_store_set_written_directly_verifies(tmp_path):
    """The dir sink offers its file: zstd writes the payload, the manifest's SHA-256 matches what verify reads."""
    store = _store_kinds.open_store({"kind": "dir", "path": str(tmp_path / "store")})
    set_id = "20261126T031500Z-full"
    manifest = _manifest.new_manifest(set_id, "db1", "app", "postgresql", "pg_dump")
    writer = store.begin("db1", "app", set_id)
    try:
        sinks = []
        real_open = writer.open

        def recording_open(name):
            sink = real_open(name)
            sink.flush_every = 1024 * 1024  # start write-back often, through note_written
            sinks.append(sink)
            return sink
        writer.open = recording_open
        _jobs.write_stream(writer, manifest, "dump.zst", [producer(6 * 1024 * 1024)]
                           + _pipeline.compress_stages("zstd", ZSTD, level=1))
        assert isinstance(sinks[0], _store_dir.DirSink) and sinks[0].written == manifest["bytes"]
        assert sinks[0].kicked > 0
        _manifest.finish(manifest, datetime.datetime(2026, 11, 26, 3, 15, tzinfo=datetime.timezone.utc),
                         datetime.datetime(2026, 11, 26, 3, 16, tzinfo=datetime.timezone.utc))
        writer.commit(_manifest.dumps(manifest), ["dump.zst"])
    finally:
        writer.abort()
    assert store.verify_set(store.read_manifest("db1", "app", set_id)) == []
    payload = os.path.join(store.location("db1", "app", set_id), "dump.zst")
    assert hashlib.sha256(content(payload)).hexdigest() == manifest["files"][0]["sha256"]
    assert subprocess.run([ZSTD, "-q", "-t", payload], check=False).returncode == 0
