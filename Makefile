# Two jobs a user runs: `make demo` (the whole local pipeline on the bundled demo data) and
# `make test` (the linter, then the test suite). Both create .venv from the committed lock first
# (`make install`).
PYTHON ?= python3.10
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

# TFX 1.16 needs Keras 2: TF 2.16 must see this before it is first imported, in every process.
export TF_USE_LEGACY_KERAS := 1
export TF_CPP_MIN_LOG_LEVEL := 1
export PYTHONWARNINGS := ignore::FutureWarning

DEMO_DATA := data/demo
DEMO_ARGS := --data-root $(DEMO_DATA) --pipeline-root runs/demo/pipeline_root \
	--serving-dir runs/demo/serving --metadata runs/demo/metadata.sqlite \
	--class-names background,disc,square,triangle

# The report test renders HTML in headless Chromium (Debian's package; root, or sudo, installs it).
CHROMIUM := /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install demo lint test benchmarks clean

install: $(INSTALLED)

# The lock is installed without dependency resolution: pip's resolver backtracks for 15+ minutes
# on TFX, while the fully pinned lock installs in about two.
# The project itself: built with the lock's setuptools (no isolated build environment to
# download); compat mode puts the checkout on sys.path, as the components' Beam workers and
# subprocesses expect.
$(INSTALLED): requirements.lock setup.py pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --no-deps -r requirements.lock
	$(BIN)/pip install --quiet --no-deps --no-build-isolation --config-settings editable_mode=compat -e .
	touch $@

# Written once: rewriting the files would change ImportExampleGen's fingerprint and retrain, where
# a second `make demo` should reuse every output and only re-evaluate against the new baseline.
$(DEMO_DATA)/train/demo.tfrecord: | install
	$(BIN)/iouseg demo-data --output $(DEMO_DATA)

demo: install $(DEMO_DATA)/train/demo.tfrecord
	$(BIN)/iouseg run $(DEMO_ARGS)

$(CHROMIUM):
	$(SUDO) apt-get update
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium

# The ML Metadata server tests start a private MariaDB (Debian's package) in a temporary data dir.
MARIADBD := /usr/sbin/mariadbd
$(MARIADBD):
	$(SUDO) apt-get update
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y mariadb-server

# The linter and the formatter (configured in pyproject.toml) over all code, tests and benchmarks.
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Two pytest workers, one test file at a time each (a file's module-scoped pipeline runs stay on
# one worker): much of a pipeline run is one Python thread, so two files at once use both cores.
test: install lint $(CHROMIUM) $(MARIADBD)
	$(BIN)/python -m pytest -n 2 --dist loadfile tests

# The benchmarks of docs/performance.md's headline table, with the settings it quotes, each writing
# its table to benchmarks/results/ (docs/performance.md gives their run time and the commands of
# the 512 px trainer-input run and of benchmarks/tracing.py, which this does not run). Each writes
# its own data in a temporary folder and none reads runs/demo: trainer_input writes the demo set,
# runs the Transform's analyzers on it and feeds the raw records through the transform graph. On a
# CPU the precision benchmark times the demo model; on a GPU run it without flags (a GPU-sized
# model).
RESULTS := benchmarks/results
benchmarks: demo
	$(BIN)/python benchmarks/whole_run.py --out $(RESULTS)/whole_run.md
	$(BIN)/python benchmarks/memory.py --scales 1,4,32 --out $(RESULTS)/memory.md
	$(BIN)/python benchmarks/trainer_input.py --out $(RESULTS)/trainer_input.md
	$(BIN)/python benchmarks/precision.py --image-size 64 --base-filters 16 --depth 3 \
		--out $(RESULTS)/precision_cpu.md
	$(BIN)/python benchmarks/evaluation.py --out $(RESULTS)/evaluation.md
	$(BIN)/python benchmarks/transform_scaling.py --out $(RESULTS)/transform_scaling.md
	$(BIN)/python benchmarks/scale.py --out $(RESULTS)/scale.md
	$(BIN)/python benchmarks/beam_stages.py --out $(RESULTS)/beam_stages.md

clean:
	rm -rf runs $(DEMO_DATA)
