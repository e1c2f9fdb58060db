# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Signed WAL files, with the real ssh-keygen: push signs, fetch with trusted_signers refuses the rest."""

from __future__ import annotations

import os
import subprocess
import uuid

import pytest

from ansible_collections.lifeboat.backup.plugins.module_utils import _codec
from ansible_collections.lifeboat.backup.plugins.module_utils import _store_kinds
from ansible_collections.lifeboat.backup.plugins.module_utils import _wal
from ansible_collections.lifeboat.backup.plugins.module_utils._runner import Runner

SEGMENT = "000000010000000000000003"
KEYGEN = Runner().find("ssh-keygen", "openssh-client")


def _key(directory, name):
    path = str(directory / name)
    subprocess.run([KEYGEN, "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", path], check=True)
    with open(path) as private, open(path + ".pub") as public:
        return private.read(), " ".join(public.read().split()[:2])


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    directory = tmp_path_factory.mktemp("keys")
    return dict(db1=_key(directory, "db1"), stranger=_key(directory, "stranger"))


def trusted(keys):
    return ["db1 %s" % keys["db1"][1]]


def make_store(kind, tmp_path):
    if kind == "dir":
        spec = dict(kind="dir", path=str(tmp_path / "store"))
    else:
        spec = dict(kind="memory", name="walsig-%s" % uuid.uuid4().hex)
    return _store_kinds.open_store(spec), spec


@pytest.fixture(params=["dir", "memory"])
def kind(request):
    return request.param


def wal_file(tmp_path, name, data):
    path = tmp_path / "pg_wal" / name
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(data)
    return str(path)


def segment_bytes(seed, size=256 * 1024):
    block = (("%s-" % seed) * 1000).encode("ascii")
    return (block * (size // len(block) + 1))[:size]


def test_a_signed_file_fetches_and_its_signature_is_checkable_by_hand(kind, tmp_path, keys):
    store, spec = make_store(kind, tmp_path)
    pusher = _wal.Settings(spec, "db1", "main", sign_key=keys["db1"][0])
    data = segment_bytes("a")
    path = wal_file(tmp_path, SEGMENT, data)
    assert _wal.push(store, pusher, path, SEGMENT) == "created"
    # ed25519 signatures are deterministic: the retry puts the same signature and is identical.
    assert _wal.push(store, pusher, path, SEGMENT) == "identical"
    assert store.list_objects("db1", "main", "wal/") == ["wal/%s.sig" % SEGMENT, "wal/%s.zst" % SEGMENT]
    assert _wal.archived_files(store, "db1", "main") == {SEGMENT: ["wal/%s.zst" % SEGMENT]}
    fetcher = _wal.Settings(spec, "db1", "main", trusted_signers=trusted(keys))
    dest = tmp_path / "RECOVERYXLOG"
    _wal.fetch(store, fetcher, SEGMENT, str(dest))
    assert dest.read_bytes() == data
    # By hand, as docs/security.md shows: ssh-keygen -Y verify over the statement.
    (tmp_path / "allowed").write_text(trusted(keys)[0] + "\n")
    (tmp_path / "x.sig").write_bytes(store.open_object("db1", "main", "wal/%s.sig" % SEGMENT).read())
    statement = _wal.signed_statement("db1", "main", SEGMENT, __import__("hashlib").sha256(data).hexdigest())
    proc = subprocess.run([KEYGEN, "-Y", "verify", "-f", str(tmp_path / "allowed"), "-I", "db1", "-n",
                           "lifeboat.backup/wal@v1", "-s", str(tmp_path / "x.sig")], input=statement,
                          capture_output=True, check=False)
    assert proc.returncode == 0 and proc.stdout.startswith(b"Good ")


def test_an_unsigned_file_is_refused(kind, tmp_path, keys):
    store, spec = make_store(kind, tmp_path)
    _wal.push(store, _wal.Settings(spec, "db1", "main"), wal_file(tmp_path, SEGMENT, segment_bytes("a")), SEGMENT)
    fetcher = _wal.Settings(spec, "db1", "main", trusted_signers=trusted(keys))
    with pytest.raises(_codec.SignatureError, match=r"^Archived WAL file %s is refused: unsigned \(trusted_signers "
                                                    r"is set, so it must be signed\)\.$" % SEGMENT) as caught:
        _wal.fetch(store, fetcher, SEGMENT, str(tmp_path / "dest"))
    assert caught.value.reason == _codec.UNSIGNED
    assert not (tmp_path / "dest").exists()
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".lifeboat-wal-")]
    # Without trusted_signers it is fetched as before.
    _wal.fetch(store, _wal.Settings(spec, "db1", "main"), SEGMENT, str(tmp_path / "dest"))


