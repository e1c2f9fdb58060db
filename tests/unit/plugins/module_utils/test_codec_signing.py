# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Signed manifests, with the real ssh-keygen: sign, verify, every refusal, and where the key goes."""

from __future__ import annotations

import base64
import copy
import fcntl
import json
import os
import re
import stat
import subprocess
import sys
import tempfile
import termios

import pytest

hypothesis = pytest.importorskip("hypothesis")
# Keep hypothesis' caches out of the working tree (it writes ./.hypothesis by default).
hypothesis.configuration.set_hypothesis_home_dir(os.path.join(tempfile.gettempdir(), "lifeboat-unit-hypothesis"))
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402 pylint: disable=wrong-import-position

from ansible_collections.lifeboat.backup.plugins.module_utils import _codec  # noqa: E402
from ansible_collections.lifeboat.backup.plugins.module_utils._codec import (  # noqa: E402
    SIGNATURE_NAMESPACE,
    SignatureError,
    TrustedSigners,
    canonical_bytes,
    load_signing_key,
)
from ansible_collections.lifeboat.backup.plugins.module_utils._common import LifeboatError  # noqa: E402
from ansible_collections.lifeboat.backup.plugins.module_utils._runner import Runner  # noqa: E402

FUZZ = settings(max_examples=150, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
FEW = settings(max_examples=25, deadline=None, database=None,
               suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

KEYGEN = Runner().find("ssh-keygen", "openssh-client")


def _keygen(path, key_type="ed25519", passphrase="", extra=()):
    argv = [KEYGEN, "-q", "-t", key_type, "-N", passphrase, "-C", "%s@test" % os.path.basename(path), "-f", path]
    subprocess.run(argv + list(extra), check=True, stdin=subprocess.DEVNULL, capture_output=True)
    with open(path, encoding="ascii") as handle:
        private = handle.read()
    with open(path + ".pub", encoding="ascii") as handle:
        public = " ".join(handle.read().split()[:2])
    return private, public


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    """Real keys made by ssh-keygen: one per host, a stranger's, and the kinds that must be refused."""
    base = tmp_path_factory.mktemp("keys")
    made = {}
    for name in ("db1", "db2", "stranger", "db1_new"):
        made[name] = _keygen(str(base / name))
    made["rsa"] = _keygen(str(base / "rsa"), "rsa", extra=("-b", "2048"))
    made["rsa_pem"] = _keygen(str(base / "rsa_pem"), "rsa", extra=("-b", "2048", "-m", "PEM"))
    made["ecdsa"] = _keygen(str(base / "ecdsa"), "ecdsa")
    made["passphrase"] = _keygen(str(base / "passphrase"), passphrase="correct horse")
    made["dir"] = str(base)
    return made


@pytest.fixture()
def runner():
    return Runner()


def _manifest(host="db1"):
    return {
        "format_version": 2,
        "set_id": "20260101T031500Z-full",
        "host": host,
        "source": "main",
        "type": "full",
        "parent_set_id": None,
        "ended_at": "2026-01-01T03:16:00.000Z",
        "bytes": 12345,
        "files": [{"name": "dump.pgc.zst", "size": 12345, "sha256": "ab" * 32, "role": "payload"}],
        "labels": {"note": "caf\u00e9 \u2603"},
    }


def _signed(keys, runner, who="db1", host="db1"):
    manifest = _manifest(host)
    manifest["signature"] = load_signing_key(key_text=keys[who][0], runner=runner).sign(manifest)
    return manifest


def _trust(keys, runner, *pairs):
    return TrustedSigners(["%s %s" % (host, keys[who][1]) for host, who in pairs], runner)


def _ssh_fingerprint(public_line):
    """The fingerprint as ssh-keygen -l prints it."""
    out = subprocess.run([KEYGEN, "-l", "-f", "/dev/stdin"], input=public_line, capture_output=True, text=True,
                         check=True)
    return out.stdout.split()[1]


def _reason(trusted, manifest, principal):
    with pytest.raises(SignatureError) as info:
        trusted.verify(manifest, principal)
    return info.value.reason, str(info.value)


# -- canonical bytes ------------------------------------------------------------------------------------

def test_canonical_bytes_drop_the_signature_and_sort_compactly():
    manifest = {"b": [1, {"z": 1, "a": "\u00e9"}], "a": None, "signature": {"value": "x"}}
    assert canonical_bytes(manifest) == b'{"a":null,"b":[1,{"a":"\\u00e9","z":1}]}'
    assert "signature" in manifest


def test_canonical_bytes_are_what_ssh_keygen_verifies_by_hand(keys, runner, tmp_path):
    """A set stays verifiable with stock tools: canonical JSON, the armored value and an allowed_signers file."""
    manifest = _signed(keys, runner)
    (tmp_path / "data").write_bytes(canonical_bytes(manifest))
    (tmp_path / "sig").write_text(manifest["signature"]["value"])
    (tmp_path / "allowed").write_text("db1 %s\n" % keys["db1"][1])
    with open(str(tmp_path / "data"), "rb") as data:
        out = subprocess.run([KEYGEN, "-Y", "verify", "-f", str(tmp_path / "allowed"), "-I", "db1",
                              "-n", SIGNATURE_NAMESPACE, "-s", str(tmp_path / "sig")],
                             stdin=data, capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith('Good "lifeboat.backup/manifest@v1" signature for db1 with ED25519 key')


# -- signing --------------------------------------------------------------------------------------------

def test_signature_object_has_the_fixed_shape(keys, runner):
    signer = load_signing_key(key_text=keys["db1"][0], runner=runner)
    assert signer.public_key == keys["db1"][1]
    signature = signer.sign(_manifest())
    assert sorted(signature) == ["format", "namespace", "signer", "value"]
    assert signature["format"] == "sshsig"
    assert signature["namespace"] == "lifeboat.backup/manifest@v1"
    assert signature["signer"] == keys["db1"][1]          # comment stripped
    assert re.match(r"^-----BEGIN SSH SIGNATURE-----\n[A-Za-z0-9+/=\n]+\n-----END SSH SIGNATURE-----\n\Z",
                    signature["value"])
    assert json.loads(json.dumps(signature)) == signature
    assert signer.fingerprint == _ssh_fingerprint(keys["db1"][1])
    assert repr(signer) == "Signer(%s)" % signer.fingerprint


def test_valid_signature_verifies(keys, runner):
    manifest = _signed(keys, runner)
    trusted = _trust(keys, runner, ("db1", "db1"), ("db2", "db2"))
    assert trusted.verify(manifest, "db1") == "db1"
    assert trusted.verify(json.loads(json.dumps(manifest, indent=2)), "db1") == "db1"   # any layout on disk


def test_signing_ignores_an_existing_signature(keys, runner):
    manifest = _signed(keys, runner, who="stranger")
    manifest["signature"] = load_signing_key(key_text=keys["db1"][0], runner=runner).sign(manifest)
    assert _trust(keys, runner, ("db1", "db1")).verify(manifest, "db1") == "db1"


def test_sign_key_file_and_sloppy_key_text_are_accepted(keys, runner):
    path = os.path.join(keys["dir"], "db1")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert load_signing_key(key_file=path, runner=runner).public_key == keys["db1"][1]
    # Pasted through YAML: indented, CRLF line ends, no final newline.
    sloppy = "\r\n".join("    " + line for line in keys["db1"][0].strip().splitlines())
    signer = load_signing_key(key_text=sloppy, runner=runner)
    manifest = _manifest()
    manifest["signature"] = signer.sign(manifest)
    assert _trust(keys, runner, ("db1", "db1")).verify(manifest, "db1") == "db1"


def test_unserialisable_manifest_is_one_sentence(keys, runner):
    signer = load_signing_key(key_text=keys["db1"][0], runner=runner)
    with pytest.raises(LifeboatError, match=r"^The manifest cannot be signed: it is not plain JSON"):
        signer.sign({"when": object()})
    with pytest.raises(LifeboatError, match=r"^The manifest cannot be signed: it is not plain JSON"):
        signer.sign({1: "a", "b": 2})


@pytest.mark.parametrize("which, message", [
    ("rsa", r"^sign_key is an ssh-rsa key; only ssh-ed25519 keys sign manifests \(make one per host with: "
            r"ssh-keygen -t ed25519 -N '' -f <file>\)\.$"),
    ("ecdsa", r"^sign_key is an ecdsa-sha2-nistp256 key; only ssh-ed25519 keys sign manifests"),
    ("rsa_pem", r"^sign_key is a PEM private key; it must be an unencrypted OpenSSH ed25519 private key"),
    ("passphrase", r"^sign_key is protected by a passphrase, and nothing here can prompt for one; give an "
                   r"unencrypted key"),
])
def test_unusable_keys_are_refused_with_one_sentence(keys, runner, which, message):
    with pytest.raises(LifeboatError, match=message):
        load_signing_key(key_text=keys[which][0], runner=runner)


@pytest.mark.parametrize("text, message", [
    ("", r"^sign_key is not an OpenSSH private key;"),
    ("hello", r"^sign_key is not an OpenSSH private key;"),
    ("PuTTY-User-Key-File-3: ssh-ed25519\n", r"^sign_key is a PuTTY key;"),
    ("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ==\n",
     r"^sign_key has no '-----END OPENSSH PRIVATE KEY-----' line"),
    ("-----BEGIN OPENSSH PRIVATE KEY-----\n!!!!\n-----END OPENSSH PRIVATE KEY-----\n",
     r"^sign_key is not a readable OpenSSH private key \(its base64 body is damaged\)\.$"),
    ("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmU=\n-----END OPENSSH PRIVATE KEY-----\n",
     r"^sign_key is not a readable OpenSSH private key \(it is truncated\)\.$"),
    ("x" * 20000, r"^sign_key is larger than 16384 bytes"),
])
def test_garbage_keys_are_refused_with_one_sentence(runner, text, message):
    with pytest.raises(LifeboatError, match=message):
        load_signing_key(key_text=text, runner=runner)


def test_public_key_given_as_sign_key(keys, runner):
    with pytest.raises(LifeboatError, match=r"^sign_key is a public key, not a private key;"):
        load_signing_key(key_text=keys["db1"][1], runner=runner)


def test_damaged_private_section_is_reported_by_ssh_keygen(keys, runner):
    """A key whose header is fine but whose private part is cut: ssh-keygen's own words, fd path replaced."""
    body = "".join(keys["db1"][0].strip().splitlines()[1:-1])
    blob = base64.b64decode(body)
    cut = base64.b64encode(blob[:-60]).decode("ascii")
    text = "-----BEGIN OPENSSH PRIVATE KEY-----\n%s\n-----END OPENSSH PRIVATE KEY-----\n" % cut
    with pytest.raises(LifeboatError) as info:
        load_signing_key(key_text=text, runner=runner)
    assert str(info.value).startswith("ssh-keygen cannot read sign_key: Load key sign_key: ")
    assert "/dev/fd/" not in str(info.value)


def test_sign_key_file_readable_by_others_is_refused(keys, runner, tmp_path):
    path = tmp_path / "key"
    path.write_text(keys["db1"][0])
    path.chmod(0o644)
    with pytest.raises(LifeboatError, match=r"^sign_key_file .*/key can be read by group or others \(mode 0644\); "
                                            r"make it 0600\.$"):
        load_signing_key(key_file=str(path), runner=runner)


def test_sign_key_file_fifo_is_refused_at_once(runner, tmp_path):
    path = tmp_path / "fifo"
    os.mkfifo(str(path), 0o600)
    with pytest.raises(LifeboatError, match=r"^sign_key_file .*/fifo is not a regular file\.$"):
        load_signing_key(key_file=str(path), runner=runner)


def test_sign_key_file_missing(runner, tmp_path):
    with pytest.raises(LifeboatError, match=r"^Cannot read sign_key_file .*/nope: No such file or directory\.$"):
        load_signing_key(key_file=str(tmp_path / "nope"), runner=runner)


def test_exactly_one_key_source(keys, runner):
    with pytest.raises(LifeboatError, match=r"^Give exactly one of sign_key and sign_key_file\.$"):
        load_signing_key(runner=runner)
    with pytest.raises(LifeboatError, match=r"^Give exactly one of sign_key and sign_key_file\.$"):
        load_signing_key(key_text=keys["db1"][0], key_file="/x", runner=runner)


def _run_on_a_terminal(code, timeout=20):
    """Run ``code`` in a child whose stdin and controlling terminal are a pty, where a prompt would wait forever."""
    master, slave = os.openpty()

    def _take_terminal():
        os.setsid()
        fcntl.ioctl(slave, termios.TIOCSCTTY, 0)

    try:
        return subprocess.run([sys.executable, "-c", code], stdin=slave, capture_output=True, text=True,
                              preexec_fn=_take_terminal, timeout=timeout, check=False,
                              env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
    finally:
        os.close(master)
        os.close(slave)


def test_passphrase_key_is_refused_without_prompting_even_on_a_terminal(keys):
    """On a terminal ssh-keygen would ask for the passphrase on /dev/tty and wait; nothing here may ask."""
    code = (
        "import sys\n"
        "from ansible_collections.lifeboat.backup.plugins.module_utils._codec import load_signing_key\n"
        "from ansible_collections.lifeboat.backup.plugins.module_utils._common import LifeboatError\n"
        "try:\n"
        "    load_signing_key(key_file=sys.argv[1])\n"
        "except LifeboatError as exc:\n"
        "    print(exc)\n"
    )
    out = _run_on_a_terminal(code.replace("sys.argv[1]", repr(os.path.join(keys["dir"], "passphrase"))))
    assert out.returncode == 0, out.stderr
    assert "is protected by a passphrase, and nothing here can prompt for one" in out.stdout


def test_ssh_keygen_is_never_left_to_prompt(keys):
    """Even past the format check (a key whose header lies), ssh-keygen gets -P '' and cannot prompt."""
    code = (
        "import sys\n"
        "from ansible_collections.lifeboat.backup.plugins.module_utils import _codec\n"
        "from ansible_collections.lifeboat.backup.plugins.module_utils._common import LifeboatError\n"
        "_codec._parse_private_key = lambda text, what: (text, b'')\n"
        "try:\n"
        "    _codec.load_signing_key(key_text=open(%r).read())\n"
        "except LifeboatError as exc:\n"
        "    print(exc)\n"
    ) % os.path.join(keys["dir"], "passphrase")
    out = _run_on_a_terminal(code)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("ssh-keygen cannot read sign_key: Load key sign_key: incorrect passphrase")


# -- verifying: each refusal names its reason -----------------------------------------------------------

def test_unsigned_is_refused(keys, runner):
    trusted = _trust(keys, runner, ("db1", "db1"))
    assert _reason(trusted, _manifest(), "db1") == (
        "unsigned", "The manifest is refused: unsigned (trusted_signers is set, so every set must be signed).")
    assert _reason(trusted, dict(_manifest(), signature=None), "db1")[0] == "unsigned"


def test_key_of_another_host_is_refused(keys, runner):
    """db2 can write to the shared store, but its key cannot sign a set filed as db1's."""
    trusted = _trust(keys, runner, ("db1", "db1"), ("db2", "db2"))
    forged = _signed(keys, runner, who="db2", host="db1")
    with pytest.raises(SignatureError) as info:
        trusted.verify(forged, "db1", where="Set db1/main/20260101T031500Z-full")
    assert info.value.reason == "other-host"
    assert str(info.value) == ("Set db1/main/20260101T031500Z-full is refused: signed by a key trusted for another "
                               "host (principal db2, not db1).")


def test_untrusted_key_is_refused_with_its_fingerprint(keys, runner):
    trusted = _trust(keys, runner, ("db1", "db1"))
    forged = _signed(keys, runner, who="stranger")
    assert _reason(trusted, forged, "db1") == (
        "untrusted", "The manifest is refused: signed by a key not in trusted_signers (fingerprint %s)."
        % _ssh_fingerprint(keys["stranger"][1]))


def _alter(path, value):
    def _do(manifest):
        target = manifest
        for key in path[:-1]:
            target = target[key]
        if value is KeyError:
            del target[path[-1]]
        else:
            target[path[-1]] = value
    return _do


ALTERATIONS = {
    "host": _alter(("host",), "db2"),
    "set id": _alter(("set_id",), "20260101T031500Z-full-2"),
    "time": _alter(("ended_at",), "2026-01-01T03:16:00.001Z"),
    "bytes as float": _alter(("bytes",), 12345.0),
    "bytes as string": _alter(("bytes",), "12345"),
    "null to false": _alter(("parent_set_id",), False),
    "file hash": _alter(("files", 0, "sha256"), "cd" * 32),
    "file size": _alter(("files", 0, "size"), 0),
    "new field": _alter(("extra",), 1),
    "field removed": _alter(("labels",), KeyError),
    "nested field removed": _alter(("files", 0, "role"), KeyError),
    "file added": lambda m: m["files"].append({"name": "evil", "size": 1, "sha256": "00" * 32}),
    "files emptied": _alter(("files",), []),
    "unicode": _alter(("labels", "note"), "cafe \u2603"),
}


@pytest.mark.parametrize("change", sorted(ALTERATIONS))
def test_altered_manifest_is_refused(keys, runner, change):
    trusted = _trust(keys, runner, ("db1", "db1"), ("db2", "db1"))
    manifest = _signed(keys, runner)
    ALTERATIONS[change](manifest)
    assert _reason(trusted, manifest, "db1") == (
        "altered", "The manifest is refused: altered after signing (signature does not match).")


def test_signature_moved_to_another_manifest_is_refused(keys, runner):
    trusted = _trust(keys, runner, ("db1", "db1"))
    other = _manifest()
    other["set_id"] = "20260102T031500Z-full"
    other["signature"] = _signed(keys, runner)["signature"]
    assert _reason(trusted, other, "db1")[0] == "altered"


@pytest.mark.parametrize("signature, detail", [
    ("x", "it is not an object"),
    ([], "it is not an object"),
    ({}, "no format, namespace, signer, value field"),
    ({"format": "sshsig", "namespace": SIGNATURE_NAMESPACE, "signer": "x"}, "no value field"),
    ("EXTRA", "unknown field 'extra'"),
    ("FORMAT=gpg", "format is not sshsig"),
    ("FORMAT=1", "field format is not a string"),
    ("NAMESPACE=file", "namespace is not lifeboat.backup/manifest@v1"),
    ("SIGNER=ssh-rsa AAAA", "signer is not an ssh-ed25519 public key line"),
    ("SIGNER=ssh-ed25519 !!!!", "signer is not an ssh-ed25519 public key line"),
    ("SIGNER=ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK/AJLVhzbFAr3waHKhLzPrq25eWachcScZ7td45MbmC comment",
     "signer is not an ssh-ed25519 public key line"),
    ("SIGNER=LONG", "signer is longer than 1024 characters"),
    ("VALUE=garbage", "value is not an armored ssh-ed25519 SSH signature"),
    ("VALUE=-----BEGIN SSH SIGNATURE-----\n-----END SSH SIGNATURE-----",
     "value is not an armored ssh-ed25519 SSH signature"),
    ("VALUE=-----BEGIN SSH SIGNATURE-----\nU1NIU0lH\n-----END SSH SIGNATURE-----",
     "value is not an armored ssh-ed25519 SSH signature"),
    ("VALUE=LONG", "value is longer than 8192 characters"),
    ("VALUE=STRANGER", "value was made by another key than signer names"),
])
def test_malformed_signatures_are_refused_before_anything_runs(keys, signature, detail):
    class NothingRuns(Runner):
        def popen(self, *args, **kwargs):
            raise AssertionError("a malformed signature must be refused before ssh-keygen runs")

    trusted = _trust(keys, NothingRuns(), ("db1", "db1"), ("db1", "stranger"))
    manifest = _signed(keys, Runner())
    genuine = manifest["signature"]
    if isinstance(signature, str) and signature == "EXTRA":
        signature = dict(genuine, extra=1)
    elif isinstance(signature, str) and "=" in signature and signature.split("=", 1)[0].isupper():
        field, value = signature.split("=", 1)
        if value == "LONG":
            value = "x" * 9000 if field == "VALUE" else "ssh-ed25519 " + "A" * 1100
        elif value == "STRANGER":
            value = _signed(keys, Runner(), who="stranger")["signature"]["value"]
        elif value == "1":
            value = 1
        signature = dict(genuine, **{field.lower(): value})
    manifest["signature"] = signature
    with pytest.raises(SignatureError) as info:
        trusted.verify(manifest, "db1")
    assert info.value.reason == "malformed"
    assert str(info.value) == "The manifest is refused: malformed signature (%s)." % detail


def test_signature_in_another_namespace_is_refused(keys, runner, tmp_path):
    """A genuine db1 signature made for git commits (namespace "git") is no manifest signature."""
    manifest = _manifest()
    key = tmp_path / "k"
    key.write_text(keys["db1"][0])
    key.chmod(0o600)
    out = subprocess.run([KEYGEN, "-Y", "sign", "-f", str(key), "-n", "git"], input=canonical_bytes(manifest),
                         capture_output=True, check=True)
    manifest["signature"] = {"format": "sshsig", "namespace": SIGNATURE_NAMESPACE, "signer": keys["db1"][1],
                             "value": out.stdout.decode("ascii")}
    assert _reason(_trust(keys, runner, ("db1", "db1")), manifest, "db1") == (
        "malformed", "The manifest is refused: malformed signature (value is in another namespace than "
                     "lifeboat.backup/manifest@v1).")


def test_bad_principal_and_bad_manifest_are_one_sentence(keys, runner):
    trusted = _trust(keys, runner, ("db1", "db1"))
    manifest = _signed(keys, runner)
    assert _reason(trusted, manifest, "../db1")[0] == "malformed"
    assert _reason(trusted, manifest, None)[0] == "malformed"
    assert _reason(trusted, ["not", "a", "dict"], "db1")[0] == "malformed"
    manifest[1] = "a non-string key next to string keys"
    assert _reason(trusted, manifest, "db1")[0] == "malformed"


def test_key_rotation_with_two_lines_per_host(keys, runner):
    old = _signed(keys, runner, who="db1")
    new = _signed(keys, runner, who="db1_new")
    both = TrustedSigners(["db1 %s old" % keys["db1"][1], "db1 %s new" % keys["db1_new"][1]], runner)
    assert both.verify(old, "db1") == "db1"
    assert both.verify(new, "db1") == "db1"
    retired = TrustedSigners(["db1 %s new" % keys["db1_new"][1]], runner)
    assert retired.verify(new, "db1") == "db1"
    assert _reason(retired, old, "db1")[0] == "untrusted"


def test_one_key_for_several_named_hosts(keys, runner):
    trusted = TrustedSigners(["db1,db1.example.com %s" % keys["db1"][1]], runner)
    assert trusted.verify(_signed(keys, runner, host="db1.example.com"), "db1.example.com") == "db1.example.com"
    assert trusted.principals() == ["db1", "db1.example.com"]


@pytest.mark.parametrize("options, accepted", [
    ('namespaces="lifeboat.backup/manifest@v1"', True),
    ('namespaces="git,lifeboat.backup/*"', True),
    ('namespaces="git"', False),
    ('valid-after="20000101"', True),
    ('valid-after="99990101Z"', False),
    ('valid-before="20000101Z"', False),
    ('VALID-BEFORE="99991231235959Z",namespaces="lifeboat.backup/manifest@v1"', True),
])
def test_supported_options_are_enforced_by_ssh_keygen(keys, runner, options, accepted):
    trusted = TrustedSigners(["# fleet signers", "db1 %s %s db1 key" % (options, keys["db1"][1])], runner)
    manifest = _signed(keys, runner)
    if accepted:
        assert trusted.verify(manifest, "db1") == "db1"
    else:
        reason, message = _reason(trusted, manifest, "db1")
        assert reason == "not-accepted"
        assert message.startswith("The manifest is refused: signed by a key whose trusted_signers line for db1 "
                                  "does not accept it (line 2: ")
        assert "/dev/fd/" not in message


# -- trusted_signers lines ------------------------------------------------------------------------------

PUB = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK/AJLVhzbFAr3waHKhLzPrq25eWachcScZ7td45MbmC"


@pytest.mark.parametrize("lines, count", [
    (["db1 %s" % PUB], 1),
    (["db1 %s a comment with spaces" % PUB], 1),
    (["  db1\t%s  \r" % PUB], 1),
    (["# comment", "", "   ", "db1 %s" % PUB], 1),
    (["# a whole file\ndb1 %s\ndb2 %s\n" % (PUB, PUB)], 2),
    (['db1 namespaces="a,b@c",valid-after="20260101" %s' % PUB], 1),
    (['db1 valid-before="202601011200Z" %s' % PUB], 1),
])
def test_good_trusted_lines(runner, lines, count):
    assert len(TrustedSigners(lines, runner).keys) == count


@pytest.mark.parametrize("lines, message", [
    ([], r"^trusted_signers lists no key; give one line per host, or leave it unset"),
    (["# only a comment", ""], r"^trusted_signers lists no key;"),
    (["db1"], r"^trusted_signers line 1 has no key after the principals 'db1'\.$"),
    (["# c", "db1 cert-authority %s" % PUB],
     r"^trusted_signers line 2: cert-authority is not supported; list each host's own key\.$"),
    (["db1 no-touch-required %s" % PUB], r"^trusted_signers line 1: unknown option 'no-touch-required' "
                                         r"\(supported: namespaces, valid-after, valid-before\)\.$"),
    (["db1 namespaces=git %s" % PUB], r'^trusted_signers line 1: option namespaces needs a quoted value'),
    (['db1 namespaces="git" namespaces="x" %s' % PUB], r"^trusted_signers line 1 is not an allowed_signers line"),
    (['db1 namespaces="a",namespaces="b" %s' % PUB], r"^trusted_signers line 1: option namespaces is given twice"),
    (['db1 namespaces="git %s' % PUB], r"^trusted_signers line 1 has an unclosed quote\.$"),
    (['db1 namespaces="" %s' % PUB], r"^trusted_signers line 1: namespaces must be a comma-separated list"),
    (['db1 valid-before="tomorrow" %s' % PUB], r"^trusted_signers line 1: valid-before must be a time like"),
    (['db1 valid-before="20261301" %s' % PUB], r"^trusted_signers line 1: valid-before must be a time like"),
    (["* %s" % PUB], r"^trusted_signers line 1: principal '\*' is a pattern; name each host exactly"),
    (["db1,!db2 %s" % PUB], r"^trusted_signers line 1: principal '!db2' is a pattern;"),
    (["../x %s" % PUB], r"^trusted_signers line 1: principal '\.\./x' is not a host name as used in the store\.$"),
    (['"db1" %s' % PUB], r"^trusted_signers line 1: quoted principals are not supported"),
    (["db1 ssh-rsa AAAAB3NzaC1yc2E="], r"^trusted_signers line 1 has an ssh-rsa key; only ssh-ed25519 keys sign"),
    (["db1 ssh-ed25519-cert-v01@openssh.com AAAA"], r"^trusted_signers line 1 has an "
                                                    r"ssh-ed25519-cert-v01@openssh.com key;"),
    (["db1 ssh-ed25519"], r"^trusted_signers line 1 has a damaged ssh-ed25519 key"),
    (["db1 ssh-ed25519 AAAA"], r"^trusted_signers line 1 has a damaged ssh-ed25519 key"),
    (["db1 ssh-ed25519 AAAAC3NzaC1yc2E="], r"^trusted_signers line 1 has a damaged ssh-ed25519 key"),
    (["db1 ssh-ed25519 %s==" % PUB.split()[1]], r"^trusted_signers line 1 has a damaged ssh-ed25519 key"),
    (["db1 %s\x00" % PUB], r"^trusted_signers line 1 contains a control character\.$"),
    (["db1 %s" % PUB, "db2 " + "A" * 5000], r"^trusted_signers line 2 is longer than 4096 characters\.$"),
    (["db1 %s" % PUB, 7], r"^trusted_signers line 2 is not a string\.$"),
    ("db1 %s\n" % PUB * 20000, r"^trusted_signers is larger than 1048576 bytes\.$"),
    (7, r"^trusted_signers must be a list of allowed_signers lines\.$"),
])
def test_bad_trusted_lines_are_refused_naming_the_line(runner, lines, message):
    with pytest.raises(LifeboatError, match=message):
        TrustedSigners(lines, runner)


def test_trusted_signers_file(keys, runner, tmp_path):
    path = tmp_path / "allowed_signers"
    path.write_text("# fleet\ndb1 %s\nbogus line\n" % keys["db1"][1])
    with pytest.raises(LifeboatError, match=r"^trusted_signers_file .*/allowed_signers line 3 is not an "
                                            r"allowed_signers line \(<host>\[,<host>\.\.\.\] \[options\] "
                                            r"ssh-ed25519 <base64> \[comment\]\)\.$"):
        TrustedSigners.from_file(str(path), runner)
    path.write_text("# fleet\ndb1 %s\n" % keys["db1"][1])
    trusted = TrustedSigners.from_file(str(path), runner)
    assert trusted.verify(_signed(keys, runner), "db1") == "db1"
    assert _reason(trusted, _manifest(), "db1")[1] == (
        "The manifest is refused: unsigned (trusted_signers_file is set, so every set must be signed).")
    fifo = tmp_path / "fifo"
    os.mkfifo(str(fifo))
    with pytest.raises(LifeboatError, match=r"^trusted_signers_file .*/fifo is not a regular file\.$"):
        TrustedSigners.from_file(str(fifo), runner)
    big = tmp_path / "big"
    big.write_bytes(b"#" * (1024 * 1024 + 1))
    with pytest.raises(LifeboatError, match=r"^trusted_signers_file .*/big is larger than 1048576 bytes\.$"):
        TrustedSigners.from_file(str(big), runner)


# -- options and wiring helpers -------------------------------------------------------------------------

def test_argument_specs():
    assert _codec.signing_argument_spec() == {
        "sign_key": {"type": "str", "no_log": True},
        "sign_key_file": {"type": "path", "no_log": False},
    }
    assert _codec.trust_argument_spec() == {
        "trusted_signers": {"type": "list", "elements": "str"},
        "trusted_signers_file": {"type": "path"},
    }
    assert _codec.SIGNING_MUTUALLY_EXCLUSIVE == [["sign_key", "sign_key_file"]]
    assert _codec.TRUST_MUTUALLY_EXCLUSIVE == [["trusted_signers", "trusted_signers_file"]]


def test_from_params(keys, runner, tmp_path):
    assert _codec.signer_from_params({"sign_key": None, "sign_key_file": None}, runner) is None
    assert _codec.trust_from_params({"trusted_signers": None, "trusted_signers_file": None}, runner) is None
    signer = _codec.signer_from_params({"sign_key": keys["db1"][0], "sign_key_file": None}, runner)
    assert signer.public_key == keys["db1"][1]
    signer = _codec.signer_from_params({"sign_key_file": os.path.join(keys["dir"], "db2")}, runner)
    assert signer.public_key == keys["db2"][1]
    trusted = _codec.trust_from_params({"trusted_signers": ["db1 %s" % keys["db1"][1]]}, runner)
    assert trusted.principals() == ["db1"]
    path = tmp_path / "as"
    path.write_text("db2 %s\n" % keys["db2"][1])
    assert _codec.trust_from_params({"trusted_signers_file": str(path)}, runner).principals() == ["db2"]


# -- where the key goes, and what is left behind ---------------------------------------------------------

class RecordingRunner(Runner):
    """The real runner, noting each child's argv, its /proc cmdline and environ, and the watched
    directories' contents, while the child runs."""

    def __init__(self, watched):
        super(RecordingRunner, self).__init__()
        self.watched = watched
        self.seen = []

    def popen(self, argv, *args, **kwargs):
        proc = super(RecordingRunner, self).popen(argv, *args, **kwargs)
        entry = {"argv": [str(a) for a in argv], "env": dict(self.environment(kwargs.get("env"))),
                 "listing": _listing(*self.watched)}
        for name in ("cmdline", "environ"):
            try:
                with open("/proc/%d/%s" % (proc.pid, name), "rb") as handle:
                    entry[name] = handle.read()
            except OSError:
                entry[name] = b""
        self.seen.append(entry)
        return proc


def _secret_fragments(private_text):
    """Pieces of the private key that must never show: its base64 lines and the raw private bytes."""
    lines = private_text.strip().splitlines()[1:-1]
    raw = base64.b64decode("".join(lines))
    return [line.encode("ascii") for line in lines] + [raw[-80:-20]]


def _listing(*dirs):
    return dict((d, sorted(os.listdir(d))) for d in dirs)


def test_private_key_never_in_argv_or_environment_and_nothing_is_written(keys, tmp_path, monkeypatch):
    workdir = tmp_path / "cwd"
    scratch = tmp_path / "tmp"
    keydir = tmp_path / "keys"
    for path in (workdir, scratch, keydir):
        path.mkdir()
    key_file = keydir / "db1"
    key_file.write_text(keys["db1"][0])
    key_file.chmod(0o600)
    monkeypatch.chdir(str(workdir))
    monkeypatch.setenv("TMPDIR", str(scratch))
    monkeypatch.setattr(tempfile, "tempdir", None)
    watched = (str(workdir), str(scratch), str(keydir))
    assert tempfile.gettempdir() == str(scratch)
    before = _listing(*watched)

    runner = RecordingRunner(watched)
    signer = load_signing_key(key_file=str(key_file), runner=runner)
    manifest = _manifest()
    manifest["signature"] = signer.sign(manifest)
    trusted = TrustedSigners(["db1 %s" % keys["db1"][1], "db2 %s" % keys["db2"][1]], runner)
    assert trusted.verify(manifest, "db1") == "db1"
    manifest["bytes"] += 1
    assert _reason(trusted, manifest, "db1")[0] == "altered"
    signer2 = load_signing_key(key_text=keys["db2"][0], runner=runner)
    signer2.sign(manifest)

    assert _listing(*watched) == before
    assert [e["argv"][1:3] for e in runner.seen] == [
        ["-y", "-P"], ["-Y", "sign"], ["-Y", "verify"], ["-Y", "verify"], ["-Y", "check-novalidate"],
        ["-y", "-P"], ["-Y", "sign"]]
    for entry in runner.seen:
        assert entry["listing"] == before
        joined = b"\0".join(a.encode() for a in entry["argv"])
        env = b"\0".join(("%s=%s" % kv).encode() for kv in entry["env"].items())
        for secret in _secret_fragments(keys["db1"][0]) + _secret_fragments(keys["db2"][0]):
            assert secret not in joined and secret not in entry["cmdline"]
            assert secret not in env and secret not in entry["environ"]
        assert str(key_file) not in entry["argv"]
        if "-f" in entry["argv"]:
            assert re.match(r"^/dev/fd/\d+\Z", entry["argv"][entry["argv"].index("-f") + 1])
        assert entry["env"]["SSH_AUTH_SOCK"] == "" and entry["env"]["SSH_ASKPASS_REQUIRE"] == "never"
    assert any(e["cmdline"] for e in runner.seen)    # the /proc check saw live children


# -- fuzz: no input gives anything but a SignatureError ----------------------------------------------------

@pytest.fixture(scope="module")
def genuine(keys):
    runner = Runner()
    manifest = _manifest()
    manifest["signature"] = load_signing_key(key_text=keys["db1"][0], runner=runner).sign(manifest)
    trusted = TrustedSigners(["db1 %s" % keys["db1"][1], "db2 %s" % keys["db2"][1]], runner)
    return manifest, trusted


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=50),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20)


def _sshsig(public, namespace, reserved, hashalg, sig_type, sig, magic=b"SSHSIG", version=1, trailing=b""):
    def string(value):
        return len(value).to_bytes(4, "big") + value
    inner = string(sig_type) + string(sig)
    blob = magic + version.to_bytes(4, "big") + string(public) + string(namespace) + string(reserved) \
        + string(hashalg) + string(inner) + trailing
    return "-----BEGIN SSH SIGNATURE-----\n%s\n-----END SSH SIGNATURE-----\n" % base64.b64encode(blob).decode()


@st.composite
def signature_values(draw, genuine_value, public_blob):
    """Armored values: the genuine one mutated, or SSHSIG blobs built field by field with odd contents."""
    choice = draw(st.integers(0, 5))
    if choice == 0:
        index = draw(st.integers(0, len(genuine_value) - 1))
        char = draw(st.sampled_from("AZaz09+/=\n -x\u00e9"))
        return genuine_value[:index] + char + genuine_value[index + 1:]
    if choice == 1:
        return draw(st.text(max_size=400))
    if choice == 2:
        # One byte of the genuine SSHSIG changed, armored properly: the structure often survives.
        blob = bytearray(_codec._dearmor(genuine_value))
        index = draw(st.integers(0, len(blob) - 1))
        blob[index] ^= draw(st.integers(1, 255))
        return _codec._armor(bytes(blob))
    if choice == 3:
        # A well-formed signature by the trusted key's name, with bytes that are not its signature.
        return _sshsig(public_blob, SIGNATURE_NAMESPACE.encode(), b"", draw(st.sampled_from([b"sha512", b"sha256"])),
                       b"ssh-ed25519", draw(st.binary(min_size=64, max_size=64)))
    fields = dict(
        public=draw(st.sampled_from([public_blob, b"", public_blob + b"x"]) | st.binary(max_size=60)),
        namespace=draw(st.sampled_from([SIGNATURE_NAMESPACE.encode(), b"git", b""])),
        reserved=draw(st.sampled_from([b"", b"x"])),
        hashalg=draw(st.sampled_from([b"sha512", b"sha256", b"md5", b""])),
        sig_type=draw(st.sampled_from([b"ssh-ed25519", b"ssh-rsa", b""])),
        sig=draw(st.binary(min_size=0, max_size=70) | st.binary(min_size=64, max_size=64)),
        magic=draw(st.sampled_from([b"SSHSIG", b"SSHSIH"])),
        version=draw(st.sampled_from([1, 1, 2])),
        trailing=draw(st.sampled_from([b"", b"\0"])),
    )
    return _sshsig(**fields)


@FUZZ
@given(data=st.data())
def test_fuzzed_signatures_never_escape_as_anything_but_signature_error(genuine, data):
    manifest, trusted = genuine
    good = manifest["signature"]
    public_blob = base64.b64decode(good["signer"].split()[1])
    kind = data.draw(st.integers(0, 2))
    if kind == 0:
        signature = data.draw(json_values)
    elif kind == 1:
        signature = dict(good)
        for field in data.draw(st.sets(st.sampled_from(sorted(good)), min_size=1)):
            signature[field] = data.draw(st.text(max_size=200) | json_values)
    else:
        signature = dict(good, value=data.draw(signature_values(good["value"], public_blob)))
    candidate = dict(manifest, signature=signature)
    try:
        principal = trusted.verify(candidate, "db1")
    except SignatureError as exc:
        hypothesis.event(exc.reason)
        assert exc.reason in ("unsigned", "untrusted", "other-host", "not-accepted", "altered", "malformed")
        assert "Traceback" not in str(exc) and str(exc).endswith(".")
        return
    # Accepted only when the bytes are the genuine signature (armor whitespace may differ).
    assert principal == "db1"
    assert _codec._dearmor(signature["value"]) == _codec._dearmor(good["value"])
    assert {k: v for k, v in signature.items() if k != "value"} == {k: v for k, v in good.items() if k != "value"}


@FEW
@given(data=st.data())
def test_well_formed_forgeries_reach_ssh_keygen_and_are_refused_as_altered(genuine, data):
    """Signatures that pass every structural check, in the trusted key's name, but are not its signature."""
    manifest, trusted = genuine
    good = manifest["signature"]
    blob = bytearray(_codec._dearmor(good["value"]))
    if data.draw(st.booleans()):
        value = _sshsig(base64.b64decode(good["signer"].split()[1]), SIGNATURE_NAMESPACE.encode(), b"",
                        data.draw(st.sampled_from([b"sha512", b"sha256"])), b"ssh-ed25519",
                        data.draw(st.binary(min_size=64, max_size=64)))
    else:
        index = data.draw(st.integers(len(blob) - 64, len(blob) - 1))    # inside the ed25519 signature bytes
        blob[index] ^= data.draw(st.integers(1, 255))
        value = _codec._armor(bytes(blob))
    assert _reason(trusted, dict(manifest, signature=dict(good, value=value)), "db1") == (
        "altered", "The manifest is refused: altered after signing (signature does not match).")


@FEW
@given(extra=st.dictionaries(st.text(min_size=1, max_size=8).filter(lambda k: k != "signature"), json_values,
                             min_size=1, max_size=3),
       data=st.data())
def test_any_change_to_any_manifest_is_caught(keys, extra, data):
    """Sign a random manifest, change one leaf anywhere, and the signature no longer matches."""
    runner = Runner()
    # A manifest holds JSON only: NaN and infinities cannot be signed (the canonical form refuses them).
    try:
        json.dumps(extra, allow_nan=False)
    except ValueError:
        hypothesis.assume(False)
    manifest = dict(_manifest(), **{"x_" + key: value for key, value in extra.items()})
    manifest["signature"] = load_signing_key(key_text=keys["db1"][0], runner=runner).sign(manifest)
    trusted = TrustedSigners(["db1 %s" % keys["db1"][1]], runner)
    assert trusted.verify(json.loads(json.dumps(manifest)), "db1") == "db1"
    changed = copy.deepcopy(manifest)
    key = data.draw(st.sampled_from(sorted(k for k in changed if k != "signature")))
    replacement = data.draw(json_values)
    hypothesis.assume(json.dumps(replacement, sort_keys=True) != json.dumps(changed[key], sort_keys=True))
    changed[key] = replacement
    # Refused either way: altered, or malformed when the new value cannot be signed at all
    # (the canonical form refuses NaN and infinities).
    assert _reason(trusted, changed, "db1")[0] in ("altered", "malformed")
