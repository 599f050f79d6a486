# edgemig.migration - see README.md.
SHELL := /bin/bash
PYTHON ?= python3
INVENTORY ?= inventory/lab.yml
SVC ?= apache
COLL := .cache/collections/ansible_collections/edgemig/migration
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
export ANSIBLE_COLLECTIONS_PATH := $(CURDIR)/.cache/collections
PLAY := ansible-playbook -i $(INVENTORY)

.PHONY: help deps collection-link lab-up lab-down lab-status provision deploy migrate demo \
        check ruff sanity test test-unit test-integration test-faults molecule bench bench-precopy bench-stream soak build lint clean

help:
	@echo "make demo      lab up, provision, deploy $(SVC) on edge1, migrate it to edge2, print the report"
	@echo "make check     the fast lane, no root, no lab (< 3 min): ruff, ansible-test sanity, unit tests, build, ansible-doc"
	@echo "make test      make check, then the whole suite (unit, collection, lab integration, molecule, faults)"
	@echo "make lab-up | lab-down | provision | deploy | migrate SVC=... | bench | bench-stream | soak"

deps: collection-link
	@$(PYTHON) -c 'import ansible, lz4, zstandard, paramiko, numpy, hypothesis, pytest, matplotlib, pymysql' 2>/dev/null \
	  && command -v ansible-lint >/dev/null && command -v molecule >/dev/null \
	  || $(PYTHON) -m pip install -q -r requirements.txt
	bash lab/lab.sh deps

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

# ansible-test sanity from a `git archive` copy under .cache/sanity (offline pip stand-in included).
sanity:
	bash tests/sanity/run.sh

# The fast lane: no root, no lab, no network beyond the package index (sanity's venvs).
# Unit tests include the collection build and ansible-doc of every module (tests/unit/test_collection.py).
check: collection-link
	@t0=$$(date +%s); set -e; \
	$(MAKE) --no-print-directory ruff; \
	$(MAKE) --no-print-directory sanity; \
	$(PYTHON) -m pytest -q tests/unit; \
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
test: check
	$(MAKE) provision
	$(MAKE) lint
	$(PYTHON) -m pytest -q -m "not slow" tests
	$(MAKE) molecule

build: collection-link
	ansible-galaxy collection build --force --output-path .cache/dist .

lint: collection-link
	ansible-lint --profile production playbooks roles extensions

bench-stream: provision
	$(PYTHON) bench/stream_bench.py $(BENCH_ARGS)

bench: provision
	$(PYTHON) bench/migration_bench.py $(if $(QUICK),--quick) $(BENCH_ARGS)

# Pre-copy vs stop-and-copy side by side (issue 11): MariaDB filled to 200k rows under a writer at
# 10 and 100 Mbit/s, tomcat at 10 Mbit/s, apache unshaped x3; results in docs/benchmarks-precopy.json,
# section "Pre-copy vs stop-and-copy (issue 11)" of docs/benchmarks.md, docs/img/precopy_downtime_vs_rate.png.
PRECOPY_ARGS ?= --services "" --cells mysql:10,mysql:100,tomcat:10,apache:0 --cell-methods precopy,model \
  --cell-repeats 1 --cell-apache-repeats 3 --writer --writer-rate 250 --writers 2 --fill-rows 200000

bench-precopy: provision
	$(PYTHON) bench/migration_bench.py $(PRECOPY_ARGS) $(BENCH_ARGS) --json docs/benchmarks-precopy.json --doc docs/benchmarks.md

soak: provision
	$(PYTHON) bench/soak.py $(BENCH_ARGS)

clean:
	rm -rf .cache/dist reports tests/output
