# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils is PRIVATE to this collection. It may change without notice.

"""The WAL archive: PostgreSQL's ``archive_command`` and ``restore_command``.

PostgreSQL runs these commands itself, as the cluster's OS user, outside
Ansible. ``install`` writes a self-contained program (a Python zip
application holding this collection's module_utils) and its settings file
(JSON, mode 0600, owned by the cluster's OS user: the store options may hold
secrets, which never reach argv) into one directory on the managed host, and
returns the argv prefix that runs it::

    archive_command = '<prefix> push %p %f'
    restore_command = '<prefix> fetch %f %p'

Objects (docs/pitr.md): every file PostgreSQL archives (a segment, a
``.history``, a ``.backup``, a ``.partial``) becomes the object
``wal/<file name><codec suffix>`` in the object namespace of the store, host
and source of the base backups (``.zst``, ``.gz``, ``.age``: the suffix
names the codec). An encrypted file also gets ``wal/<file name>.sha256``,
the SHA-256 of its plain bytes in hex, written first: age output differs on
every run, so this is how a retry knows it is pushing the same bytes (and
fetch checks it). With a signing key in the settings, each file also gets
``wal/<file name>.sig``: the armored ``ssh-keygen -Y sign`` signature, under
the namespace ``lifeboat.backup/wal@v1``, of ``signed_statement`` (host,
source, file name and the SHA-256 of the plain bytes), written before the file
with put-if-absent; fetch with ``trusted_signers`` in its settings refuses a
file whose signature is missing, untrusted or does not match the bytes. All
sort next to their file, so retention prunes them together;
``parse_object_name`` tells archived files from the rest.

push keeps PostgreSQL's contract: exit status 0 only once the file is
durable in the store; never overwrite an object with different content, and
succeed when the same content is already there (a retry is safe); a
half-written object is never visible (the store's ``put_object`` is atomic).
fetch exits 1 when the file is not archived (PostgreSQL's normal end of the
archive) and 255 on any other failure (store unreachable, corrupt or
undecryptable object), which makes PostgreSQL stop recovery instead of
ending it early at the wrong point.
"""

from __future__ import annotations

import hashlib
import importlib
import io
import json
import os
import re
import stat
import sys
import tempfile

from ansible_collections.lifeboat.backup.plugins.module_utils._common import LifeboatError, SecretFile
from ansible_collections.lifeboat.backup.plugins.module_utils import _pipeline
from ansible_collections.lifeboat.backup.plugins.module_utils import _stores
from ansible_collections.lifeboat.backup.plugins.module_utils._runner import Runner

PACKAGE = "ansible_collections.lifeboat.backup.plugins.module_utils"
OBJECT_PREFIX = "wal/"
DIGEST_SUFFIX = ".sha256"
SIGNATURE_SUFFIX = ".sig"
# Not the manifests' namespace: a set's signature can never pass as a WAL file's, nor the reverse.
SIGNATURE_NAMESPACE = "lifeboat.backup/wal@v1"
MAX_SIGNATURE_OBJECT = 8192
PROBE_OBJECT = "wal-probe"
PROBE_CONTENT = b"lifeboat.backup archive command probe\n"
PROGRAM_NAME = "lifeboat-wal"
SETTINGS_NAME = "lifeboat-wal.json"
SETTINGS_VERSION = 1
# What PostgreSQL archives: segments, timeline history, backup history, partial segments.
WAL_NAME_RE = re.compile(r"^(?:[0-9A-F]{24}(?:\.partial|\.[0-9A-F]{8}\.backup)?|[0-9A-F]{8}\.history)\Z")
SEGMENT_RE = re.compile(r"^[0-9A-F]{24}\Z")
COMPRESSIONS = ("zstd", "gzip", "none")
# The tools the command may run, found (and recorded in its settings) when it is installed.
TOOLS = ("zstd", "gzip", "age", "ssh-keygen")
# Compressed objects are kept in memory up to this size, then spill to a temporary file.
SPOOL_BYTES = 64 * 1024 * 1024

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_NOT_ARCHIVED = 1
# restore_command: an exit status above 125 makes PostgreSQL stop recovery rather than take it as "not archived".
EXIT_FATAL = 255


class WalError(LifeboatError):
    """The archive command failed."""


class NotArchived(WalError):
    """The asked-for file is not in the archive."""


