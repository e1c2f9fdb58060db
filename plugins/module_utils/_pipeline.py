# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils is PRIVATE to this collection. It may change without notice.

"""Streaming pipelines: producer | compressor | encryptor -> store, and back.

This is the one place in the collection that starts more than one process at
a time. Every stage is an argv list (never a shell string); processes are
joined by OS pipes; the bytes that reach the store pass through this process
once, in bounded chunks, so that their SHA-256 is computed in the same pass
and memory stays flat. Every stage's exit status is checked: a producer that
fails behind a compressor fails the pipeline.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import signal
import subprocess
import tempfile
import threading

from ansible_collections.lifeboat.backup.plugins.module_utils._common import LifeboatError
from ansible_collections.lifeboat.backup.plugins.module_utils._runner import CommandError, Runner

CHUNK = 1024 * 1024
# While copying, ask the kernel to write back every FLUSH_EVERY bytes (in a thread).
FLUSH_EVERY = 64 * 1024 * 1024
F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
STDERR_TAIL = 4000

COMPRESSION_SUFFIX = {"zstd": ".zst", "gzip": ".gz", "none": ""}
ENCRYPTION_SUFFIX = ".age"


class PipelineError(LifeboatError):
    """A stage failed. ``stage`` names it, ``stderr`` holds the end of its error output."""

    def __init__(self, message, stage=None, returncode=None, stderr=""):
        super(PipelineError, self).__init__(message)
        self.stage = stage
        self.returncode = returncode
        self.stderr = stderr


class SinkError(LifeboatError):
    """Writing the pipeline's output failed (for instance, the store is full)."""

    def __init__(self, message, os_error=None):
        super(SinkError, self).__init__(message)
        self.os_error = os_error


class Stage(object):
    """One process of a pipeline."""

    def __init__(self, name, argv, env=None, cwd=None, pass_fds=()):
        self.name = name
        self.argv = [str(a) for a in argv]
        self.env = env
        self.cwd = cwd
        self.pass_fds = tuple(pass_fds or ())

    def __repr__(self):
        return "Stage(%r, %r)" % (self.name, self.argv)


def payload_suffix(compression, encrypted):
    return COMPRESSION_SUFFIX[compression] + (ENCRYPTION_SUFFIX if encrypted else "")


def compress_stages(algorithm, binary, level=None, threads=0):
    """Stages that compress stdin to stdout (none for ``none``)."""
    if algorithm == "none":
        return []
    if algorithm == "zstd":
        argv = [binary, "-q", "-c", "-T%d" % int(threads)]
        if level is not None:
            argv.append("-%d" % int(level))
            if int(level) > 19:
                argv.insert(1, "--ultra")
        return [Stage("zstd", argv)]
    if algorithm == "gzip":
        argv = [binary, "-c"]
        if os.path.basename(binary) == "pigz" and threads:
            argv += ["-p", str(int(threads))]
        if level is not None:
            argv.append("-%d" % int(level))
        return [Stage(os.path.basename(binary), argv)]
    raise LifeboatError("Unknown compression %r; use zstd, gzip or none." % algorithm)


def decompress_stages(algorithm, binary):
    if algorithm == "none":
        return []
    if algorithm == "zstd":
        return [Stage("zstd", [binary, "-q", "-d", "-c"])]
    if algorithm == "gzip":
        return [Stage(os.path.basename(binary), [binary, "-d", "-c"])]
    raise LifeboatError("Unknown compression %r; use zstd, gzip or none." % algorithm)


def encrypt_stages(binary, recipients):
    if not recipients:
        return []
    argv = [binary, "--encrypt"]
    for recipient in recipients:
        argv += ["-r", recipient]
    return [Stage("age", argv)]


def decrypt_stages(binary, identity_file):
    """Decryption reads the identity from a 0600 file: the key never enters argv."""
    if not identity_file:
        return []
    return [Stage("age", [binary, "--decrypt", "-i", identity_file])]


def _tail(handle):
    handle.flush()
    handle.seek(0, os.SEEK_END)
    size = handle.tell()
    handle.seek(max(0, size - STDERR_TAIL))
    return handle.read().decode("utf-8", "replace").strip()


