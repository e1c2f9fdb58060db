#!/usr/bin/env bash
# The main job of README's first command: back up a throwaway PostgreSQL
# cluster with the backup playbook, then restore the newest set and compare.
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD

scripts/setup.sh
make -s build

work="${LIFEBOAT_DEMO_DIR:-${TMPDIR:-/tmp}/lifeboat-demo}"
mkdir -p "$work"
chmod 0711 "$work"
py="$top/.venv/bin/python"

# A per-machine random password for the demo role, kept in a 0600 file.
if [ ! -s "$work/pg_password" ]; then
  (umask 077 && "$py" -c 'import secrets; print(secrets.token_urlsafe(18))' > "$work/pg_password")
fi
LIFEBOAT_PG_PASSWORD=$(cat "$work/pg_password")
export LIFEBOAT_PG_PASSWORD

# The age key pair: the public key encrypts, the identity restores.
if [ ! -s "$work/age.key" ]; then
  (umask 077 && age-keygen -o "$work/age.key" 2>/dev/null)
fi
age-keygen -y "$work/age.key" > "$work/age.pub"

stop_cluster() { "$py" scripts/pgcluster.py stop --dir "$work/pg" >/dev/null 2>&1 || true; }
trap stop_cluster EXIT

echo "== starting a throwaway PostgreSQL cluster in $work/pg"
info=$("$py" scripts/pgcluster.py start --dir "$work/pg" --user lifeboat)
LIFEBOAT_DEMO_PG_PORT=$(printf '%s' "$info" | "$py" -c 'import json,sys; print(json.load(sys.stdin)["port"])')
echo "== loading sample data into database shop (port $LIFEBOAT_DEMO_PG_PORT)"
"$py" scripts/pgcluster.py sample --dir "$work/pg" --db shop >/dev/null

export LIFEBOAT_DEMO_DIR="$work" LIFEBOAT_DEMO_PG_PORT LIFEBOAT_PYTHON="$py"
export ANSIBLE_COLLECTIONS_PATH="$top/collections" ANSIBLE_PYTHON_INTERPRETER="$py"
export ANSIBLE_STDOUT_CALLBACK=default ANSIBLE_RETRY_FILES_ENABLED=0 ANSIBLE_NOCOLOR="${ANSIBLE_NOCOLOR:-}"

echo "== ansible-playbook lifeboat.backup.backup"
"$top/.venv/bin/ansible-playbook" -i demo/inventory.yml lifeboat.backup.backup
echo "== restore drill: newest set -> shop_restored, compare"
"$top/.venv/bin/ansible-playbook" -i demo/inventory.yml demo/restore_drill.yml
echo "== demo finished; sets are in $work/store"
