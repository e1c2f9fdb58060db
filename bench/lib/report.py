# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The machine a benchmark ran on, Markdown tables, and the results files."""

import datetime
import json
import math
import os
import platform
import subprocess

from lib import ANSIBLE, MIB, PG_BIN, REPO, RESULTS


def cmd_out(argv):
    try:
        return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              check=False).stdout.decode().strip()
    except OSError:
        return "n/a"


def now_utc():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def loadavg():
    with open("/proc/loadavg", encoding="ascii") as handle:
        return handle.read().split()[:3]


def commit():
    """The code measured: $LIFEBOAT_BENCH_CODE when set, else the commit, marked when plugins/ has changes."""
    if os.environ.get("LIFEBOAT_BENCH_CODE"):
        return os.environ["LIFEBOAT_BENCH_CODE"]
    rev = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"], stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, check=False)
    if rev.returncode != 0:
        return "unknown (%s is not a git work tree; set LIFEBOAT_BENCH_CODE to describe it)" % REPO
    dirty = cmd_out(["git", "-C", REPO, "status", "--porcelain", "--", "plugins"])
    return "commit " + rev.stdout.decode().strip() + (" + uncommitted changes in plugins/" if dirty else "")


def machine_info(work_dir, tools=("pg_dump", "zstd")):
    """CPU, memory, OS, file system of ``work_dir``, software versions, commit and load average."""
    cpu = "unknown"
    with open("/proc/cpuinfo", encoding="utf-8") as handle:
        flags = handle.read()
    for line in flags.splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kb = 0
    with open("/proc/meminfo", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    df = cmd_out(["df", "-PT", work_dir]).splitlines()
    info = {
        "commit": commit(),
        "nproc": cmd_out(["nproc"]),
        "cpu": cpu,
        "sha_ni": " sha_ni" in flags,
        "mem_gib": round(mem_kb / 1024.0 / 1024.0, 1),
        "kernel": platform.release(),
        "os": cmd_out(["sh", "-c", ". /etc/os-release && echo $PRETTY_NAME"]),
        "python": platform.python_version(),
        "ansible": cmd_out([ANSIBLE, "--version"]).splitlines()[0],
        "fs": (df[-1].split()[1] if len(df) > 1 else "?"),
        "loadavg_start": loadavg(),
        "started": now_utc(),
    }
    versions = {"pg_dump": [os.path.join(PG_BIN, "pg_dump"), "--version"], "zstd": ["zstd", "--version"]}
    for tool in tools:
        info[tool] = cmd_out(versions.get(tool, [tool, "--version"])).splitlines()[0:1] or ["n/a"]
        info[tool] = info[tool][0].replace("*", "").strip()
    return info


def machine_table(m, extra=()):
    """Markdown lines describing the machine (``extra``: more (label, value) rows)."""
    lines = ["| machine | |", "|---|---|",
             "| CPU | %s × %s (sha_ni: %s), %s GiB RAM |"
             % (m["nproc"], m["cpu"], "yes" if m["sha_ni"] else "no", m["mem_gib"]),
             "| OS | %s, kernel %s, bench dir on %s |" % (m["os"], m["kernel"], m["fs"]),
             "| software | Python %s; %s |" % (m["python"], m["ansible"])]
    lines += ["| %s | %s |" % row for row in extra]
    lines += ["| code measured | %s |" % m.get("commit", "?"),
              "| load average (1/5/15 min) | %s at start, %s at end |"
              % (" ".join(m["loadavg_start"]), " ".join(m.get("loadavg_end", [])))]
    return lines


def table(header, rows, align=None):
    """A Markdown table; ``align`` is one of 'l'/'r' per column (default: first left, the rest right)."""
    align = align or ["l"] + ["r"] * (len(header) - 1)
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join("---:" if a == "r" else "---" for a in align) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(str(c) for c in row) + " |")
    return lines


def fmt_s(x, digits=2):
    return "—" if x is None or math.isnan(x) else "%.*f" % (digits, x)


def mib(b):
    return "%.1f" % (b / MIB)


def fmt_peak(v):
    return "—" if v is None else "%.1f" % v


def verdict(ok):
    return "**met**" if ok else "**missed**"


def write_results(name, markdown, data):
    """Write bench/results/NAME.md and NAME.json (atomically) and print the Markdown."""
    os.makedirs(RESULTS, exist_ok=True)
    for suffix, text in ((".md", markdown),
                         (".json", json.dumps(data, indent=1, sort_keys=True, default=str) + "\n")):
        path = os.path.join(RESULTS, name + suffix)
        with open(path + ".tmp", "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(path + ".tmp", path)
    print(markdown)
