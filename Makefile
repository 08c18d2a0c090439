# gqcim — make targets. The venv lives outside the repo so fresh clones (CI) reuse it.
SHELL := /bin/bash
VENV ?= $(HOME)/.cache/gqcim/venv-torch-2.11.0
PY := $(VENV)/bin/python
FMNIST_DIR ?= /usr/share/datasets/fashion-mnist
BIN := target/release/gqcim
CONFIG ?= configs/classify_fmnist.yaml
REF_CKPT ?= models/resnet20_fmnist.safetensors
PIP_PKGS := torch==2.11.0 torchvision==0.26.0 tensorboard==2.21.0 safetensors numpy \
	pycocotools==2.0.11 torchmetrics==1.9.0

# torch-sys finds libtorch through the venv's python; build.rs adds the rpath.
export LIBTORCH_USE_PYTORCH := 1
export PATH := $(VENV)/bin:$(PATH)
export GQCIM_PYTHON := $(PY)
export GQCIM_FMNIST_DIR := $(FMNIST_DIR)

.PHONY: all build test trees trees-data cost fuzz slurm-deps slurm-up slurm-down classify-slurm detect-slurm segment-slurm bench peer-check peer-check-terms devices-pcm study-classify study-detect study-segment detect detect-full train-detect segment segment-full train-segment classify classify-full classify-quant train-classify data tensorboard venv fmt lint clean-runs

all: build

$(VENV)/.gqcim-venv-ok-2:
	@echo ">> creating the torch 2.11.0 venv at $(VENV) (about 5 GB, one minute)"
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet $(PIP_PKGS)
	$(PY) -c "import torch, torchvision, tensorboard; print('torch', torch.__version__)"
	touch $@

venv: $(VENV)/.gqcim-venv-ok-2

build: venv
	cargo build --release

data:
	@if [ -f $(FMNIST_DIR)/train-images-idx3-ubyte.gz ] && [ -f $(FMNIST_DIR)/t10k-labels-idx1-ubyte.gz ]; then \
		echo ">> Fashion-MNIST present in $(FMNIST_DIR)"; \
	elif [ "$$(id -u)" = "0" ]; then \
		echo ">> installing Debian's dataset-fashion-mnist"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist; \
	else \
		echo "Fashion-MNIST is missing from $(FMNIST_DIR). Install it with:"; \
		echo "    sudo apt-get update && sudo apt-get install dataset-fashion-mnist"; \
		echo "or set FMNIST_DIR and data.root to a folder holding the four IDX .gz files."; \
		exit 1; \
	fi

# The grid's units run in GRID_WORKERS processes of GRID_THREADS libtorch threads each: two
# 1-thread processes keep both cores of a laptop busy, where one 2-thread process spends
# much of its time in small convolutions that do not split across threads. The results
# depend on GRID_THREADS (recorded in the plan), not on GRID_WORKERS.
GRID_WORKERS ?= 2
GRID_THREADS ?= 1
RUN_TS := $(shell date -u +%Y%m%d-%H%M%S)
# The main job: check the committed reference checkpoint against its manifest, then run the
# comparison grid (fp32 vs gq, gq-noise, uniform-mse, lsq at N = 2, 3, 4, 8, fine-tuned with
# and without device noise, under programming noise sigma = 0, 1, 2, 5% with Monte-Carlo
# trials). Prints the table; writes runs/classify/compare-<time>/.
classify: build data
	$(BIN) eval --config $(CONFIG) --checkpoint $(REF_CKPT) --set data.root=$(FMNIST_DIR) \
		--run-dir runs/classify/reference-eval-$(RUN_TS)
	@$(PY) -c "import json,sys; m=json.load(open('models/resnet20_fmnist.json'))['test_accuracy']; \
		r=json.load(open('runs/classify/reference-eval-$(RUN_TS)/results.json'))['metrics']['test_accuracy']; \
		print('manifest test accuracy: %.2f%%, measured now: %.2f%%' % (100*m, 100*r)); sys.exit(abs(m-r) > 1e-9)"
	$(BIN) compare --config $(CONFIG) --checkpoint $(REF_CKPT) --set data.root=$(FMNIST_DIR) \
		--set threads=$(GRID_THREADS) --workers $(GRID_WORKERS) --run-dir runs/classify/compare-$(RUN_TS)

