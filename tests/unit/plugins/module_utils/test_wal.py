# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The WAL archive command (_wal.py): push, fetch and the installed program, on dir and memory stores."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
import uuid

import pytest

from ansible_collections.lifeboat.backup.plugins.module_utils import _store_kinds
from ansible_collections.lifeboat.backup.plugins.module_utils import _wal

SEGMENT = "000000010000000000000003"


def make_store(kind, tmp_path):
    if kind == "dir":
        spec = dict(kind="dir", path=str(tmp_path / "store"))
    else:
        spec = dict(kind="memory", name="wal-%s" % uuid.uuid4().hex)
    return _store_kinds.open_store(spec), spec


@pytest.fixture(params=["dir", "memory"])
def kind(request):
    return request.param


def wal_file(tmp_path, name, data):
    path = tmp_path / "pg_wal" / name
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(data)
    return str(path)


def segment_bytes(seed, size=1024 * 1024):
    block = (("%s-" % seed) * 1000).encode("ascii")
    return (block * (size // len(block) + 1))[:size]


@pytest.fixture(scope="module")
def age_keys(tmp_path_factory):
    key_file = tmp_path_factory.mktemp("age") / "key.txt"
    subprocess.run(["age-keygen", "-o", str(key_file)], check=True, capture_output=True)
    text = key_file.read_text()
    public = subprocess.run(["age-keygen", "-y", str(key_file)], check=True, capture_output=True,
                            text=True).stdout.strip()
    return public, text, str(key_file)


def settings_for(spec, **options):
    return _wal.Settings(spec, "db1", "main", **options)


@pytest.mark.parametrize("compression", ["zstd", "gzip", "none"])
def test_push_then_fetch_round_trip(kind, tmp_path, compression):
    store, spec = make_store(kind, tmp_path)
    settings = settings_for(spec, compression=compression)
    data = segment_bytes("a")
    assert _wal.push(store, settings, wal_file(tmp_path, SEGMENT, data), SEGMENT) == "created"
    suffix = {"zstd": ".zst", "gzip": ".gz", "none": ""}[compression]
    assert store.list_objects("db1", "main", "wal/") == ["wal/" + SEGMENT + suffix]
    dest = tmp_path / "RECOVERYXLOG"
    assert _wal.fetch(store, settings, SEGMENT, str(dest)) == "wal/" + SEGMENT + suffix
    assert dest.read_bytes() == data
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".lifeboat-wal-")]


def test_identical_retry_succeeds_different_content_is_refused(kind, tmp_path):
    store, spec = make_store(kind, tmp_path)
    settings = settings_for(spec)
    path = wal_file(tmp_path, SEGMENT, segment_bytes("a"))
    assert _wal.push(store, settings, path, SEGMENT) == "created"
    assert _wal.push(store, settings, path, SEGMENT) == "identical"
    other = wal_file(tmp_path, "other", segment_bytes("b"))
    with pytest.raises(_wal.WalError, match="already archived .* with different content; it is never overwritten"):
        _wal.push(store, settings, other, SEGMENT)
    dest = tmp_path / "back"
    _wal.fetch(store, settings, SEGMENT, str(dest))
    assert dest.read_bytes() == segment_bytes("a")


def test_same_bytes_compressed_differently_is_identical(kind, tmp_path):
    """A retry after the compressor changed (another level, another version) is still the same file."""
    store, spec = make_store(kind, tmp_path)
    path = wal_file(tmp_path, SEGMENT, segment_bytes("a"))
    assert _wal.push(store, settings_for(spec, level=1), path, SEGMENT) == "created"
    assert _wal.push(store, settings_for(spec, level=19), path, SEGMENT) == "identical"
    other = wal_file(tmp_path, "other", segment_bytes("b"))
    with pytest.raises(_wal.WalError, match="different content"):
        _wal.push(store, settings_for(spec, level=19), other, SEGMENT)


