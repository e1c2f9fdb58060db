# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils is PRIVATE to this collection. It may change without notice.

"""Engine-independent backup and restore plumbing shared by every engine module.

A backup module supplies a ``produce(writer, manifest)`` callable that writes
payload files; this code handles the store options, ``max_age`` skips, the
lock, crashed-run leftovers, codecs (compression and age encryption), the
manifest and the atomic commit. A restore module uses ``load_set``, ``verify_chain`` and
``decode_stages`` to get a verified set and the stages that undo the codec.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket

from ansible_collections.lifeboat.backup.plugins.module_utils._common import (
    LifeboatError,
    SecretFile,
    parse_duration,
    utcnow,
)
from ansible_collections.lifeboat.backup.plugins.module_utils import _catalog
from ansible_collections.lifeboat.backup.plugins.module_utils import _manifest
from ansible_collections.lifeboat.backup.plugins.module_utils import _pipeline
from ansible_collections.lifeboat.backup.plugins.module_utils import _stores
from ansible_collections.lifeboat.backup.plugins.module_utils._runner import runner_for

AGE_RECIPIENT_RE = re.compile(r"^(age1[0-9a-z]{58}|ssh-(ed25519|rsa) [A-Za-z0-9+/=]+( .*)?)$")


def store_argument_spec():
    """Options naming a store and a source in it (doc fragment lifeboat.backup._store)."""
    return dict(
        store=dict(
            type="dict",
            required=True,
            options=dict(
                kind=dict(type="str", default="dir", choices=["dir"]),
                path=dict(type="path"),
            ),
            required_if=[("kind", "dir", ["path"])],
        ),
        host=dict(type="str"),
    )


def codec_argument_spec():
    """Compression and encryption options of backup modules (doc fragment lifeboat.backup._codec)."""
    return dict(
        compression=dict(type="str", default="zstd", choices=["zstd", "gzip", "none"]),
        compression_level=dict(type="int"),
        compression_threads=dict(type="int", default=0),
        encrypt_recipients=dict(type="list", elements="str", default=[]),
    )


def default_host(params):
    return params.get("host") or socket.gethostname().split(".")[0]


def recipient_fingerprint(recipient):
    return "sha256:" + hashlib.sha256(recipient.strip().encode("utf-8")).hexdigest()[:32]


class Codec(object):
    """Compression plus optional age encryption for one set."""

    def __init__(self, module, compression, level=None, threads=0, recipients=None):
        self.compression = compression
        self.level = level
        self.threads = threads
        self.recipients = [r.strip() for r in (recipients or []) if r and r.strip()]
        for recipient in self.recipients:
            if not AGE_RECIPIENT_RE.match(recipient):
                raise LifeboatError(
                    "encrypt_recipients entry %r is not an age public key (age1...) or an ssh-ed25519/ssh-rsa key."
                    % (recipient[:24] + ("..." if len(recipient) > 24 else ""))
                )
        if level is not None and compression == "zstd" and not 1 <= level <= 22:
            raise LifeboatError("compression_level for zstd must be between 1 and 22, not %d." % level)
        if level is not None and compression == "gzip" and not 1 <= level <= 9:
            raise LifeboatError("compression_level for gzip must be between 1 and 9, not %d." % level)
        if threads < 0:
            raise LifeboatError("compression_threads must be 0 (all cores) or more, not %d." % threads)
        self.compress_bin = None
        if compression == "zstd":
            self.compress_bin = need_binary(module, "zstd", "zstd")
        elif compression == "gzip":
            self.compress_bin = module.get_bin_path("pigz") or need_binary(module, "gzip", "gzip")
        self.age_bin = need_binary(module, "age", "age") if self.recipients else None

    def suffix(self):
        return _pipeline.payload_suffix(self.compression, bool(self.recipients))

    def stages(self):
        return (_pipeline.compress_stages(self.compression, self.compress_bin, self.level, self.threads)
                + _pipeline.encrypt_stages(self.age_bin, self.recipients))

    def versions(self, module):
        """Versions of the codec tools, for the manifest (a tool that cannot tell is left out)."""
        found = {}
        for name, binary in (("compressor", self.compress_bin), ("age", self.age_bin)):
            if binary:
                try:
                    found[os.path.basename(binary) if name == "compressor" else name] = version_line(module, binary)
                except LifeboatError:
                    pass
        return found

    def record(self, manifest):
        manifest["compression"] = {"algorithm": self.compression, "level": self.level}
        if self.recipients:
            manifest["encryption"] = {
                "method": "age",
                "recipients": [recipient_fingerprint(r) for r in self.recipients],
            }


def version_line(module, binary):
    """The first line ``binary --version`` prints, in the C locale."""
    rc, out, err = runner_for(module).run([binary, "--version"], env={"LANG": "C", "LC_ALL": "C"})
    lines = (out or err).strip().splitlines()
    if rc != 0 or not lines:
        raise LifeboatError("%s --version failed: %s" % (binary, (err or out).strip() or "no output"))
    return lines[0].strip()


def need_binary(module, name, package):
    path = module.get_bin_path(name)
    if not path:
        raise LifeboatError("%s was not found on PATH; install the %s package." % (name, package))
    return path


def write_stream(writer, manifest, name, stages, stdin=None, env=None):
    """Run ``stages`` into payload file ``name`` of the set; record size and SHA-256.

    A full disk fails with one sentence however it shows: while copying, at
    the final flush, or when closing the file flushes what was still buffered.
    """
    handle = writer.open(name)
    try:
        size, digest = _pipeline.run_to_sink(stages, handle, stdin=stdin, env=env)
    except _pipeline.SinkError as exc:
        _close_quietly(handle)
        raise _stores.StoreError(_stores.describe_os_error(exc.os_error, writer.file_path(name)))
    except BaseException:
        _close_quietly(handle)
        raise
    try:
        handle.close()
    except OSError as exc:
        raise _stores.StoreError(_stores.describe_os_error(exc, writer.file_path(name)))
    _manifest.add_file(manifest, name, size, digest)
    return size, digest


def _close_quietly(handle):
    """Close a file whose write already failed: closing flushes the buffer again, and that error adds nothing."""
    try:
        handle.close()
    except OSError:
        pass


class BackupJob(object):
    """One backup of one source into one store."""

    def __init__(self, store, host, source, engine, method, set_type="full", parent_set_id=None,
                 labels=None, max_age=None, now=utcnow):
        self.store = store
        self.host = _manifest.check_name(host, "host")
        self.source = _manifest.check_name(source, "source")
        self.engine = engine
        self.method = method
        self.set_type = set_type
        self.parent_set_id = parent_set_id
        self.labels = dict((str(k), str(v)) for k, v in (labels or {}).items())
        self.max_age_s = parse_duration(max_age, "max_age")
        self.now = now

    def existing(self):
        sets, dummy, dummy2 = _catalog.scan(self.store, self.host, self.source)
        return sets

    def plan(self):
        """Decide without touching anything: skip (a fresh set exists) or the set id to write."""
        sets = self.existing()
        fresh = _catalog.fresh_set(sets, self.max_age_s, self.now())
        if fresh is not None:
            return {"action": "skip", "manifest": fresh, "set_id": fresh["set_id"]}
        taken = [m["set_id"] for m in sets] + [p[: -len(_stores.PARTIAL_SUFFIX)] for p in self.store.partials(self.host, self.source)]
        set_id = _manifest.make_set_id(self.now(), self.set_type, taken)
        return {"action": "backup", "set_id": set_id, "path": self.store.set_path(self.host, self.source, set_id)}

    def run(self, produce):
        """Take the lock, write the set through ``produce``, commit; return (manifest, extras)."""
        extras = {}
        lock = self.store.lock(self.host, self.source)
        with lock:
            if lock.stale:
                extras["stale_lock"] = lock.stale
            extras["removed_partials"] = self.store.remove_partials(self.host, self.source)
            plan = self.plan()  # re-plan under the lock: another run may have finished meanwhile
            if plan["action"] == "skip":
                return plan["manifest"], dict(extras, skipped=True)
            lock.update(plan["set_id"])
            started = self.now()
            manifest = _manifest.new_manifest(plan["set_id"], self.host, self.source, self.engine, self.method,
                                              self.set_type, self.parent_set_id)
            manifest["labels"] = self.labels
            writer = self.store.begin(self.host, self.source, plan["set_id"])
            try:
                produce(writer, manifest)
                _manifest.finish(manifest, started, self.now())
                writer.commit(manifest)
            finally:
                writer.abort()
        return manifest, dict(extras, skipped=False)


def backup_result(store, manifest, cmd, extras):
    """The result contract of DESIGN section 4 for a backup module."""
    result = dict(
        changed=not extras.get("skipped", False),
        skipped_reason=("a complete set younger than max_age exists" if extras.get("skipped") else None),
        set_id=manifest["set_id"],
        store=store.describe(),
        path=store.set_path(manifest["host"], manifest["source"], manifest["set_id"]),
        bytes=manifest["bytes"],
        duration_s=manifest["duration_s"],
        files=manifest["files"],
        position=manifest["position"],
        manifest=manifest,
        cmd=cmd,
        removed_partials=extras.get("removed_partials", []),
    )
    if extras.get("stale_lock"):
        result["stale_lock"] = extras["stale_lock"]
    return result


def describe_store(store):
    """'dir store /var/backups/lifeboat': the store as a user would name it."""
    described = dict(store.describe())
    kind = described.pop("kind", "?")
    return "%s store %s" % (kind, " ".join(str(v) for k, v in sorted(described.items()) if v is not None))


def _names(names, limit=20):
    names = sorted(names)
    shown = ", ".join(names[:limit])
    return shown + (" and %d more" % (len(names) - limit) if len(names) > limit else "")


def no_set_message(store, host, source, invalid=()):
    """Why there is nothing to restore, and what the store does hold for that host."""
    message = "The %s holds no complete set for host %s, source %s" % (describe_store(store), host, source)
    if invalid:
        message += " (%d set(s) there have a broken manifest; backup_verify names them)" % len(invalid)
    try:
        others = [name for name in store.sources(host) if name != source] if host in store.hosts() else None
        hosts = store.hosts() if others is None else None
    except LifeboatError:
        return message + "."
    if others:
        return message + "; sources of %s there: %s." % (host, _names(others))
    if others is not None:
        return message + "; it holds no other source of %s." % host
    if hosts:
        return message + "; it holds no set of host %s at all (hosts there: %s)." % (host, _names(hosts))
    return message + "; it holds no set at all."


def load_set(store, host, source, set_id=None):
    """Select a set (newest unless ``set_id``) and its restore chain, from the manifests alone."""
    sets, invalid, dummy = _catalog.scan(store, host, source)
    if set_id:
        for bad in invalid:
            if bad["set_id"] == set_id:
                raise _manifest.ManifestError(bad["error"])
    elif not sets:
        raise _catalog.NoSetError(no_set_message(store, host, source, invalid))
    manifest = _catalog.select_set(sets, set_id=set_id)
    return manifest, _catalog.restore_chain(sets, manifest)


def verify_chain(store, chain):
    """Re-hash every set of a restore chain; refuse a corrupt or incomplete one."""
    for member in chain:
        problems = store.verify_set(member)
        if problems:
            raise LifeboatError(
                "Set %s/%s/%s failed verification (%s); refusing to restore from it."
                % (member["host"], member["source"], member["set_id"], describe_problems(problems))
            )


def load_verified(store, host, source, set_id=None):
    """load_set, then verify_chain: a set that is safe to restore from."""
    manifest, chain = load_set(store, host, source, set_id)
    verify_chain(store, chain)
    return manifest, chain


def describe_problems(problems):
    parts = []
    for problem in problems:
        if problem["problem"] == "sha256":
            parts.append("%s: SHA-256 mismatch" % problem["name"])
        elif problem["problem"] == "size":
            parts.append("%s: size %s, expected %s" % (problem["name"], problem["actual"], problem["expected"]))
        elif problem.get("detail"):
            parts.append("%s: %s (%s)" % (problem["name"], problem["problem"], problem["detail"]))
        else:
            parts.append("%s: %s" % (problem["name"], problem["problem"]))
    return "; ".join(parts)


class Identity(object):
    """An age identity (private key) for ``age -i``.

    A key given as text becomes a SecretFile: an in-memory file that ``age``
    opens as ``/dev/fd/N`` (it must inherit ``pass_fds``), so that no copy of
    the key is ever on disk, even after a ``kill -9``. A key file is used where it is.
    """

    def __init__(self, key=None, key_file=None, tmpdir=None):
        self.key = key
        self.key_file = key_file
        self.tmpdir = tmpdir
        self.path = None
        self._secret = None

    @property
    def pass_fds(self):
        return self._secret.pass_fds if self._secret is not None else ()

    def __enter__(self):
        if self.key_file:
            if not os.path.isfile(self.key_file):
                raise LifeboatError("age_identity_file %s does not exist." % self.key_file)
            self.path = self.key_file
        elif self.key:
            self._secret = SecretFile(self.key.strip() + "\n", "lifeboat-age-", self.tmpdir).open()
            self.path = self._secret.path
        return self

    def __exit__(self, *exc_info):
        if self._secret is not None:
            self._secret.close()
            self._secret = None
        self.path = None
        return False


def decode_stages(module, manifest, identity):
    """Stages that turn a stored payload back into the engine's own bytes.

    ``identity`` is an entered Identity (its descriptor goes to ``age`` only),
    or the path of an identity file, or None for a set that is not encrypted.
    """
    stages = []
    if manifest["encryption"] is not None:
        path = getattr(identity, "path", identity)
        if not path:
            raise LifeboatError(
                "Set %s is encrypted with age; pass age_identity (from Ansible Vault) or age_identity_file."
                % manifest["set_id"]
            )
        stages += _pipeline.decrypt_stages(need_binary(module, "age", "age"), path,
                                           pass_fds=getattr(identity, "pass_fds", ()))
    algorithm = manifest["compression"]["algorithm"]
    if algorithm == "zstd":
        stages += _pipeline.decompress_stages("zstd", need_binary(module, "zstd", "zstd"))
    elif algorithm == "gzip":
        stages += _pipeline.decompress_stages("gzip", module.get_bin_path("pigz") or need_binary(module, "gzip", "gzip"))
    return stages


def explain_decode_error(exc, manifest):
    """A clearer sentence for failures of the decryption and decompression stages."""
    if exc.stage == "age" and ("no identity matched" in exc.stderr or "no identity" in exc.stderr):
        return ("The age identity does not match any recipient of set %s (recipients %s); use the right private key."
                % (manifest["set_id"], ", ".join(manifest["encryption"]["recipients"])))
    if exc.stage == "age":
        return "Decrypting set %s with age failed: %s" % (manifest["set_id"], (exc.stderr.splitlines() or ["no output"])[-1])
    return None
