# Task runner. `make run` and `make test` each create .venv and install the project first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: setup run test lint bench bench-quick bundle pyto clean test-model sample-video

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

run: setup
	$(PY) -m app $(ARGS)

test: setup
	$(PY) -m ruff check .
	$(PY) -m mypy
	QT_QPA_PLATFORM=offscreen OMP_WAIT_POLICY=passive $(PY) -m pytest $(PYTEST_ARGS)

lint: setup
	$(PY) -m ruff check .
	$(PY) -m mypy

clean:
	rm -rf $(VENV) build dist .pytest_cache

bench: setup
	OMP_WAIT_POLICY=passive $(PY) -m bench $(BENCH_ARGS)
	OMP_WAIT_POLICY=passive $(PY) -m bench.server_load
	OMP_WAIT_POLICY=passive $(PY) -m bench.remote
	OMP_WAIT_POLICY=passive $(PY) -m bench.watch
	QT_QPA_PLATFORM=offscreen OMP_WAIT_POLICY=passive $(PY) -m bench.gui_actions --out bench/results/gui_actions.json

bench-quick: setup
	QT_QPA_PLATFORM=offscreen $(PY) -m bench --quick --gui
	OMP_WAIT_POLICY=passive $(PY) -m bench.accuracy --per-cell 200

bundle: setup
	$(PY) packaging/desktop/build_bundle.py

pyto:
	$(PYTHON) packaging/ios/build_pyto.py  # standard library only: no set-up needed

# Train a new demo pair from scratch (JAX, in the `train` extra; about 2 hours on two cores: 95 minutes at the full
# learning rate, then 30 at a fifth of it on fresh conversations), measure it on the accuracy benchmark, and install
# it into app/demo only when every cell meets the goal. Its SHA-256 changes.
TEST_MODEL_DIR ?= build/test-model
test-model: setup
	$(PY) -m pip install -e '.[train]'
	OMP_WAIT_POLICY=passive $(PY) -m models.train_test_model --out $(TEST_MODEL_DIR) --minutes 95 --seed 1
	OMP_WAIT_POLICY=passive $(PY) -m models.train_test_model --out $(TEST_MODEL_DIR) --resume $(TEST_MODEL_DIR) \
		--minutes 30 --lr 2e-4 --seed 2
	OMP_WAIT_POLICY=passive $(PY) -m bench.accuracy --per-cell 200 --threads 2 --require-goal \
		--model $(TEST_MODEL_DIR)/demo-llama.gguf --mmproj $(TEST_MODEL_DIR)/demo-mmproj.gguf \
		--out $(TEST_MODEL_DIR)/accuracy.json
	cp $(TEST_MODEL_DIR)/demo-llama.gguf $(TEST_MODEL_DIR)/demo-mmproj.gguf app/demo/
	cd app/demo && sha256sum demo-llama.gguf demo-mmproj.gguf > SHA256SUMS

# The camera's sample video (app/demo/sample-video.mp4, ~50 KB): demo scenes, played when no webcam opens.
sample-video: setup
	$(PY) -m models.make_sample_video