def test_encrypted_retry_is_identical_and_fetch_needs_the_identity(kind, tmp_path, age_keys):
    public, identity, identity_file = age_keys
    store, spec = make_store(kind, tmp_path)
    settings = settings_for(spec, recipients=[public])
    data = segment_bytes("secret")
    path = wal_file(tmp_path, SEGMENT, data)
    assert _wal.push(store, settings, path, SEGMENT) == "created"
    # age output differs on every run: the digest object is what makes the retry safe.
    assert _wal.push(store, settings, path, SEGMENT) == "identical"
    other = wal_file(tmp_path, "other", segment_bytes("other"))
    with pytest.raises(_wal.WalError, match="different content"):
        _wal.push(store, settings, other, SEGMENT)
    names = store.list_objects("db1", "main")
    assert "wal/%s.zst.age" % SEGMENT in names and "wal/%s.sha256" % SEGMENT in names
    raw = store.open_object("db1", "main", "wal/%s.zst.age" % SEGMENT).read()
    assert b"secret-secret" not in raw
    with pytest.raises(_wal.WalError, match="encrypted with age"):
        _wal.fetch(store, settings, SEGMENT, str(tmp_path / "x"))
    for restore in (settings_for(spec, identity=identity), settings_for(spec, identity_file=identity_file)):
        dest = tmp_path / "restored"
        _wal.fetch(store, restore, SEGMENT, str(dest))
        assert dest.read_bytes() == data
        dest.unlink()


def test_encrypted_fetch_refuses_a_swapped_object(tmp_path, age_keys):
    """Anyone can encrypt to a public key: an object replaced behind the store's back fails its digest."""
    public, identity, dummy = age_keys
    store, spec = make_store("memory", tmp_path)
    settings = settings_for(spec, recipients=[public], identity=identity)
    _wal.push(store, settings, wal_file(tmp_path, SEGMENT, segment_bytes("a")), SEGMENT)
    forged = subprocess.run(["age", "-r", public], input=subprocess.run(
        ["zstd", "-q", "-c"], input=segment_bytes("evil"), capture_output=True, check=True).stdout,
        capture_output=True, check=True).stdout
    store.space["objects"][("db1", "main")]["wal/%s.zst.age" % SEGMENT] = forged
    with pytest.raises(_wal.WalError, match="does not match its recorded SHA-256"):
        _wal.fetch(store, settings, SEGMENT, str(tmp_path / "dest"))
    assert not (tmp_path / "dest").exists()


def test_history_backup_and_partial_files_are_archived(kind, tmp_path):
    store, spec = make_store(kind, tmp_path)
    settings = settings_for(spec)
    names = ["00000002.history", "000000010000000000000002.00000028.backup", "000000010000000000000009.partial"]
    for name in names:
        _wal.push(store, settings, wal_file(tmp_path, name, name.encode() * 10), name)
    assert sorted(_wal.archived_files(store, "db1", "main")) == sorted(names)


@pytest.mark.parametrize("name", ["", "RECOVERYXLOG", "../000000010000000000000003", "000000010000000000000003.zst",
                                  "00000001000000000000000g", "/etc/passwd"])
def test_names_that_are_not_wal_files_are_refused(tmp_path, name):
    store, spec = make_store("memory", tmp_path)
    with pytest.raises(_wal.WalError, match="is not the name of a WAL file"):
        _wal.push(store, settings_for(spec), wal_file(tmp_path, SEGMENT, b"x"), name)
    with pytest.raises(_wal.WalError, match="is not the name of a WAL file"):
        _wal.fetch(store, settings_for(spec), name, str(tmp_path / "dest"))


def test_missing_file_is_not_archived(kind, tmp_path):
    store, spec = make_store(kind, tmp_path)
    with pytest.raises(_wal.NotArchived, match="is not in the archive"):
        _wal.fetch(store, settings_for(spec), SEGMENT, str(tmp_path / "dest"))


def test_push_of_a_missing_or_special_file_fails(tmp_path):
    store, spec = make_store("memory", tmp_path)
    with pytest.raises(_wal.WalError, match="No such file|WAL file"):
        _wal.push(store, settings_for(spec), str(tmp_path / "nothing"), SEGMENT)
    os.mkfifo(str(tmp_path / "fifo"))
    with pytest.raises(_wal.WalError, match="not a regular file"):
        _wal.push(store, settings_for(spec), str(tmp_path / "fifo"), SEGMENT)
    assert store.list_objects("db1", "main") == []


