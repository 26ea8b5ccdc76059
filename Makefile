VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
SDXL_VARIANTS ?= 8,16:compile,16:max-autotune,16:fp8+compile,16:fp8+max-autotune

.PHONY: setup setup-browser test test-all lint bench bench-gpu demo clean

setup:  ## create ./.venv and install synthvlm (editable) with dev tools, pinned by constraints.txt
	python3.11 -m venv $(VENV) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -c constraints.txt -e '.[dev]'

setup-browser:  ## headless Chromium for the report's browser tests (Debian/Ubuntu, as root); they skip without it
	apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium

test:  ## every unit and in-process integration test (the fault tier, slow and gpu tests are skipped)
	HF_HUB_OFFLINE=1 $(VENV)/bin/pytest -q

test-all:  ## test, plus the fault tier: killed processes, S3 server, multi-node Ray, full disk, compiler, long fuzzing
	HF_HUB_OFFLINE=1 $(VENV)/bin/pytest -q --run-fault

lint:
	$(VENV)/bin/ruff check src tests bench

bench:  ## benchmarks against named peers; prints ratios
	HF_HUB_OFFLINE=1 $(PY) bench/run_all.py

bench-gpu:  ## on a CUDA machine: GPU tests, then scoring and SDXL at real size vs their peers (jsonl in bench-gpu/)
	$(PIP) install -q -c constraints.txt -e '.[dev,fp8]'
	mkdir -p bench-gpu
	HF_HUB_OFFLINE=1 $(VENV)/bin/pytest -q -m gpu tests/generate tests/score
	HF_HUB_OFFLINE=1 $(PY) bench/gpu_score.py --out bench-gpu/score.jsonl
	HF_HUB_OFFLINE=1 $(PY) bench/gpu_sdxl.py --variants $(SDXL_VARIANTS) --out bench-gpu/sdxl.jsonl

demo:
	$(VENV)/bin/synthvlm demo

clean:
	rm -rf $(VENV) .pytest_cache
