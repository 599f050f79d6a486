# edgemig.migration - see README.md.
SHELL := /bin/bash
PYTHON ?= python3
INVENTORY ?= inventory/lab/hosts.yml
SVC ?= apache
COLL := .cache/collections/ansible_collections/edgemig/migration
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
export ANSIBLE_COLLECTIONS_PATH := $(CURDIR)/.cache/collections
PLAY := ansible-playbook -i $(INVENTORY)

.PHONY: help deps collection-link follow-inventory lab-up lab-down lab-status provision deploy migrate demo \
        check ruff changelog-lint sanity galaxy-check test test-unit test-integration test-faults molecule bench bench-precopy bench-stream soak build \
        lint clean deps-eda follow bench-mobility deps-podman bench-floor bench-evacuate

help:
	@echo "make demo      lab up, provision, deploy $(SVC) on edge1, migrate it to edge2, print the report"
	@echo "make check     the fast lane, no root, no lab (< 3 min): ruff, ansible-test sanity, unit tests, build, ansible-doc"
	@echo "make test      make check, then the whole suite (unit, collection, lab integration, molecule, faults)"
	@echo "make lab-up | lab-down | provision | deploy | migrate SVC=... | bench | bench-stream | soak [CHAOS=1]"
	@echo "make follow    the service follows its user: ansible-rulebook with extensions/eda/rulebooks/follow.yml (events on http://127.0.0.1:$(FOLLOW_PORT)/event)"

# requirements-dev.txt: the runtime (requirements.txt) plus the test, lint and bench tools.
deps: collection-link
	@$(PYTHON) -c 'import ansible, lz4, zstandard, paramiko, numpy, hypothesis, pytest, matplotlib, pymysql, psycopg' 2>/dev/null \
	  && command -v ansible-lint >/dev/null && command -v molecule >/dev/null && command -v antsibull-changelog >/dev/null \
	  || $(PYTHON) -m pip install -q -r requirements-dev.txt
	bash lab/lab.sh deps
	$(MAKE) --no-print-directory deps-eda

# Event-Driven Ansible (issue 15): ansible-rulebook from PyPI and a JDK >= 17 from Debian.
deps-eda:
	@command -v ansible-rulebook >/dev/null && $(PYTHON) -c 'import aiohttp, drools' 2>/dev/null \
	  || $(PYTHON) -m pip install -q -r requirements-eda.txt
	@java -version 2>&1 | grep -Eq 'version "(1[7-9]|[2-9][0-9])' && command -v javac >/dev/null \
	  || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends openjdk-17-jdk-headless; }

# Podman (Debian's, with runc): the anchor of make bench-floor (issue 26), not needed by make test.
deps-podman:
	@command -v podman >/dev/null \
	  || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends podman runc; }

collection-link:
	@mkdir -p $(dir $(COLL))
	@ln -sfn $(CURDIR) $(COLL)

lab-up: deps
	bash lab/lab.sh up

lab-down:
	bash lab/lab.sh down

lab-status:
	bash lab/lab.sh status

provision: lab-up
	$(PLAY) playbooks/provision.yml

deploy: collection-link
	$(PLAY) playbooks/deploy.yml -e svc=$(SVC) -e host=edge1

migrate: collection-link
	$(PLAY) playbooks/migrate.yml -e svc=$(SVC)

# The main job on the built-in lab: everything it needs, then one migration.
demo: provision
	$(PLAY) playbooks/deploy.yml -e svc=$(SVC) -e host=edge1
	$(PLAY) playbooks/migrate.yml -e svc=$(SVC) -e target=edge2

test-unit: collection-link
	$(PYTHON) -m pytest -q tests/unit

ruff:
	@command -v ruff >/dev/null || $(PYTHON) -m pip install -q 'ruff>=0.6'
	ruff check .

# The release notes (antsibull-changelog): fragments in changelogs/fragments/ and changelogs/changelog.yaml
# valid; a release is `antsibull-changelog release --version X.Y.Z` (it renders CHANGELOG.rst).
changelog-lint:
	@command -v antsibull-changelog >/dev/null || $(PYTHON) -m pip install -q 'antsibull-changelog>=0.36'
	antsibull-changelog lint
	antsibull-changelog lint-changelog-yaml changelogs/changelog.yaml

