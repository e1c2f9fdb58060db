#!/usr/bin/env bash
# The 3-2-1 job of README's first command: start a throwaway PostgreSQL
# cluster, a MariaDB server, a file tree and a local S3 endpoint (moto); run
# the backup playbook (primary dir, second dir, offsite on S3); restore from
# the offsite copy, compare, and print where each copy is. Rerunnable; the
# servers are stopped on exit and `make clean` removes the demo directory.
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD

scripts/setup.sh
make -s build

work="${LIFEBOAT_DEMO_DIR:-${TMPDIR:-/tmp}/lifeboat-demo}"
mkdir -p "$work"
chmod 0711 "$work"
py="$top/.venv/bin/python"

# Per-machine random passwords for the demo servers, kept in 0600 files.
for f in pg_password my_password; do
  if [ ! -s "$work/$f" ]; then
    (umask 077 && "$py" -c 'import secrets; print(secrets.token_urlsafe(18), end="")' > "$work/$f")
  fi
done
LIFEBOAT_PG_PASSWORD=$(cat "$work/pg_password")
export LIFEBOAT_PG_PASSWORD

# The age key pair: the public key encrypts, the identity restores.
if [ ! -s "$work/age.key" ]; then
  (umask 077 && age-keygen -o "$work/age.key" 2>/dev/null)
fi
age-keygen -y "$work/age.key" > "$work/age.pub"

stop_servers() {
  "$py" scripts/pgcluster.py stop --dir "$work/pg" >/dev/null 2>&1 || true
  "$py" scripts/mariadbserver.py stop --dir "$work/mariadb" >/dev/null 2>&1 || true
  "$py" scripts/motoserver.py stop --dir "$work/moto" >/dev/null 2>&1 || true
}
trap stop_servers EXIT
json_field() { "$py" -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }

echo "== starting a throwaway PostgreSQL cluster in $work/pg"
info=$("$py" scripts/pgcluster.py start --dir "$work/pg" --user lifeboat)
LIFEBOAT_DEMO_PG_PORT=$(printf '%s' "$info" | json_field port)
echo "== loading sample data into PostgreSQL database shop (port $LIFEBOAT_DEMO_PG_PORT)"
"$py" scripts/pgcluster.py sample --dir "$work/pg" --db shop >/dev/null

echo "== starting a throwaway MariaDB server in $work/mariadb"
info=$("$py" scripts/mariadbserver.py start --dir "$work/mariadb" --password-file "$work/my_password")
LIFEBOAT_DEMO_MY_PORT=$(printf '%s' "$info" | json_field port)
"$py" scripts/mariadbserver.py sql --dir "$work/mariadb" >/dev/null <<'SQL'
CREATE DATABASE IF NOT EXISTS orders;
CREATE TABLE IF NOT EXISTS orders.orders (id INT PRIMARY KEY AUTO_INCREMENT, placed TIMESTAMP DEFAULT CURRENT_TIMESTAMP, item VARCHAR(40));
INSERT INTO orders.orders (item) VALUES ('lifebuoy'), ('oar'), ('bailer');
SQL

echo "== writing a file tree in $work/site"
mkdir -p "$work/site/docs"
date -u +"run at %FT%TZ" >> "$work/site/docs/runs.txt"
printf 'welcome aboard\n' > "$work/site/index.html"

echo "== starting a local S3 endpoint (moto) for the offsite copy"
"$py" scripts/motoserver.py start --dir "$work/moto" --bucket lifeboat-demo >/dev/null
mkdir -p "$work/store" "$work/store2" "$work/metrics"

LIFEBOAT_DEMO_METRICS=false
if [ -f plugins/modules/backup_metrics.py ]; then LIFEBOAT_DEMO_METRICS=true; fi
export LIFEBOAT_DEMO_DIR="$work" LIFEBOAT_DEMO_PG_PORT LIFEBOAT_DEMO_MY_PORT LIFEBOAT_PYTHON="$py" LIFEBOAT_DEMO_METRICS
export ANSIBLE_COLLECTIONS_PATH="$top/collections" ANSIBLE_PYTHON_INTERPRETER="$py"
export ANSIBLE_STDOUT_CALLBACK=default ANSIBLE_RETRY_FILES_ENABLED=0 ANSIBLE_NOCOLOR="${ANSIBLE_NOCOLOR:-}"

echo "== ansible-playbook lifeboat.backup.backup (primary dir, second dir, offsite S3)"
"$top/.venv/bin/ansible-playbook" -i demo/inventory.yml lifeboat.backup.backup
echo "== restore drill: from the offsite copy, compare with the sources"
"$top/.venv/bin/ansible-playbook" -i demo/inventory.yml demo/restore_drill.yml
echo "== demo finished; copies: $work/store, $work/store2, s3://lifeboat-demo/offsite (stopped with the demo); make clean removes $work"
