# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils is PRIVATE to this collection. It may change without notice.

"""Engine-independent backup and restore plumbing shared by every engine module.

A backup module builds an engine (``produce(ctx)`` -> Payload, ``record(ctx,
manifest)``, optional ``prepare``/``release``/``explain``) and hands it to
``BackupJob.run``; this code handles the store options, ``max_age`` skips, the
lock, crashed-run leftovers, codecs (compression and age encryption), the
manifest and the atomic commit. A restore module builds an engine
(``preconditions``/``consume``/``finalise``) and hands it to ``RestoreJob.run``,
which loads and verifies the chain and decodes each payload with its own codec
(``stream``, ``unpack``, ``pump``, ``read``).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import shutil
import socket
import tempfile
import time

from ansible_collections.lifeboat.backup.plugins.module_utils._common import (
    LifeboatError,
    SecretFile,
    parse_duration,
    utcnow,
)
from ansible_collections.lifeboat.backup.plugins.module_utils import _catalog
from ansible_collections.lifeboat.backup.plugins.module_utils import _codec
from ansible_collections.lifeboat.backup.plugins.module_utils import _manifest
from ansible_collections.lifeboat.backup.plugins.module_utils import _pipeline
from ansible_collections.lifeboat.backup.plugins.module_utils import _retention
from ansible_collections.lifeboat.backup.plugins.module_utils import _stores
from ansible_collections.lifeboat.backup.plugins.module_utils._runner import runner_for
from ansible_collections.lifeboat.backup.plugins.module_utils import _store_kinds

AGE_RECIPIENT_RE = re.compile(r"^(age1[0-9a-z]{58}|ssh-(ed25519|rsa) [A-Za-z0-9+/=]+( .*)?)$")


def store_argument_spec():
    """Options naming a store and a host in it (doc fragment lifeboat.backup._store)."""
    return _store_kinds.store_argument_spec()


def codec_argument_spec():
    """Compression and encryption options of backup modules (doc fragment lifeboat.backup._codec)."""
    return dict(
        compression=dict(type="str", default="zstd", choices=["zstd", "gzip", "none"]),
        compression_level=dict(type="int"),
        compression_threads=dict(type="int", default=0),
        encrypt_recipients=dict(type="list", elements="str", default=[]),
    )


BACKUP_REQUIRED_IF = [("type", "auto", ["full_every"])]


def backup_argument_spec(chains=False):
    """The options every module that writes sets shares: store, codec, signing, source, max_age,
    labels and work_dir; with ``chains``, the set type options (type, full_every, between) too.
    Modules with chains pass BACKUP_REQUIRED_IF to AnsibleModule."""
    spec = store_argument_spec()
    spec.update(codec_argument_spec())
    spec.update(_codec.signing_argument_spec())
    spec.update(
        source=dict(type="str"),
        max_age=dict(type="str"),
        labels=dict(type="dict", default={}),
        work_dir=dict(type="path"),
    )
    if chains:
        spec.update(
            type=dict(type="str", default="full", choices=list(_catalog.REQUESTED_TYPES)),
            full_every=dict(type="str"),
            between=dict(type="str", default="incremental", choices=list(_catalog.BETWEEN_TYPES)),
        )
    return spec


def default_host(params):
    return params.get("host") or socket.gethostname().split(".")[0]


def recipient_fingerprint(recipient):
    return "sha256:" + hashlib.sha256(recipient.strip().encode("utf-8")).hexdigest()[:32]


class Codec(object):
    """Compression plus optional age encryption for one set."""

    def __init__(self, module, compression, level=None, threads=0, recipients=None):
        self.module = module
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

    def file_codec(self):
        """The per-file codec of the manifest (format version 2) for files this codec wrote."""
        return {"compression": self.compression, "encryption": "age" if self.recipients else None}

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


def write_stream(writer, manifest, name, stages, stdin=None, env=None, role="payload", file_codec=None):
    """Run ``stages`` into payload file ``name`` of the set; record size and SHA-256.

    The sink owns its durability: its ``close`` returns once the bytes are safe
    (fsynced, or the upload completed).
    """
    sink = writer.open(name)
    try:
        size, digest = _pipeline.run_to_sink(stages, sink, stdin=stdin, env=env)
        sink.close()
    except _pipeline.SinkError as exc:
        sink.abort()
        raise _stores.StoreError(sink.describe_error(exc.os_error))
    except OSError as exc:
        sink.abort()
        raise _stores.StoreError(sink.describe_error(exc))
    except BaseException:
        sink.abort()
        raise
    _manifest.add_file(manifest, name, size, digest, role=role, codec=file_codec)
    return size, digest


class Payload(object):
    """One file an engine produces: a base name, the producer stages and what the file is for.

    The core appends the codec stages (compression, encryption) and the
    codec's suffix to the name; the engine never sees them.
    """

    def __init__(self, name, stages, role="payload", env=None, raw=False):
        self.name = name
        self.stages = list(stages)
        self.role = role
        self.env = env
        # raw: stored as produced, without the set's codec (a tree's index and links file, which verify reads).
        self.raw = raw


class JobContext(object):
    """What an engine's hooks get during one backup: the set being written, its parent and a workspace."""

    def __init__(self, job, plan, manifest, workspace, writer=None):
        self.job = job
        self.set_id = plan["set_id"]
        self.type = plan["type"]
        self.parent = plan.get("parent")
        self.manifest = manifest
        self.workspace = workspace
        self._writer = writer

    def tree(self, name):
        """A local directory for tree payload ``name`` of the set being written (store capability ``trees``).

        Returns a ``_stores.TreeTarget``; the engine fills ``path`` and records the tree (``_manifest.add_tree``)
        and its index in ``record``.
        """
        return self._writer.tree(name)


