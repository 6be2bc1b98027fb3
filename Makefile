# robot-learning: set-up, tests and the end-to-end demo.
#   make demo   set up (idempotent), then run the whole chain in simulation
#   make test   set up (idempotent), then run the test suite
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.setup-complete
export MUJOCO_GL ?= egl
export PYOPENGL_PLATFORM ?= egl

.PHONY: setup system-deps test demo bench clean

setup: $(STAMP)

# Re-run only when the dependency description changes; every step is itself idempotent.
$(STAMP): pyproject.toml Makefile scripts/install_system_deps.sh
	scripts/install_system_deps.sh
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	$(PY) -c "import torch, torchvision, mujoco, gymnasium, zarr, hydra, open_clip, onnxruntime, rclpy; print('setup ok: torch', torch.__version__, '| mujoco', mujoco.__version__)"
	touch $(STAMP)

system-deps:
	scripts/install_system_deps.sh

test: setup
	$(PY) -m pytest -q tests

demo: setup
	$(VENV)/bin/robot-learning demo $(DEMO_ARGS)

# Speed benchmarks (JSON + Markdown under benchmarks/results/); run on a quiet machine.
bench: setup
	$(PY) benchmarks/store.py
	$(PY) benchmarks/train_speed.py
	$(PY) benchmarks/inference.py
	$(PY) benchmarks/recorder.py

clean:
	rm -rf $(VENV) .pytest_cache
