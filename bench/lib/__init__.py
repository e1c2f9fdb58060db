# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Shared pieces of the lifeboat.backup benchmarks, so that each benchmark is a short file.

``procs``
    ``timed``: run a command, with its wall time, the CPU time of its whole
    process tree and the peak RSS (VmHWM) of each kind of process in it, read
    from /proc by ``ProcSampler`` every 50 ms.
``cluster``
    ``BenchCluster``: the bench's PostgreSQL cluster (scripts/harness/pg.py),
    its password, a 0600 passfile for the raw tools, sample databases reused
    between runs, ``settle`` (CHECKPOINT and sync) before each timed run.
``modules``
    the collection as ``ansible_collections/lifeboat/backup`` (a symlink to
    this work tree), modules run through ``ansible`` or directly with
    ``python -m`` (args in a 0600 file), under cProfile if asked.
``timing``
    interleaved repetitions with a rotating order, medians, paired ratios.
``report``
    the machine, Markdown tables, and bench/results/<name>.md and .json.
``cli``
    the options every benchmark takes and the ``main`` wrapper: one line per
    error, a clear sentence when a benchmark cannot run here.

The benchmarks put bench/ on ``sys.path`` (Python does, for a script) and
import ``lib``; ``lib`` puts scripts/ on ``sys.path`` for the test harness.
"""

import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RESULTS = os.path.join(REPO, "bench", "results")
SCRIPTS = os.path.join(REPO, "scripts")
PY = sys.executable
VENV_BIN = os.path.dirname(os.path.abspath(sys.executable))
ANSIBLE = os.path.join(VENV_BIN, "ansible")
PG_BIN = os.environ.get("LIFEBOAT_PG_BIN_DIR", "/usr/lib/postgresql/15/bin")
MIB = 1024 * 1024

if SCRIPTS not in sys.path:
    sys.path.insert(0, SCRIPTS)


class BenchError(Exception):
    """A benchmark failed: reported as one line, exit status 1."""


class Skip(Exception):
    """A benchmark cannot run here (a missing tool or store kind): one sentence, exit status 0."""


def log(msg):
    print("bench: " + msg, file=sys.stderr, flush=True)


def bench_dir():
    """The work directory ($LIFEBOAT_BENCH_DIR, default /tmp/lifeboat-bench), mode 0711."""
    path = os.path.abspath(os.environ.get("LIFEBOAT_BENCH_DIR") or "/tmp/lifeboat-bench")
    os.makedirs(path, exist_ok=True)
    os.chmod(path, 0o711)  # the postgres user must traverse it to reach pg/
    return path


def private_dir(*parts):
    """A 0700 directory below the bench directory."""
    path = os.path.join(bench_dir(), *parts)
    os.makedirs(path, exist_ok=True)
    os.chmod(path, 0o700)
    return path