def _is_sigpipe(returncode):
    return returncode in (-signal.SIGPIPE, 128 + signal.SIGPIPE)


class _Running(object):
    """Started processes of one pipeline, with their stderr captured to temp files."""

    def __init__(self, stages, stdin, env, runner=None):
        runner = runner or Runner()
        self.stages = stages
        self.procs = []
        self.errs = []
        self.stderr = None
        previous = stdin
        try:
            for index, stage in enumerate(stages):
                err = tempfile.TemporaryFile()
                self.errs.append(err)
                stage_env = dict(env or os.environ)
                stage_env.update(stage.env or {})
                proc = runner.popen(
                    stage.argv,
                    stdin=previous,
                    stdout=subprocess.PIPE,
                    stderr=err,
                    env=stage_env,
                    cwd=stage.cwd,
                    pass_fds=stage.pass_fds,
                )
                if index > 0:
                    # The previous stage now writes only to this one: drop our copy of
                    # the pipe so that it sees SIGPIPE if this stage dies.
                    self.procs[-1].stdout.close()
                self.procs.append(proc)
                previous = proc.stdout
        except (OSError, CommandError) as exc:
            self.kill()
            self.close()
            raise PipelineError(
                "Cannot start %s (%s): %s." % (stage.name, stage.argv[0], getattr(exc, "strerror", None) or exc),
                stage=stage.name,
            )

    @property
    def stdout(self):
        return self.procs[-1].stdout

    def kill(self):
        for proc in self.procs:
            if proc.poll() is None:
                try:
                    proc.kill()
                except OSError:
                    pass
        self.wait()

    def wait(self):
        for proc in self.procs:
            if proc.stdout is not None and not proc.stdout.closed:
                proc.stdout.close()
            proc.wait()

    def close(self):
        """Keep the end of each stage's stderr and drop the temp files."""
        if self.stderr is None:
            self.stderr = [_tail(err) for err in self.errs]
            for err in self.errs:
                err.close()

    def check(self):
        """Collect each stage's stderr; raise PipelineError for the root-cause failure."""
        self.close()
        failed = [index for index, proc in enumerate(self.procs) if proc.returncode != 0]
        if not failed:
            return
        # A stage killed by SIGPIPE only lost its reader: blame the first other failure.
        real = [index for index in failed if not _is_sigpipe(self.procs[index].returncode)] or failed
        index = real[0]
        stage, stderr = self.stages[index], self.stderr[index]
        raise PipelineError(
            "%s failed (exit status %s)%s" % (
                stage.name, self.procs[index].returncode, (": " + stderr.splitlines()[-1]) if stderr else "."),
            stage=stage.name,
            returncode=self.procs[index].returncode,
            stderr=stderr,
        )


class _Flusher(threading.Thread):
    """Pushes written data to disk while the copy goes on, so the final fsync is short."""

    def __init__(self, fd):
        super(_Flusher, self).__init__(name="lifeboat-flusher")
        self.daemon = True
        self.fd = fd
        self.wake = threading.Event()
        self.done = False
        self.error = None

    def run(self):
        while True:
            self.wake.wait()
            self.wake.clear()
            if self.done:
                return
            try:
                os.fdatasync(self.fd)
            except OSError as exc:
                self.error = exc
                return

    def finish(self):
        self.done = True
        self.wake.set()
        self.join()
        if self.error is not None:
            raise SinkError(str(self.error), os_error=self.error)


def _write_all(sink, view):
    """Write all of ``view``; a raw (unbuffered) file may take it in parts."""
    while view:
        written = sink.write(view)
        if written is None or written >= len(view):
            return
        view = view[written:]


