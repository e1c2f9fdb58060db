# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Running this work tree's modules: through ``ansible``, or directly with ``python -m``.

The collection is reached as ``$LIFEBOAT_BENCH_DIR/collections/ansible_collections/lifeboat/backup``,
a symlink to the work tree. A secret a module needs is handed over as an
Ansible ``lookup('env', ...)`` template (through ansible) or in a 0600 args
file that is removed at once (direct runs); never in argv.
"""

import json
import os
import pstats
import re
import subprocess

from lib import ANSIBLE, PY, REPO, VENV_BIN, BenchError, bench_dir
from lib.procs import timed

MODULE_PACKAGE = "ansible_collections.lifeboat.backup.plugins.modules."


def collections_path():
    """The collections root with lifeboat.backup linked to this work tree."""
    root = os.path.join(bench_dir(), "collections")
    parent = os.path.join(root, "ansible_collections", "lifeboat")
    os.makedirs(parent, exist_ok=True)
    link = os.path.join(parent, "backup")
    if os.path.islink(link) and os.readlink(link) != REPO:
        os.unlink(link)
    if not os.path.lexists(link):
        os.symlink(REPO, link)
    return root


def collection_at(rev):
    """A collections root holding lifeboat.backup as of git revision ``rev`` (plugins/ and meta/, from git archive)."""
    root = os.path.join(bench_dir(), "rev-" + re.sub(r"[^A-Za-z0-9._-]", "_", rev))
    tree = os.path.join(root, "ansible_collections", "lifeboat", "backup")
    if not os.path.isdir(os.path.join(tree, "plugins")):
        os.makedirs(tree, exist_ok=True)
        archive = subprocess.run(["git", "-C", REPO, "archive", rev, "plugins", "meta", "galaxy.yml"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
        if archive.returncode != 0:
            raise BenchError("git archive %s failed: %s" % (rev, archive.stderr.decode().strip()))
        subprocess.run(["tar", "-x", "-C", tree], input=archive.stdout, check=True)
    return root


def import_collection():
    """Make ``ansible_collections.lifeboat.backup`` importable in this process (for in-process benchmarks)."""
    root = collections_path()
    from ansible.utils.collection_loader._collection_finder import _AnsibleCollectionFinder  # pylint: disable=import-outside-toplevel
    _AnsibleCollectionFinder(paths=[root])._install()  # pylint: disable=protected-access


def ansible_env(secrets=None, poll=None):
    """Environment for ``ansible`` and for direct module runs: this tree's collection, the venv's Python.

    ``secrets`` (name -> value) are added as environment variables for
    ``lookup('env', ...)``; ``poll`` writes an ansible.cfg with that
    ``internal_poll_interval`` (the controller otherwise polls every millisecond).
    """
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("PG") and not k.startswith("ANSIBLE_") and k != "LIFEBOAT_PG_PASSWORD"}
    if poll is not None:
        cfg = os.path.join(bench_dir(), "ansible-poll.cfg")
        with open(cfg, "w", encoding="utf-8") as handle:
            handle.write("[defaults]\ninternal_poll_interval = %s\n" % poll)
        env["ANSIBLE_CONFIG"] = cfg
    env.update(secrets or {})
    env.update({
        "ANSIBLE_COLLECTIONS_PATH": collections_path(),
        "ANSIBLE_PYTHON_INTERPRETER": PY,
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_DEPRECATION_WARNINGS": "0",
        "ANSIBLE_LOCALHOST_WARNING": "0",
        "ANSIBLE_RETRY_FILES_ENABLED": "0",
        "PATH": VENV_BIN + os.pathsep + os.environ.get("PATH", "/usr/bin:/bin"),
    })
    return env


def run_ansible(module, args=None, secrets=None, poll=None, cwd=None, markers=()):
    """``ansible localhost -m MODULE -a JSON``; returns (Run, result dict); BenchError when it fails.

    ``markers`` go to ``timed`` (Python children to track under a kind of their own).
    """
    argv = [ANSIBLE, "localhost", "-i", "localhost,", "-c", "local", "-m", module]
    if args is not None:
        argv += ["-a", json.dumps(args)]
    run = timed(argv, ansible_env(secrets, poll), cwd or bench_dir(), markers=markers)
    match = re.search(r"^localhost \| (\S+)[^\n]*? => ", run.stdout, re.M)
    if not match:
        raise BenchError("cannot parse the ansible output of %s:\n%s\n%s"
                         % (module, run.stdout[-2000:], run.stderr[-2000:]))
    result = json.loads(run.stdout[match.end():])
    if run.returncode != 0 or result.get("failed"):
        raise BenchError("%s failed: %s" % (module, result.get("msg") or run.stdout[-2000:]))
    return run, result


def _args_file(name, args):
    """A 0600 file with the module's arguments (it may hold a password); the caller removes it."""
    path = os.path.join(bench_dir(), name)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump({"ANSIBLE_MODULE_ARGS": args}, handle)
    return path


