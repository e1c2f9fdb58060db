# lifeboat.backup developer/CI entry points.  Everything runs from .venv
# (made by `make setup`); ansible-test runs on a real copy of the collection
# under build/ansible_collections/lifeboat/backup (scripts/ansible_test.sh).

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := test
# `make test` runs its steps in the order listed and must stop at the first
# failure, even under `make -j`.
.NOTPARALLEL:

ROOT     := $(CURDIR)
VENV     := $(ROOT)/.venv
PY       := $(VENV)/bin/python
ANSIBLE_TEST := $(ROOT)/scripts/ansible_test.sh
PYVER    := 3.11
# Throwaway servers of the integration run (see tests/integration/targets/setup_*).
IT_ROOT  := /tmp/lifeboat-it
# Extra ansible-test arguments, e.g. `make integration ANSIBLE_TEST_ARGS="--allow-destructive backup_postgresql"`
# or `make units ANSIBLE_TEST_ARGS="tests/unit/plugins/module_utils/test_manifest.py"` (pytest arguments there).
ANSIBLE_TEST_ARGS ?=
# Benchmarks to run (bench/run.sh names; all when empty), e.g. `make bench BENCH="store_info s3_upload"`.
BENCH ?=

NAMESPACE := $(shell awk '/^namespace:/ {print $$2}' galaxy.yml)
NAME      := $(shell awk '/^name:/ {print $$2}' galaxy.yml)
VERSION   := $(shell awk '/^version:/ {print $$2}' galaxy.yml)
TARBALL   := build/$(NAMESPACE)-$(NAME)-$(VERSION).tar.gz

# .venv first on PATH so scripts (demo, bench) get the venv's ansible-*;
# interpreter discovery could otherwise pick a broken pyenv shim.
export PATH := $(VENV)/bin:$(PATH)
export ANSIBLE_PYTHON_INTERPRETER := $(PY)
export PIP_DISABLE_PIP_VERSION_CHECK := 1

# Files git would ship (tracked + untracked-not-ignored), used to decide whether
# units/integration/lint have anything to run on.
git_files = $(shell git ls-files -co --exclude-standard -- $(1) 2>/dev/null)

.PHONY: setup demo build sanity units integration lint docs test bench clean distclean

setup:
	scripts/setup.sh

demo: setup
	bash scripts/demo.sh

build: setup
	mkdir -p build collections
	rm -f $(TARBALL)
	$(VENV)/bin/ansible-galaxy collection build --force --output-path build/ .
	$(VENV)/bin/ansible-galaxy collection install --offline --force -p collections $(TARBALL)

sanity: setup
	$(ANSIBLE_TEST) sanity --python $(PYVER) --venv $(ANSIBLE_TEST_ARGS)

# pytest from .venv (requirements.txt + tests/requirements.txt), UNIT_WORKERS xdist
# workers; conftest.py makes the collection importable as ansible_collections.lifeboat.backup,
# and ansible-test's pytest settings are kept (strict markers, strict xfail).
# Not `ansible-test units`: it forks every test, so the module- and session-scoped
# fixtures (moto server, sshd, ssh keys, a PostgreSQL base backup) were made again for
# every single test; the same tests ran 3-4 times slower.  ANSIBLE_TEST_ARGS narrows
# the run to files or node ids, e.g. tests/unit/plugins/module_utils/test_manifest.py.
UNIT_WORKERS ?= auto
units: setup
	@if [[ -z "$(strip $(call git_files,tests/unit))" ]]; then \
	    echo "units: tests/unit/ has no files; skipping"; \
	else \
	    $(PY) -m pytest -q -p no:cacheprovider -r a --strict-markers -o xfail_strict=true \
	        -n $(UNIT_WORKERS) --durations=25 $(or $(strip $(ANSIBLE_TEST_ARGS)),tests/unit); \
	fi