def check_wal_name(name):
    if not isinstance(name, str) or not WAL_NAME_RE.match(name):
        raise WalError("%r is not the name of a WAL file (a segment, .history, .backup or .partial file)."
                       % _stores.escape(name, 80))
    return name


def codec_suffix(compression, encrypted):
    return _pipeline.payload_suffix(compression, encrypted)


def object_name(file_name, compression, encrypted):
    return OBJECT_PREFIX + check_wal_name(file_name) + codec_suffix(compression, encrypted)


def parse_object_name(name):
    """``(file name, compression, encrypted)`` of an archive object name, or None if it is not one."""
    if not name.startswith(OBJECT_PREFIX):
        return None
    rest = name[len(OBJECT_PREFIX):]
    encrypted = rest.endswith(_pipeline.ENCRYPTION_SUFFIX)
    if encrypted:
        rest = rest[:-len(_pipeline.ENCRYPTION_SUFFIX)]
    compression = "none"
    for algorithm, suffix in _pipeline.COMPRESSION_SUFFIX.items():
        if suffix and rest.endswith(suffix):
            compression = algorithm
            rest = rest[:-len(suffix)]
            break
    if not WAL_NAME_RE.match(rest):
        return None
    return rest, compression, encrypted


def archived_files(store, host, source):
    """What the archive of ``host/source`` holds: {file name: [object names]} (one, unless the codec changed)."""
    found = {}
    for name in store.list_objects(host, source, OBJECT_PREFIX):
        parsed = parse_object_name(name)
        if parsed is not None:
            found.setdefault(parsed[0], []).append(name)
    return found


def segment_number(name, segment_size=16 * 1024 * 1024):
    """(timeline, absolute segment number) of a 24-hex segment name."""
    per_id = 0x100000000 // segment_size
    return int(name[:8], 16), int(name[8:16], 16) * per_id + int(name[16:24], 16)


