# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The ssh store on a real private sshd: a hostile store on the server, connection failures, secrets.

The server is this machine, so the tests plant links, FIFOs and huge files in
the store's directory directly, as an attacker with write access to the
backup server would. Each test runs under an alarm, so a blocking open fails
instead of hanging.
"""

from __future__ import annotations

import gc
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time

import pytest

from ansible_collections.lifeboat.backup.plugins.module_utils import _catalog
from ansible_collections.lifeboat.backup.plugins.module_utils import _manifest
from ansible_collections.lifeboat.backup.plugins.module_utils import _store_kinds
from ansible_collections.lifeboat.backup.plugins.module_utils import _store_ssh
from ansible_collections.lifeboat.backup.plugins.module_utils import _stores
from ansible_collections.lifeboat.backup.plugins.module_utils._common import LifeboatError
from ansible_collections.lifeboat.backup.tests.unit.plugins.helpers import make_set
from ansible_collections.lifeboat.backup.tests.unit.plugins.module_utils import ssh_harness

SET_ID = "20261126T031500Z-full"


@pytest.fixture(autouse=True)
def no_hang():
    def alarm(signum, frame):
        raise AssertionError("the store operation blocked")
    previous = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(60)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


@pytest.fixture
def root(tmp_path):
    return tmp_path / "remote"


@pytest.fixture
def store(root):
    return _store_kinds.open_store(ssh_harness.spec(root))


@pytest.fixture
def outside(tmp_path):
    path = tmp_path / "outside"
    path.mkdir()
    (path / "secret").write_bytes(b"not yours")
    (path / "dump.pgc").write_bytes(b"planted")
    return path


def set_path(root, name="dump.pgc"):
    return str(root / "db1" / "app" / SET_ID / name)


def test_symlinked_payload_on_the_server_is_refused(store, root, outside):
    manifest = make_set(store, "db1", "app", SET_ID, files={"dump.pgc": b"planted"})
    os.unlink(set_path(root))
    os.symlink(str(outside / "dump.pgc"), set_path(root))
    with pytest.raises(_stores.UnsafeEntryError, match="symbolic link"):
        store.open_payload("db1", "app", SET_ID, "dump.pgc")
    problems = store.verify_set(manifest)
    assert [(p["name"], p["problem"]) for p in problems] == [("dump.pgc", "unreadable")]


def test_fifo_payload_and_manifest_are_refused_without_blocking(store, root):
    manifest = make_set(store, "db1", "app", SET_ID)
    name = manifest["files"][0]["name"]
    os.unlink(set_path(root, name))
    os.mkfifo(set_path(root, name))
    with pytest.raises(_stores.UnsafeEntryError, match="not a regular file"):
        store.open_payload("db1", "app", SET_ID, name)
    os.unlink(set_path(root, "manifest.json"))
    os.mkfifo(set_path(root, "manifest.json"))
    listing = store.listing("db1", "app")
    assert listing.sets == []
    assert listing.strays == [{"name": SET_ID, "problem": "manifest is not a regular file (other)"}]
    sets, invalid, dummy = _catalog.scan(store)
    assert sets == [] and invalid[0]["set_id"] == SET_ID


@pytest.mark.parametrize("level", ["host", "source"])
def test_symlinked_directories_are_never_entered(store, root, tmp_path, level):
    other = _store_kinds.open_store({"kind": "dir", "path": str(tmp_path / "other")})
    make_set(other, "db1", "app", SET_ID)
    make_set(store, "db2", "app", SET_ID)
    if level == "host":
        os.symlink(str(tmp_path / "other" / "db1"), str(root / "db1"))
    else:
        os.makedirs(str(root / "db1"), mode=0o700)
        os.symlink(str(tmp_path / "other" / "db1" / "app"), str(root / "db1" / "app"))
    assert "db1" not in store.hosts() or store.sources("db1") == []
    with pytest.raises(_stores.UnsafeEntryError, match="symbolic link"):
        store.listing("db1", "app")
    with pytest.raises(LifeboatError):
        store.read_manifest("db1", "app", SET_ID)


def test_huge_manifest_on_the_server_is_refused_unread(store, root):
    make_set(store, "db1", "app", SET_ID)
    with open(set_path(root, "manifest.json"), "wb") as handle:
        handle.truncate(_stores.MAX_MANIFEST_BYTES + 1)
    with pytest.raises(_manifest.ManifestError, match="refused unread"):
        store.read_manifest_bytes("db1", "app", SET_ID)


def test_payload_swapped_for_a_larger_file_is_read_only_to_its_size(store, root):
    manifest = make_set(store, "db1", "app", SET_ID)
    name = manifest["files"][0]["name"]
    with open(set_path(root, name), "ab") as handle:
        handle.write(b"x" * 100000)
    problems = store.verify_set(manifest)
    assert problems[0]["problem"] == "size" and problems[0]["actual"] == "more"


def test_partial_that_is_a_link_is_not_removed_through(store, root, outside):
    make_set(store, "db1", "app", SET_ID)
    os.symlink(str(outside), str(root / "db1" / "app" / "20261127T000000Z-full.partial"))
    assert store.remove_partials("db1", "app") == []
    assert sorted(os.listdir(str(outside))) == ["dump.pgc", "secret"]


def test_shared_root_is_refused_unless_allowed(root):
    os.makedirs(str(root))
    os.chmod(str(root), 0o777)
    with pytest.raises(_stores.StoreError, match="writable by group or others"):
        _store_kinds.open_store(ssh_harness.spec(root)).hosts()
    assert _store_kinds.open_store(ssh_harness.spec(root, allow_shared=True)).hosts() == []


def test_shell_characters_in_names_are_data(tmp_path):
    # The path goes to the helper as data, never through a shell on the server.
    root = tmp_path / "a b;touch pwned$(touch pwned2)'\""
    store = _store_kinds.open_store(ssh_harness.spec(root))
    make_set(store, "db1", "app", SET_ID)
    assert store.set_ids("db1", "app") == [SET_ID]
    assert os.path.isdir(str(root / "db1" / "app" / SET_ID))
    home = os.path.expanduser("~")
    for name in ("pwned", "pwned2"):
        assert not os.path.exists(os.path.join(home, name))
        assert not os.path.exists(os.path.join("/", name))


def test_unreachable_server_is_one_sentence(tmp_path):
    store = _store_kinds.open_store(ssh_harness.spec(tmp_path / "r", port=1, connect_timeout=5))
    with pytest.raises(_stores.StoreError) as info:
        store.hosts()
    message = str(info.value)
    assert message.startswith("Cannot reach the ssh store at ")
    assert "\n" not in message


def test_unknown_host_key_is_one_sentence(tmp_path):
    info = ssh_harness.server()
    wrong = "[127.0.0.1]:%d ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHN0aGlzIGlzIG5vdCB0aGUgc2VydmVyJ3Mga2V5IQ" % info["port"]
    store = _store_kinds.open_store(ssh_harness.spec(tmp_path / "r", known_hosts=wrong))
    with pytest.raises(_stores.StoreError, match="host key of .* is not in known_hosts") as caught:
        store.hosts()
    assert "\n" not in str(caught.value)
    assert not os.path.exists(str(tmp_path / "r"))


def test_known_hosts_file_and_key_file_work(tmp_path):
    info = ssh_harness.server()
    store = _store_kinds.open_store(ssh_harness.spec(tmp_path / "r", inline_key=False,
                                                     known_hosts=info["known_hosts_file"]))
    make_set(store, "db1", "app", SET_ID)
    assert store.set_ids("db1", "app") == [SET_ID]


def test_private_key_never_in_a_command_line(store):
    key = ssh_harness.spec("/x")["private_key"]
    body = [line for line in key.splitlines() if line and not line.startswith("-----")][0]
    writer = store.begin("db1", "app", SET_ID)
    sink = writer.open("dump.pgc")
    sink.write(b"streaming")
    try:
        pid = sink.call.proc.pid
        seen = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    with open("/proc/%s/cmdline" % entry, "rb") as handle:
                        seen.append(handle.read())
                except OSError:
                    continue
        with open("/proc/%d/cmdline" % pid, "rb") as handle:
            argv = handle.read().split(b"\0")
        assert argv[0].endswith(b"ssh")
        assert any(arg.startswith(b"IdentityFile=/proc/") for arg in argv)
        assert not any(body.encode() in text for text in seen)
        assert body not in repr(store.describe()) + store.location()
    finally:
        sink.close()
        writer.abort()


def test_private_key_option_is_no_log():
    assert _store_kinds.store_options()["private_key"]["no_log"] is True


def test_remote_command_has_no_user_input(store):
    argv = store._ssh_argv()
    assert argv[-1] == _store_ssh.remote_command(len(_store_ssh.helper_source()))
    assert argv[-2] == "127.0.0.1" and argv[-3] == "--"


def test_stale_lock_of_a_dead_process_is_taken_over(store, root):
    import json
    import socket
    os.makedirs(str(root / "db1" / "app"), mode=0o700)
    with open(str(root / "db1" / "app" / ".lock"), "w") as handle:
        json.dump({"pid": 2 ** 22 + 12345, "node": socket.gethostname(), "started_at": "2026-11-26T03:15:00Z",
                   "expires_at": "2099-01-01T00:00:00Z", "set_id": None}, handle)
    with store.lock("db1", "app") as lock:
        assert lock.stale["reason"].startswith("its process")
        with pytest.raises(_stores.LockedError):
            store.lock("db1", "app").acquire()
    assert not os.path.exists(str(root / "db1" / "app" / ".lock"))


def test_lock_taken_over_meanwhile_stops_the_writer(store, root):
    lock = store.lock("db1", "app").acquire()
    with open(str(root / "db1" / "app" / ".lock"), "w") as handle:
        handle.write('{"pid": 1, "node": "elsewhere", "expires_at": "2099-01-01T00:00:00Z"}')
    with pytest.raises(_stores.LockedError, match="taken over"):
        lock.update(SET_ID)
    lock.release()
    # The other run's lock is left alone.
    assert "elsewhere" in (root / "db1" / "app" / ".lock").read_text()


def test_known_hosts_is_a_file_or_lines(tmp_path):
    info = ssh_harness.server()
    as_lines = _store_ssh.SshStore(ssh_harness.spec(tmp_path / "r"))
    assert as_lines._known_lines == info["known_hosts"] + "\n" and as_lines.known_hosts_file is None
    spaced = _store_ssh.SshStore(ssh_harness.spec(tmp_path / "r", known_hosts="/etc/my keys/known_hosts"))
    assert spaced.known_hosts_file == "/etc/my keys/known_hosts" and spaced._known_lines is None
    assert "UserKnownHostsFile=\"/etc/my keys/known_hosts\"" in spaced._ssh_argv()


# ---------------------------------------------------------------- one shared connection per store object

def _logins():
    with open(ssh_harness.server()["log_file"], encoding="utf-8", errors="replace") as handle:
        return handle.read().count("Accepted publickey")


def _masters(path):
    """Processes whose command line names the control socket ``path`` as a master."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open("/proc/%s/cmdline" % entry, "rb") as handle:
                    argv = handle.read().split(b"\0")
            except OSError:
                continue
            if b"ControlMaster=yes" in argv and any(path.encode() in arg for arg in argv):
                found.append(int(entry))
    return found