# The same grid as a Slurm job array: plan, submit only the units without a result (one
# array task each, SLURM_THREADS threads per task) plus a merge job, wait, print the table.
# Re-running the same command resumes. Without a reachable cluster (sinfo fails) a
# single-node one is started on this machine (scripts/slurm-local.sh; `make slurm-down`).
SLURM_THREADS ?= 1
SLURM_RUN ?= runs/classify/compare-slurm
SLURM_LOCAL_CONF := $${GQCIM_SLURM_DIR:-/tmp/gqcim-slurm}/slurm.conf
define slurm_grid
	@if ! sinfo >/dev/null 2>&1; then scripts/slurm-local.sh start; fi; \
	if ! sinfo >/dev/null 2>&1; then export SLURM_CONF=$(SLURM_LOCAL_CONF); fi; \
	start=$$(date +%s); GQCIM_BIN=$(BIN) scripts/slurm-grid.sh $(1) --wait && \
	echo "slurm grid wall time: $$(( $$(date +%s) - start )) s"
endef
classify-slurm: build data
	$(BIN) compare --plan --config $(CONFIG) --checkpoint $(REF_CKPT) --set data.root=$(FMNIST_DIR) \
		--set threads=$(SLURM_THREADS) --run-dir $(SLURM_RUN)
	$(call slurm_grid,$(SLURM_RUN))

detect-slurm: build data
	$(BIN) detect-compare --plan --config $(DET_CONFIG) --checkpoint $(DET_CKPT) \
		--set data.fmnist_root=$(FMNIST_DIR) --set threads=$(SLURM_THREADS) \
		--run-dir runs/detect/compare-slurm
	$(call slurm_grid,runs/detect/compare-slurm)

segment-slurm: build data
	$(BIN) segment-compare --plan --config $(SEG_CONFIG) --checkpoint $(SEG_CKPT) \
		--set data.fmnist_root=$(FMNIST_DIR) --set threads=$(SLURM_THREADS) \
		--run-dir runs/segment/compare-slurm
	$(call slurm_grid,runs/segment/compare-slurm)

slurm-up:
	scripts/slurm-local.sh start

slurm-down:
	scripts/slurm-local.sh stop

# The GPU-sized grid: full test set, 10 trials, 2 fine-tuning epochs, also N = 16.
classify-full: build data
	$(BIN) compare --config configs/classify_fmnist_full.yaml --checkpoint $(REF_CKPT) \
		--set data.root=$(FMNIST_DIR) --run-dir runs/classify/compare-full-$(RUN_TS)

# Post-training vs straight-through quantization at N = 2, 3, 4, 8, 16 (digital, sigma 0).
classify-quant: build data
	$(BIN) compare --config configs/classify_fmnist_quant.yaml --checkpoint $(REF_CKPT) \
		--set data.root=$(FMNIST_DIR) --run-dir runs/classify/quant-$(RUN_TS)

# What the analog weights cost: gq / gq-noise / uniform-mse / lsq x N = 2, 3, 4, 8, 16, each
# programmed single-shot and by write-verify at three tolerances; results.csv gains pulse,
# programming time/energy and inference energy columns; Pareto plots of accuracy against
# pulses and against energy per image (first order, docs/cost.md). About 20-30 min, 2 cores.
COST_THREADS ?= 2
cost: build data
	nice -n 10 $(BIN) compare --config configs/cost_fmnist.yaml --checkpoint $(REF_CKPT) \
		--set data.root=$(FMNIST_DIR) --set threads=$(COST_THREADS) \
		--run-dir runs/classify/cost-$(RUN_TS)

# Train the reference ResNet-20 from scratch (GPU if libtorch sees one).
train-classify: build data
	$(BIN) train --config $(CONFIG) --set data.root=$(FMNIST_DIR)

$(VENV)/.gqcim-bench-ok: $(VENV)/.gqcim-venv-ok-2
	$(VENV)/bin/pip install --quiet aihwkit==1.1.0 scikit-learn scipy
	touch $@

# Peer check (not part of `make test`): gqcim's pcm preset against aihwkit's PCMLikeNoiseModel
# + GlobalDriftCompensation on the reference ResNet-20 with fixed 8-level quanta, 25 trials at
# 1 s, 1 h, 1 day, 1 year, first 1000 test images, 1 thread; writes docs/peer_check_table.md.
peer-check: build data $(VENV)/.gqcim-bench-ok
	nice -n 10 $(PY) benches/peer_check.py --bin $(BIN) --checkpoint $(REF_CKPT) --trials 25 \
		--images 1000 --threads 1 --out docs/peer_check_table.md