integration: setup
	@if [[ -z "$(strip $(call git_files,tests/integration/targets))" ]]; then \
	    echo "integration: no targets in tests/integration/targets/; skipping"; \
	else \
	    $(PY) scripts/pgcluster.py stop --dir $(IT_ROOT)/pg --remove >/dev/null 2>&1 || true; \
	    $(PY) scripts/pgcluster.py stop --dir $(IT_ROOT)/pgwal --remove >/dev/null 2>&1 || true; \
	    $(PY) scripts/motoserver.py stop --dir $(IT_ROOT)/moto --remove >/dev/null 2>&1 || true; \
	    $(PY) scripts/harness/sshd.py stop --dir $(IT_ROOT)/sshd --remove >/dev/null 2>&1 || true; \
	    for d in $(IT_ROOT)/mariadb*/; do [[ -f "$$d/my.cnf" ]] && $(PY) scripts/mariadbserver.py stop --dir "$$d" >/dev/null 2>&1; done; true; \
	    $(PY) scripts/btrfsloop.py stop --dir $(IT_ROOT)/btrfs --remove >/dev/null 2>&1 || true; \
	    $(PY) scripts/pgcluster.py stop --dir $(IT_ROOT)/postgresql_pitr/pg >/dev/null 2>&1 || true; \
	    rm -rf $(IT_ROOT); \
	    rc=0; $(ANSIBLE_TEST) integration --local --python $(PYVER) -v $(ANSIBLE_TEST_ARGS) || rc=$$?; \
	    $(PY) scripts/pgcluster.py stop --dir $(IT_ROOT)/pg --remove >/dev/null 2>&1 || true; \
	    $(PY) scripts/pgcluster.py stop --dir $(IT_ROOT)/pgwal --remove >/dev/null 2>&1 || true; \
	    $(PY) scripts/motoserver.py stop --dir $(IT_ROOT)/moto --remove >/dev/null 2>&1 || true; \
	    $(PY) scripts/harness/sshd.py stop --dir $(IT_ROOT)/sshd --remove >/dev/null 2>&1 || true; \
	    for d in $(IT_ROOT)/mariadb*/; do [[ -f "$$d/my.cnf" ]] && $(PY) scripts/mariadbserver.py stop --dir "$$d" >/dev/null 2>&1; done; true; \
	    $(PY) scripts/btrfsloop.py stop --dir $(IT_ROOT)/btrfs --remove >/dev/null 2>&1 || true; \
	    $(PY) scripts/pgcluster.py stop --dir $(IT_ROOT)/postgresql_pitr/pg >/dev/null 2>&1 || true; \
	    exit $$rc; \
	fi

# ansible-lint must resolve lifeboat.backup.* (modules, roles) from this work
# tree: offline it does not self-install the collection (online it would write
# .ansible/ into the repo), so point it at a symlink tree under build/.
LINT_COLLECTIONS := $(ROOT)/build/lint

lint: setup
	@mkdir -p $(LINT_COLLECTIONS)/ansible_collections/$(NAMESPACE); \
	ln -sfn $(ROOT) $(LINT_COLLECTIONS)/ansible_collections/$(NAMESPACE)/$(NAME); \
	export ANSIBLE_COLLECTIONS_PATH=$(LINT_COLLECTIONS); \
	dirs=(); \
	for d in roles playbooks; do \
	    if [[ -n "$$(git ls-files -co --exclude-standard -- $$d)" ]]; then dirs+=("$$d/"); fi; \
	done; \
	if (( $${#dirs[@]} == 0 )); then \
	    echo "lint: roles/ and playbooks/ are empty; nothing to lint"; \
	else \
	    echo "ansible-lint --offline --profile production $${dirs[*]}"; \
	    $(VENV)/bin/ansible-lint --offline --profile production "$${dirs[@]}"; \
	fi

docs: build
	scripts/check_docs.sh

test: setup sanity lint docs units integration

bench: setup
	bash bench/run.sh $(BENCH)

clean:
	rm -rf build collections tests/output .pytest_cache
	rm -rf "$${LIFEBOAT_DEMO_DIR:-$${TMPDIR:-/tmp}/lifeboat-demo}"

distclean: clean
	rm -rf .venv