# ansible-test sanity from a `git archive` copy under .cache/sanity (offline pip stand-in included).
sanity:
	bash tests/sanity/run.sh

# The fast lane: no root, no lab, no network beyond the package index (sanity's venvs).
# Unit tests include the collection build and ansible-doc of every module (tests/unit/test_collection.py).
check: collection-link
	@t0=$$(date +%s); set -e; \
	$(MAKE) --no-print-directory ruff; \
	$(MAKE) --no-print-directory changelog-lint; \
	$(MAKE) --no-print-directory sanity; \
	$(PYTHON) -m pytest -q tests/unit tests/security; \
	$(MAKE) --no-print-directory galaxy-check; \
	echo "make check: passed in $$(( $$(date +%s) - t0 )) s"

test-integration: provision
	$(PYTHON) -m pytest -q -m lab tests/integration

test-faults: provision
	$(PYTHON) -m pytest -q -m faults tests/integration

MOLECULE_SCENARIOS ?= criu docker_engine dump_tmpfs migration_trust base_images migration

# Run from the collection root: molecule finds extensions/molecule/config.yml
# (shared settings: lab inventory, converge/verify/idempotence/verify) there.
molecule: provision
	set -e; for s in $(MOLECULE_SCENARIOS); do molecule test -s $$s; done

# The whole suite: the fast lane first, then the lab (brought up by provision; CI: .ci/run).
# tests/unit and tests/security ran in `check`: the lab lane runs the rest, not them again.
test: check
	$(MAKE) provision
	$(MAKE) lint
	$(PYTHON) -m pytest -q -m "not slow" --durations=40 tests/integration tests/docker26
	$(MAKE) molecule

build: collection-link
	ansible-galaxy collection build --force --output-path .cache/dist .

# Galaxy's own importer (PyPI galaxy-importer, in a venv of its own: it pins its ansible-lint) on the
# built tarball, as Galaxy runs it on upload; ~50 s, offline once installed. Every WARNING it prints
# must match a justified line of tests/galaxy/expected-warnings.txt (the dependencies it does not
# install; the one sanity ignore), else the check fails. The changelog it looks for is CHANGELOG.rst.
# It writes importer_result.json into the directory it runs in: ignored by git and by the build.
GALAXY_VENV := .cache/galaxy-importer-venv
GALAXY_LOG := .cache/galaxy-importer.log
# An empty HOME: ansible-lint would otherwise resolve our modules from a copy of the collection that an
# earlier ansible-lint run left in ~/.ansible/collections (an older one misses the newest modules).
GALAXY_HOME := .cache/galaxy-importer-home
galaxy-check: build
	@test -x $(GALAXY_VENV)/bin/python || { $(PYTHON) -m venv $(GALAXY_VENV) && $(GALAXY_VENV)/bin/pip install -q galaxy-importer; }
	@rm -rf $(GALAXY_HOME) && mkdir -p $(GALAXY_HOME)
	set -o pipefail; HOME=$(CURDIR)/$(GALAXY_HOME) GALAXY_IMPORTER_CONFIG=$(CURDIR)/tests/galaxy/galaxy-importer.cfg PATH=$(CURDIR)/$(GALAXY_VENV)/bin:$$PATH \
	  $(GALAXY_VENV)/bin/python -m galaxy_importer.main .cache/dist/edgemig-migration-$$(awk '/^version:/{print $$2}' galaxy.yml).tar.gz \
	  2>&1 | tee $(GALAXY_LOG)
	@unexpected=$$(grep 'WARNING' $(GALAXY_LOG) | grep -v -E -f <(grep -v -e '^#' -e '^$$' tests/galaxy/expected-warnings.txt)); \
	  if [ -n "$$unexpected" ]; then \
	    echo "galaxy-importer warnings not justified in tests/galaxy/expected-warnings.txt:"; echo "$$unexpected"; exit 1; \
	  fi; echo "galaxy-importer: passed, $$(grep -c WARNING $(GALAXY_LOG)) warnings, each justified"

lint: collection-link
	ansible-lint --profile production playbooks roles extensions

bench-stream: provision
	$(PYTHON) bench/stream_bench.py $(BENCH_ARGS)

