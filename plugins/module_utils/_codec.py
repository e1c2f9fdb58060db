# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils is PRIVATE to this collection. It may change without notice.

"""What the core does to a set's bytes on their way to and from a store.

Signing
    A manifest is signed with an OpenSSH ed25519 key (``ssh-keygen -Y sign``,
    the SSHSIG format) under one fixed namespace, and verified against
    ``allowed_signers`` lines (``trusted_signers``) whose principal is the
    host name the set is filed under. Checksums in the manifest prove that the
    payloads are the ones the manifest names; the signature proves which host
    wrote the manifest. Every piece of key material and every temporary input
    of ``ssh-keygen`` travels through memfds (``/dev/fd/N``) and pipes: no key
    in argv, no file on disk.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
import stat
import struct

from ansible_collections.lifeboat.backup.plugins.module_utils._common import LifeboatError, SecretFile

__all__ = [
    "canonical_bytes",
    "SIGNATURE_FORMAT",
    "SIGNATURE_NAMESPACE",
    "SignatureError",
    "Signer",
    "TrustedSigners",
    "fingerprint",
    "load_signing_key",
    "signer_from_params",
    "signer_from_text",
    "signing_argument_spec",
    "SIGNING_MUTUALLY_EXCLUSIVE",
    "trust_argument_spec",
    "trust_from_params",
    "TRUST_MUTUALLY_EXCLUSIVE",
]


# ---------------------------------------------------------------------------
# Canonical manifest bytes (shared by signing and the manifest module)
# ---------------------------------------------------------------------------

def canonical_bytes(manifest):
    """The bytes a signature covers: the manifest without ``signature``, as canonical JSON.

    Compact, keys sorted, ASCII only, no NaN or infinity. This is the one
    serialisation; ``_manifest.canonical_bytes`` validates the manifest first.
    """
    obj = dict((key, value) for key, value in manifest.items() if key != "signature")
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode("ascii")


# ---------------------------------------------------------------------------
# Signing: sign_key / trusted_signers, ssh-keygen -Y sign|verify
# ---------------------------------------------------------------------------

SIGNATURE_FORMAT = "sshsig"
SIGNATURE_NAMESPACE = "lifeboat.backup/manifest@v1"
SIGNATURE_FIELDS = ("format", "namespace", "signer", "value")

KEY_TYPE = "ssh-ed25519"
ED25519_KEY_BYTES = 32
ED25519_SIG_BYTES = 64

# Bounds, checked before anything runs.
MAX_SIGNATURE_VALUE = 8192          # characters of the armored signature (an ed25519 one is about 300)
MAX_SIGNER_LINE = 1024              # characters of the signer's public key line (an ed25519 one is 80)
MAX_PRIVATE_KEY = 16384             # bytes of a private key text (an ed25519 one is about 400)
MAX_TRUSTED_LINE = 4096             # characters of one trusted_signers line
MAX_TRUSTED_TEXT = 1024 * 1024      # bytes of all trusted_signers lines together
MAX_TRUSTED_KEYS = 10000            # key lines in trusted_signers
MAX_TOOL_MESSAGE = 300              # characters of ssh-keygen's stderr quoted in an error

# Host names are principals; the same rule as the store's directory names.
PRINCIPAL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,199}\Z")
BASE64_RE = re.compile(r"^[A-Za-z0-9+/]+={0,2}\Z")
TIMESTAMP_RE = re.compile(r"^(\d{8}|\d{12}|\d{14})Z?\Z")
NAMESPACE_PATTERN_RE = re.compile(r'^[^\s",]+\Z')

SIG_MAGIC = b"SSHSIG"
SIG_VERSION = 1
SIG_HASHES = ("sha256", "sha512")
SIG_BEGIN = "-----BEGIN SSH SIGNATURE-----"
SIG_END = "-----END SSH SIGNATURE-----"

KEY_MAGIC = b"openssh-key-v1\x00"
KEY_BEGIN = "-----BEGIN OPENSSH PRIVATE KEY-----"
KEY_END = "-----END OPENSSH PRIVATE KEY-----"

# ssh-keygen must never reach for an agent or a passphrase prompt: it runs unattended.
KEYGEN_ENV = {
    "SSH_AUTH_SOCK": "",
    "SSH_ASKPASS": "",
    "SSH_ASKPASS_REQUIRE": "never",
    "DISPLAY": "",
    "WAYLAND_DISPLAY": "",
}

# Key types ssh-keygen knows, to tell "a key of the wrong type" from "options".
_OTHER_KEY_TYPE_RE = re.compile(
    r"^(ssh-(rsa|dss|ed25519|ed448)|ecdsa-sha2-[a-z0-9]+|sk-[a-z0-9-]+@openssh\.com|[a-z0-9-]+-cert-v01@openssh\.com)\Z"
)

UNSIGNED = "unsigned"
UNTRUSTED = "untrusted"
OTHER_HOST = "other-host"
NOT_ACCEPTED = "not-accepted"
ALTERED = "altered"
MALFORMED = "malformed"


class SignatureError(LifeboatError):
    """A manifest's signature is missing, untrusted, foreign, not accepted, wrong or malformed.

    ``reason`` is one of ``unsigned``, ``untrusted``, ``other-host``,
    ``not-accepted``, ``altered``, ``malformed``; the message is one sentence.
    """

    def __init__(self, message, reason):
        super(SignatureError, self).__init__(message)
        self.reason = reason


def signing_argument_spec():
    """Options of a module that signs the manifests it writes."""
    return dict(
        sign_key=dict(type="str", no_log=True),
        sign_key_file=dict(type="path", no_log=False),
    )


SIGNING_MUTUALLY_EXCLUSIVE = [["sign_key", "sign_key_file"]]


def trust_argument_spec():
    """Options of a module that reads sets: with either one set, every set must carry a trusted signature."""
    return dict(
        trusted_signers=dict(type="list", elements="str"),
        trusted_signers_file=dict(type="path"),
    )


TRUST_MUTUALLY_EXCLUSIVE = [["trusted_signers", "trusted_signers_file"]]


def signer_from_params(params, runner):
    """The Signer that ``sign_key`` or ``sign_key_file`` give, or None when neither is set."""
    if params.get("sign_key") is not None:
        return load_signing_key(key_text=params["sign_key"], runner=runner)
    if params.get("sign_key_file") is not None:
        return load_signing_key(key_file=params["sign_key_file"], runner=runner)
    return None


def trust_from_params(params, runner):
    """The TrustedSigners that ``trusted_signers`` or ``trusted_signers_file`` give, or None when neither is set."""
    if params.get("trusted_signers") is not None:
        return TrustedSigners(params["trusted_signers"], runner)
    if params.get("trusted_signers_file") is not None:
        return TrustedSigners.from_file(params["trusted_signers_file"], runner)
    return None


# -- small binary helpers (the SSH wire format) ------------------------------

class _Truncated(Exception):
    pass


class _Reader(object):
    """Reads the SSH wire format: uint32 and length-prefixed strings, never past the end."""

    def __init__(self, data):
        self.data = data
        self.pos = 0

    def u32(self):
        if self.pos + 4 > len(self.data):
            raise _Truncated()
        value = struct.unpack(">I", self.data[self.pos:self.pos + 4])[0]
        self.pos += 4
        return value

    def string(self):
        size = self.u32()
        if self.pos + size > len(self.data):
            raise _Truncated()
        value = self.data[self.pos:self.pos + size]
        self.pos += size
        return value

    def raw(self, size):
        if self.pos + size > len(self.data):
            raise _Truncated()
        value = self.data[self.pos:self.pos + size]
        self.pos += size
        return value

    def at_end(self):
        return self.pos == len(self.data)


def _b64decode(text):
    """Canonical base64 only (no whitespace, exact padding, unused bits zero); None otherwise."""
    if len(text) % 4 or not BASE64_RE.match(text):
        return None
    try:
        blob = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
    return blob if base64.b64encode(blob).decode("ascii") == text else None


def _wrap(text, width=70):
    return "\n".join(text[i:i + width] for i in range(0, len(text), width))


def _ed25519_key_blob_ok(blob):
    """True when ``blob`` is exactly an ssh-ed25519 public key in wire format."""
    reader = _Reader(blob)
    try:
        return reader.string() == KEY_TYPE.encode("ascii") and len(reader.string()) == ED25519_KEY_BYTES \
            and reader.at_end()
    except _Truncated:
        return False


def _key_blob_type(blob):
    try:
        return _Reader(blob).string().decode("ascii", "replace")
    except _Truncated:
        return None


def _fingerprint_blob(blob):
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode("ascii").rstrip("=")


def _public_line(blob):
    return "%s %s" % (KEY_TYPE, base64.b64encode(blob).decode("ascii"))


def fingerprint(public_key_line):
    """``SHA256:...`` of an OpenSSH public key line (as ``ssh-keygen -l`` prints it)."""
    fields = str(public_key_line).split()
    blob = _b64decode(fields[1]) if len(fields) >= 2 else None
    if blob is None:
        raise LifeboatError("%r is not an OpenSSH public key line." % (public_key_line[:100],))
    return _fingerprint_blob(blob)


def _tool_message(err, path=None, name=None):
    """The first line of ssh-keygen's complaint, with a memfd path replaced by what it stands for."""
    lines = [line.strip() for line in err.splitlines() if line.strip()]
    lines = [line for line in lines if not line.startswith(("Enter passphrase", "Signing data", "Could not verify"))]
    text = lines[0] if lines else "no message"
    if path:
        text = text.replace('"%s"' % path, name).replace(path, name)
    # "<allowed_signers file>:<n>: key has expired ..." -> "key has expired ...": n counts our rewritten lines.
    text = re.sub(r"^/dev/fd/\d+:\d+: ", "", text)
    return text[:MAX_TOOL_MESSAGE].rstrip(".")


