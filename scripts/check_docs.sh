#!/usr/bin/env bash
# Render the docs of every module in plugins/modules with ansible-doc, against
# the collection installed in ./collections (make build), and fail if any one
# does not render.  ansible-doc exits 0 even for a module it cannot load, so
# this checks the JSON output and the warnings too.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
cd "$ROOT"

export ANSIBLE_COLLECTIONS_PATH="$ROOT/collections"
export ANSIBLE_PYTHON_INTERPRETER="${ANSIBLE_PYTHON_INTERPRETER:-$VENV/bin/python}"
export ANSIBLE_NOCOLOR=1
export ANSIBLE_DEPRECATION_WARNINGS=false

ns="$(awk '/^namespace:/ {print $2}' galaxy.yml)"
name="$(awk '/^name:/ {print $2}' galaxy.yml)"

modules=()
shopt -s nullglob
for f in plugins/modules/*.py; do
    base="$(basename "$f" .py)"
    [[ "$base" == __init__ ]] && continue
    modules+=("$ns.$name.$base")
done

if ((${#modules[@]} == 0)); then
    echo "docs: no modules in plugins/modules; nothing to render"
    exit 0
fi

if [[ ! -d "$ANSIBLE_COLLECTIONS_PATH/ansible_collections/$ns/$name" ]]; then
    echo "docs: $ANSIBLE_COLLECTIONS_PATH has no $ns.$name; run make build" >&2
    exit 2
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# Fast path: one JSON and one text rendering of all modules together (each
# ansible-doc start costs about a second).  Only when that is not clean does
# the loop below render them one by one, to name the module that fails.
if "$VENV/bin/ansible-doc" -t module --json "${modules[@]}" >"$tmp/all.json" 2>"$tmp/all.err" &&
    "$VENV/bin/python" - "$tmp/all.json" "${modules[@]}" <<'PY' &&
import json, sys
data = json.load(open(sys.argv[1]))
for name in sys.argv[2:]:
    doc = (data.get(name) or {}).get("doc") or {}
    if not (doc.get("short_description") and doc.get("module")):
        sys.exit(1)
PY
    "$VENV/bin/ansible-doc" -t module "${modules[@]}" >"$tmp/all.text" 2>>"$tmp/all.err" &&
    ! grep -q -E '\[(WARNING|ERROR)\]|^ERROR' "$tmp/all.err"; then
    for m in "${modules[@]}"; do
        echo "docs: ok   $m"
    done
    echo "docs: all ${#modules[@]} module(s) rendered ($(wc -l <"$tmp/all.text") lines)"
    exit 0
fi
echo "docs: rendering the modules together was not clean; rendering one by one" >&2

failed=()
for m in "${modules[@]}"; do
    ok=1
    if ! "$VENV/bin/ansible-doc" -t module --json "$m" >"$tmp/json" 2>"$tmp/err" ||
        ! "$VENV/bin/python" - "$m" "$tmp/json" <<'PY'
import json, sys
name, path = sys.argv[1], sys.argv[2]
data = json.load(open(path))
doc = (data.get(name) or {}).get("doc") or {}
sys.exit(0 if doc.get("short_description") and doc.get("module") else 1)
PY
    then
        ok=0
    fi
    if ! "$VENV/bin/ansible-doc" -t module "$m" >"$tmp/text" 2>>"$tmp/err"; then
        ok=0
    fi
    if grep -q -E '\[(WARNING|ERROR)\]|^ERROR' "$tmp/err"; then
        ok=0
    fi
    if ((ok)); then
        echo "docs: ok   $m ($(wc -l <"$tmp/text") lines)"
    else
        echo "docs: FAIL $m" >&2
        sed 's/^/    /' "$tmp/err" >&2
        failed+=("$m")
    fi
done

if ((${#failed[@]})); then
    echo "docs: ${#failed[@]} of ${#modules[@]} module(s) failed to render: ${failed[*]}" >&2
    exit 1
fi
echo "docs: all ${#modules[@]} module(s) rendered"