# The peer check's remaining gap, term by term (docs/peer_check.md): gqcim with aihwkit's
# conventions (600 trials) against a plain-PyTorch replica of aihwkit's trial (400 trials; it
# must reproduce the aihwkit trials of the two committed 100-trial tables exactly), then both
# replicas of gqcim's trial checked against gqcim's own trials. About 20 minutes with -j2.
# gqcim draws from libtorch's generator here (analog.random=libtorch), the stream the Python
# replicas reproduce; by default it draws from its own counter-based one (device/normal.rs).
TERMS_DIR ?= runs/peer-check-terms
TERMS_RUN := --config configs/classify_fmnist.yaml --checkpoint $(REF_CKPT) --set threads=1 \
	--set device=cpu --set data.test_limit=1000 --set seed=0
TERMS_REPLICA := benches/peer_check_terms.py --quanta $(TERMS_DIR)/quantize/results.json --times 1 86400 31536000
$(TERMS_DIR)/quantize/results.json: | build data
	rm -rf $(TERMS_DIR)/quantize
	$(BIN) quantize $(TERMS_RUN) --method gq --levels 8 --run-dir $(TERMS_DIR)/quantize
$(TERMS_DIR)/gqcim/results.json: $(TERMS_DIR)/quantize/results.json
	rm -rf $(TERMS_DIR)/gqcim
	nice -n 10 $(BIN) eval $(TERMS_RUN) --analog --trials 600 --set quant.method=gq --set quant.levels=8 \
		--set analog.preset=pcm --set 'analog.t_inference=[1,86400,31536000]' \
		--set analog.resplit_after_programming=true --set analog.calibration_inputs=one-hot \
		--set analog.resplit_scale=programmed --set analog.random=libtorch --run-dir $(TERMS_DIR)/gqcim
$(TERMS_DIR)/aihwkit_chain.json: $(TERMS_DIR)/quantize/results.json | $(VENV)/.gqcim-bench-ok
	nice -n 10 $(PY) $(TERMS_REPLICA) --variant aihwkit --trials 400 --require-match \
		--check-against docs/peer_check_100_table.md:0 --check-against docs/peer_check_seed100_table.md:100 --out $@
peer-check-terms: $(TERMS_DIR)/gqcim/results.json $(TERMS_DIR)/aihwkit_chain.json
	$(PY) $(TERMS_REPLICA) --variant gqcim --trials 25 --require-match --gqcim-results $(TERMS_DIR)/gqcim/results.json
	$(PY) $(TERMS_REPLICA) --variant aihwkit-gqcim-stream --trials 25 --require-match \
		--gqcim-results $(TERMS_DIR)/gqcim/results.json
	$(PY) benches/peer_check_terms.py --summarize $(TERMS_DIR)/gqcim/results.json $(TERMS_DIR)/aihwkit_chain.json \
		> docs/peer_check_terms_table.md.tmp && mv docs/peer_check_terms_table.md.tmp docs/peer_check_terms_table.md
	cat docs/peer_check_terms_table.md

# The newer peers pin other versions, so each gets its own venv outside the repo, built once.
# aihwkit 1.2.0 has wheels for Python 3.12/3.13 only, so on Debian's 3.11 it is compiled from
# source (about 20 minutes on 2 cores; needs OpenBLAS, and mypy's stubgen on PATH) against
# torch 2.11.0, which stays pinned: its torchvision requirement would otherwise pull a newer
# torch than the one it was compiled against. aihwkit-lightning 2.1.0 requires torch 2.13.0.
AIHWKIT12_VENV ?= $(HOME)/.cache/gqcim/venv-aihwkit-1.2.0
LIGHTNING_VENV ?= $(HOME)/.cache/gqcim/venv-lightning
$(AIHWKIT12_VENV)/.gqcim-ok:
	dpkg -s libopenblas-dev >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq libopenblas-dev)
	python3 -m venv $(AIHWKIT12_VENV)
	$(AIHWKIT12_VENV)/bin/pip install --quiet --upgrade pip
	$(AIHWKIT12_VENV)/bin/pip install --quiet torch==2.11.0 numpy scipy safetensors scikit-build \
		"setuptools>=77,<81" wheel pybind11 "cmake<4" ninja mypy
	PATH=$(AIHWKIT12_VENV)/bin:$$PATH MAKEFLAGS=-j2 CMAKE_BUILD_PARALLEL_LEVEL=2 \
		$(AIHWKIT12_VENV)/bin/pip install --quiet --no-build-isolation aihwkit==1.2.0 \
		torch==2.11.0 torchvision==0.26.0
	touch $@
