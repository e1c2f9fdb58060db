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

import errno
import fcntl
import hashlib
import os
import signal
import stat
import subprocess
import tempfile
import threading
import time

from ansible_collections.lifeboat.backup.plugins.module_utils._common import LifeboatError
from ansible_collections.lifeboat.backup.plugins.module_utils._runner import CommandError, Runner

CHUNK = 1024 * 1024
# While copying, ask the kernel to write back every FLUSH_EVERY bytes (in a thread).
FLUSH_EVERY = 64 * 1024 * 1024
F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
STDERR_TAIL = 4000
# How long the read-back of a sink's file waits for its writer to add more.
FOLLOW_POLL = 0.01
# Errors a tool reports (in the C locale) when it cannot write a sink's file: they are the sink's failure.
SINK_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO, errno.EROFS)

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
    """One process of a pipeline.

    ``sequential`` says that the program writes its standard output front to
    back and never seeks in it (zstd, gzip, age do; pg_dump -Fc rewrites its
    table of contents when its output is a file). Only such a last stage may
    write straight into a sink's file (see ``run_to_sink``).

    ``stderr_path`` keeps the stage's whole error output in that (new) file
    instead of an anonymous one, for an engine that reads a tool's log after a
    run that succeeded (the tail is still what a PipelineError carries).
    """

    def __init__(self, name, argv, env=None, cwd=None, pass_fds=(), sequential=False, stderr_path=None):
        self.name = name
        self.argv = [str(a) for a in argv]
        self.env = env
        self.cwd = cwd
        self.pass_fds = tuple(pass_fds or ())
        self.sequential = sequential
        self.stderr_path = stderr_path

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
        return [Stage("zstd", argv, sequential=True)]
    if algorithm == "gzip":
        argv = [binary, "-c"]
        if os.path.basename(binary) == "pigz" and threads:
            argv += ["-p", str(int(threads))]
        if level is not None:
            argv.append("-%d" % int(level))
        return [Stage(os.path.basename(binary), argv, sequential=True)]
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
    return [Stage("age", argv, sequential=True)]


def decrypt_stages(binary, identity_file, pass_fds=()):
    """Decryption reads the identity from a file (a memfd ``/dev/fd/N`` handed over in ``pass_fds``): never argv."""
    if not identity_file:
        return []
    return [Stage("age", [binary, "--decrypt", "-i", identity_file], pass_fds=pass_fds)]


def _tail(handle):
    handle.flush()
    handle.seek(0, os.SEEK_END)
    size = handle.tell()
    handle.seek(max(0, size - STDERR_TAIL))
    return handle.read().decode("utf-8", "replace").strip()


def _is_sigpipe(returncode):
    return returncode in (-signal.SIGPIPE, 128 + signal.SIGPIPE)


def _real_fd(source):
    """The descriptor of ``source`` if it is a real file or pipe, else None."""
    if source is None:
        return None
    try:
        fd = source.fileno()
    except (AttributeError, OSError, ValueError):
        return None
    return fd if isinstance(fd, int) and fd >= 0 else None


class _Pump(threading.Thread):
    """Feeds a reader without a descriptor (an S3 stream) into the first stage's stdin."""

    def __init__(self, reader, fd, chunk=CHUNK):
        super(_Pump, self).__init__(name="lifeboat-pump")
        self.daemon = True
        self.reader = reader
        self.fd = fd
        self.chunk = chunk
        self.error = None
        self.stop = False

    def run(self):
        try:
            while not self.stop:
                block = self.reader.read(self.chunk)
                if not block:
                    break
                view = memoryview(block)
                while view:
                    view = view[os.write(self.fd, view):]
        except BrokenPipeError:
            pass  # the stage stopped reading; its own exit status tells why
        except Exception as exc:  # pylint: disable=broad-except
            self.error = exc
        finally:
            os.close(self.fd)