def run_to_sink(stages, sink, stdin=None, env=None, chunk=CHUNK, flush_every=FLUSH_EVERY, durable=True):
    """Run ``stages`` and write the last stage's stdout to ``sink`` (a binary file object).

    Returns ``(size, sha256_hex)`` of the bytes written. With ``durable`` (a
    store's payload), a sink with a real file descriptor is written back to
    disk in a helper thread as the copy goes on and fsynced at the end; a
    scratch file passes ``durable=False`` and skips both. Raises PipelineError if any stage fails,
    SinkError if writing fails; in both cases all processes are stopped before
    it returns. One preallocated buffer carries every block: memory stays flat
    whatever the size.
    """
    if not stages:
        raise LifeboatError("A pipeline needs at least one stage.")
    running = _Running(stages, stdin, env)
    digest = hashlib.sha256()
    size = 0
    src = running.stdout.fileno()
    try:
        # Fewer, larger reads: ask for a pipe as big as our buffer (Linux; best effort).
        fcntl.fcntl(src, F_SETPIPE_SZ, chunk)
    except (OSError, ValueError):
        pass
    buffer = bytearray(chunk)
    view = memoryview(buffer)
    flusher = None
    try:
        kicked = 0
        while True:
            try:
                count = os.readv(src, [buffer])
            except OSError as exc:
                raise PipelineError("Reading the output of %s failed: %s." % (stages[-1].name, exc.strerror or exc),
                                    stage=stages[-1].name)
            if not count:
                break
            block = view[:count]
            digest.update(block)
            size += count
            try:
                _write_all(sink, block)
                if durable and size - kicked >= flush_every:
                    kicked = size
                    if flusher is None:
                        sink.flush()
                        flusher = _Flusher(sink.fileno())
                        flusher.start()
                    flusher.wake.set()
            except OSError as exc:
                raise SinkError(str(exc), os_error=exc)
            finally:
                block.release()
        try:
            sink.flush()
            if flusher is not None:
                flusher.finish()
            if durable:
                os.fsync(sink.fileno())
        except OSError as exc:
            raise SinkError(str(exc), os_error=exc)
    except BaseException:
        # Whatever stopped the copy (a full disk, an interrupt), no stage may outlive it.
        if flusher is not None and flusher.is_alive():
            flusher.done = True
            flusher.wake.set()
        running.kill()
        running.close()
        raise
    finally:
        view.release()
    running.wait()
    running.check()
    return size, digest.hexdigest()


def run_from_source(stages, source, env=None):
    """Feed the open file ``source`` into ``stages``.

    Returns ``(stdout, stderr)`` of the last stage as text. That output is
    expected to be small (a restore tool's messages); it is kept in a temp
    file and only its tail is returned.
    """
    if not stages:
        raise LifeboatError("A pipeline needs at least one stage.")
    running = _Running(stages, source, env)
    out = tempfile.TemporaryFile()
    try:
        fd = running.stdout.fileno()
        while True:
            block = os.read(fd, CHUNK)
            if not block:
                break
            out.write(block)
        running.wait()
        running.check()
        return _tail(out), running.stderr[-1]
    except BaseException:
        running.kill()
        raise
    finally:
        out.close()


def describe(stages):
    """The argv lists of a pipeline, for results (they never hold secrets)."""
    return [list(stage.argv) for stage in stages]


def pump(stages, source, consume, env=None, chunk=CHUNK):
    """Feed the open file ``source`` through ``stages`` and hand their output to ``consume``.

    ``consume(block)`` gets the bytes in bounded blocks, in order; it returns
    False to stop reading early (a consumer that needs only the head of the
    stream), and then the stages are stopped and their exit status is not
    judged. Without stages the source itself is read. Raises PipelineError if
    a stage fails; whatever ``consume`` raises stops every stage first.
    Returns True if the whole stream was consumed.
    """
    if not stages:
        fd = source.fileno()
        while True:
            block = os.read(fd, chunk)
            if not block:
                return True
            if consume(block) is False:
                return False
    running = _Running(stages, source, env)
    try:
        fd = running.stdout.fileno()
        while True:
            try:
                block = os.read(fd, chunk)
            except OSError as exc:
                raise PipelineError("Reading the output of %s failed: %s." % (stages[-1].name, exc.strerror or exc),
                                    stage=stages[-1].name)
            if not block:
                break
            if consume(block) is False:
                running.kill()
                running.close()
                return False
    except BaseException:
        running.kill()
        running.close()
        raise
    running.wait()
    running.check()
    return True