$(LIGHTNING_VENV)/.gqcim-ok:
	python3 -m venv $(LIGHTNING_VENV)
	$(LIGHTNING_VENV)/bin/pip install --quiet --upgrade pip
	$(LIGHTNING_VENV)/bin/pip install --quiet aihwkit-lightning==2.1.0 torch==2.13.0 numpy safetensors
	touch $@

# Benchmarks: gqcim against PyTorch eager, IBM aihwkit (1.1.0 in the project venv, 1.2.0),
# aihwkit-lightning and scikit-learn, ratios from one run (benches/results/<machine>-<date>-<commit>.json).
bench: build data $(VENV)/.gqcim-bench-ok $(AIHWKIT12_VENV)/.gqcim-ok $(LIGHTNING_VENV)/.gqcim-ok
	$(BIN) bench --python $(PY) --checkpoint $(REF_CKPT) --threads 1 \
		--aihwkit12-python $(AIHWKIT12_VENV)/bin/python --lightning-python $(LIGHTNING_VENV)/bin/python

# Object detection on Fashion-MNIST scenes (anchor-free YOLO-style detector). The main job:
# check the committed reference checkpoint against its manifest, then run the comparison grid
# of configs/detect_scenes.yaml (fp32 vs gq, uniform-mse, lsq at N = 2, 3, 4, 8, fine-tuned
# with and without device noise, programming noise 0-5%, Monte-Carlo trials; mAP@0.5).
DET_CONFIG ?= configs/detect_scenes.yaml
DET_CKPT ?= models/yolo_scenes.safetensors
detect: build data
	$(BIN) detect-eval --config $(DET_CONFIG) --checkpoint $(DET_CKPT) \
		--set data.fmnist_root=$(FMNIST_DIR) --run-dir runs/detect/reference-eval-$(RUN_TS)
	@$(PY) -c "import json,sys; m=json.load(open('models/yolo_scenes.json'))['map50']; \
		r=json.load(open('runs/detect/reference-eval-$(RUN_TS)/results.json'))['metrics']['map50']; \
		print('manifest mAP@0.5: %.2f%%, measured now: %.2f%%' % (100*m, 100*r)); sys.exit(abs(m-r) > 1e-6)"
	$(BIN) detect-compare --config $(DET_CONFIG) --checkpoint $(DET_CKPT) \
		--set data.fmnist_root=$(FMNIST_DIR) --set threads=$(GRID_THREADS) --workers $(GRID_WORKERS) \
		--run-dir runs/detect/compare-$(RUN_TS)

# The GPU-sized detection grid: all 2000 test scenes, 10 trials, 2 fine-tuning epochs, N = 16 too.
FULL_GRID := --set compare.eval_limit=0 --set analog.trials=10 --set finetune.epochs=2 \
	--set quant.refit_every=100 --set 'compare.levels=[2,3,4,8,16]'
detect-full: build data
	$(BIN) detect-compare --config $(DET_CONFIG) --checkpoint $(DET_CKPT) $(FULL_GRID) \
		--set data.fmnist_root=$(FMNIST_DIR) --run-dir runs/detect/compare-full-$(RUN_TS)

# Train the reference detector from scratch (about 1 min on an H100/H200, 40 min on 2 cores).
train-detect: build data
	$(BIN) detect-train --config $(DET_CONFIG) --set data.fmnist_root=$(FMNIST_DIR)