def _result(run, what):
    try:
        result = json.loads(run.stdout[run.stdout.index("{"):])
    except ValueError:
        raise BenchError("%s printed no JSON: %s %s" % (what, run.stdout[-1000:], run.stderr[-1000:]))
    if result.get("failed"):
        raise BenchError("%s failed: %s" % (what, result.get("msg")))
    return result


def run_direct(module, args, env=None, cwd=None, collections=None):
    """Run ``lifeboat.backup.MODULE`` with ``python -m`` (no ansible); returns (Run, result dict).

    ``collections`` is another collections root (``collection_at``) to run the module from.
    """
    path = _args_file("direct-args.json", args)
    env = dict(env or ansible_env())
    env["PYTHONPATH"] = collections or collections_path()
    try:
        run = timed([PY, "-m", MODULE_PACKAGE + module, path], env, cwd or bench_dir())
    finally:
        os.unlink(path)
    return run, _result(run, module)


# Rows of the profile summary: (label, predicate on (file, function), "tt" self time or "ct" cumulative).
PROFILE_ROWS = [
    ("whole module (python, under cProfile)", lambda f, fn: fn == "<module>" and f == "<string>", "ct"),
    ("os.read/readv on the pipeline's last pipe (blocked waiting for the tools)",
     lambda f, fn: fn in ("<built-in method posix.read>", "<built-in method posix.readv>"), "tt"),
    ("os.pread/preadv (the payload read back from the page cache for its SHA-256)",
     lambda f, fn: fn in ("<built-in method posix.pread>", "<built-in method posix.preadv>"), "tt"),
    ("file.read (verify: re-hash of the stored file)",
     lambda f, fn: fn in ("<method 'read' of '_io.BufferedReader' objects>",
                          "<method 'readinto' of '_io.FileIO' objects>",
                          "<method 'read' of '_io.FileIO' objects>"), "tt"),
    ("sha256 update", lambda f, fn: fn == "<method 'update' of '_hashlib.HASH' objects>", "tt"),
    ("os.write / file.write (payload to the store)",
     lambda f, fn: fn in ("<method 'write' of '_io.BufferedWriter' objects>", "<built-in method posix.write>",
                          "<method 'write' of '_io.FileIO' objects>"), "tt"),
    ("os.fsync/fdatasync in the main thread (payload, manifest, dirs)",
     lambda f, fn: fn in ("<built-in method posix.fsync>", "<built-in method posix.fdatasync>"), "tt"),
    ("time.sleep (waiting for the tools to write more)", lambda f, fn: fn == "<built-in method time.sleep>", "tt"),
    ("Popen.wait (tools finishing after EOF)", lambda f, fn: fn == "wait" and f.endswith("subprocess.py"), "ct"),
    ("subprocess start (fork/exec of stages)",
     lambda f, fn: fn == "_execute_child" and f.endswith("subprocess.py"), "ct"),
    ("AnsibleModule.run_command (psql probe/SQL, --version)",
     lambda f, fn: fn == "run_command" and f.endswith("basic.py"), "ct"),
    ("imports", lambda f, fn: fn == "_find_and_load", "ct"),
    ("json dumps of the result (exit_json)", lambda f, fn: fn == "exit_json", "ct"),
]


def profile_direct(module, args, label, rows=None, env=None):
    """Run the module directly under cProfile; returns {wall, rows, top_tottime, result}."""
    path = _args_file("profile-args.json", args)
    prof_path = os.path.join(bench_dir(), "profile-%s.pstats" % label)
    stmt = "runpy.run_module(%r, run_name='__main__', alter_sys=True)" % (MODULE_PACKAGE + module)
    code = ("import cProfile, runpy, sys\n"
            "sys.argv = ['module', %r]\n"
            "cProfile.run(%r, %r)\n" % (path, stmt, prof_path))
    env = dict(env or ansible_env())
    env["PYTHONPATH"] = collections_path()
    try:
        run = timed([PY, "-c", code], env, bench_dir())
    finally:
        os.unlink(path)
    result = _result(run, "profiled " + label)
    stats = pstats.Stats(prof_path)
    summary = []
    for row_label, pred, use in (rows or PROFILE_ROWS):
        tt_sum = ct_max = calls = 0
        for (fname, dummy, func), (dummy2, nc, tt, ct, dummy3) in stats.stats.items():
            if pred(fname, func):
                tt_sum += tt
                ct_max = max(ct_max, ct)
                calls += nc
        summary.append((row_label, round(tt_sum if use == "tt" else ct_max, 3), calls))
    stats.sort_stats("tottime")
    top = []
    for key in stats.fcn_list[:15]:
        dummy, nc, tt, ct, dummy2 = stats.stats[key]
        top.append((pstats.func_std_string(key), nc, round(tt, 3), round(ct, 3)))
    return {"wall": round(run.wall, 3), "rows": summary, "top_tottime": top, "result": result,
            "duration_s": result.get("duration_s")}