def _wait_for(predicate, seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


def test_operations_of_one_store_share_one_login(store):
    before = _logins()
    make_set(store, "db1", "app", SET_ID, files={"dump.pgc": b"x" * 1000})
    assert store.set_ids("db1", "app") == [SET_ID]
    for dummy in range(5):
        assert store.hosts() == ["db1"]
    with store.open_payload("db1", "app", SET_ID, "dump.pgc") as reader:
        assert reader.read() == b"x" * 1000
    # A dozen operations, one login (sshd logs one line per authentication).
    assert _wait_for(lambda: _logins() - before == 1, 5), _logins() - before


def test_close_ends_the_master_and_removes_its_socket(store):
    assert store.exists() is False
    directory, path = store._control[1], store._control[2]
    assert os.path.exists(path)
    assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700
    assert _masters(path)
    store.close()
    assert not os.path.exists(directory)
    assert _wait_for(lambda: not _masters(path), 5)
    # The store still works after close: a new master is started on demand.
    assert store.exists() is False
    store.close()


def test_more_sessions_at_once_than_the_shared_connection_allows(store):
    make_set(store, "db1", "app", SET_ID, files={"dump.pgc": b"payload"})
    readers = [store.open_payload("db1", "app", SET_ID, "dump.pgc") for dummy in range(_store_ssh.MUX_SESSIONS + 4)]
    try:
        assert [r.read() for r in readers] == [b"payload"] * len(readers)
    finally:
        for reader in readers:
            reader.close()
    assert store._sessions == 0
    assert store.hosts() == ["db1"]


def test_master_that_idled_out_is_started_again(store):
    assert store.exists() is False
    path = store._control[2]
    pid = _masters(path)[0]
    os.kill(pid, signal.SIGTERM)
    assert _wait_for(lambda: not os.path.exists(path), 5)
    assert store.exists() is False
    assert store._control[2] != path and os.path.exists(store._control[2])


# <root>/ansible_collections/lifeboat/backup/plugins/module_utils/_store_ssh.py, links not resolved
COLLECTIONS_ROOT = os.path.abspath(_store_ssh.__file__)
for _dummy in range(6):
    COLLECTIONS_ROOT = os.path.dirname(COLLECTIONS_ROOT)

CHILD = r'''
import os, signal, sys
sys.path.insert(0, %(root)r)
from ansible.utils.collection_loader._collection_finder import _AnsibleCollectionFinder
_AnsibleCollectionFinder(paths=[%(root)r])._install()
from ansible_collections.lifeboat.backup.plugins.module_utils import _store_kinds, _store_ssh
_store_ssh.CONTROL_PERSIST = 2
store = _store_kinds.open_store(%(spec)r)
store.exists()
print(store._control[2], flush=True)
if %(kill)r:
    os.kill(os.getpid(), signal.SIGKILL)
'''


@pytest.mark.parametrize("kill", [True, False], ids=["killed", "exiting"])
def test_no_master_outlives_its_run(tmp_path, kill):
    """A run that exits leaves no master; a killed one leaves it only until it has idled CONTROL_PERSIST seconds."""
    code = CHILD % dict(root=COLLECTIONS_ROOT, spec=ssh_harness.spec(tmp_path / "r"), kill=kill)
    proc = subprocess.run([sys.executable, "-c", code], stdout=subprocess.PIPE, timeout=60, check=False)
    path = proc.stdout.decode().strip()
    assert path.endswith("/m")
    if kill:
        assert proc.returncode == -signal.SIGKILL
        assert _wait_for(lambda: not _masters(path) and not os.path.exists(path), 10)
    else:
        assert proc.returncode == 0
        assert not _masters(path) and not os.path.exists(os.path.dirname(path))


WRONG_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHN0aGlzIGlzIG5vdCB0aGUgc2VydmVyJ3Mga2V5IQ"


@pytest.mark.parametrize("problem", ["unreachable", "unknown host key"])
def test_rsync_snapshot_to_an_unreachable_or_unknown_server_is_one_sentence(monkeypatch, tmp_path, root, problem):
    """files_backup rsync_snapshot into an ssh store it cannot reach, or whose host key it does not know:
    one sentence, in check mode too, and nothing on the server."""
    from ansible_collections.lifeboat.backup.plugins.modules import files_backup
    from ansible_collections.lifeboat.backup.tests.unit.plugins.helpers import run_module
    source = tmp_path / "data"
    source.mkdir()
    (source / "a.txt").write_bytes(b"some content\n")
    root.mkdir()
    if problem == "unreachable":
        spec = ssh_harness.spec(root, port=1, connect_timeout=5)
        expected = "Cannot reach the ssh store at "
    else:
        spec = ssh_harness.spec(root, known_hosts="[127.0.0.1]:%d %s" % (ssh_harness.server()["port"], WRONG_KEY))
        expected = "is not in known_hosts or does not match it"
    for check_mode in (False, True):
        outcome = run_module(monkeypatch, tmp_path, files_backup,
                             dict(store=spec, host="web1", path=str(source), method="rsync_snapshot"),
                             check_mode=check_mode)
        assert outcome.failed, outcome.result
        msg = outcome.result["msg"]
        assert "\n" not in msg and "Traceback" not in msg and expected in msg, msg
        assert "BEGIN OPENSSH PRIVATE KEY" not in msg
        assert os.listdir(str(root)) == [], "the failed run wrote on the server"


def test_a_tree_needs_a_plain_store_path(tmp_path):
    """rsync gets the server's paths as data (--protect-args), and the store path must still be plain."""
    root = tmp_path / "re[mo]te"
    root.mkdir(mode=0o700)
    store = _store_kinds.open_store(ssh_harness.spec(root))
    writer = store.begin("db1", "app", SET_ID)
    try:
        with pytest.raises(LifeboatError, match="rsync snapshots cannot use") as info:
            writer.tree("tree")
        assert "\n" not in str(info.value)
    finally:
        writer.abort()
    assert store.listing("db1", "app").partials == []
    assert store.tree_path("db1", "app", SET_ID, "tree") is None


def test_rsync_command_hands_no_secret_and_quotes_every_item(store, root):
    root.mkdir()
    shell = store.rsync_shell()
    assert "BEGIN OPENSSH" not in shell and "BatchMode=yes" in shell and "StrictHostKeyChecking=yes" in shell
    assert "'ControlMaster=no'" in shell and "ControlPath=" in shell
    items = shell.split(" ")
    assert all(item.startswith("'") and item.endswith("'") for item in items)
    store.close()


def test_snapshot_set_placed_on_the_server_is_verified_and_restored(monkeypatch, tmp_path, root):
    """A snapshot set of a dir store copied onto the server (the same layout) reads through the ssh kind."""
    from ansible_collections.lifeboat.backup.plugins.modules import files_backup
    from ansible_collections.lifeboat.backup.plugins.modules import files_restore
    from ansible_collections.lifeboat.backup.tests.unit.plugins.helpers import run_module
    source = tmp_path / "data"
    (source / "sub").mkdir(parents=True)
    (source / "sub" / "a.txt").write_bytes(b"some content\n")
    os.symlink("sub/a.txt", str(source / "link"))
    local = tmp_path / "local"
    local.mkdir(mode=0o700)
    outcome = run_module(monkeypatch, tmp_path, files_backup,
                         dict(store=dict(kind="dir", path=str(local)), host="web1", source="data",
                              path=str(source), method="rsync_snapshot"))
    assert not outcome.failed, outcome.result
    set_id = outcome.result["set_id"]
    subprocess.run(["cp", "-a", "--", str(local), str(root)], check=True)
    spec = ssh_harness.spec(root)
    store = _store_kinds.open_store(spec)
    manifest = store.read_manifest("web1", "data", set_id)
    assert store.verify_set(manifest) == []
    store.close()
    target = tmp_path / "target"
    outcome = run_module(monkeypatch, tmp_path, files_restore,
                         dict(store=spec, host="web1", source="data", target=str(target)))
    assert not outcome.failed, outcome.result
    assert (target / "sub" / "a.txt").read_bytes() == b"some content\n"
    assert os.readlink(str(target / "link")) == "sub/a.txt"
    gc.collect()  # the module's store object is gone, as at the end of a module's process: so is its scratch copy
    assert not [n for n in os.listdir(tempfile.gettempdir()) if n.startswith("lifeboat-tree-")
                and os.stat(os.path.join(tempfile.gettempdir(), n)).st_mtime > time.time() - 120], \
        "the scratch copy of the tree was left behind"


class FramesFromAHostileServer(object):
    """What a hostile backup server could send for op tree_send, frame by frame (the parser's input)."""

    def __init__(self, frames):
        self.frames = list(frames)
        self.finished = False

    def frame(self):
        item = self.frames.pop(0)
        return item if isinstance(item, dict) else bytes(item)

    def finish(self):
        self.finished = True


def _entry(path, mode, size=0, **extra):
    fields = dict(path=path, mode=mode, size=size, uid=0, gid=0, atime_ns=0, mtime_ns=0, ino=1, nlink=1)
    fields.update(extra)
    return b"E" + _store_ssh.json.dumps(fields).encode("ascii")


TOP = _entry("", stat.S_IFDIR | 0o755)
HOSTILE_STREAMS = {
    "dot-dot name": [TOP, _entry("..", stat.S_IFDIR | 0o755)],
    "path through a missing parent": [TOP, _entry("a/b", stat.S_IFREG | 0o644)],
    "out of order": [TOP, _entry("d", stat.S_IFDIR | 0o755), _entry("x", stat.S_IFREG | 0o644, 1), b"D1", b"Z",
                     _entry("d/y", stat.S_IFREG | 0o644)],
    "hard link to a file never sent": [TOP, _entry("f", stat.S_IFREG | 0o644, link_to="../../etc/passwd")],
    "more bytes than announced": [TOP, _entry("f", stat.S_IFREG | 0o644, 1), b"Dtoo many", b"Z"],
    "an entry without its fields": [TOP, b"E{\"path\": \"f\"}"],
    "a top that is not a directory": [_entry("", stat.S_IFREG | 0o644)],
}


@pytest.mark.parametrize("name", sorted(HOSTILE_STREAMS))
def test_a_hostile_tree_stream_is_refused_with_one_sentence_and_nothing_outside(tmp_path, name):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    call = FramesFromAHostileServer(HOSTILE_STREAMS[name] + [{"ok": True}])
    with pytest.raises(_stores.StoreError, match="sent a tree that is not well formed") as info:
        _store_ssh._fetch_tree(call, str(scratch), "ssh://backup/tree")
    assert "\n" not in str(info.value)
    assert sorted(os.listdir(str(tmp_path))) == ["scratch"]


def test_control_directories_of_live_processes_are_kept_and_of_dead_ones_removed(monkeypatch):
    """The sweep before a new master removes a control directory only when the run that made it is gone:
    a live process's directory stays however old its time stamp (a clock step, a long idle run), a dead
    one's goes, a non-empty one is never removed, and a name without a pid goes only when idle long."""
    base = tempfile.mkdtemp(prefix="lbsw", dir="/tmp")
    monkeypatch.setattr(tempfile, "tempdir", base)
    try:
        dead = subprocess.Popen(["true"])
        dead.wait()
        old = time.time() - 10 * _store_ssh.CONTROL_DIR_MAX_AGE

        def make(name, busy=False):
            path = os.path.join(base, name)
            os.mkdir(path, 0o700)
            if busy:
                open(os.path.join(path, "m"), "w").close()
            os.utime(path, (old, old))
            return path

        live = make("lifeboat-ssh-%d-aaaa" % os.getpid())
        gone = make("lifeboat-ssh-%d-bbbb" % dead.pid)
        gone_busy = make("lifeboat-ssh-%d-cccc" % dead.pid, busy=True)
        legacy_old = make("lifeboat-ssh-dddd")
        legacy_new = os.path.join(base, "lifeboat-ssh-eeee")
        os.mkdir(legacy_new, 0o700)
        fresh = _store_ssh._control_dir()
        assert os.path.basename(fresh).startswith("lifeboat-ssh-%d-" % os.getpid())
        assert os.path.isdir(live) and os.path.isdir(gone_busy) and os.path.isdir(legacy_new)
        assert not os.path.exists(gone) and not os.path.exists(legacy_old)
    finally:
        shutil.rmtree(base)