# Semantic segmentation on Fashion-MNIST scene masks (DeepLabv3, ResNet-18 backbone, OS 8).
# The main job: train the reference when models/ has none (about 25 min on 2 cores), check
# it against its manifest, then run the comparison grid of configs/segment_scenes.yaml (mIoU).
SEG_CONFIG ?= configs/segment_scenes.yaml
SEG_CKPT ?= models/deeplab_scenes.safetensors
segment: build data
	@if [ ! -f $(SEG_CKPT) ]; then \
		echo ">> no $(SEG_CKPT): training the reference (make train-segment)"; \
		$(BIN) segment-train --config $(SEG_CONFIG) --set data.fmnist_root=$(FMNIST_DIR) \
			--run-dir runs/segment/reference-train-$(RUN_TS) && \
		cp runs/segment/reference-train-$(RUN_TS)/checkpoints/last.safetensors $(SEG_CKPT); \
	fi
	$(BIN) segment-eval --config $(SEG_CONFIG) --checkpoint $(SEG_CKPT) \
		--set data.fmnist_root=$(FMNIST_DIR) --run-dir runs/segment/reference-eval-$(RUN_TS)
	@if [ -f models/deeplab_scenes.json ]; then $(PY) -c "import json,sys; \
		m=json.load(open('models/deeplab_scenes.json'))['test_miou']; \
		r=json.load(open('runs/segment/reference-eval-$(RUN_TS)/results.json'))['metrics']['test_miou']; \
		print('manifest mIoU: %.2f%%, measured now: %.2f%%' % (100*m, 100*r)); sys.exit(abs(m-r) > 1e-6)"; fi
	$(BIN) segment-compare --config $(SEG_CONFIG) --checkpoint $(SEG_CKPT) \
		--set data.fmnist_root=$(FMNIST_DIR) --set threads=$(GRID_THREADS) --workers $(GRID_WORKERS) \
		--run-dir runs/segment/compare-$(RUN_TS)

# The GPU-sized segmentation grid: all 1000 test scenes, 10 trials, 2 fine-tuning epochs, N = 16.
segment-full: build data
	$(BIN) segment-compare --config $(SEG_CONFIG) --checkpoint $(SEG_CKPT) $(FULL_GRID) \
		--set data.fmnist_root=$(FMNIST_DIR) --run-dir runs/segment/compare-full-$(RUN_TS)

# The study (issue 15, docs/study.md): each task's two grids under configs/study/ (all methods
# fine-tuned straight-through; noise-aware fine-tuning of gq, gq-noise, uniform-mse and lsq),
# 3 seeds, whole test set, 5 trials per sigma. Fixed run folders: re-running resumes (cells
# done are kept, fine-tuned networks come from the cache). STUDY_WORKERS processes x
# GRID_THREADS threads; on a cluster use the *-slurm targets' pattern with these configs.
STUDY_WORKERS ?= $(GRID_WORKERS)
study-classify: build data
	$(BIN) compare --config configs/study/classify.yaml --checkpoint $(REF_CKPT) \
		--set data.root=$(FMNIST_DIR) --set threads=$(GRID_THREADS) --workers $(STUDY_WORKERS) \
		--run-dir runs/study/classify
	$(BIN) compare --config configs/study/classify_noise_aware.yaml --checkpoint $(REF_CKPT) \
		--set data.root=$(FMNIST_DIR) --set threads=$(GRID_THREADS) --workers $(STUDY_WORKERS) \
		--run-dir runs/study/classify-noise-aware
study-detect: build data
	$(BIN) detect-compare --config configs/study/detect.yaml --checkpoint $(DET_CKPT) \
		--set data.fmnist_root=$(FMNIST_DIR) --set threads=$(GRID_THREADS) --workers $(STUDY_WORKERS) \
		--run-dir runs/study/detect
	$(BIN) detect-compare --config configs/study/detect_noise_aware.yaml --checkpoint $(DET_CKPT) \
		--set data.fmnist_root=$(FMNIST_DIR) --set threads=$(GRID_THREADS) --workers $(STUDY_WORKERS) \
		--run-dir runs/study/detect-noise-aware
study-segment: build data
	$(BIN) segment-compare --config configs/study/segment.yaml --checkpoint $(SEG_CKPT) \
		--set data.fmnist_root=$(FMNIST_DIR) --set threads=$(GRID_THREADS) --workers $(STUDY_WORKERS) \
		--run-dir runs/study/segment
	$(BIN) segment-compare --config configs/study/segment_noise_aware.yaml --checkpoint $(SEG_CKPT) \
		--set data.fmnist_root=$(FMNIST_DIR) --set threads=$(GRID_THREADS) --workers $(STUDY_WORKERS) \
		--run-dir runs/study/segment-noise-aware

