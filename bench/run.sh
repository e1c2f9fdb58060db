#!/usr/bin/env bash
# Benchmark entry point (`make bench`): lifeboat.backup.postgresql_backup/_restore
# against raw `pg_dump | zstd` and plain pg_dump/pg_restore on a >= 500 MiB database.
# Writes bench/results/latest.md (and latest.json) and prints the table.
#
#   bench/run.sh [--keep | --clean] [--reps N] [--restore-reps N] [--no-profile]
#
#   LIFEBOAT_BENCH_DIR    work directory (default /tmp/lifeboat-bench): cluster in pg/,
#                         reused by the next run when its database is still there
#   LIFEBOAT_PG_PASSWORD  password of the bench role (default: a random one kept in
#                         $LIFEBOAT_BENCH_DIR/pg_password, mode 0600); never put on argv
#
# At the end the cluster is stopped (its data stays for the next run); --keep leaves
# it running, --clean deletes the whole work directory.
set -euo pipefail
cd "$(dirname "$0")/.."

py=.venv/bin/python
if [[ ! -x "$py" ]]; then
    echo "bench: .venv is missing; run 'make setup' (or use 'make bench')" >&2
    exit 1
fi
missing=()
for tool in zstd bash sync; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
for tool in pg_dump pg_restore psql initdb; do
    [[ -x "${LIFEBOAT_PG_BIN_DIR:-/usr/lib/postgresql/15/bin}/$tool" ]] || missing+=("$tool")
done
if (( ${#missing[@]} )); then
    echo "bench: missing tools: ${missing[*]} (see bindep.txt)" >&2
    exit 1
fi

export PATH="$PWD/.venv/bin:$PATH"
exec "$py" bench/bench.py "$@"