def _read_bounded_file(path, limit, what):
    """Read a regular file of at most ``limit`` bytes; never blocks on a FIFO or device."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise LifeboatError("Cannot read %s %s: %s." % (what, path, exc.strerror or exc))
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise LifeboatError("%s %s is not a regular file." % (what, path))
        if info.st_size > limit:
            raise LifeboatError("%s %s is larger than %d bytes." % (what, path, limit))
        chunks = []
        total = 0
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            total += len(chunk)
            if total > limit:
                raise LifeboatError("%s %s is larger than %d bytes." % (what, path, limit))
            chunks.append(chunk)
        return b"".join(chunks), info
    except OSError as exc:
        raise LifeboatError("Cannot read %s %s: %s." % (what, path, exc.strerror or exc))
    finally:
        os.close(fd)


# -- the signing side ---------------------------------------------------------

_MAKE_KEY = "make one per host with: ssh-keygen -t ed25519 -N '' -f <file>"


def _parse_private_key(text, what):
    """Check an OpenSSH private key text; return (normalised text, public key blob) or raise one sentence."""
    if len(text) > MAX_PRIVATE_KEY:
        raise LifeboatError("%s is larger than %d bytes, which no ed25519 private key is." % (what, MAX_PRIVATE_KEY))
    stripped = text.strip()
    if KEY_BEGIN not in stripped:
        if re.search(r"-----BEGIN (RSA|DSA|EC|ENCRYPTED)? ?PRIVATE KEY-----", stripped):
            kind = "a PEM private key"
        elif stripped.startswith("PuTTY-User-Key-File"):
            kind = "a PuTTY key"
        elif re.match(r"^(ssh-|ecdsa-|sk-)\S+ [A-Za-z0-9+/=]+", stripped):
            kind = "a public key, not a private key"
        else:
            kind = "not an OpenSSH private key"
        raise LifeboatError("%s is %s; it must be an unencrypted OpenSSH ed25519 private key (%s)."
                            % (what, kind, _MAKE_KEY))
    begin = stripped.index(KEY_BEGIN)
    end = stripped.find(KEY_END, begin)
    if end < 0:
        raise LifeboatError("%s has no '%s' line: the key is cut short." % (what, KEY_END))
    body = re.sub(r"\s+", "", stripped[begin + len(KEY_BEGIN):end])
    blob = _b64decode(body)
    if blob is None or not blob.startswith(KEY_MAGIC):
        raise LifeboatError("%s is not a readable OpenSSH private key (its base64 body is damaged)." % what)
    reader = _Reader(blob[len(KEY_MAGIC):])
    try:
        cipher = reader.string()
        kdf = reader.string()
        reader.string()
        nkeys = reader.u32()
        public = reader.string() if nkeys == 1 else None
    except _Truncated:
        raise LifeboatError("%s is not a readable OpenSSH private key (it is truncated)." % what)
    if cipher != b"none" or kdf != b"none":
        raise LifeboatError(
            "%s is protected by a passphrase, and nothing here can prompt for one; give an unencrypted key "
            "(remove the passphrase with ssh-keygen -p -N '' -f <file>) and protect it with Ansible Vault instead."
            % what)
    if public is None:
        raise LifeboatError("%s holds %d keys; it must hold exactly one ed25519 key." % (what, nkeys))
    key_type = _key_blob_type(public)
    if key_type != KEY_TYPE or not _ed25519_key_blob_ok(public):
        raise LifeboatError("%s is an %s key; only ssh-ed25519 keys sign manifests (%s)."
                            % (what, key_type or "unknown", _MAKE_KEY))
    normalised = "%s\n%s\n%s\n" % (KEY_BEGIN, _wrap(body), KEY_END)
    return normalised, public


class Signer(object):
    """Signs manifests with one host's ed25519 key. Build it with :func:`load_signing_key`."""

    def __init__(self, key_text, public_blob, runner, keygen, what):
        self._key_text = key_text
        self._public_blob = public_blob
        self.runner = runner
        self.keygen = keygen
        self.what = what
        self.public_key = _public_line(public_blob)
        self.fingerprint = _fingerprint_blob(public_blob)

    def __repr__(self):
        return "Signer(%s)" % self.fingerprint

    @property
    def key_text(self):
        """The checked private key text, for a program that signs later (kept in a 0600 file, never argv)."""
        return self._key_text

    def sign(self, manifest):
        """The ``signature`` object for ``manifest`` (its own ``signature`` key, if any, is ignored)."""
        try:
            data = canonical_bytes(manifest)
            stable = canonical_bytes(json.loads(data.decode("utf-8"))) == data
        except (TypeError, ValueError, RecursionError, AttributeError) as exc:
            raise LifeboatError("The manifest cannot be signed: it is not plain JSON (%s)." % exc)
        if not stable:
            raise LifeboatError("The manifest cannot be signed: it does not read back as the same JSON.")
        return {
            "format": SIGNATURE_FORMAT,
            "namespace": SIGNATURE_NAMESPACE,
            "signer": self.public_key,
            "value": self.sign_bytes(data, SIGNATURE_NAMESPACE, "the manifest"),
        }

    def sign_bytes(self, data, namespace, what="the data"):
        """The armored SSH signature of ``data`` under ``namespace`` (each kind of signed thing has its own)."""
        with SecretFile(self._key_text, "lifeboat-sign-key-") as secret:
            argv = [self.keygen, "-Y", "sign", "-f", secret.path, "-n", namespace, "-O", "hashalg=sha512"]
            rc, out, err = self.runner.run(argv, data=data, env=KEYGEN_ENV, pass_fds=secret.pass_fds)
            path = secret.path
        if rc != 0:
            raise LifeboatError("ssh-keygen could not sign %s with %s: %s."
                                % (what, self.what, _tool_message(err, path, self.what)))
        value = out.strip() + "\n"
        parsed = _parse_armored(value)
        if parsed is None or parsed[0] != self._public_blob or parsed[1] != namespace.encode("ascii"):
            raise LifeboatError("ssh-keygen wrote a signature that does not carry the key of %s." % self.what)
        return value


