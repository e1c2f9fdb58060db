#!/usr/bin/env bash
# Benchmark entry point (`make bench`, `make bench BENCH="store_info s3_upload"`).
#
#   bench/run.sh [NAME ...] [OPTIONS]      (names first, then options)
#
# NAMEs are benchmarks, files bench/NAME.py; without one, every benchmark in
# DEFAULT below runs, in that order:
#   postgresql   postgresql_backup/_restore against raw `pg_dump | zstd` and pg_restore (>= 500 MiB)
#   store_info   backup_info and the max_age decision over 10,000 sets in a dir store
#   s3_upload    1 GiB into an s3 store against boto3's upload_file (moto on 127.0.0.1)
#   ebs          the EBS engine's overhead per volume against direct boto3 calls (moto's EC2 on 127.0.0.1)
#   metrics      backup_metrics over 10,000 sets of one source, store_usage on and off
# and, by name only, the ablations on the postgresql benchmark's cluster:
#   relay_check  where the backup loses time against `pg_dump | zstd > file`
#   restore_check  the same for the restore
#   files        files_backup rsync_snapshot against raw rsync -a / --link-dest (20,000 files, 1 GiB)
#   pitr         the WAL archive command's segments/s against cp, and the pg_basebackup method
#                against raw pg_basebackup | zstd -T0, and a PITR restore replaying WAL, on the
#                postgresql benchmark's cluster (see bench/pitr.py: it restarts that cluster)
# and, by name only, the fleet playbook:
#   fleet        backup.yml across 20 local-connection hosts, forks 1 against forks 10
# and, by name only, the btrfs snapshot module (root, a loop file):
#   btrfs        btrfs_snapshot against raw `btrfs send | zstd -T0` (1 GiB subvolume)
# and, by name only, the other engines:
#   mariadb      mysql_backup (mysqldump, mariabackup full + incremental) and mysql_restore against the
#                raw tools piped to zstd, on a throwaway MariaDB in $LIFEBOAT_BENCH_DIR/mariadb (--mb, default 300)
#   mongodb      mongodb_backup/_restore against `mongodump --archive | zstd -T0` through the test fakes
#                (no MongoDB here: the figures are the collection's overhead around the fake tools)
#
# OPTIONS go to every benchmark named (see bench/NAME.py --help); when several
# run, each ignores the options that are not its own. Common ones: --reps N,
# --keep (leave the PostgreSQL cluster running), --clean.
#
#   LIFEBOAT_BENCH_DIR    work directory (default /tmp/lifeboat-bench): the cluster in pg/,
#                         the generated stores, the 1 GiB upload file; reused by the next run
#   LIFEBOAT_PG_PASSWORD  password of the bench role (default: a random one kept in
#                         $LIFEBOAT_BENCH_DIR/pg_password, mode 0600); never put on argv
#
# Each benchmark writes bench/results/NAME.md and NAME.json and prints the Markdown.
# The run stops at the first benchmark that fails; one that cannot run here
# (a missing store kind or tool) says why and the others go on.
set -euo pipefail
cd "$(dirname "$0")/.."

DEFAULT=(postgresql store_info s3_upload retention ebs metrics)
NEEDS_PG=(postgresql relay_check restore_check)
NEEDS_PG+=(pitr)

py=.venv/bin/python
if [[ ! -x "$py" ]]; then
    echo "bench: .venv is missing; run 'make setup' (or use 'make bench')" >&2
    exit 1
fi

names=()
options=()
for arg in "$@"; do
    if [[ "$arg" == -* || ${#options[@]} -gt 0 ]]; then
        options+=("$arg")
    elif [[ -f "bench/$arg.py" && "$arg" != _* ]]; then
        names+=("$arg")
    else
        echo "bench: no benchmark named '$arg' (bench/$arg.py); known: ${DEFAULT[*]} relay_check restore_check" >&2
        exit 2
    fi
done
(( ${#names[@]} )) || names=("${DEFAULT[@]}")

missing=()
for tool in zstd bash sync; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
for name in "${names[@]}"; do
    if [[ " ${NEEDS_PG[*]} " == *" $name "* ]]; then
        for tool in pg_dump pg_restore psql initdb; do
            [[ -x "${LIFEBOAT_PG_BIN_DIR:-/usr/lib/postgresql/15/bin}/$tool" ]] || missing+=("$tool")
        done
        break
    fi
done
if (( ${#missing[@]} )); then
    echo "bench: missing tools: ${missing[*]} (see bindep.txt)" >&2
    exit 1
fi

export PATH="$PWD/.venv/bin:$PATH"
if (( ${#names[@]} > 1 )); then
    export LIFEBOAT_BENCH_SHARED_OPTIONS=1
fi
for name in "${names[@]}"; do
    echo "bench: === $name" >&2
    "$py" "bench/$name.py" ${options[@]+"${options[@]}"}
done