def segment_name(timeline, number, segment_size=16 * 1024 * 1024):
    per_id = 0x100000000 // segment_size
    return "%08X%08X%08X" % (timeline, number // per_id, number % per_id)


def signed_statement(host, source, file_name, sha256_hex):
    """The bytes a WAL file's signature covers: where it is archived, its name and its plain SHA-256.

    Naming host, source and file means a genuine signature cannot vouch for the
    same bytes under another name or in another source.
    """
    return ("lifeboat.backup WAL file\nhost %s\nsource %s\nfile %s\nsha256 %s\n"
            % (host, source, file_name, sha256_hex)).encode("utf-8")


def _read_signature(store, host, source, file_name):
    """The armored signature object of ``file_name`` (bounded), or None when there is none."""
    try:
        with store.open_object(host, source, OBJECT_PREFIX + file_name + SIGNATURE_SUFFIX) as handle:
            raw = handle.read(MAX_SIGNATURE_OBJECT + 1)
    except FileNotFoundError:
        return None
    # One byte past the bound is enough for verify_bytes to refuse it as longer than any signature.
    return raw.decode("ascii", "replace")


# ------------------------------------------------------------------ settings

class Settings(object):
    """What the command needs: the store, where in it, the codec and the tools (from the settings file)."""

    def __init__(self, store, host, source, compression="zstd", level=None, threads=1, recipients=None,
                 tools=None, identity=None, identity_file=None, sign_key=None, trusted_signers=None):
        if not isinstance(store, dict) or not store.get("kind"):
            raise WalError("The archive settings name no store.")
        if compression not in COMPRESSIONS:
            raise WalError("compression must be one of %s, not %r." % (", ".join(COMPRESSIONS), compression))
        self.store = dict((k, v) for k, v in store.items() if v is not None)
        self.host = host
        self.source = source
        self.compression = compression
        self.level = level
        self.threads = int(threads or 0)
        self.recipients = [r.strip() for r in (recipients or []) if r and r.strip()]
        self.tools = dict(tools or {})
        self.identity = identity
        self.identity_file = identity_file
        # The private key text (push) and the allowed_signers lines (fetch); the file is 0600, never argv.
        self.sign_key = sign_key or None
        self.trusted_signers = list(trusted_signers or []) or None

    @property
    def encrypted(self):
        return bool(self.recipients)

    def suffix(self):
        return codec_suffix(self.compression, self.encrypted)

    def to_dict(self):
        return dict(version=SETTINGS_VERSION, store=self.store, host=self.host, source=self.source,
                    compression=self.compression, level=self.level, threads=self.threads,
                    recipients=self.recipients, tools=self.tools, identity=self.identity,
                    identity_file=self.identity_file, sign_key=self.sign_key, trusted_signers=self.trusted_signers)

    @classmethod
    def from_dict(cls, data):
        if not isinstance(data, dict) or data.get("version") != SETTINGS_VERSION:
            raise WalError("The archive settings file is not version %d; run postgresql_wal_archive again."
                           % SETTINGS_VERSION)
        return cls(data.get("store"), data.get("host"), data.get("source"), data.get("compression", "zstd"),
                   data.get("level"), data.get("threads", 1), data.get("recipients"), data.get("tools"),
                   data.get("identity"), data.get("identity_file"), data.get("sign_key"),
                   data.get("trusted_signers"))

    @classmethod
    def load(cls, path):
        try:
            with open(path, "rb") as handle:
                raw = handle.read(1024 * 1024 + 1)
        except OSError as exc:
            raise WalError(_stores.describe_os_error(exc, "The archive settings file %s" % path))
        if len(raw) > 1024 * 1024:
            raise WalError("The archive settings file %s is larger than 1 MiB; it is not ours." % path)
        try:
            data = json.loads(raw.decode("utf-8"))
        except ValueError:
            raise WalError("The archive settings file %s is not valid JSON." % path)
        return cls.from_dict(data)

    def tool(self, name, package, runner):
        path = self.tools.get(name)
        if path and os.access(path, os.X_OK):
            return path
        return runner.find(name, package)

    def signer(self, runner):
        """The Signer of ``sign_key``, or None (checked by ssh-keygen when installed; not run again per file)."""
        if not self.sign_key:
            return None
        from ansible_collections.lifeboat.backup.plugins.module_utils import _codec  # pylint: disable=import-outside-toplevel
        return _codec.signer_from_text(self.sign_key, runner, self.tool("ssh-keygen", "openssh-client", runner))

    def trust(self, runner):
        """The TrustedSigners of ``trusted_signers``, or None (ssh-keygen as found when installed)."""
        if not self.trusted_signers:
            return None
        from ansible_collections.lifeboat.backup.plugins.module_utils import _codec  # pylint: disable=import-outside-toplevel
        return _codec.TrustedSigners(self.trusted_signers, _ToolRunner(runner, self))

    def encode_stages(self, runner):
        stages = []
        if self.compression == "zstd":
            stages += _pipeline.compress_stages("zstd", self.tool("zstd", "zstd", runner), self.level, self.threads)
        elif self.compression == "gzip":
            stages += _pipeline.compress_stages("gzip", self.tool("gzip", "gzip", runner), self.level)
        if self.recipients:
            stages += _pipeline.encrypt_stages(self.tool("age", "age", runner), self.recipients)
        return stages


class _ToolRunner(object):
    """A runner whose ``find`` prefers the tools recorded in the settings (PostgreSQL's PATH may be short)."""

    def __init__(self, runner, settings):
        self._runner = runner
        self._settings = settings

    def find(self, name, package=None):
        return self._settings.tool(name, package, self._runner)

    def __getattr__(self, attr):
        return getattr(self._runner, attr)


def open_store(settings, runner=None):
    """The store of ``settings``, importing only its own kind (the command starts once per file)."""
    kind = settings.store.get("kind")
    if not isinstance(kind, str) or not re.match(r"^[a-z0-9]{1,20}\Z", kind):
        raise WalError("The archive settings name no store kind.")
    try:
        importlib.import_module("%s._store_%s" % (PACKAGE, kind))
    except ImportError:
        pass  # get_kind names the kinds there are
    try:
        return _stores.get_kind(kind).factory(settings.store, runner or Runner())
    except LifeboatError as exc:
        # _aws is loaded by the s3 store only (importing it here would import boto3 on every push).
        aws = sys.modules.get(PACKAGE + "._aws")
        if aws is None or not isinstance(exc, aws.MissingLibraryError):
            raise
        library = exc.library
        # The command runs as the cluster's OS user with the interpreter it was installed with, not Ansible's.
        raise WalError("The %s store needs the Python library %s, which %s (the interpreter of the archive "
                       "command) cannot import; install python3-boto3 and python3-botocore there, or install "
                       "the command with an interpreter that has them." % (kind, library, sys.executable))


# ------------------------------------------------------------------ push

class _Spool(object):
    """A sink for the pipeline: memory first, a temporary file past SPOOL_BYTES (no descriptor offered)."""

    def __init__(self):
        self.file = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)

    def write(self, data):
        return self.file.write(data)


