# Two commands (see README):  make test   |   make train
# Each bootstraps .venv when it is missing or older than pyproject.toml, then builds csrc/.
PYTHON     ?= python3
VENV       := .venv
PY         := $(VENV)/bin/python
STAMP      := $(VENV)/.installed
# torch first, pinned: on this machine's disk it is the CPU build; on a GPU machine the same pin
# resolves to PyPI's CUDA build. Override e.g. TORCH_SPEC="torch==2.14.1" if needed.
TORCH_SPEC ?= torch==2.13.0
CPU_LIB    := build/libvisd_cpu_kernels.so
NPROC_TRAIN ?= 2
CONFIG     ?= configs/tiny_synthetic.toml
SYNTH_DIR  ?= data/synthetic
SYNTH_N    ?= 1000   # the default run reads 4,240 records (2,000 SFT + 60 x 2 RL prompts on each of 2 ranks)
SYNTH_VAL  ?= 100    # held-out records; the default validates on all of them

.PHONY: test train setup csrc bench clean

setup: $(STAMP) csrc

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[dev]"
	@touch $@

# csrc/ -> build/libvisd_cpu_kernels.so through the top-level CMakeLists.txt (find_package(Torch)
# via torch's own cmake prefix). Rebuilt when a source or the venv changes.
ifneq ($(wildcard csrc/*.cpp),)
csrc: $(CPU_LIB)
else
csrc: ;
endif
$(CPU_LIB): $(STAMP) CMakeLists.txt $(wildcard csrc/*.cpp csrc/*.h)
	cmake -S . -B build -DCMAKE_BUILD_TYPE=Release \
	  -DCMAKE_PREFIX_PATH="$$($(PY) -c 'import torch; print(torch.utils.cmake_prefix_path)')" \
	  -DPython3_EXECUTABLE="$$(realpath $(PY))" > build.log 2>&1 || (cat build.log; exit 1)
	cmake --build build -j 2 >> build.log 2>&1 || (cat build.log; exit 1)
	@test -f $@ || (echo "csrc build did not produce $@"; exit 1)

test: setup
	$(PY) -m pytest -q

$(SYNTH_DIR)/train.jsonl: | $(STAMP)
	$(PY) -m visd_core.data.synthetic --out $(SYNTH_DIR) --n $(SYNTH_N) --n-val $(SYNTH_VAL) --seed 0

train: setup $(SYNTH_DIR)/train.jsonl
	$(VENV)/bin/torchrun --standalone --nproc_per_node=$(NPROC_TRAIN) train.py --config $(CONFIG)

bench: setup
	$(PY) benchmarks/bench_kernels.py

clean:
	rm -rf build build.log

# Headless Chromium for the report's browser test (tests/report/test_report_run.py; skipped without
# it). Debian's package, as root; elsewhere install chromium yourself.
.PHONY: browser
browser:
	@test -x /usr/bin/chromium || (apt-get update && apt-get install -y chromium)