def test_a_file_signed_by_another_key_is_refused(tmp_path, keys):
    store, spec = make_store("memory", tmp_path)
    forger = _wal.Settings(spec, "db1", "main", sign_key=keys["stranger"][0])
    _wal.push(store, forger, wal_file(tmp_path, SEGMENT, segment_bytes("evil")), SEGMENT)
    fetcher = _wal.Settings(spec, "db1", "main", trusted_signers=trusted(keys))
    with pytest.raises(_codec.SignatureError, match="signed by a key not in trusted_signers") as caught:
        _wal.fetch(store, fetcher, SEGMENT, str(tmp_path / "dest"))
    assert caught.value.reason == _codec.UNTRUSTED
    assert not (tmp_path / "dest").exists()


def test_an_altered_file_is_refused(kind, tmp_path, keys):
    store, spec = make_store(kind, tmp_path)
    settings = _wal.Settings(spec, "db1", "main", compression="none", sign_key=keys["db1"][0],
                             trusted_signers=trusted(keys))
    _wal.push(store, settings, wal_file(tmp_path, SEGMENT, segment_bytes("a")), SEGMENT)
    # A writer of the store replaces the file (the signature is genuine, for other bytes).
    if kind == "dir":
        target = tmp_path / "store" / "db1" / "main" / "objects" / "wal" / SEGMENT
        os.chmod(str(target), 0o600)
        target.write_bytes(segment_bytes("b"))
    else:
        store.space["objects"][("db1", "main")]["wal/" + SEGMENT] = segment_bytes("b")
    with pytest.raises(_codec.SignatureError, match="is refused: altered after signing") as caught:
        _wal.fetch(store, settings, SEGMENT, str(tmp_path / "dest"))
    assert caught.value.reason == _codec.ALTERED
    assert not (tmp_path / "dest").exists()


def test_a_genuine_signature_of_another_file_or_namespace_is_refused(tmp_path, keys):
    store, spec = make_store("memory", tmp_path)
    settings = _wal.Settings(spec, "db1", "main", sign_key=keys["db1"][0], trusted_signers=trusted(keys))
    data = segment_bytes("a")
    _wal.push(store, settings, wal_file(tmp_path, SEGMENT, data), SEGMENT)
    objects = store.space["objects"][("db1", "main")]
    # The same genuine segment and signature planted under the next segment's name.
    other = "000000010000000000000004"
    objects["wal/%s.zst" % other] = objects["wal/%s.zst" % SEGMENT]
    objects["wal/%s.sig" % other] = objects["wal/%s.sig" % SEGMENT]
    with pytest.raises(_codec.SignatureError, match="altered after signing"):
        _wal.fetch(store, settings, other, str(tmp_path / "dest"))
    # A signature made under the manifests' namespace (a set's signature) is not a WAL file's.
    signer = _codec.load_signing_key(key_text=keys["db1"][0])
    statement = _wal.signed_statement("db1", "main", other, __import__("hashlib").sha256(data).hexdigest())
    objects["wal/%s.sig" % other] = signer.sign_bytes(statement, _codec.SIGNATURE_NAMESPACE).encode("ascii")
    with pytest.raises(_codec.SignatureError, match="malformed signature .*another namespace than "
                                                    "lifeboat.backup/wal@v1"):
        _wal.fetch(store, settings, other, str(tmp_path / "dest"))
    objects["wal/%s.sig" % other] = b"x" * 100000
    with pytest.raises(_codec.SignatureError, match="malformed signature"):
        _wal.fetch(store, settings, other, str(tmp_path / "dest"))
    assert not (tmp_path / "dest").exists()


