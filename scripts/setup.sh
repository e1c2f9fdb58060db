#!/usr/bin/env bash
# Idempotent developer/CI setup for lifeboat.backup on Debian 12 (run as root).
#
#  1. installs the Debian packages the tests need (only the missing ones);
#  2. creates .venv with Python 3.11 if it does not exist;
#  3. pip-installs requirements.txt + tests/requirements.txt, but only when
#     those files changed since the last successful install (hash stamp kept
#     in .venv/.requirements.sha256).
#
# Safe to run repeatedly; a warm run takes well under a second.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

export DEBIAN_FRONTEND=noninteractive
export PIP_DISABLE_PIP_VERSION_CHECK=1

APT_PACKAGES=(postgresql-15 postgresql-client-15 zstd age gzip tar pigz)
# Test harness: ansible-test's "shellcheck" sanity test is skipped (with only a
# warning) when shellcheck is missing; git for scripts/ansible_test.sh.
APT_PACKAGES+=(shellcheck git)
# Engines and stores of the integration tests: MariaDB 10.11 with mariabackup,
# rsync over a private sshd on 127.0.0.1, btrfs on a loop file.
APT_PACKAGES+=(mariadb-server mariadb-client mariadb-backup openssh-server openssh-client rsync btrfs-progs)
# libfaketime: the retention integration target writes sets on days of its choosing (backup_retention).
APT_PACKAGES+=(faketime)
# promtool (package prometheus): the example alert rules (examples/prometheus/) and the
# textfile that backup_metrics writes are checked with it.
APT_PACKAGES+=(prometheus)
# boto3 for the system's python3: PostgreSQL runs the WAL archive command (postgresql_wal_archive,
# postgresql_restore method pitr) as postgres with /usr/bin/python3, and an s3 store needs boto3 there.
APT_PACKAGES+=(python3-boto3 python3-botocore)

# ---------------------------------------------------------------- apt
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    status="$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)"
    if [[ "$status" != "install ok installed" ]]; then
        missing+=("$pkg")
    fi
done

if ((${#missing[@]})); then
    echo "installing: ${missing[*]}"
    if [[ $EUID -ne 0 ]]; then
        echo "setup.sh: need root to install Debian packages: ${missing[*]}" >&2
        exit 1
    fi
    apt-get update -qq
    apt-get install -y -qq -o Dpkg::Use-Pty=0 --no-install-recommends "${missing[@]}"
fi

# ---------------------------------------------------------------- python
find_python() {
    local cand path
    # python3.11 on PATH may be a pyenv shim: resolve it to a real interpreter
    # by asking it for sys.executable (a broken shim fails this check).
    for cand in python3.11 /usr/bin/python3.11 python3; do
        path="$(command -v "$cand" 2>/dev/null)" || continue
        if "$path" -c 'import sys, venv; assert sys.version_info[:2] == (3, 11)' >/dev/null 2>&1; then
            "$path" -c 'import sys; print(sys.executable)'
            return 0
        fi
    done
    return 1
}

VENV="$ROOT/.venv"
if [[ ! -x "$VENV/bin/python" ]] || ! "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
    PY="$(find_python)" || {
        echo "setup.sh: no working python3.11 found on PATH" >&2
        exit 1
    }
    echo "creating .venv with $PY"
    rm -rf "$VENV"
    if ! "$PY" -m venv "$VENV"; then
        # Debian's /usr/bin/python3.11 needs python3.11-venv for ensurepip.
        echo "installing: python3.11-venv"
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends python3.11-venv
        rm -rf "$VENV"
        "$PY" -m venv "$VENV"
    fi
fi

REQ_FILES=(requirements.txt tests/requirements.txt)
STAMP="$VENV/.requirements.sha256"
want="$(cat "${REQ_FILES[@]}" | sha256sum | cut -d' ' -f1)"
have="$(cat "$STAMP" 2>/dev/null || true)"
if [[ "$want" != "$have" ]]; then
    echo "installing Python requirements into .venv"
    # (this machine's pip.conf lists local indexes that lack most packages;
    # drop pip's per-package "Location ... is ignored" noise about them)
    {
        "$VENV/bin/python" -m pip install -q --upgrade 'pip>=24.2'
        "$VENV/bin/python" -m pip install -q -r requirements.txt -r tests/requirements.txt
    } 2> >(grep -v 'is ignored: it is neither a file nor a directory' >&2)
    echo "$want" >"$STAMP"
else
    echo "python requirements up to date (.venv)"
fi