def _sha256_file(handle):
    digest = hashlib.sha256()
    handle.seek(0)
    while True:
        block = handle.read(_stores.CHUNK)
        if not block:
            break
        digest.update(block)
    handle.seek(0)
    return digest.hexdigest()


def _open_wal_file(path):
    try:
        # O_NONBLOCK: a FIFO in its place must not hang the archiver.
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise WalError(_stores.describe_os_error(exc, "WAL file %s" % path))
    handle = os.fdopen(fd, "rb")
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        handle.close()
        raise WalError("WAL file %s is not a regular file." % path)
    os.set_blocking(fd, True)
    return handle


def _decoded_sha256(store, settings, name, runner):
    """SHA-256 of the plain bytes of object ``name`` (decompressed), or None when it is encrypted."""
    parsed = parse_object_name(name)
    if parsed is None or parsed[2]:
        return None
    stages = []
    if parsed[1] != "none":
        binary = settings.tool("zstd" if parsed[1] == "zstd" else "gzip", parsed[1], runner)
        stages = _pipeline.decompress_stages(parsed[1], binary)
    digest = hashlib.sha256()

    def consume(block):
        digest.update(block)

    with store.open_object(settings.host, settings.source, name) as handle:
        _pipeline.pump(stages, handle, consume)
    return digest.hexdigest()


def push(store, settings, path, file_name, runner=None):
    """Archive WAL file ``path`` (PostgreSQL's %p) as ``file_name`` (%f); return "created" or "identical".

    Raises WalError (one sentence) on any failure, including an object of that
    name with different content.
    """
    runner = runner or Runner()
    check_wal_name(file_name)
    name = OBJECT_PREFIX + file_name + settings.suffix()
    host, source = settings.host, settings.source
    with _open_wal_file(path) as wal:
        stages = settings.encode_stages(runner)
        signer = settings.signer(runner)
        plain_digest = _sha256_file(wal) if settings.encrypted or signer is not None else None
        if settings.encrypted:
            # Written first: it is what tells a retry that the bytes are the same (age output never is).
            try:
                store.put_object(host, source, OBJECT_PREFIX + file_name + DIGEST_SUFFIX,
                                 io.BytesIO(plain_digest.encode("ascii") + b"\n"))
            except _stores.ObjectExistsError:
                raise WalError("WAL file %s was already archived in %s/%s with different content; it is never "
                               "overwritten (is another cluster archiving into the same source?)."
                               % (file_name, host, source))
        if signer is not None:
            # Before the file, like the digest: a visible file always has its signature (ed25519 signatures
            # are deterministic, so a retry puts the same bytes).
            value = signer.sign_bytes(signed_statement(host, source, file_name, plain_digest), SIGNATURE_NAMESPACE,
                                      "WAL file %s" % file_name)
            try:
                store.put_object(host, source, OBJECT_PREFIX + file_name + SIGNATURE_SUFFIX,
                                 io.BytesIO(value.encode("ascii")))
            except _stores.ObjectExistsError:
                raise WalError("WAL file %s was already archived in %s/%s with different content or signed by another "
                               "key; neither is ever overwritten (is another cluster archiving into the same source, "
                               "or did the signing key change?)." % (file_name, host, source))
        try:
            if stages:
                spool = _Spool()
                try:
                    _pipeline.run_to_sink(stages, spool, stdin=wal, runner=runner)
                    spool.file.seek(0)
                    outcome = store.put_object(host, source, name, spool.file)
                finally:
                    spool.file.close()
            else:
                outcome = store.put_object(host, source, name, wal)
        except _stores.ObjectExistsError:
            if settings.encrypted:
                return "identical"  # the digest object matched: the same bytes, encrypted again
            if _decoded_sha256(store, settings, name, runner) == _sha256_file(wal):
                return "identical"  # the same bytes, compressed differently (another zstd version)
            raise WalError("WAL file %s was already archived in %s/%s with different content; it is never "
                           "overwritten (is another cluster archiving into the same source?)."
                           % (file_name, host, source))
    return outcome