def signer_from_text(key_text, runner, keygen, what="sign_key"):
    """A :class:`Signer` for a key already checked by :func:`load_signing_key` (format only; no ssh-keygen run)."""
    normalised, public = _parse_private_key(key_text, what)
    return Signer(normalised, public, runner, keygen, what)


def load_signing_key(key_text=None, key_file=None, runner=None):
    """A :class:`Signer` for an unencrypted OpenSSH ed25519 private key (text, or a file of it).

    The key is checked here, before any backup starts: its format, its type
    (ed25519 only), that it has no passphrase (nothing can prompt), and that
    ``ssh-keygen -y`` reads it. The key reaches ssh-keygen as a 0600 memfd.
    """
    if (key_text is None) == (key_file is None):
        raise LifeboatError("Give exactly one of sign_key and sign_key_file.")
    if runner is None:
        from ansible_collections.lifeboat.backup.plugins.module_utils._runner import Runner
        runner = Runner()
    if key_file is not None:
        what = "sign_key_file %s" % key_file
        raw, info = _read_bounded_file(key_file, MAX_PRIVATE_KEY, "sign_key_file")
        if info.st_mode & 0o077:
            raise LifeboatError("sign_key_file %s can be read by group or others (mode %04o); make it 0600."
                                % (key_file, stat.S_IMODE(info.st_mode)))
        key_text = raw
    else:
        what = "sign_key"
    if isinstance(key_text, bytes):
        try:
            key_text = key_text.decode("utf-8")
        except UnicodeDecodeError:
            raise LifeboatError("%s is not text; it must be an OpenSSH ed25519 private key." % what)
    if not isinstance(key_text, str):
        raise LifeboatError("%s must be the text of an OpenSSH ed25519 private key." % what)
    normalised, public = _parse_private_key(key_text, what)
    keygen = runner.find("ssh-keygen", "openssh-client")
    with SecretFile(normalised, "lifeboat-sign-key-") as secret:
        # -P '' answers a passphrase question with "" instead of prompting (a belt to the check above).
        rc, out, err = runner.run([keygen, "-y", "-P", "", "-f", secret.path], data=b"", env=KEYGEN_ENV,
                                  pass_fds=secret.pass_fds)
        path = secret.path
    if rc != 0:
        raise LifeboatError("ssh-keygen cannot read %s: %s." % (what, _tool_message(err, path, what)))
    fields = out.split()
    blob = _b64decode(fields[1]) if len(fields) >= 2 else None
    if not fields or fields[0] != KEY_TYPE or blob != public:
        raise LifeboatError("ssh-keygen reads %s as a different key than the one it names; the key file is damaged."
                            % what)
    return Signer(normalised, public, runner, keygen, what)