# The floor under the restore and the checkpoint (issue 26): each piece of Docker's, containerd's and
# runc's work around CRIU's own, ours before/after each change, and Podman's, in one run on a lab edge.
FLOOR_ARGS ?= --runs 5 --kinds bridge+lock+cold,bridge+lock,bridge+skip,none+skip,holder+skip --json docs/benchmarks-floor.json
bench-floor: provision deps-podman
	$(PYTHON) bench/floor_bench.py $(FLOOR_ARGS) $(BENCH_ARGS)

bench: provision
	$(PYTHON) bench/migration_bench.py $(if $(QUICK),--quick) $(BENCH_ARGS)

# Pre-copy vs stop-and-copy side by side (issue 11): MariaDB filled to 200k rows under a writer at
# 10 and 100 Mbit/s, tomcat at 10 Mbit/s, apache unshaped x3, MariaDB under sysbench unshaped, and last
# MariaDB with its data volume grown to 1 GiB at 20 Mbit/s (the table is dropped again at the end);
# results in docs/benchmarks-precopy.json, section "Pre-copy vs stop-and-copy (issue 11)" of
# docs/benchmarks.md, docs/img/precopy_downtime_vs_rate.png.
PRECOPY_ARGS ?= --services "" --cells mysql:10,mysql:100,tomcat:10,apache:0,mysql-sysbench:0,mysql-big:20 \
  --cell-methods precopy,model \
  --cell-repeats 1 --cell-apache-repeats 3 --writer --writer-rate 250 --writers 2 --fill-rows 200000

bench-precopy: provision
	$(PYTHON) bench/migration_bench.py $(PRECOPY_ARGS) $(BENCH_ARGS) --json docs/benchmarks-precopy.json --doc docs/benchmarks.md

# CHAOS=1: 100 migrations, about half with a random fault (docs/reliability.md, "Chaos soak").
soak: provision
	$(PYTHON) bench/soak.py $(if $(CHAOS),--chaos --count 100) $(BENCH_ARGS)

# The follow rulebook against the lab: mobility events on http://127.0.0.1:$(FOLLOW_PORT)/event, with
# the bearer token the handover source makes in .cache/eda/follow-token (0600) on its first start, e.g.
#   curl -H "Authorization: Bearer $(cat .cache/eda/follow-token)" -d '{"user": "u1", "edge": "edge2", "kind": "approach"}' http://127.0.0.1:5055/event
# FOLLOW_TOKEN=<token> make follow: that token instead (passed from the environment, -E FOLLOW_TOKEN,
# never on a command line). Users, their services, the edges events may name, the hysteresis: $(FOLLOW_VARS).
# ansible-rulebook copies the inventory it is given into each run: a directory with the lab
# inventory, its group_vars (the lab's catalog) and an explicit localhost (controller.yml).
FOLLOW_VARS ?= extensions/eda/follow-vars.yml
FOLLOW_PORT ?= 5055
FOLLOW_INVENTORY := .cache/eda/inventory
follow-inventory:
	@mkdir -p $(FOLLOW_INVENTORY)
	@rm -f $(FOLLOW_INVENTORY)/lab.yml && cp $(INVENTORY) $(FOLLOW_INVENTORY)/hosts.yml
	@cp extensions/eda/controller.yml $(FOLLOW_INVENTORY)/controller.yml
	@rm -rf $(FOLLOW_INVENTORY)/group_vars && cp -r $(dir $(INVENTORY))group_vars $(FOLLOW_INVENTORY)/group_vars

follow: collection-link deps-eda follow-inventory
	ansible-rulebook -r extensions/eda/rulebooks/follow.yml -i $(FOLLOW_INVENTORY) \
	  --vars $(FOLLOW_VARS) $(if $(FOLLOW_TOKEN),-E FOLLOW_TOKEN) $(FOLLOW_ARGS)

# 8 services evacuated off edge1 at 100 and 20 Mbit/s, against their solo moves and the naive orders,
# in one run (issue 28, ~40 min): docs/benchmarks.md's "Evacuation" section and its JSON.
bench-evacuate: provision
	$(PYTHON) bench/evacuate_bench.py --docs $(BENCH_ARGS)

bench-mobility: provision deps-eda follow-inventory
	$(PYTHON) bench/mobility_bench.py $(if $(QUICK),--quick) $(BENCH_ARGS)

clean:
	rm -rf .cache/dist reports tests/output