# Accuracy over time after programming on PCM (docs/devices.md, issue 16): fp32, gq-noise and
# uniform-mse at N = 4, 8, fine-tuned without and with the preset's noise, 1 s ... 1 year.
devices-pcm: build data
	$(BIN) compare --config configs/devices_pcm.yaml --checkpoint $(REF_CKPT) \
		--set data.root=$(FMNIST_DIR) --set threads=$(GRID_THREADS) --workers $(GRID_WORKERS) \
		--run-dir runs/classify/devices-pcm-$(RUN_TS)

# Train the reference segmenter from scratch (about 25 min on 2 cores).
train-segment: build data
	$(BIN) segment-train --config $(SEG_CONFIG) --set data.fmnist_root=$(FMNIST_DIR)

# Tree crowns on real NEON aerial RGB images (issue 18): fetch the `deepforest` wheel into the
# venv (its data files only, no other download), tile its four annotated images into a VOC
# folder (scripts/make_trees.py: 400x400 tiles, a crown kept where >= 50% of its area lies,
# train/test split by source image), train the detector and run the crossbar grid of
# configs/detect_trees.yaml. 43 training tiles: a tiny set (CPU ~2 img/s at 416 px).
TREES_DIR ?= data/trees
TREES_CONFIG ?= configs/detect_trees.yaml
trees-data: venv
	@$(PY) -c "import importlib.util,sys; sys.exit(importlib.util.find_spec('deepforest') is None)" \
		|| $(VENV)/bin/pip install --no-deps deepforest==2.1.0
	$(PY) scripts/make_trees.py $(TREES_DIR)

trees: build trees-data
	$(BIN) detect-train --config $(TREES_CONFIG) --set data.root=$(TREES_DIR) \
		--run-dir runs/detect/trees-train-$(RUN_TS)
	$(BIN) detect-compare --config $(TREES_CONFIG) --set data.root=$(TREES_DIR) \
		--checkpoint runs/detect/trees-train-$(RUN_TS)/model.safetensors \
		--run-dir runs/detect/trees-compare-$(RUN_TS)

# Slurm (single node, Debian packages) for the job-array test and `make *-slurm` locally.
slurm-deps:
	scripts/slurm-local.sh install

test: venv data slurm-deps
	OMP_NUM_THREADS=1 cargo test --release -- --test-threads=2

# Fuzz each parser (IDX, CIFAR, VOC XML, YOLO txt, COCO JSON, YAML config + --set) for
# FUZZ_SECONDS, one after the other, one libFuzzer process at a time (nightly + cargo-fuzz:
# `cargo install cargo-fuzz`). New corpus entries go to fuzz/corpus-run/, findings to
# fuzz/artifacts/, logs to fuzz/logs/. See fuzz/README.md.
FUZZ_SECONDS ?= 600
FUZZ_TARGETS ?= idx cifar voc_xml yolo_txt coco_json config
FUZZ_SANITIZER ?= address
fuzz: venv
	@cargo +nightly fuzz --version >/dev/null 2>&1 || cargo install cargo-fuzz --locked
	cd fuzz && mkdir -p logs && for t in $(FUZZ_TARGETS); do \
		mkdir -p corpus-run/$$t; \
		nice -n 10 cargo +nightly fuzz run --sanitizer $(FUZZ_SANITIZER) -O --debug-assertions $$t \
			corpus-run/$$t seeds/$$t $$(test -d regressions/$$t && echo regressions/$$t) -- \
			-max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
			2>&1 | tee logs/$$t.log; \
		test $${PIPESTATUS[0]} -eq 0 || exit 1; \
	done

# Serves runs/ on this machine only (http://127.0.0.1:$(TB_PORT)). To open it to the network
# (every interface: anyone who can reach the port reads the runs), set TB_BIND=0.0.0.0 or an
# interface address: `make tensorboard TB_BIND=0.0.0.0`.
TB_BIND ?= 127.0.0.1
TB_PORT ?= 6006
tensorboard: venv
	$(VENV)/bin/tensorboard --logdir runs --host $(TB_BIND) --port $(TB_PORT)

fmt:
	cargo fmt

lint: venv
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings

clean-runs:
	rm -rf runs/*/