# ------------------------------------------------------------------ fetch

def _candidates(settings, file_name):
    """Object names ``file_name`` may have, the configured codec first."""
    names = [OBJECT_PREFIX + file_name + settings.suffix()]
    for encrypted in (False, True):
        for compression in COMPRESSIONS:
            candidate = OBJECT_PREFIX + file_name + codec_suffix(compression, encrypted)
            if candidate not in names:
                names.append(candidate)
    return names


def _decode_stages(settings, compression, encrypted, identity_path, pass_fds, runner):
    stages = []
    if encrypted:
        if not identity_path:
            raise WalError("The archived WAL is encrypted with age; install the restore command with age_identity "
                           "or age_identity_file.")
        stages += _pipeline.decrypt_stages(settings.tool("age", "age", runner), identity_path, pass_fds=pass_fds)
    if compression != "none":
        stages += _pipeline.decompress_stages(
            compression, settings.tool("zstd" if compression == "zstd" else "gzip", compression, runner))
    return stages


def fetch(store, settings, file_name, dest, runner=None):
    """Restore archived ``file_name`` (%f) to ``dest`` (%p); return the object name read.

    Raises NotArchived when no object holds it, WalError on any other failure.
    ``dest`` appears only once complete (written beside it, then renamed).
    """
    runner = runner or Runner()
    check_wal_name(file_name)
    host, source = settings.host, settings.source
    for name in _candidates(settings, file_name):
        try:
            handle = store.open_object(host, source, name)
        except FileNotFoundError:
            continue
        break
    else:
        # PostgreSQL asks for files past the end of the archive: this is its normal end of recovery.
        raise NotArchived("WAL file %s is not in the archive of %s/%s." % (file_name, host, source))
    dummy, compression, encrypted = parse_object_name(name)
    expected = None
    if encrypted:
        try:
            with store.open_object(host, source, OBJECT_PREFIX + file_name + DIGEST_SUFFIX) as digest_handle:
                expected = digest_handle.read(200).decode("ascii", "replace").strip()
        except FileNotFoundError:
            expected = None
    directory = os.path.dirname(os.path.abspath(dest))
    trust = settings.trust(runner)
    secret = None
    identity_path = settings.identity_file
    try:
        if encrypted and settings.identity and not identity_path:
            secret = SecretFile(settings.identity.strip() + "\n", "lifeboat-age-").open()
            identity_path = secret.path
        stages = _decode_stages(settings, compression, encrypted, identity_path,
                                secret.pass_fds if secret is not None else (), runner)
        fd, tmp = tempfile.mkstemp(prefix=".lifeboat-wal-", dir=directory)
        try:
            with os.fdopen(fd, "wb") as out:
                with handle:
                    if stages:
                        dummy2, digest = _run_decode(stages, handle, out, runner)
                    else:
                        digest = _copy(handle, out)
            # digest: the SHA-256 of exactly the bytes written to tmp (the decode's sink, or the plain copy)
            if expected is not None and expected != digest:
                raise WalError("Archived WAL file %s does not match its recorded SHA-256; it is corrupt." % file_name)
            if trust is not None:
                trust.verify_bytes(signed_statement(host, source, file_name, digest),
                                   _read_signature(store, host, source, file_name), host, SIGNATURE_NAMESPACE,
                                   "Archived WAL file %s" % file_name)
            os.rename(tmp, dest)
            tmp = None
        finally:
            if tmp is not None:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass
    except _pipeline.PipelineError as exc:
        detail = (exc.stderr or "").strip().splitlines()
        raise WalError("Decoding archived WAL file %s (%s) failed: %s" % (
            file_name, name, detail[-1] if detail else "%s exited with status %s." % (exc.stage, exc.returncode)))
    except OSError as exc:
        raise WalError(_stores.describe_os_error(exc, "WAL destination %s" % dest))
    finally:
        if secret is not None:
            secret.close()
    return name


def _run_decode(stages, handle, out, runner):
    class _Out(object):
        def write(self, data):
            return out.write(data)

    return _pipeline.run_to_sink(stages, _Out(), stdin=handle, runner=runner)


