# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Interleaved repetitions and the statistics the reports use."""

import statistics


def interleaved(names, reps):
    """(rep, name) pairs: every name once per repetition, the order rotating by one each time.

    Rotating cancels the effect of a variant always following the same other
    one (a warm cache, a pending write-back) and spreads slow drifts of the
    machine's load over every variant.
    """
    names = list(names)
    for rep in range(reps):
        k = rep % len(names)
        for name in names[k:] + names[:k]:
            yield rep, name


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else float("nan")


def spread(values):
    """(min, max) of the values, or (nan, nan)."""
    values = [v for v in values if v is not None]
    return (min(values), max(values)) if values else (float("nan"), float("nan"))


def paired_ratios(runs_a, runs_b, key="wall", offset=None):
    """Per repetition, (a - offset[rep]) / b over the runs of two variants, and their median.

    ``runs_*`` are lists of dicts with ``rep`` and ``key``; ``offset`` maps a
    repetition to a time to take off ``a`` first (ansible's own cost measured
    in the same repetition).
    """
    by_rep = {}
    for run in runs_a:
        by_rep.setdefault(run["rep"], {})["a"] = run[key]
    for run in runs_b:
        by_rep.setdefault(run["rep"], {})["b"] = run[key]
    ratios = []
    for rep, pair in sorted(by_rep.items(), key=lambda kv: str(kv[0])):
        if "a" in pair and "b" in pair and pair["b"]:
            if offset is not None and rep not in offset:
                continue
            ratios.append((pair["a"] - (offset[rep] if offset is not None else 0.0)) / pair["b"])
    return med(ratios), ratios