class BackupJob(object):
    """One backup of one source into one store.

    ``set_type`` is ``full``, ``incremental``, ``differential`` or ``auto``;
    the type actually written and its parent are resolved from the store's
    sets (``_catalog.resolve_type``), under the lock. ``run(engine)`` drives
    an engine object with ``produce(ctx)`` (an iterable of Payload) and
    ``record(ctx, manifest)``, and optional ``prepare(ctx)``, ``release(ctx)``
    (always run once prepare ran) and ``explain(PipelineError)``.
    """

    def __init__(self, store, host, source, engine, method, set_type="full", parent_set_id=None,
                 labels=None, max_age=None, now=utcnow, work_dir=None, full_every=None, between="incremental",
                 codec=None, signer=None):
        self.store = store
        self.host = _manifest.check_name(host, "host")
        self.source = _manifest.check_name(source, "source")
        self.engine = engine
        self.method = method
        if set_type not in _catalog.REQUESTED_TYPES:
            raise LifeboatError("type must be one of %s, not %r." % (", ".join(_catalog.REQUESTED_TYPES), set_type))
        if between not in _catalog.BETWEEN_TYPES:
            raise LifeboatError("between must be one of %s, not %r." % (", ".join(_catalog.BETWEEN_TYPES), between))
        self.set_type = set_type
        self.parent_set_id = parent_set_id
        self.full_every_s = parse_duration(full_every, "full_every")
        if set_type == "auto" and self.full_every_s is None:
            raise LifeboatError("type auto needs full_every (for example 7d): how often a full backup is due.")
        self.between = between
        self.labels = _manifest.check_labels(dict((str(k), str(v)) for k, v in (labels or {}).items()))
        self.max_age_s = parse_duration(max_age, "max_age")
        self.now = now
        self.work_dir = work_dir
        self.codec = codec
        self.signer = signer

    def existing(self):
        sets, dummy, dummy2 = _catalog.scan(self.store, self.host, self.source)
        return sets

    def plan(self):
        """Decide without touching anything: skip (a fresh set exists) or the set id, type and parent to write."""
        sets = self.existing()
        now = self.now()
        fresh = _catalog.fresh_set(sets, self.max_age_s, now)
        if fresh is not None:
            return {"action": "skip", "manifest": fresh, "set_id": fresh["set_id"]}
        if self.set_type == "full":
            decision = {"type": "full", "parent": None, "reason": "a full backup was asked for"}
        else:
            decision = _catalog.resolve_type(sets, self.set_type, self.full_every_s, self.between, now,
                                             engine=self.engine, method=self.method)
        listing = self.store.listing(self.host, self.source)
        taken = [m["set_id"] for m in sets] + listing.sets + [p.rsplit(".", 1)[0] for p in listing.partials]
        taken += [s["name"].rsplit(".", 1)[0] for s in listing.strays]
        set_id = _manifest.make_set_id(now, decision["type"], taken)
        return {"action": "backup", "set_id": set_id, "type": decision["type"], "parent": decision["parent"],
                "reason": decision.get("reason"), "path": self.store.location(self.host, self.source, set_id)}

    def run(self, engine):
        """Take the lock, write the set through ``engine``, commit; return (manifest, extras).

        ``engine`` is an object with ``produce(ctx)`` and ``record(ctx, manifest)`` (see the class);
        it never sees the store's writer: every payload passes through ``write_stream``.
        """
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
                                              plan["type"], plan["parent"]["set_id"] if plan["parent"] else None)
            manifest["labels"] = self.labels
            workspace = make_workspace(self.work_dir, "lifeboat-backup-")
            try:
                writer = self.store.begin(self.host, self.source, plan["set_id"])
                try:
                    self._drive(engine, JobContext(self, plan, manifest, workspace, writer), writer, manifest)
                    _manifest.finish(manifest, started, self.now())
                    manifest = _manifest.loads(_manifest.dumps(manifest))  # the form every reader will see
                    if self.signer is not None:
                        manifest["signature"] = self.signer.sign(manifest)
                    writer.commit(_manifest.dumps(manifest), [f["name"] for f in manifest["files"]])
                except Exception as exc:
                    record_failure(self.store, self.host, self.source, plan["set_id"], exc, self.now())
                    raise
                finally:
                    writer.abort()
            finally:
                shutil.rmtree(workspace, ignore_errors=True)
        extras.update(skipped=False, type_reason=plan.get("reason"))
        return manifest, extras

    def _drive(self, engine, ctx, writer, manifest):
        """prepare -> produce each payload through the codec -> record; release always runs."""
        codec = self.codec
        prepared = False
        try:
            if hasattr(engine, "prepare"):
                engine.prepare(ctx)
            prepared = True
            for payload in engine.produce(ctx):
                encode = codec if not getattr(payload, "raw", False) else None
                name = payload.name + (encode.suffix() if encode else "")
                stages = payload.stages + (encode.stages() if encode else [])
                try:
                    write_stream(writer, manifest, name, stages, env=payload.env, role=payload.role,
                                 file_codec=encode.file_codec() if encode else
                                 ({"compression": "none", "encryption": None} if codec else None))
                except _pipeline.PipelineError as exc:
                    explained = engine.explain(exc) if hasattr(engine, "explain") else None
                    if explained is None:
                        raise
                    raise explained
            if codec:
                codec.record(manifest)
            engine.record(ctx, manifest)
        finally:
            if prepared and hasattr(engine, "release"):
                engine.release(ctx)