def test_encrypted_and_signed(tmp_path, keys):
    key_file = tmp_path / "age.txt"
    subprocess.run(["age-keygen", "-o", str(key_file)], check=True, capture_output=True)
    public = subprocess.run(["age-keygen", "-y", str(key_file)], check=True, capture_output=True,
                            text=True).stdout.strip()
    store, spec = make_store("memory", tmp_path)
    settings = _wal.Settings(spec, "db1", "main", recipients=[public], identity_file=str(key_file),
                             sign_key=keys["db1"][0], trusted_signers=trusted(keys))
    data = segment_bytes("secret")
    path = wal_file(tmp_path, SEGMENT, data)
    assert _wal.push(store, settings, path, SEGMENT) == "created"
    assert _wal.push(store, settings, path, SEGMENT) == "identical"
    _wal.fetch(store, settings, SEGMENT, str(tmp_path / "dest"))
    assert (tmp_path / "dest").read_bytes() == data


def test_a_push_signed_by_another_key_than_the_stored_signature_fails(tmp_path, keys):
    store, spec = make_store("memory", tmp_path)
    path = wal_file(tmp_path, SEGMENT, segment_bytes("a"))
    _wal.push(store, _wal.Settings(spec, "db1", "main", sign_key=keys["db1"][0]), path, SEGMENT)
    with pytest.raises(_wal.WalError, match="with different content or signed by another key; neither is ever "
                                            "overwritten"):
        _wal.push(store, _wal.Settings(spec, "db1", "main", sign_key=keys["stranger"][0]), path, SEGMENT)


def run(argv):
    return subprocess.run(argv, capture_output=True, text=True, env={"PATH": os.environ["PATH"]}, check=False)


def test_the_program_signs_and_a_refused_file_stops_recovery(tmp_path, keys):
    """fetch: 1 only for "not archived"; a refused signature is 255, one line, so recovery stops."""
    spec = dict(kind="dir", path=str(tmp_path / "store"))
    pusher = _wal.install_command(str(tmp_path / "push"),
                                  _wal.Settings(spec, "db1", "main", sign_key=keys["db1"][0]))
    fetcher = _wal.install_command(str(tmp_path / "fetch"),
                                   _wal.Settings(spec, "db1", "main", trusted_signers=trusted(keys)))
    assert keys["db1"][0].strip() not in " ".join(pusher["argv"])
    assert run(pusher["argv"] + ["probe"]).returncode == 0
    data = segment_bytes("prog")
    proc = run(pusher["argv"] + ["push", wal_file(tmp_path, SEGMENT, data), SEGMENT])
    assert (proc.returncode, proc.stderr) == (0, "")
    dest = tmp_path / "pg_wal" / "RECOVERYXLOG"
    proc = run(fetcher["argv"] + ["fetch", SEGMENT, str(dest)])
    assert (proc.returncode, proc.stderr) == (0, "")
    assert dest.read_bytes() == data
    proc = run(fetcher["argv"] + ["fetch", "000000010000000000000004", str(dest)])
    assert proc.returncode == 1 and "is not in the archive" in proc.stderr
    os.unlink(str(tmp_path / "store" / "db1" / "main" / "objects" / "wal" / (SEGMENT + ".sig")))
    proc = run(fetcher["argv"] + ["fetch", SEGMENT, str(tmp_path / "again")])
    assert proc.returncode == 255
    assert proc.stderr == "lifeboat-wal: Archived WAL file %s is refused: unsigned (trusted_signers is set, so it " \
                          "must be signed).\n" % SEGMENT
    assert not (tmp_path / "again").exists()


def test_the_tools_recorded_at_install_are_used_without_path(tmp_path, keys):
    """PostgreSQL may run restore_command with a short PATH: ssh-keygen and zstd come from the settings."""
    import shutil
    spec = dict(kind="dir", path=str(tmp_path / "store"))
    tools = {"ssh-keygen": KEYGEN, "zstd": shutil.which("zstd")}
    settings = _wal.Settings(spec, "db1", "main", tools=tools, sign_key=keys["db1"][0],
                             trusted_signers=trusted(keys))
    command = _wal.install_command(str(tmp_path / "cmd"), settings)["argv"]
    data = segment_bytes("path")
    bare = dict(capture_output=True, text=True, env={"PATH": "/nonexistent"})
    proc = subprocess.run(command + ["push", wal_file(tmp_path, SEGMENT, data), SEGMENT], check=False, **bare)
    assert (proc.returncode, proc.stderr) == (0, "")
    proc = subprocess.run(command + ["fetch", SEGMENT, str(tmp_path / "dest")], check=False, **bare)
    assert (proc.returncode, proc.stderr) == (0, "")
    assert (tmp_path / "dest").read_bytes() == data