# -- the verifying side -------------------------------------------------------

def _dearmor(value):
    """The binary SSHSIG inside an armored signature, or None."""
    text = value.strip()
    if not text.startswith(SIG_BEGIN) or not text.endswith(SIG_END) or len(text) < len(SIG_BEGIN) + len(SIG_END):
        return None
    body = re.sub(r"\s+", "", text[len(SIG_BEGIN):len(text) - len(SIG_END)])
    return _b64decode(body) if body else None


def _parse_armored(value):
    """(public key blob, namespace, hash, ed25519 signature) of an armored SSHSIG, or None."""
    blob = _dearmor(value)
    return _parse_sshsig(blob) if blob is not None else None


def _parse_sshsig(blob):
    reader = _Reader(blob)
    try:
        if reader.raw(len(SIG_MAGIC)) != SIG_MAGIC or reader.u32() != SIG_VERSION:
            return None
        public = reader.string()
        namespace = reader.string()
        reserved = reader.string()
        hashalg = reader.string()
        inner = _Reader(reader.string())
        if not reader.at_end() or reserved:
            return None
        sig_type = inner.string()
        sig = inner.string()
        if not inner.at_end():
            return None
    except _Truncated:
        return None
    if sig_type != KEY_TYPE.encode("ascii") or len(sig) != ED25519_SIG_BYTES:
        return None
    if hashalg.decode("ascii", "replace") not in SIG_HASHES:
        return None
    return public, namespace, hashalg, sig


