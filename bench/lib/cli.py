# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The options every benchmark takes, and the wrapper that turns failures into one line."""

import argparse
import os
import sys

from lib import BenchError, Skip, log

# bench/run.sh sets this when it runs several benchmarks with one set of options:
# each then ignores the options that belong to the others.
SHARED_OPTIONS_ENV = "LIFEBOAT_BENCH_SHARED_OPTIONS"


def parser(doc, reps=5, cluster=False):
    """An ArgumentParser with --reps (env LIFEBOAT_BENCH_REPS) and, for benchmarks on the cluster, --keep/--clean."""
    p = argparse.ArgumentParser(description=doc.split("\n\n", maxsplit=1)[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reps", type=int, default=int(os.environ.get("LIFEBOAT_BENCH_REPS", str(reps))),
                   help="repetitions per variant (default %d, env LIFEBOAT_BENCH_REPS)" % reps)
    if cluster:
        p.add_argument("--keep", action="store_true", help="leave the PostgreSQL cluster running at the end")
        p.add_argument("--clean", action="store_true",
                       help="stop the cluster and delete the bench directory at the end")
    return p


def parse(p, argv=None, min_reps=2):
    if os.environ.get(SHARED_OPTIONS_ENV):
        args, unknown = p.parse_known_args(argv)
        if unknown:
            log("%s: ignoring options meant for other benchmarks: %s" % (p.prog, " ".join(unknown)))
    else:
        args = p.parse_args(argv)
    if args.reps < min_reps:
        p.error("--reps must be at least %d (medians of fewer mean little)" % min_reps)
    if getattr(args, "keep", False) and getattr(args, "clean", False):
        p.error("--keep and --clean exclude each other")
    return args


def main(name, run, argv=None):
    """Run ``run(argv)``; BenchError -> one line, exit 1; Skip -> one sentence, exit 0."""
    try:
        run(argv)
    except Skip as exc:
        print("bench %s: skipped: %s" % (name, exc), file=sys.stderr)
        return 0
    except BenchError as exc:
        print("bench %s: error: %s" % (name, exc), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bench %s: interrupted" % name, file=sys.stderr)
        return 130
    return 0