class _Running(object):
    """Started processes of one pipeline, with their stderr captured to temp files."""

    def __init__(self, stages, stdin, env, runner=None, stdout=None):
        runner = runner or Runner()
        self.stages = stages
        self.procs = []
        self.errs = []
        self.stderr = None
        self.pump = None
        previous = stdin
        if stdin is not None and _real_fd(stdin) is None:
            read_end, write_end = os.pipe()
            self.pump = _Pump(stdin, write_end)
            previous = read_end
        try:
            for index, stage in enumerate(stages):
                err = open(stage.stderr_path, "w+b") if stage.stderr_path else tempfile.TemporaryFile()
                self.errs.append(err)
                stage_env = dict(env or os.environ)
                stage_env.update(stage.env or {})
                last = index == len(stages) - 1
                proc = runner.popen(
                    stage.argv,
                    stdin=previous,
                    stdout=stdout if last and stdout is not None else subprocess.PIPE,
                    stderr=err,
                    env=stage_env,
                    cwd=stage.cwd,
                    pass_fds=stage.pass_fds,
                )
                if index > 0:
                    # The previous stage now writes only to this one: drop our copy of
                    # the pipe so that it sees SIGPIPE if this stage dies.
                    self.procs[-1].stdout.close()
                elif self.pump is not None:
                    os.close(read_end)
                    self.pump.start()
                self.procs.append(proc)
                previous = proc.stdout
        except (OSError, CommandError) as exc:
            if self.pump is not None and not self.pump.is_alive():
                os.close(write_end)
                if not self.procs:
                    os.close(read_end)
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
        if self.pump is not None and self.pump.is_alive():
            self.pump.stop = True
            self.pump.join()

    def close(self):
        """Keep the end of each stage's stderr and drop the temp files."""
        if self.stderr is None:
            self.stderr = [_tail(err) for err in self.errs]
            for err in self.errs:
                err.close()

    def exited(self):
        """Exit status of each stage that has already ended (None for one still running)."""
        return [proc.poll() for proc in self.procs]

    def check(self, returncodes=None):
        """Collect each stage's stderr; raise PipelineError for the root-cause failure.

        ``returncodes`` (from ``exited()``) judges the stages as they were then;
        a stage still running at that moment counts as sound.
        """
        self.close()
        codes = returncodes if returncodes is not None else [proc.returncode for proc in self.procs]
        failed = [index for index, code in enumerate(codes) if code not in (0, None)]
        if not failed and self.pump is not None and self.pump.error is not None:
            raise PipelineError("Reading the stored payload failed: %s" % self.pump.error, stage="store")
        if not failed:
            return
        # A stage killed by SIGPIPE only lost its reader: blame the first other failure.
        real = [index for index in failed if not _is_sigpipe(codes[index])] or failed
        index = real[0]
        stage, stderr = self.stages[index], self.stderr[index]
        raise PipelineError(
            "%s failed (exit status %s)%s" % (
                stage.name, codes[index], (": " + stderr.splitlines()[-1]) if stderr else "."),
            stage=stage.name,
            returncode=codes[index],
            stderr=stderr,
        )


def _write_all(sink, view):
    """Write all of ``view``; a raw (unbuffered) file may take it in parts."""
    while view:
        written = sink.write(view)
        if written is None or written >= len(view):
            return
        view = view[written:]


def run_to_sink(stages, sink, stdin=None, env=None, chunk=CHUNK, runner=None):
    """Run ``stages`` and write the last stage's stdout to ``sink``.

    ``sink`` is anything with ``write(bytes-like)``: a store's sink (which owns
    its durability in its ``close``, called by the caller) or a scratch file.
    ``stdin`` may be a file with a descriptor or any binary reader (a store
    payload streamed from S3). Returns ``(size, sha256_hex)`` of the bytes
    written. Raises PipelineError if any stage fails, SinkError if writing
    fails; in both cases all processes are stopped before it returns. One
    preallocated buffer carries every block: memory stays flat whatever the size.

    When the last stage is ``sequential`` and the sink has a ``fileno()`` that
    is a regular file open for reading and writing, with nothing after its
    current position, the last stage writes that file itself: no byte passes
    through this process on its way in. The bytes are read back from the page
    cache behind the writer for the SHA-256, and ``sink.note_written(count)``
    (when the sink has it) hears of each block, so that the sink can keep its
    own write-back going. A write error the tool reports (no space, quota,
    I/O) is raised as SinkError, as for a sink written from here.
    """
    if not stages:
        raise LifeboatError("A pipeline needs at least one stage.")
    fd = _direct_fd(sink) if stages[-1].sequential else None
    if fd is not None:
        return _run_to_file(stages, sink, fd, stdin, env, chunk, runner)
    running = _Running(stages, stdin, env, runner)
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
    try:
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
            except OSError as exc:
                raise SinkError(str(exc), os_error=exc)
            finally:
                block.release()
        try:
            flush = getattr(sink, "flush", None)
            if flush is not None:
                flush()
        except OSError as exc:
            raise SinkError(str(exc), os_error=exc)
    except BaseException:
        # Whatever stopped the copy (a full disk, an interrupt), no stage may outlive it.
        running.kill()
        running.close()
        raise
    finally:
        view.release()
    running.wait()
    running.check()
    return size, digest.hexdigest()


def _direct_fd(sink):
    """The descriptor the last stage may write to directly, or None (then the bytes are copied through here).

    Only a regular file, open for reading and writing, whose current position
    is its end qualifies: what the tool appends is then exactly the payload, and
    can be read back. A buffered sink is flushed first.
    """
    fileno = getattr(sink, "fileno", None)
    if fileno is None:
        return None
    try:
        flush = getattr(sink, "flush", None)
        if flush is not None:
            flush()
        fd = fileno()
        if not isinstance(fd, int) or isinstance(fd, bool) or fd < 0:
            return None
        st = os.fstat(fd)
        writable = fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_RDWR
        at_end = os.lseek(fd, 0, os.SEEK_CUR) == st.st_size
    except Exception:  # pylint: disable=broad-except
        return None  # a sink that cannot say has no descriptor for us: copy through this process
    if not stat.S_ISREG(st.st_mode) or not writable or not at_end:
        return None
    return fd