def _armor(blob):
    return "%s\n%s\n%s\n" % (SIG_BEGIN, _wrap(base64.b64encode(blob).decode("ascii")), SIG_END)


def _malformed(where, detail):
    return SignatureError("%s is refused: malformed signature (%s)." % (where, detail), MALFORMED)


def _check_signature_object(signature, where):
    """Bounded, typed checks of the ``signature`` object; return (public key blob, canonical armored value)."""
    if not isinstance(signature, dict):
        raise _malformed(where, "it is not an object")
    keys = set(signature)
    if keys != set(SIGNATURE_FIELDS):
        missing = [k for k in SIGNATURE_FIELDS if k not in keys]
        extra = sorted(repr(k)[:40] for k in keys if k not in SIGNATURE_FIELDS)[:3]
        if missing:
            raise _malformed(where, "no %s field" % ", ".join(missing))
        raise _malformed(where, "unknown field %s" % ", ".join(extra))
    for key in SIGNATURE_FIELDS:
        if not isinstance(signature[key], str):
            raise _malformed(where, "field %s is not a string" % key)
    if signature["format"] != SIGNATURE_FORMAT:
        raise _malformed(where, "format is not %s" % SIGNATURE_FORMAT)
    if signature["namespace"] != SIGNATURE_NAMESPACE:
        raise _malformed(where, "namespace is not %s" % SIGNATURE_NAMESPACE)
    if len(signature["signer"]) > MAX_SIGNER_LINE:
        raise _malformed(where, "signer is longer than %d characters" % MAX_SIGNER_LINE)
    if len(signature["value"]) > MAX_SIGNATURE_VALUE:
        raise _malformed(where, "value is longer than %d characters" % MAX_SIGNATURE_VALUE)
    fields = signature["signer"].split(" ")
    signer_blob = _b64decode(fields[1]) if len(fields) == 2 and fields[0] == KEY_TYPE else None
    if signer_blob is None or not _ed25519_key_blob_ok(signer_blob):
        raise _malformed(where, "signer is not an ssh-ed25519 public key line")
    parsed = _parse_armored(signature["value"])
    if parsed is None:
        raise _malformed(where, "value is not an armored ssh-ed25519 SSH signature")
    public, namespace, dummy_hash, dummy_sig = parsed
    if public != signer_blob:
        raise _malformed(where, "value was made by another key than signer names")
    if namespace != SIGNATURE_NAMESPACE.encode("ascii"):
        raise _malformed(where, "value is in another namespace than %s" % SIGNATURE_NAMESPACE)
    return signer_blob, _armor(_dearmor(signature["value"]))