def test_parse_object_name():
    assert _wal.parse_object_name("wal/%s.zst.age" % SEGMENT) == (SEGMENT, "zstd", True)
    assert _wal.parse_object_name("wal/%s" % SEGMENT) == (SEGMENT, "none", False)
    assert _wal.parse_object_name("wal/00000002.history.gz") == ("00000002.history", "gzip", False)
    assert _wal.parse_object_name("wal/%s.sha256" % SEGMENT) is None
    assert _wal.parse_object_name("wal/junk.zst") is None
    assert _wal.segment_name(*_wal.segment_number("0000000300000001000000FF")) == "0000000300000001000000FF"
    assert _wal.segment_number("000000010000000100000000")[1] == _wal.segment_number("0000000100000000000000FF")[1] + 1


# ------------------------------------------------------------------ the installed program

@pytest.fixture
def installed(tmp_path):
    spec = dict(kind="dir", path=str(tmp_path / "store"))
    result = _wal.install_command(str(tmp_path / "cmd"), _wal.Settings(spec, "db1", "main"))
    return result, _store_kinds.open_store(spec)


def run(argv, **kwargs):
    # A bare environment: the program must carry everything it needs (python -I ignores PYTHONPATH anyway).
    return subprocess.run(argv, capture_output=True, text=True, env={"PATH": os.environ["PATH"]}, check=False,
                          **kwargs)


def test_install_writes_private_files_and_is_idempotent(tmp_path):
    spec = dict(kind="s3", bucket="b", access_key="AKIAEXAMPLE", secret_key="very-secret-key")
    settings = _wal.Settings(spec, "db1", "main")
    directory = str(tmp_path / "cmd")
    check = _wal.install_command(directory, settings, check_mode=True)
    assert check["changed"] and not os.path.exists(directory)
    first = _wal.install_command(directory, settings)
    assert first["changed"]
    assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(first["settings"]).st_mode) == 0o600
    assert "very-secret-key" not in " ".join(first["argv"])
    assert json.load(open(first["settings"]))["store"]["secret_key"] == "very-secret-key"
    assert not _wal.install_command(directory, settings)["changed"]
    assert not _wal.install_command(directory, settings, check_mode=True)["changed"]
    other = _wal.Settings(dict(spec, secret_key="rotated"), "db1", "main")
    assert _wal.install_command(directory, other, check_mode=True)["changed"]
    assert json.load(open(first["settings"]))["store"]["secret_key"] == "very-secret-key"
    assert _wal.install_command(directory, other)["changed"]
    command = _wal.archive_command(first["argv"])
    assert command.endswith(" push %p %f") and "secret" not in command


def test_the_program_runs_alone(installed, tmp_path):
    result, store = installed
    data = segment_bytes("prog")
    path = wal_file(tmp_path, SEGMENT, data)
    proc = run(result["argv"] + ["push", path, SEGMENT])
    assert (proc.returncode, proc.stderr) == (0, "")
    assert run(result["argv"] + ["push", path, SEGMENT]).returncode == 0
    other = wal_file(tmp_path, "other", segment_bytes("different"))
    proc = run(result["argv"] + ["push", other, SEGMENT])
    assert proc.returncode == 1
    assert proc.stderr.startswith("lifeboat-wal: WAL file %s was already archived" % SEGMENT)
    assert len(proc.stderr.strip().splitlines()) == 1
    dest = tmp_path / "pg_wal" / "RECOVERYXLOG"
    proc = run(result["argv"] + ["fetch", SEGMENT, str(dest)])
    assert (proc.returncode, proc.stderr) == (0, "")
    assert dest.read_bytes() == data
    proc = run(result["argv"] + ["fetch", "000000010000000000000004", str(dest)])
    assert proc.returncode == 1 and "is not in the archive" in proc.stderr
    assert run(result["argv"] + ["probe"]).returncode == 0
    assert store.list_objects("db1", "main", "wal/") == ["wal/%s.zst" % SEGMENT]