def _copy(handle, out):
    digest = hashlib.sha256()
    while True:
        block = handle.read(_stores.CHUNK)
        if not block:
            break
        digest.update(block)
        out.write(block)
    return digest.hexdigest()


def probe(store, settings):
    """Prove that this user may write the archive: put a constant object (a retry finds it identical)."""
    store.put_object(settings.host, settings.source, PROBE_OBJECT, io.BytesIO(PROBE_CONTENT))
    signer = settings.signer(Runner())
    if signer is not None:
        signer.sign_bytes(PROBE_CONTENT, SIGNATURE_NAMESPACE, "the probe")  # ssh-keygen runs as this user
    store.list_objects(settings.host, settings.source, OBJECT_PREFIX)


# ------------------------------------------------------------------ the command

USAGE = ("usage: %s SETTINGS push WAL_PATH WAL_NAME | SETTINGS fetch WAL_NAME DEST_PATH | SETTINGS probe"
         % PROGRAM_NAME)


def main(argv=None, store=None):
    """The command PostgreSQL runs. Returns the exit status; one sentence on stderr on failure."""
    argv = list(sys.argv[1:] if argv is None else argv)
    verbs = {"push": 4, "fetch": 4, "probe": 2}
    if len(argv) < 2 or verbs.get(argv[1]) != len(argv):
        sys.stderr.write(USAGE + "\n")
        return EXIT_FATAL if len(argv) > 1 and argv[1] == "fetch" else EXIT_FAILED
    verb = argv[1]
    failed = EXIT_FATAL if verb == "fetch" else EXIT_FAILED
    try:
        settings = Settings.load(argv[0])
        store = store if store is not None else open_store(settings)
        if verb == "push":
            push(store, settings, argv[2], argv[3])
        elif verb == "fetch":
            fetch(store, settings, argv[2], argv[3])
        else:
            probe(store, settings)
    except NotArchived as exc:
        sys.stderr.write("lifeboat-wal: %s\n" % exc)
        return EXIT_NOT_ARCHIVED
    except LifeboatError as exc:
        sys.stderr.write("lifeboat-wal: %s\n" % exc)
        return failed
    except OSError as exc:
        sys.stderr.write("lifeboat-wal: %s\n" % _stores.describe_os_error(exc, "the archive"))
        return failed
    except Exception as exc:  # pylint: disable=broad-except
        # One sentence, never a traceback: PostgreSQL logs stderr.
        sys.stderr.write("lifeboat-wal: %s failed: %s: %s\n" % (verb, type(exc).__name__, _stores.escape(exc, 300)))
        return failed
    return EXIT_OK


# ------------------------------------------------------------------ install

MAIN_PY = (b"import sys\n"
           b"from ansible_collections.lifeboat.backup.plugins.module_utils import _wal\n"
           b"sys.exit(_wal.main(sys.argv[1:]))\n")


def bundle(modules=None):
    """The command's files: {relative path: bytes}, this collection's loaded module_utils and ``__main__.py``.

    Installed as a directory that Python runs (``python -I DIR``): Python keeps
    compiled copies in its ``__pycache__`` (the directory belongs to the user
    who runs it), so each run starts without compiling the code again.
    """
    if modules is None:
        # Every store kind, whatever the caller imported: the command opens the kind its settings name.
        from ansible_collections.lifeboat.backup.plugins.module_utils import _store_kinds  # noqa: F401  pylint: disable=unused-import,import-outside-toplevel
        prefix = PACKAGE + "."
        modules = sorted(set(n[len(prefix):] for n in list(sys.modules)
                             if n.startswith(prefix) and "." not in n[len(prefix):]) | set(["_wal", "_codec"]))
    files = {"__main__.py": MAIN_PY}
    parts = PACKAGE.split(".")
    for depth in range(1, len(parts) + 1):
        files["/".join(parts[:depth]) + "/__init__.py"] = b""
    for name in modules:
        files["/".join(parts) + "/" + name + ".py"] = _module_source(name)
    return files


def _module_source(name):
    import pkgutil
    try:
        data = pkgutil.get_data(PACKAGE, name + ".py")
    except (OSError, ValueError):
        data = None
    if not data:
        # A namespace package (no __init__.py) has no file of its own: ask the module's own loader.
        module = sys.modules.get(PACKAGE + "." + name) or importlib.import_module(PACKAGE + "." + name)
        loader, path = getattr(module, "__loader__", None), getattr(module, "__file__", None)
        try:
            data = loader.get_data(path) if loader is not None and path else None
        except (OSError, AttributeError):
            data = None
    if not data:
        raise WalError("The collection's %s.py is missing; cannot build the archive command." % name)
    return data


