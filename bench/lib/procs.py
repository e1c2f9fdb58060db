# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Wall time, process-tree CPU and per-kind peak RSS of a command, read from /proc."""

import os
import resource
import subprocess
import threading
import time

SAMPLE_INTERVAL = 0.05
# Processes of these names are tracked under their own name; Python processes are
# "module" when they run an Ansible module (AnsiballZ or python -m ansible_collections...).
CATEGORIES = ("pg_dump", "pg_restore", "zstd", "gzip", "psql", "sync", "age", "cat",
              "mariadb-dump", "mysqldump", "mariabackup", "mariadb-backup", "mariadb", "mbstream")


def _read(path):
    with open(path, "rb") as handle:
        return handle.read()


def stat_fields(pid):
    """The fields of /proc/PID/stat after the command name, or None."""
    try:
        stat = _read("/proc/%d/stat" % pid).decode("ascii", "replace")
    except OSError:
        return None
    return stat[stat.rfind(")") + 2:].split()


def classify_python(pid, markers):
    """'module' for a Python process running an Ansible module, else the first marker in its argv, else None."""
    try:
        argv = _read("/proc/%d/cmdline" % pid).split(b"\0")
    except OSError:
        return None
    if any(os.path.basename(a).startswith(b"AnsiballZ_") for a in argv[1:3]):
        return "module"
    if b"-m" in argv[1:3] and any(a.startswith(b"ansible_collections.") for a in argv):
        return "module"  # the module run directly (python -m ...)
    for marker, kind in markers:
        if any(marker in a for a in argv):
            return kind
    return None


class ProcSampler(threading.Thread):
    """Every SAMPLE_INTERVAL, find the descendants of ``root`` and keep each kind's peak RSS.

    Only pids that appeared since the last sample are examined for their parent,
    so a sample costs a listdir of /proc plus a few small reads.  VmHWM (the
    kernel's high-water mark of resident memory) never decreases, so the last
    sample before a process exits holds its peak up to that moment.
    ``markers`` is a list of (bytes in argv, kind) for Python processes to track
    under a name of their own (a benchmark's child, moto's server).
    """

    def __init__(self, root, markers=(), include_root=True):
        super().__init__(daemon=True)
        self.root = root
        self.markers = list(markers)
        self.tracked = {root}
        self.alive = {root} if include_root else set()
        self.foreign = set()
        self.kind = {}
        self.peak_kb = {}
        self.span = {}  # kind -> [first, last] perf_counter time a process of that kind was seen
        self.ticks = {}  # pid -> (kind, utime + stime in clock ticks at the last sample)
        self.samples = 0
        self._halt = threading.Event()

    def stop(self):
        self._halt.set()
        self.join()

    def run(self):
        while True:
            self.sample()
            if self._halt.wait(SAMPLE_INTERVAL):
                break
        self.sample()

    def _ppid(self, pid):
        fields = stat_fields(pid)
        try:
            return int(fields[1]) if fields else None
        except (ValueError, IndexError):
            return None

    def _classify(self, pid, name):
        if name in CATEGORIES:
            return name
        if name.startswith("python") or name.startswith("moto"):
            return classify_python(pid, self.markers)
        return None

    def sample(self):
        self.samples += 1
        try:
            pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
        except OSError:
            return
        new = sorted(p for p in pids if p not in self.tracked and p not in self.foreign)
        changed = True
        while new and changed:  # a child may be listed before its (also new) parent
            changed = False
            rest = []
            for pid in new:
                ppid = self._ppid(pid)
                if ppid in self.tracked:
                    self.tracked.add(pid)
                    self.alive.add(pid)
                    changed = True
                elif ppid is None or ppid in self.foreign or ppid not in new:
                    self.foreign.add(pid)
                else:
                    rest.append(pid)
            new = rest
        self.foreign.update(new)
        for pid in list(self.alive):
            try:
                status = _read("/proc/%d/status" % pid).decode("utf-8", "replace")
            except OSError:
                self.alive.discard(pid)
                continue
            fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
            name = fields.get("Name", "").strip()
            key = (pid, name)
            if key not in self.kind:
                self.kind[key] = self._classify(pid, name)
            kind = self.kind[key]
            hwm = fields.get("VmHWM")
            if kind and hwm:
                self.peak_kb[kind] = max(self.peak_kb.get(kind, 0), int(hwm.split()[0]))
                now = time.perf_counter()
                span = self.span.setdefault(kind, [now, now])
                span[1] = now
                stat = stat_fields(pid)
                try:
                    self.ticks[pid] = (kind, int(stat[11]) + int(stat[12]))
                except (TypeError, ValueError, IndexError):
                    pass

    def peaks_mib(self):
        return {k: round(v / 1024.0, 1) for k, v in self.peak_kb.items()}

    def cpu(self, kind):
        """CPU seconds (user + system) used by processes of ``kind``, as of their last sample."""
        ticks = sum(t for k, t in self.ticks.values() if k == kind)
        return round(ticks / float(os.sysconf("SC_CLK_TCK")), 2) if ticks or kind in self.span else None

    def lifetime(self, kind):
        """Seconds between the first and the last sample that saw a process of ``kind`` (+-50 ms)."""
        span = self.span.get(kind)
        return round(span[1] - span[0], 3) if span else None


def watch_pid(pid, markers=()):
    """A started sampler on an existing process (a server) and its descendants."""
    sampler = ProcSampler(pid, markers)
    sampler.start()
    return sampler


def children_cpu():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def self_cpu():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Run(object):
    """The outcome of ``timed``: wall, process-tree CPU, peaks, the module process's lifetime and CPU, output."""

    def __init__(self, returncode, wall, tree_cpu, peaks, lifetime, module_cpu, stdout, stderr):
        self.returncode = returncode
        self.wall = wall
        self.tree_cpu = tree_cpu
        self.peaks = peaks
        self.lifetime = lifetime
        self.module_cpu = module_cpu
        self.stdout = stdout
        self.stderr = stderr


def timed(argv, env=None, cwd=None, markers=(), stdin=None):
    """Run ``argv``; return a Run.

    ``tree_cpu`` is the CPU time of the whole process tree (every descendant is
    waited for by its parent, so RUSAGE_CHILDREN covers them all); a server the
    command talks to (PostgreSQL's backend, moto) is not part of it.
    """
    cpu0 = children_cpu()
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, cwd=cwd, stdin=stdin, stdout=subprocess.PIPE,  # pylint: disable=consider-using-with
                            stderr=subprocess.PIPE)
    sampler = ProcSampler(proc.pid, markers)
    sampler.start()
    out, err = proc.communicate()
    wall = time.perf_counter() - t0
    tree_cpu = round(children_cpu() - cpu0, 2)
    sampler.stop()
    return Run(proc.returncode, wall, tree_cpu, sampler.peaks_mib(), sampler.lifetime("module"),
               sampler.cpu("module"), (out or b"").decode("utf-8", "replace"),
               (err or b"").decode("utf-8", "replace"))