class _TrustedKey(object):
    def __init__(self, line_no, principals, options, blob):
        self.line_no = line_no
        self.principals = principals
        self.options = options
        self.blob = blob

    def line(self):
        parts = [",".join(self.principals)]
        if self.options:
            parts.append(",".join(self.options))
        parts.append(_public_line(self.blob))
        return " ".join(parts)


def _split_options(text):
    """Split ``a,b="x,y",c`` on the commas outside quotes; None when a quote is left open."""
    options = []
    current = []
    quoted = False
    for char in text:
        if char == '"':
            quoted = not quoted
        if char == "," and not quoted:
            options.append("".join(current))
            current = []
        else:
            current.append(char)
    if quoted:
        return None
    options.append("".join(current))
    return options


def _leading_token(text):
    """The first whitespace-delimited token of ``text``, quotes kept together; (token, rest) or None."""
    quoted = False
    for index, char in enumerate(text):
        if char == '"':
            quoted = not quoted
        elif char in " \t" and not quoted:
            return text[:index], text[index:].lstrip(" \t")
    if quoted:
        return None
    return text, ""


def _check_options(options, where):
    """Keep the allowed_signers options we support, in a normal spelling; refuse the rest."""
    normal = []
    seen = set()
    for option in options:
        name, sep, value = option.partition("=")
        name = name.lower()
        if name == "cert-authority":
            raise LifeboatError("%s: cert-authority is not supported; list each host's own key." % where)
        if name not in ("namespaces", "valid-after", "valid-before"):
            raise LifeboatError("%s: unknown option %r (supported: namespaces, valid-after, valid-before)."
                                % (where, option[:60]))
        if name in seen:
            raise LifeboatError("%s: option %s is given twice." % (where, name))
        seen.add(name)
        if not sep or len(value) < 2 or not (value.startswith('"') and value.endswith('"')):
            raise LifeboatError('%s: option %s needs a quoted value, like %s="...".' % (where, name, name))
        inner = value[1:-1]
        if '"' in inner:
            raise LifeboatError("%s: option %s has a stray quote." % (where, name))
        if name == "namespaces":
            patterns = inner.split(",")
            if not all(NAMESPACE_PATTERN_RE.match(p) for p in patterns):
                raise LifeboatError("%s: namespaces must be a comma-separated list of names or patterns." % where)
        elif not TIMESTAMP_RE.match(inner) or not _timestamp_ok(inner):
            raise LifeboatError("%s: %s must be a time like 20270101, 20270101Z or 202701011200Z." % (where, name))
        normal.append('%s="%s"' % (name, inner))
    return normal


def _timestamp_ok(text):
    digits = text.rstrip("Z")
    year, month, day = int(digits[0:4]), int(digits[4:6]), int(digits[6:8])
    hour = int(digits[8:10]) if len(digits) >= 12 else 0
    minute = int(digits[10:12]) if len(digits) >= 12 else 0
    second = int(digits[12:14]) if len(digits) == 14 else 0
    return 1970 <= year <= 9999 and 1 <= month <= 12 and 1 <= day <= 31 and hour < 24 and minute < 60 \
        and second < 60


_LINE_FORM = "<host>[,<host>...] [options] ssh-ed25519 <base64> [comment]"