def _write_file(path, data, mode, uid, gid, check_mode):
    """Write ``data`` to ``path`` atomically with this mode and owner; True if anything changed."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        st = None
    if st is not None and not stat.S_ISREG(st.st_mode):
        raise WalError("%s exists and is not a regular file; remove it or choose another directory." % path)
    if st is not None and stat.S_IMODE(st.st_mode) == mode and (uid is None or st.st_uid == uid) and \
            (gid is None or st.st_gid == gid):
        with open(path, "rb") as handle:
            if handle.read(len(data) + 1) == data:
                return False
    if check_mode:
        return True
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", dir=os.path.dirname(path))
    try:
        os.fchmod(fd, mode)
        if uid is not None or gid is not None:
            os.fchown(fd, -1 if uid is None else uid, -1 if gid is None else gid)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.rename(tmp, path)
        tmp = None
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
    dir_fd = os.open(os.path.dirname(path), os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return True


def _ensure_directory(directory, uid, gid, check_mode, mode=0o700):
    try:
        st = os.lstat(directory)
    except FileNotFoundError:
        st = None
    if st is not None and not stat.S_ISDIR(st.st_mode):
        raise WalError("%s exists and is not a directory." % directory)
    if st is not None and stat.S_IMODE(st.st_mode) == mode and (uid is None or st.st_uid == uid) and \
            (gid is None or st.st_gid == gid):
        return False
    if check_mode:
        return True
    if st is None:
        parent = os.path.dirname(directory)
        if not os.path.isdir(parent):
            os.makedirs(parent, 0o755)  # the cluster's OS user must be able to pass through
        os.mkdir(directory, mode)
    os.chmod(directory, mode)
    if uid is not None or gid is not None:
        os.chown(directory, -1 if uid is None else uid, -1 if gid is None else gid)
    return True


def install_command(directory, settings, python=None, uid=None, gid=None, check_mode=False, modules=None):
    """Install the program and its settings in ``directory``; return {argv, changed, program, settings}.

    ``directory`` is created 0700; both files belong to ``uid``/``gid`` (the
    cluster's OS user), the settings file is 0600.
    """
    if not os.path.isabs(directory):
        raise WalError("The archive command directory must be an absolute path, not %r." % directory)
    directory = os.path.normpath(directory)
    program = os.path.join(directory, PROGRAM_NAME)
    files = bundle(modules)
    settings_path = os.path.join(directory, SETTINGS_NAME)
    python = python or sys.executable
    data = json.dumps(settings.to_dict(), sort_keys=True, indent=1).encode("utf-8") + b"\n"
    try:
        changed = _ensure_directory(directory, uid, gid, check_mode)
        for path in sorted(files):
            target = os.path.join(program, *path.split("/"))
            parent = os.path.dirname(target)
            changed = _ensure_directory(parent, uid, gid, check_mode, 0o755) or changed
            if check_mode and not os.path.isdir(parent):
                changed = True
                continue
            changed = _write_file(target, files[path], 0o644, uid, gid, check_mode) or changed
        changed = _write_file(settings_path, data, 0o600, uid, gid, check_mode) or changed
    except OSError as exc:
        raise WalError(_stores.describe_os_error(exc, directory))
    return dict(argv=[python, "-I", program, settings_path], changed=changed, program=program,
                settings=settings_path)


def install(module, directory, store_params, host, source, compression="zstd", level=None, threads=1,
            recipients=None, identity=None, identity_file=None, python=None, uid=None, gid=None, sign_key=None,
            trusted_signers=None):
    """Install the command for ``host/source`` of ``store_params``; return its argv prefix.

    ``archive_command = prefix + ['push', '%p', '%f']``,
    ``restore_command = prefix + ['fetch', '%f', '%p']`` (quote with ``command_line``).
    """
    tools = {}
    for name in TOOLS:
        path = module.get_bin_path(name) if module is not None else None
        if path:
            tools[name] = path
    settings = Settings(store_params, host, source, compression, level, threads, recipients, tools,
                        identity, identity_file, sign_key, trusted_signers)
    return install_command(directory, settings, python=python, uid=uid, gid=gid,
                           check_mode=bool(getattr(module, "check_mode", False)))["argv"]


def command_line(prefix, verb_args):
    """A shell command for postgresql.conf: each word quoted, ``%`` in the prefix doubled (PostgreSQL expands %)."""
    import shlex
    words = [shlex.quote(word).replace("%", "%%") for word in prefix]
    return " ".join(words + list(verb_args))


def archive_command(prefix):
    return command_line(prefix, ["push", "%p", "%f"])


def restore_command(prefix):
    return command_line(prefix, ["fetch", "%f", "%p"])


# ------------------------------------------------------------------ health (backup_info)

def _object_time(store, host, source, name, now):
    """(ISO UTC time the store gives object ``name``, its age in seconds, in the future) -- untrusted.

    A time later than ``now`` plus the catalog's future tolerance is a wrong
    clock or a forgery: it is reported, and gives no age.
    """
    from ansible_collections.lifeboat.backup.plugins.module_utils import _catalog  # pylint: disable=import-outside-toplevel
    import datetime  # pylint: disable=import-outside-toplevel
    import math  # pylint: disable=import-outside-toplevel
    try:
        modified = store.stat_object(host, source, name).get("modified")
    except (OSError, LifeboatError, NotImplementedError, AttributeError):
        return None, None, False
    if not isinstance(modified, (int, float)) or isinstance(modified, bool) or math.isnan(modified):
        return None, None, False
    try:
        when = datetime.datetime.fromtimestamp(modified, datetime.timezone.utc)
    except (OverflowError, OSError, ValueError):
        return None, None, False
    age = now.timestamp() - modified
    stamp = when.strftime("%Y-%m-%dT%H:%M:%SZ")
    if -age > _catalog.FUTURE_TOLERANCE_S:
        return stamp, None, True
    return stamp, max(0.0, round(age, 3)), False


def archive_health(store, host, source, manifests, now):
    """The WAL archive of a PostgreSQL source: newest file and its age, gaps since the oldest base backup,
    and the recoverable window's ends (from names alone; a time for the latest end is not known from names).

    ``manifests``: the source's sets; only ``pg_basebackup`` ones count.
    """
    bases = sorted((m for m in manifests if m.get("engine") == "postgresql" and m.get("method") == "pg_basebackup"
                    and isinstance((m.get("position") or {}).get("start_wal"), str)), key=lambda m: m["set_id"])
    files = archived_files(store, host, source)
    size = int((bases[0]["position"].get("wal_segment_size") if bases else None) or 16 * 1024 * 1024)
    segments = sorted((segment_number(n, size), n) for n in files if SEGMENT_RE.match(n))
    result = {"base_backups": len(bases), "files": len(files), "segments": len(segments), "newest": None,
              "newest_age_s": None, "newest_time": None, "newest_time_future": False, "gaps": [],
              "earliest_time": None, "earliest_set_id": None, "latest_wal": None}
    if segments:
        newest = segments[-1][1]
        result["newest"] = newest
        result["newest_time"], result["newest_age_s"], result["newest_time_future"] = _object_time(
            store, host, source, files[newest][0], now)
    if not bases:
        return result
    oldest = bases[0]["position"]
    timeline, first = segment_number(oldest["start_wal"], size)
    dummy, covered = segment_number(oldest.get("stop_wal") or oldest["start_wal"], size)
    present = sorted(number for (tli, number), dummy2 in segments if tli == timeline and number > covered)
    expected = covered + 1
    for number in present:
        if number > expected:
            result["gaps"].append({"first": segment_name(timeline, expected, size),
                                   "last": segment_name(timeline, number - 1, size), "count": number - expected})
        expected = max(expected, number + 1)
    result["earliest_time"] = oldest.get("stop_time")
    result["earliest_set_id"] = bases[0]["set_id"]
    # The latest restorable point: the end of the unbroken run of WAL after the newest base backup.
    newest_base = bases[-1]["position"]
    tli, run_end = segment_number(newest_base.get("stop_wal") or newest_base["start_wal"], size)
    have = set(number for (one, number), dummy3 in segments if one == tli)
    while run_end + 1 in have:
        run_end += 1
    result["latest_wal"] = segment_name(tli, run_end, size)
    return result