def record_failure(store, host, source, set_id, error, now):
    """Leave ``attempts/<set_id>.failed`` in the object namespace, so retention sees the failed attempt.

    Best effort: a store that cannot take it (the failure may be the store itself) is not a second error.
    """
    try:
        store.put_object(host, source, _retention.failure_object_name(set_id),
                         io.BytesIO(_retention.failure_record(set_id, error, now)))
    except Exception:  # pylint: disable=broad-except
        pass


def make_workspace(work_dir, prefix):
    """A private local scratch directory outside the store (never inside an S3 store)."""
    if work_dir and not os.path.isdir(work_dir):
        raise LifeboatError("work_dir %s does not exist; create it or pick another." % work_dir)
    try:
        return tempfile.mkdtemp(prefix=prefix, dir=work_dir or None)
    except OSError as exc:
        raise LifeboatError(_stores.describe_os_error(exc, "work_dir %s" % (work_dir or tempfile.gettempdir())))


def backup_result(store, manifest, cmd, extras):
    """The result contract of DESIGN section 4 for a backup module."""
    result = dict(
        changed=not extras.get("skipped", False),
        skipped_reason=("a complete set younger than max_age exists" if extras.get("skipped") else None),
        set_id=manifest["set_id"],
        store=store.describe(),
        path=store.location(manifest["host"], manifest["source"], manifest["set_id"]),
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


def _hook(engine, name, *args):
    """Call an optional engine hook; an absent hook gives None."""
    method = getattr(engine, name, None)
    return method(*args) if method is not None else None


def run_backup_module(module, engine, source, engine_name, method, store=None):
    """The whole run of a backup module around an engine object; exits through exit_json/fail_json.

    Besides the BackupJob engine API (``produce``, ``record``, optional
    ``prepare``/``release``/``explain``) the engine may give these hooks:
    ``describe(codec)`` (the ``cmd`` result, called again after ``probe``),
    ``session()`` (a context manager held around plan, probe and run, for
    credentials), ``probe(decision)`` (connect and gather facts once a set is
    due, before check mode; ``decision`` is BackupJob.plan's, with the job
    under ``job``), ``check_result(decision)`` and ``result(manifest,
    extras)`` (keys merged into the check-mode and final results),
    ``tool_versions(codec)`` (stored as ``engine.versions`` before the run) and
    a ``set_type`` attribute that overrides the ``type`` option.
    The module options it reads: the store, codec (when it has them) and signing options, and
    ``type``, ``full_every``, ``between``, ``labels``, ``max_age`` and
    ``work_dir`` where the module has them.
    """
    params = module.params
    cmd = []
    try:
        if store is None:
            store = _store_kinds.open_store(params["store"])
        codec = None  # a module without the codec options (its sets hold no payload) writes through none
        if "compression" in params:
            codec = Codec(module, params["compression"], params["compression_level"],
                          params["compression_threads"], params["encrypt_recipients"])
        set_type = getattr(engine, "set_type", None) or params.get("type") or "full"
        job = BackupJob(store, default_host(params), source, engine_name, method, set_type=set_type,
                        full_every=params.get("full_every"), between=params.get("between") or "incremental",
                        labels=params.get("labels"), max_age=params.get("max_age"),
                        work_dir=params.get("work_dir") or module.tmpdir, codec=codec,
                        signer=_codec.signer_from_params(params, runner_for(module)))
        cmd = engine.describe(codec)
        session = _hook(engine, "session") or contextlib.nullcontext()
        with session:
            decision = job.plan()
            if decision["action"] == "skip":
                manifest, extras = decision["manifest"], {"skipped": True}
            else:
                decision["job"] = job
                _hook(engine, "probe", decision)
                cmd = engine.describe(codec)
                if module.check_mode:
                    parent = decision["parent"]
                    result = dict(changed=True, set_id=decision["set_id"], path=decision["path"],
                                  store=store.describe(), cmd=cmd, type=decision["type"],
                                  type_reason=decision.get("reason"),
                                  parent_set_id=parent["set_id"] if parent else None, skipped_reason=None)
                    result.update(_hook(engine, "check_result", decision) or {})
                    module.exit_json(**result)
                versions = _hook(engine, "tool_versions", codec)
                if versions is not None:
                    engine.versions = versions
                manifest, extras = job.run(engine)
        result = backup_result(store, manifest, cmd, extras)
        result.update(type=manifest["type"], parent_set_id=manifest["parent_set_id"],
                      type_reason=extras.get("type_reason"))
        result.update(_hook(engine, "result", manifest, extras) or {})
    except LifeboatError as exc:
        module.fail_json(msg=str(exc), cmd=cmd)
    if extras.get("stale_lock"):
        module.warn("Took over a stale lock on %s/%s: %s." % (job.host, job.source, extras["stale_lock"]["reason"]))
    module.exit_json(**result)


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


def load_set(store, host, source, set_id=None, trust=None, now=None):
    """Select a set (newest unless ``set_id``) and its restore chain, from the manifests alone.

    With ``trust`` (a TrustedSigners), every member of the chain must carry a
    signature by the key trusted for its host.
    """
    sets, invalid, dummy = _catalog.scan(store, host, source)
    if set_id:
        for bad in invalid:
            if bad["set_id"] == set_id:
                raise _manifest.ManifestError(bad["error"])
    elif not sets:
        raise _catalog.NoSetError(no_set_message(store, host, source, invalid))
    manifest = _catalog.select_set(sets, set_id=set_id, now=now)
    chain = _catalog.restore_chain(sets, manifest)
    if trust is not None:
        for member in chain:
            check_signature(trust, member)
    return manifest, chain


def check_signature(trust, manifest):
    """Refuse a set whose manifest is unsigned, signed by an untrusted key or altered after signing."""
    trust.verify(manifest, manifest["host"],
                 where="Set %s/%s/%s" % (manifest["host"], manifest["source"], manifest["set_id"]))


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


def file_codec(manifest, name=None):
    """The codec payload ``name`` of ``manifest`` was written with: ``{compression, encryption}``.

    A version 2 manifest gives each file its own codec (``files[].codec``); a
    file without one (a version 1 set read raw) and ``name`` None take the
    set-level codec (``compression`` and ``encryption``).
    """
    if name is not None:
        for entry in manifest.get("files") or []:
            if entry.get("name") == name and isinstance(entry.get("codec"), dict):
                return entry["codec"]
    return _manifest.default_codec(manifest)


def decode_stages(module, manifest, identity, name=None):
    """Stages that turn stored payload ``name`` back into the engine's own bytes.

    The stages undo that file's own codec (manifest v2 ``files[].codec``), or
    the set's codec for a version 1 set or when ``name`` is None.
    ``identity`` is an entered Identity (its descriptor goes to ``age`` only),
    or the path of an identity file, or None for a file that is not encrypted.
    """
    codec = file_codec(manifest, name)
    stages = []
    if codec.get("encryption") is not None:
        path = getattr(identity, "path", identity)
        if not path:
            raise LifeboatError(
                "Set %s is encrypted with age; pass age_identity (from Ansible Vault) or age_identity_file."
                % manifest["set_id"]
            )
        stages += _pipeline.decrypt_stages(need_binary(module, "age", "age"), path,
                                           pass_fds=getattr(identity, "pass_fds", ()))
    algorithm = codec.get("compression")
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


class RestoreJob(object):
    """One restore of one set (and the chain it needs) from one store: the skeleton every engine shares.

    ``run(engine)`` goes: load (manifests only) -> the engine's cheap
    preconditions -> verify the whole chain -> identity -> workspace -> the
    engine consumes each member of the chain, full first -> finalise. The
    engine is any object with ``preconditions(job)``, ``consume(job, member)``
    and ``finalise(job)``, and optionally:

    - ``check(job)``: in check mode, after verification, instead of the
      restore (to find out what a real run would do, changing nothing);
    - ``release(job)``: runs once the consumers started, whether they
      succeeded or not (to drop what a failed restore left, to let go of a
      lock), before the workspace is removed.

    The engine reads payloads only through the methods below, which decode
    each payload with its own codec (age, then zstd/gzip): ``stream`` (into
    consumer stages), ``unpack`` (into a local file), ``read`` (a binary
    stream handed to Python) and ``pump`` (bounded blocks handed to Python).
    What the engine keeps for its result is its own; ``summary()`` and
    ``result()`` give the keys every restore module returns.
    """

    def __init__(self, module, store, host, source, set_id=None, before=None, identity=None, identity_file=None,
                 work_dir=None, now=utcnow, trust=None):
        self.module = module
        self.store = store
        self.host = _manifest.check_name(host, "host")
        self.source = _manifest.check_name(source, "source")
        self.set_id = set_id
        self.before = before
        self.identity_key = identity
        self.identity_file = identity_file
        self.work_dir = work_dir
        self.now = now
        self.trust = trust
        self.manifest = None
        self.chain = []
        self.identity = None
        self.workspace = None
        self.cmd = []
        self.started = time.monotonic()

    def load(self):
        """Select the set and its chain from the manifests alone (nothing hashed yet)."""
        self.manifest, self.chain = load_set(self.store, self.host, self.source, self.set_id, trust=self.trust,
                                             now=self.now())
        for member in self.chain:
            encrypted = member["encryption"] is not None or any(
                file_codec(member, f["name"]).get("encryption") is not None for f in member["files"])
            if encrypted and not (self.identity_key or self.identity_file):
                raise LifeboatError("Set %s is encrypted with age; pass age_identity (from Ansible Vault) or "
                                    "age_identity_file." % member["set_id"])
        return self.manifest

    def verify(self):
        verify_chain(self.store, self.chain)

    def run(self, engine, check_mode=False):
        if self.manifest is None:
            self.load()
        engine.preconditions(self)
        self.verify()
        if check_mode:
            if hasattr(engine, "check"):
                engine.check(self)
            return self.result(changed=True)
        with Identity(self.identity_key, self.identity_file, tmpdir=self.work_dir) as identity:
            self.identity = identity
            self.workspace = make_workspace(self.work_dir, "lifeboat-restore-")
            try:
                for member in self.chain:
                    engine.consume(self, member)
                engine.finalise(self)
            finally:
                try:
                    if hasattr(engine, "release"):
                        engine.release(self)
                finally:
                    shutil.rmtree(self.workspace, ignore_errors=True)
                    self.workspace = None
        return self.result(changed=True)

    def summary(self):
        """What is known once the set is loaded: the keys a failed restore reports too ({} before that)."""
        if self.manifest is None:
            return {}
        return dict(
            set_id=self.manifest["set_id"],
            chain=[m["set_id"] for m in self.chain],
            store=self.store.describe(),
            path=self.store.location(self.host, self.source, self.manifest["set_id"]),
            bytes=sum(m["bytes"] for m in self.chain),
            verified_files=sum(len(m["files"]) for m in self.chain),
        )

    def result(self, changed):
        return dict(self.summary(), changed=changed, duration_s=round(time.monotonic() - self.started, 3),
                    cmd=self.cmd)

    # ---------------------------------------------------------- payload access for engines
    def decode_stages(self, member, name=None):
        """The stages that undo the codec of payload ``name`` of ``member`` (its own codec in manifest v2)."""
        return decode_stages(self.module, member, self.identity, name)

    def open(self, member, name):
        return self.store.open_payload(member["host"], member["source"], member["set_id"], name)

    def stream(self, member, name, consumer, env=None):
        """Decode payload ``name`` of ``member`` into the ``consumer`` stages; return their (stdout, stderr) tails."""
        stages = self.decode_stages(member, name) + list(consumer)
        self.cmd.append(_pipeline.describe(stages))
        with self.open(member, name) as handle:
            return _pipeline.run_from_source(stages, handle, env=env)

    def read(self, member, name, consume, env=None):
        """Hand payload ``name`` of ``member``, decoded, to ``consume`` as a binary stream; return what it returns.

        For engines that read the bytes in Python (a tar checked and extracted
        member by member). Without a codec the store's reader itself is handed
        over. What ``consume`` leaves unread is read and dropped; a decode stage
        that failed is raised (explained where it can be) rather than the
        consumer's own error.
        """
        decode = self.decode_stages(member, name)
        with self.open(member, name) as handle:
            if not decode:
                return consume(handle)
            self.cmd.append(_pipeline.describe(decode))
            try:
                return _pipeline.run_to_consumer(decode, consume, stdin=handle, env=env)
            except _pipeline.PipelineError as exc:
                explained = explain_decode_error(exc, member)
                if explained is None:
                    raise
                raise LifeboatError(explained)

    def pump(self, member, name, consume, env=None):
        """Hand payload ``name`` of ``member``, decoded, to ``consume(block)`` in bounded blocks (``_pipeline.pump``).

        ``consume`` returns False to stop early; returns True if the whole payload was read.
        """
        with self.open(member, name) as handle:
            return _pipeline.pump(self.decode_stages(member, name), handle, consume, env=env)

    def unpack(self, member, name, target, env=None):
        """Decode payload ``name`` of ``member`` into the local file ``target`` (scratch: not fsynced)."""
        decode = self.decode_stages(member, name)
        with self.open(member, name) as handle:
            with open(target, "wb") as sink:
                try:
                    if decode:
                        self.cmd.append(_pipeline.describe(decode))
                        _pipeline.run_to_sink(decode, sink, stdin=handle, env=env)
                    else:
                        shutil.copyfileobj(handle, sink, _stores.CHUNK)
                except _pipeline.SinkError as exc:
                    raise LifeboatError(_stores.describe_os_error(exc.os_error, "the work directory %s"
                                                                  % os.path.dirname(target)))
                except OSError as exc:
                    raise LifeboatError(_stores.describe_os_error(exc, "the work directory %s"
                                                                  % os.path.dirname(target)))
        return target


def restore_argument_spec():
    """Options every restore module takes: store and host, set selection, trust, age identity, work_dir."""
    spec = store_argument_spec()
    spec.update(_codec.trust_argument_spec())
    spec.update(
        source=dict(type="str", required=True),
        set_id=dict(type="str"),
        age_identity=dict(type="str", no_log=True),
        age_identity_file=dict(type="path"),
        work_dir=dict(type="path"),
    )
    return spec


RESTORE_MUTUALLY_EXCLUSIVE = [("age_identity", "age_identity_file")] + _codec.TRUST_MUTUALLY_EXCLUSIVE


def unexpected_failure(exc, what="restore"):
    """One sentence for an error nobody foresaw, never a traceback."""
    return "The %s failed unexpectedly (%s: %s)." % (what, type(exc).__name__, " ".join(str(exc).split()))


def run_restore_module(module, engine, session=None, finish=None, changed_on_failure=None):
    """The whole of a restore module once its AnsibleModule is built: exits the module (exit_json or fail_json).

    It opens the store, builds a RestoreJob from the common options (see
    ``restore_argument_spec``), loads the set and runs ``engine`` on it in
    check mode or for real. ``engine`` is an engine object (see RestoreJob),
    or a callable ``engine(job, session)`` that returns one once the set is
    loaded (to pick an engine by the set's method). Optional pieces:

    - ``session``: a context manager held around picking and running the
      engine (credentials); what it enters to is handed to the callable;
      an engine object may instead have ``session()`` (as a backup engine does);
    - ``engine.result(job)``: a dict merged into the result, on success and
      on failure (what the engine knows so far);
    - ``finish(job, engine, result)``: the module's last word on a successful
      result (keys computed from engine state the engine does not return);
    - ``changed_on_failure(job, engine)``: whether a failed run changed
      anything; by default the engine's ``changed`` attribute, else False.

    A failed run reports one sentence in ``msg``, the ``summary()`` of what was
    loaded, the engine's result and every command run (``cmd``).
    """
    params = module.params
    result = dict(changed=False, set_id=None, cmd=[])
    job = None
    picked = engine if hasattr(engine, "consume") else None
    failure = None
    try:
        runner = runner_for(module)
        store = _store_kinds.open_store(params["store"])
        job = RestoreJob(module, store, default_host(params), params["source"], set_id=params["set_id"],
                         identity=params["age_identity"], identity_file=params["age_identity_file"],
                         work_dir=params["work_dir"] or module.tmpdir,
                         trust=_codec.trust_from_params(params, runner))
        job.load()
        with (session if session is not None else contextlib.nullcontext()) as entered:
            if picked is None:
                picked = engine(job, entered)
            with _hook(picked, "session") or contextlib.nullcontext():
                result.update(job.run(picked, check_mode=module.check_mode))
        result.update(_hook(picked, "result", job) or {})
        if finish is not None:
            finish(job, picked, result)
    except LifeboatError as exc:
        failure = str(exc)
    except Exception as exc:  # pylint: disable=broad-except
        failure = unexpected_failure(exc)
    if failure is None:
        module.exit_json(**result)
    if job is not None:
        result.update(job.summary())
        result["cmd"] = job.cmd
    if picked is not None:
        try:
            result.update(_hook(picked, "result", job) or {})
        except Exception:  # pylint: disable=broad-except
            pass  # the failure is what is reported
    if changed_on_failure is not None:
        result["changed"] = bool(changed_on_failure(job, picked))
    else:
        result["changed"] = bool(getattr(picked, "changed", False))
    result["msg"] = failure
    module.fail_json(**result)