def test_the_program_fails_on_a_broken_store(tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    spec = dict(kind="dir", path=str(blocker / "store"))
    result = _wal.install_command(str(tmp_path / "cmd"), _wal.Settings(spec, "db1", "main"))
    path = wal_file(tmp_path, SEGMENT, b"x" * 1000)
    proc = run(result["argv"] + ["push", path, SEGMENT])
    assert proc.returncode == 1 and proc.stderr.startswith("lifeboat-wal: ")
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    # fetch: a failure other than "not archived" stops recovery (status above 125).
    proc = run(result["argv"] + ["fetch", SEGMENT, str(tmp_path / "dest")])
    assert proc.returncode == 255 and "Traceback" not in proc.stderr
    proc = run(result["argv"] + ["bogus"])
    assert proc.returncode == 1 and proc.stderr.startswith("usage:")


def test_a_killed_push_leaves_no_visible_object(installed, tmp_path):
    """kill -9 in the middle of a push: nothing under wal/, and the retry archives the file."""
    result, store = installed
    settings_path = result["settings"]
    data = json.load(open(settings_path))
    data["compression"] = "none"
    with open(settings_path, "w") as handle:
        json.dump(data, handle)
    size = 512 * 1024 * 1024
    path = tmp_path / "pg_wal" / SEGMENT
    path.parent.mkdir()
    with open(path, "wb") as handle:
        handle.truncate(size)  # sparse: cheap to make, slow enough to copy
    proc = subprocess.Popen(result["argv"] + ["push", str(path), SEGMENT], stderr=subprocess.PIPE)
    objects = tmp_path / "store" / "db1" / "main" / "objects" / "wal"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not (objects.is_dir() and os.listdir(objects)):
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert os.listdir(objects), "the push had not started writing when it was killed"
    assert store.list_objects("db1", "main", "wal/") == []
    assert _wal.archived_files(store, "db1", "main") == {}
    proc = run(result["argv"] + ["push", str(path), SEGMENT])
    assert proc.returncode == 0, proc.stderr
    assert store.list_objects("db1", "main", "wal/") == ["wal/" + SEGMENT]


def test_bundle_is_deterministic_and_holds_every_store_kind():
    files = _wal.bundle()
    assert files == _wal.bundle()
    base = _wal.PACKAGE.replace(".", "/")
    for module in ("_wal", "_stores", "_store_dir", "_store_s3", "_store_ssh", "_store_ssh_helper", "_aws"):
        assert "%s/%s.py" % (base, module) in files
    assert "__main__.py" in files
    assert sys.modules[_wal.PACKAGE + "._wal"] is _wal


def test_the_program_keeps_its_compiled_code(installed, tmp_path):
    """Python caches the compiled modules beside them: a push does not compile the code again."""
    result, dummy = installed
    path = wal_file(tmp_path, SEGMENT, b"x" * 100)
    assert run(result["argv"] + ["push", path, SEGMENT]).returncode == 0
    cached = [name for dirpath, dirs, names in os.walk(result["program"]) for name in names if name.endswith(".pyc")]
    assert any(name.startswith("_wal.") for name in cached)


def base_manifest(set_id, start_wal, stop_wal, stop_time):
    return {"set_id": set_id, "engine": "postgresql", "method": "pg_basebackup",
            "position": {"start_wal": start_wal, "stop_wal": stop_wal, "stop_time": stop_time, "timeline": 1,
                         "wal_segment_size": 16 * 1024 * 1024}}


def test_archive_health_reports_gaps_and_the_window(kind, tmp_path):
    import datetime
    store, spec = make_store(kind, tmp_path)
    settings = settings_for(spec, compression="none")
    numbers = [3, 4, 5, 8, 9, 0x100, 0x101]  # 6-7 and 0x0A-0xFF missing; 0x100 is the next log id
    for number in numbers:
        name = _wal.segment_name(1, number)
        _wal.push(store, settings, wal_file(tmp_path, name, b"x"), name)
    _wal.push(store, settings, wal_file(tmp_path, "00000002.history", b"h"), "00000002.history")
    manifests = [base_manifest("20261201T000000Z-full", "000000010000000000000002", "000000010000000000000002",
                               "2026-12-01T00:00:05.000Z"),
                 base_manifest("20261201T010000Z-full", "000000010000000000000008", "000000010000000000000008",
                               "2026-12-01T01:00:05.000Z"),
                 {"set_id": "20261201T020000Z-full", "engine": "postgresql", "method": "pg_dump", "position": {}}]
    now = datetime.datetime.now(datetime.timezone.utc)
    health = _wal.archive_health(store, "db1", "main", manifests, now)
    assert health["base_backups"] == 2 and health["files"] == 8 and health["segments"] == 7
    assert health["newest"] == "000000010000000100000001"
    assert [(g["first"], g["last"], g["count"]) for g in health["gaps"]] == [
        ("000000010000000000000006", "000000010000000000000007", 2),
        ("00000001000000000000000A", "0000000100000000000000FF", 0xF6)]
    assert health["earliest_time"] == "2026-12-01T00:00:05.000Z"
    assert health["earliest_set_id"] == "20261201T000000Z-full"
    assert health["latest_wal"] == "000000010000000000000009"
    assert 0 <= health["newest_age_s"] < 60 and not health["newest_time_future"]
    assert health["newest_time"] == now.strftime("%Y-%m-%dT%H:%M:%SZ") or 0 < health["newest_age_s"]
    assert _wal.archive_health(store, "db1", "main", manifests[2:], now)["gaps"] == []
    # The store's time is untrusted: one far in the future is reported and gives no age.
    later = now - datetime.timedelta(hours=1)
    health = _wal.archive_health(store, "db1", "main", manifests, later)
    assert health["newest_time_future"] and health["newest_age_s"] is None and health["newest_time"]
    # Within the tolerance (a clock a little ahead): an age of 0, not a negative one.
    health = _wal.archive_health(store, "db1", "main", manifests, now - datetime.timedelta(seconds=60))
    assert health["newest_age_s"] == 0.0 and not health["newest_time_future"]


def test_archive_health_of_an_s3_archive_has_the_newest_age(tmp_path):
    import datetime
    from ansible_collections.lifeboat.backup.tests.unit.plugins.module_utils import moto_harness
    server = moto_harness.server()
    spec = dict(kind="s3", bucket=server.new_bucket(), prefix="wal-age", **server.connection())
    store = _store_kinds.open_store(spec)
    settings = settings_for(spec, compression="none")
    for number in (2, 3):
        name = _wal.segment_name(1, number)
        _wal.push(store, settings, wal_file(tmp_path, name, b"x"), name)
    manifests = [base_manifest("20261201T000000Z-full", "000000010000000000000002", "000000010000000000000002",
                               "2026-12-01T00:00:05.000Z")]
    health = _wal.archive_health(store, "db1", "main", manifests, datetime.datetime.now(datetime.timezone.utc))
    assert health["newest"] == "000000010000000000000003"
    assert 0 <= health["newest_age_s"] < 60 and not health["newest_time_future"]


def test_an_object_that_is_a_link_has_no_time(tmp_path):
    store, spec = make_store("dir", tmp_path)
    _wal.push(store, settings_for(spec, compression="none"), wal_file(tmp_path, SEGMENT, b"x"), SEGMENT)
    objects = tmp_path / "store" / "db1" / "main" / "objects" / "wal"
    (tmp_path / "elsewhere").write_bytes(b"y")
    os.symlink(str(tmp_path / "elsewhere"), str(objects / "000000010000000000000004"))
    from ansible_collections.lifeboat.backup.plugins.module_utils import _stores
    with pytest.raises(_stores.StoreError, match="is not a regular file"):
        store.stat_object("db1", "main", "wal/000000010000000000000004")
    import datetime
    health = _wal.archive_health(store, "db1", "main", [], datetime.datetime.now(datetime.timezone.utc))
    assert health["newest"] == SEGMENT  # a link is never an object: not listed, not the newest


# ------------------------------------------------------------------ the s3 store, from the system's python3

SYSTEM_PYTHON = "/usr/bin/python3"


def s3_installed(tmp_path, python):
    from ansible_collections.lifeboat.backup.tests.unit.plugins.module_utils import moto_harness
    server = moto_harness.server()
    spec = dict(kind="s3", bucket=server.new_bucket(), prefix="wal-test", **server.connection())
    result = _wal.install_command(str(tmp_path / "cmd"), _wal.Settings(spec, "db1", "main"), python=python)
    return result, _store_kinds.open_store(spec)


def test_the_program_archives_into_s3_with_the_system_python(tmp_path):
    """PostgreSQL runs the command with the system's python3 (scripts/setup.sh installs python3-boto3)."""
    result, store = s3_installed(tmp_path, SYSTEM_PYTHON)
    assert result["argv"][0] == SYSTEM_PYTHON
    data = segment_bytes("s3", 3 * 1024 * 1024)
    path = wal_file(tmp_path, SEGMENT, data)
    for dummy in range(2):  # the retry finds the same content
        proc = run(result["argv"] + ["push", path, SEGMENT])
        assert (proc.returncode, proc.stderr) == (0, "")
    proc = run(result["argv"] + ["push", wal_file(tmp_path, "other", segment_bytes("other")), SEGMENT])
    assert proc.returncode == 1 and "already archived" in proc.stderr
    dest = tmp_path / "pg_wal" / "RECOVERYXLOG"
    proc = run(result["argv"] + ["fetch", SEGMENT, str(dest)])
    assert (proc.returncode, proc.stderr) == (0, "")
    assert dest.read_bytes() == data
    proc = run(result["argv"] + ["fetch", "000000010000000000000004", str(dest)])
    assert proc.returncode == 1 and "is not in the archive" in proc.stderr
    assert store.list_objects("db1", "main", "wal/") == ["wal/%s.zst" % SEGMENT]


def test_an_s3_store_without_boto3_fails_in_one_sentence(tmp_path):
    """An interpreter without boto3: push and probe exit 1, fetch 255, each with one sentence naming the fix."""
    result, store = s3_installed(tmp_path, SYSTEM_PYTHON)
    # The installed program, run by an interpreter that cannot import boto3 (blocked in sys.modules).
    blocked = [SYSTEM_PYTHON, "-I", "-c",
               "import runpy, sys; sys.modules['boto3'] = sys.modules['botocore'] = None; "
               "sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')",
               result["program"], result["settings"]]
    path = wal_file(tmp_path, SEGMENT, segment_bytes("nob"))
    for args, status in ((["push", path, SEGMENT], 1), (["probe"], 1),
                         (["fetch", SEGMENT, str(tmp_path / "dest")], 255)):
        proc = run(blocked + args)
        assert proc.returncode == status, proc.stderr
        assert proc.stderr.startswith("lifeboat-wal: The s3 store needs the Python library boto3, which %s "
                                      "(the interpreter of the archive command) cannot import; install "
                                      "python3-boto3 and python3-botocore there" % SYSTEM_PYTHON), proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert store.list_objects("db1", "main", "") == []


def _dead_pid():
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def test_the_next_push_removes_the_temporaries_of_killed_pushes_only(tmp_path):
    """A killed push leaves .<name>.<pid>.tmp; the next put removes it once its writer is provably gone."""
    store, spec = make_store("dir", tmp_path)
    settings = settings_for(spec, compression="none")
    _wal.push(store, settings, wal_file(tmp_path, SEGMENT, b"first"), SEGMENT)
    objects = tmp_path / "store" / "db1" / "main" / "objects" / "wal"
    old = time.time() - 120
    dead = objects / (".000000010000000000000004.%d.tmp" % _dead_pid())
    dead.write_bytes(b"half a segment")
    os.utime(str(dead), (old, old))
    fresh_dead = objects / (".000000010000000000000005.%d.tmp" % _dead_pid())
    fresh_dead.write_bytes(b"maybe a writer on another host")  # untouched for less than the bound: kept
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        alive = objects / (".000000010000000000000006.%d.tmp" % sleeper.pid)
        alive.write_bytes(b"still being written")
        os.utime(str(alive), (old, old))
        ancient = objects / (".000000010000000000000007.%d.tmp" % sleeper.pid)
        ancient.write_bytes(b"a pid reused long after")
        os.utime(str(ancient), (time.time() - 2 * 86400,) * 2)
        outside = tmp_path / "outside"
        outside.write_bytes(b"not the store's")
        link = objects / (".000000010000000000000008.%d.tmp" % _dead_pid())
        os.symlink(str(outside), str(link))
        os.utime(str(link), (old, old), follow_symlinks=False)
        not_ours = objects / ".someone-else.tmp"
        not_ours.write_bytes(b"x")
        os.utime(str(not_ours), (old, old))
        # The listing never reports a temporary, dead or alive.
        assert store.list_objects("db1", "main") == ["wal/" + SEGMENT]
        _wal.push(store, settings, wal_file(tmp_path, "000000010000000000000009", b"next"), "000000010000000000000009")
        left = sorted(os.listdir(str(objects)))
        assert not dead.exists() and not os.path.lexists(str(ancient))
        assert fresh_dead.exists() and alive.exists() and os.path.islink(str(link)) and not_ours.exists()
        assert outside.read_bytes() == b"not the store's"
        assert [n for n in left if not n.startswith(".")] == [SEGMENT, "000000010000000000000009"]
    finally:
        sleeper.kill()
        sleeper.wait()
