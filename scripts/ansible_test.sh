#!/usr/bin/env bash
# Run ansible-test on a real copy of this collection.
#
#   scripts/ansible_test.sh sanity --python 3.11 --venv
#
# ansible-test needs a real directory tree .../ansible_collections/lifeboat/backup
# (a symlink is not enough), so the files git knows about (tracked plus
# untracked-but-not-ignored) are copied into
# build/ansible_collections/lifeboat/backup/ afresh on every run.  Only
# tests/output/.tmp/delegation (the --venv delegation venv, which is expensive to
# rebuild) survives between runs.  Results land in
# build/ansible_collections/lifeboat/backup/tests/output/.
#
# ansible-test bootstraps pip into the venvs it creates by downloading a
# get-pip script from a host that cannot be reached here; this script provides
# an offline stand-in for it (see ensure_pip_bootstrap) before running.
#
# Exit status is ansible-test's.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
# LIFEBOAT_BUILD_DIR lets two runs (say, two integration targets) proceed side by side.
BUILD="${LIFEBOAT_BUILD_DIR:-$ROOT/build}"
TREE="$BUILD/ansible_collections/lifeboat/backup"

export PIP_DISABLE_PIP_VERSION_CHECK=1

if [[ ! -x "$VENV/bin/ansible-test" ]]; then
    echo "ansible_test.sh: $VENV/bin/ansible-test missing; run scripts/setup.sh (make setup) first" >&2
    exit 2
fi

# ------------------------------------------------------------ pip bootstrap
ensure_pip_bootstrap() {
    # The pip version ansible-test pins for its venvs, read from its own source
    # (ansible_test/_internal/python_requirements.py: default_packages pip=...).
    local pip_version
    pip_version="$("$VENV/bin/python" - <<'EOF'
import re, pathlib, ansible_test
src = pathlib.Path(ansible_test.__file__).parent / "_internal" / "python_requirements.py"
m = re.search(r"default_packages\s*=\s*dict\(\s*pip='([^']+)'", src.read_text())
print(m.group(1) if m else "24.2")
EOF
)"
    local cache="${HOME}/.ansible/test/cache"
    local script="$cache/get_pip_${pip_version//./_}.py"
    local wheel_dir="$cache/pip-wheels"
    local wheel="$wheel_dir/pip-${pip_version}-py3-none-any.whl"

    mkdir -p "$wheel_dir"
    if [[ ! -s "$wheel" ]]; then
        echo "ansible_test.sh: downloading pip ${pip_version} wheel for ansible-test's venvs"
        "$VENV/bin/python" -m pip download -q --no-deps --only-binary=:all: \
            -d "$wheel_dir" "pip==${pip_version}" 2> >(grep -v 'is ignored: it is neither a file nor a directory' >&2)
    fi
    [[ -s "$wheel" ]] || { echo "ansible_test.sh: could not get $wheel" >&2; exit 2; }

    # A stand-in for https://ci-files.testing.ansible.com/ansible-test/get-pip-X.py
    # ansible-test runs it (via runpy, as __main__) with pip-install style args,
    # e.g. ['--disable-pip-version-check', 'pip==24.2', '--no-setuptools', '--no-wheel'].
    # It is rewritten when it is not ours (so a stale real download is kept only if
    # it is the genuine one: a genuine get-pip.py would need network too, so replace).
    if [[ ! -s "$script" ]] || ! grep -q 'lifeboat-offline-get-pip' "$script"; then
        cat >"$script" <<EOF
# lifeboat-offline-get-pip: offline stand-in for ansible-test's get-pip-${pip_version}.py
# Written by scripts/ansible_test.sh; installs pip from a locally cached wheel.
import os
import sys

WHEEL = ${wheel@Q}


def main():
    args = [a for a in sys.argv[1:] if a not in ('--no-setuptools', '--no-wheel')]
    sys.path.insert(0, WHEEL)  # pip runs from its own wheel
    from pip._internal.cli.main import main as pip_main
    return pip_main(['install', '--upgrade', '--force-reinstall', '--no-index',
                     '--find-links', os.path.dirname(WHEEL)] + args)


if __name__ == '__main__':
    sys.exit(main())
EOF
    fi
}

# ------------------------------------------------------------ real tree copy
sync_tree() {
    local keep="$BUILD/.delegation-keep"
    rm -rf "$keep"
    if [[ -d "$TREE/tests/output/.tmp/delegation" ]]; then
        mkdir -p "$keep"
        mv "$TREE/tests/output/.tmp/delegation" "$keep/"
    fi
    rm -rf "$TREE"
    mkdir -p "$TREE"
    # Files that exist: `git ls-files -c` also lists tracked files deleted in the
    # work tree, which tar would choke on.
    (cd "$ROOT" && git ls-files -co --exclude-standard -z \
        | while IFS= read -r -d '' f; do [[ -e "$f" || -L "$f" ]] && printf '%s\0' "$f"; done \
        | tar --null -T - -cf -) | (cd "$TREE" && tar -xf -)
    if [[ -d "$keep/delegation" ]]; then
        mkdir -p "$TREE/tests/output/.tmp"
        mv "$keep/delegation" "$TREE/tests/output/.tmp/"
    fi
    rm -rf "$keep"
    # ansible-test finds its files through the nearest enclosing .git; without
    # one here it would use /work/main's repo, where build/ is ignored, and see
    # nothing.  An empty repo is enough: it lists cached + others-not-ignored,
    # honouring the copied .gitignore (which keeps tests/output/ out).
    git -C "$TREE" init -q
}

# ansible-test hands integration targets a scrubbed environment (PATH, HOME,
# LC_ALL, a few SSH/LD vars and its own ANSIBLE_* settings; nothing else).  To
# let callers steer targets anyway, every LIFEBOAT_* variable is written into
# the copy's tests/integration/integration_config.yml (which ansible-test passes
# to role targets as extra vars) as the dict `lifeboat_env`, merged into that
# file if the repo has one.  Targets read e.g.
#   "{{ lifeboat_env.LIFEBOAT_PG_BIN | default('/usr/lib/postgresql/15/bin') }}"
write_integration_env() {
    "$VENV/bin/python" - "$TREE/tests/integration/integration_config.yml" <<'PY'
import os, sys, yaml
path = sys.argv[1]
env = {k: v for k, v in os.environ.items() if k.startswith("LIFEBOAT_")}
data = {}
if os.path.exists(path):
    with open(path) as f:
        data = yaml.safe_load(f) or {}
data.setdefault("lifeboat_env", {}).update(env)
os.makedirs(os.path.dirname(path), exist_ok=True)
with open(path, "w") as f:
    yaml.safe_dump(data, f, default_flow_style=False)
PY
}

ensure_pip_bootstrap
sync_tree
if [[ "${1:-}" == integration ]]; then
    write_integration_env
fi

cd "$TREE"
export PATH="$VENV/bin:$PATH"
set +e
"$VENV/bin/ansible-test" "$@"
rc=$?
set -e
exit "$rc"