def _run_to_file(stages, sink, fd, stdin, env, chunk, runner):
    """run_to_sink when the last stage writes the sink's file ``fd`` itself: follow it and hash what it wrote."""
    start = os.lseek(fd, 0, os.SEEK_CUR)
    note = getattr(sink, "note_written", None)
    running = _Running(stages, stdin, env, runner, stdout=fd)
    last = running.procs[-1]
    digest = hashlib.sha256()
    pos = start
    buffer = bytearray(chunk)
    view = memoryview(buffer)
    try:
        while True:
            finished = last.poll() is not None
            end = os.fstat(fd).st_size
            while pos < end:
                count = os.preadv(fd, [view[:min(chunk, end - pos)]], pos)
                if not count:
                    break
                digest.update(view[:count])
                pos += count
                if note is not None:
                    note(count)
            if finished:
                break
            time.sleep(FOLLOW_POLL)
        running.wait()
        final = os.lseek(fd, 0, os.SEEK_CUR)
        if final != pos or os.fstat(fd).st_size != pos:
            # The tool did not write front to back after all: hash what the file holds now.
            digest, pos = _hash_range(fd, start, view, chunk)
            os.lseek(fd, pos, os.SEEK_SET)
    except OSError as exc:
        running.kill()
        running.close()
        raise SinkError(str(exc), os_error=exc)
    except BaseException:
        running.kill()
        running.close()
        raise
    finally:
        view.release()
    try:
        running.check()
    except PipelineError as exc:
        error = _write_error(exc, stages[-1])
        if error is not None:
            raise SinkError(str(error), os_error=error)
        raise
    seek = getattr(sink, "seek", None)
    if seek is not None:
        try:
            seek(pos)  # a buffered file object learns where its descriptor now is
        except (OSError, ValueError):
            pass
    return pos - start, digest.hexdigest()


def _hash_range(fd, start, view, chunk):
    digest = hashlib.sha256()
    pos = start
    while True:
        count = os.preadv(fd, [view[:chunk]], pos)
        if not count:
            return digest, pos
        digest.update(view[:count])
        pos += count


def _write_error(exc, last):
    """The OSError behind a failure of the last stage that could not write the sink's file, or None."""
    if exc.stage != last.name or not exc.stderr:
        return None
    text = exc.stderr.lower()
    for number in SINK_ERRNOS:
        if os.strerror(number).lower() in text:
            return OSError(number, os.strerror(number))
    return None


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


def run_to_consumer(stages, consume, stdin=None, env=None, stop=None):
    """Hand the last stage's stdout (a binary file object) to ``consume`` and return what it returns.

    This is how Python reads a decoded stream itself (a tar checked member by
    member, for instance). What ``consume`` leaves unread is read and dropped,
    so that no stage dies of a closed pipe; then every stage's exit status is
    checked. If ``stop(result)`` is true the consumer stopped early on purpose
    (it needed only the head of the stream): the stages are stopped instead and
    their exit status is not judged. If ``consume`` raises, the stages are
    stopped; a stage that had already failed by then is the root cause and is
    raised instead (an age identity that matches no recipient, rather than
    "not a tar archive").
    """
    if not stages:
        raise LifeboatError("A pipeline needs at least one stage.")
    running = _Running(stages, stdin, env)
    try:
        result = consume(running.stdout)
        if stop is not None and stop(result):
            running.kill()
            running.close()
            return result
        while running.stdout.read(CHUNK):
            pass
    except BaseException:
        before = running.exited()
        running.kill()
        running.check(before)
        raise
    running.wait()
    running.check()
    return result


def describe(stages):
    """The argv lists of a pipeline, for results (they never hold secrets)."""
    return [list(stage.argv) for stage in stages]


def pump(stages, source, consume, env=None, chunk=CHUNK):
    """Feed the open file ``source`` through ``stages`` and hand their output to ``consume``.

    ``consume(block)`` gets the bytes in bounded blocks, in order; it returns
    False to stop reading early (a consumer that needs only the head of the
    stream), and then the stages are stopped and their exit status is not
    judged. Without stages the source itself is read. Raises PipelineError if
    a stage fails; whatever ``consume`` raises stops every stage first (see
    ``run_to_consumer``, whose loop this is). Returns True if the whole stream
    was consumed.
    """

    def blocks(stream):
        read = getattr(stream, "read1", None) or stream.read  # a block as soon as there is one
        while True:
            try:
                block = read(chunk)
            except OSError as exc:
                if not stages:
                    raise
                raise PipelineError("Reading the output of %s failed: %s." % (stages[-1].name, exc.strerror or exc),
                                    stage=stages[-1].name)
            if not block:
                return True
            if consume(block) is False:
                return False

    if not stages:
        # Any reader: a store payload need not have a descriptor (an S3 stream has none).
        return blocks(source)
    return run_to_consumer(stages, blocks, stdin=source, env=env, stop=lambda whole: not whole)