def _parse_trusted_line(raw, where):
    """One allowed_signers line: None for a blank line or comment, else a _TrustedKey (line_no set later)."""
    if len(raw) > MAX_TRUSTED_LINE:
        raise LifeboatError("%s is longer than %d characters." % (where, MAX_TRUSTED_LINE))
    text = raw.strip(" \t\r")
    if not text or text.startswith("#"):
        return None
    if any(ord(char) < 32 and char != "\t" or ord(char) == 127 for char in text):
        raise LifeboatError("%s contains a control character." % where)
    split = _leading_token(text)
    principals_text, rest = split if split else (text, "")
    if '"' in principals_text:
        raise LifeboatError("%s: quoted principals are not supported; give host names separated by commas." % where)
    principals = principals_text.split(",")
    for principal in principals:
        if not PRINCIPAL_RE.match(principal):
            if any(char in principal for char in "*?!"):
                raise LifeboatError("%s: principal %r is a pattern; name each host exactly (one key per host)."
                                    % (where, principal[:60]))
            raise LifeboatError("%s: principal %r is not a host name as used in the store." % (where, principal[:60]))
    if not rest:
        raise LifeboatError("%s has no key after the principals %r." % (where, principals_text[:60]))
    options = []
    first = rest.split(None, 1)[0]
    if not _OTHER_KEY_TYPE_RE.match(first):
        split = _leading_token(rest)
        if split is None:
            raise LifeboatError("%s has an unclosed quote." % where)
        option_text, rest = split
        options = _split_options(option_text)
        if options is None:
            raise LifeboatError("%s has an unclosed quote." % where)
        if not rest:
            raise LifeboatError("%s is not an allowed_signers line (%s)." % (where, _LINE_FORM))
        options = _check_options(options, where)
    fields = rest.split(None, 2)
    if fields[0] != KEY_TYPE:
        if _OTHER_KEY_TYPE_RE.match(fields[0]):
            raise LifeboatError("%s has an %s key; only ssh-ed25519 keys sign manifests." % (where, fields[0]))
        raise LifeboatError("%s is not an allowed_signers line (%s)." % (where, _LINE_FORM))
    blob = _b64decode(fields[1]) if len(fields) >= 2 else None
    if blob is None or not _ed25519_key_blob_ok(blob):
        raise LifeboatError("%s has a damaged ssh-ed25519 key (its base64 is not a 32-byte ed25519 key)." % where)
    return _TrustedKey(None, principals, options, blob)


class TrustedSigners(object):
    """The keys allowed to sign each host's sets (``allowed_signers`` lines, principal = host name).

    ``lines`` is a list of strings; an element may hold several lines (a whole
    file). Blank lines and ``#`` comments are skipped. Each key line is
    ``<host>[,<host>...] [options] ssh-ed25519 <base64> [comment]``; the
    options ``namespaces="..."``, ``valid-after="..."`` and ``valid-before="..."``
    are kept and enforced by ssh-keygen; anything else is refused, naming the line.
    """

    def __init__(self, lines, runner=None, source="trusted_signers"):
        if runner is None:
            from ansible_collections.lifeboat.backup.plugins.module_utils._runner import Runner
            runner = Runner()
        self.runner = runner
        self.source = source
        self.option = source.split(" ")[0]
        if isinstance(lines, (str, bytes)):
            lines = [lines]
        if not isinstance(lines, (list, tuple)):
            raise LifeboatError("%s must be a list of allowed_signers lines." % source)
        self.keys = []
        total = 0
        line_no = 0
        for element in lines:
            if isinstance(element, bytes):
                try:
                    element = element.decode("utf-8")
                except UnicodeDecodeError:
                    raise LifeboatError("%s line %d is not UTF-8 text." % (source, line_no + 1))
            if not isinstance(element, str):
                raise LifeboatError("%s line %d is not a string." % (source, line_no + 1))
            total += len(element)
            if total > MAX_TRUSTED_TEXT:
                raise LifeboatError("%s is larger than %d bytes." % (source, MAX_TRUSTED_TEXT))
            for raw in element.split("\n"):
                line_no += 1
                key = _parse_trusted_line(raw, "%s line %d" % (source, line_no))
                if key is None:
                    continue
                key.line_no = line_no
                self.keys.append(key)
                if len(self.keys) > MAX_TRUSTED_KEYS:
                    raise LifeboatError("%s lists more than %d keys." % (source, MAX_TRUSTED_KEYS))
        if not self.keys:
            raise LifeboatError("%s lists no key; give one line per host, or leave it unset to accept unsigned sets."
                                % source)
        self.keygen = runner.find("ssh-keygen", "openssh-client")
        self._allowed = "".join(key.line() + "\n" for key in self.keys)

    @classmethod
    def from_file(cls, path, runner=None):
        """TrustedSigners from an allowed_signers file (bounded, a regular file)."""
        raw, dummy_info = _read_bounded_file(path, MAX_TRUSTED_TEXT, "trusted_signers_file")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise LifeboatError("trusted_signers_file %s is not UTF-8 text." % path)
        return cls([text], runner, source="trusted_signers_file %s" % path)

    def principals(self):
        """Every host name that has a trusted key."""
        return sorted(set(p for key in self.keys for p in key.principals))

    def verify(self, manifest, principal, where="The manifest"):
        """Check ``manifest``'s signature for ``principal`` (the set's host name); return the principal.

        Raises :class:`SignatureError` naming the reason otherwise. ``where``
        starts the sentence (for instance ``"Set db1/main/20260101T000000Z-full"``).
        """
        if not isinstance(principal, str) or not PRINCIPAL_RE.match(principal):
            raise SignatureError("%s is refused: its host %r cannot be a signer principal."
                                 % (where, str(principal)[:60]), MALFORMED)
        if not isinstance(manifest, dict):
            raise _malformed(where, "the manifest is not an object")
        signature = manifest.get("signature")
        if signature is None:
            raise SignatureError("%s is refused: unsigned (%s is set, so every set must be signed)."
                                 % (where, self.option), UNSIGNED)
        blob, armored = _check_signature_object(signature, where)
        try:
            data = canonical_bytes(manifest)
        except (TypeError, ValueError, RecursionError) as exc:
            raise _malformed(where, "the manifest is not plain JSON: %s" % str(exc)[:100])
        return self._verify(data, blob, armored, principal, SIGNATURE_NAMESPACE, where)

    def lines(self):
        """The trusted key lines, as ssh-keygen reads them (one allowed_signers line each)."""
        return [key.line() for key in self.keys]

    def verify_bytes(self, data, armored, principal, namespace, where):
        """Check the armored SSH signature ``armored`` of ``data`` under ``namespace`` for ``principal``.

        Returns the principal; raises :class:`SignatureError` (``unsigned`` when
        ``armored`` is None) otherwise. ``where`` starts the sentence.
        """
        if armored is None:
            raise SignatureError("%s is refused: unsigned (%s is set, so it must be signed)." % (where, self.option),
                                 UNSIGNED)
        if not isinstance(principal, str) or not PRINCIPAL_RE.match(principal):
            raise SignatureError("%s is refused: its host %r cannot be a signer principal."
                                 % (where, str(principal)[:60]), MALFORMED)
        if not isinstance(armored, str) or len(armored) > MAX_SIGNATURE_VALUE:
            raise _malformed(where, "it is not an armored SSH signature of at most %d characters" % MAX_SIGNATURE_VALUE)
        parsed = _parse_armored(armored)
        if parsed is None:
            raise _malformed(where, "it is not an armored ssh-ed25519 SSH signature")
        if parsed[1] != namespace.encode("ascii"):
            raise _malformed(where, "it is in another namespace than %s" % namespace)
        return self._verify(data, parsed[0], _armor(_dearmor(armored)), principal, namespace, where)

    def _verify(self, data, blob, armored, principal, namespace, where):
        matches = [key for key in self.keys if key.blob == blob]
        if not matches:
            raise SignatureError("%s is refused: signed by a key not in %s (fingerprint %s)."
                                 % (where, self.option, _fingerprint_blob(blob)), UNTRUSTED)
        mine = [key for key in matches if principal in key.principals]
        if not mine:
            others = sorted(set(p for key in matches for p in key.principals))
            raise SignatureError("%s is refused: signed by a key trusted for another host (principal %s, not %s)."
                                 % (where, ", ".join(others), principal), OTHER_HOST)
        with SecretFile(self._allowed, "lifeboat-allowed-signers-") as allowed:
            with SecretFile(armored, "lifeboat-signature-") as sig:
                fds = allowed.pass_fds + sig.pass_fds
                rc, out, err = self.runner.run(
                    [self.keygen, "-Y", "verify", "-f", allowed.path, "-I", principal, "-n", namespace,
                     "-s", sig.path], data=data, env=KEYGEN_ENV, pass_fds=fds)
                if rc == 0 and out.startswith("Good "):
                    return principal
                verify_err = err
                rc2, dummy_out, dummy_err = self.runner.run(
                    [self.keygen, "-Y", "check-novalidate", "-n", namespace, "-s", sig.path],
                    data=data, env=KEYGEN_ENV, pass_fds=sig.pass_fds)
        if rc2 != 0:
            raise SignatureError("%s is refused: altered after signing (signature does not match)." % where, ALTERED)
        lines = ", ".join(str(key.line_no) for key in mine)
        raise SignatureError("%s is refused: signed by a key whose %s line for %s does not accept it "
                             "(line %s: %s)."
                             % (where, self.option, principal, lines, _tool_message(verify_err)), NOT_ACCEPTED)
