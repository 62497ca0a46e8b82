#!/usr/bin/env bash
# Issue 15's GPU half as one device call (the lent machine: JAX and PyTorch, no Keras, no TensorFlow,
# no network), ending inside the 10-minute limit of one call. Each stage writes its log and JSON
# report under $OUT (default: bench_out/) and gets what is left of the budget, so a slow stage
# cuts the later ones short instead of the whole call.
#
# On this machine, once:   ../shared/tools/device-wheels.sh timm==1.0.15 huggingface_hub safetensors
#   (keras, namex, optree and timm's pure-Python wheels into .whl/; timm also needs torchvision,
#   which the machine may lack: the throughput stage then reports the peer as failed and goes on)
# Then, as the device call:  bash bench/gpu_session.sh      (carry: [".whl"], timeout_s: 600)
#
# Stages, in order of what the issue needs first:
#   1. bench/nonfinite_probe.py: mixed_bfloat16 vs autotune-off vs float32 on B0 224 px batch 256
#      (`None`), the first non-finite step recomputed op by op;
#   2. bench/train_throughput.py --policy mixed_bfloat16 --peer timm: all four modes, 5 rounds of 60
#      steps after 3 warm-up steps (303 steps: the loss after them, finite or not, against the
#      warm-up loss), branch/timm compiled in the same run;
#   3. the same in float32, then mixed_float16, with what time is left (no peer).
set -u
BUDGET_S=${BUDGET_S:-570}
OUT=${OUT:-bench_out}
SIZE=${SIZE:-224}
BATCH=${BATCH:-256}
STEPS=${STEPS:-60}
ROUNDS=${ROUNDS:-5}
PROBE_STEPS=${PROBE_STEPS:-5}
PYTHON=${PYTHON:-python3}
mkdir -p "$OUT"
start=$(date +%s)
left() { echo $(( BUDGET_S - ($(date +%s) - start) )); }

if [ -d .whl ] && ! "$PYTHON" -c "import keras" 2>/dev/null; then
  site=$(mktemp -d)
  "$PYTHON" -m pip install -q --no-index --no-deps --target "$site" .whl/*.whl
  export PYTHONPATH="$site:$PWD"
fi
export PYTHONPATH="${PYTHONPATH:-$PWD}" KERAS_BACKEND=jax PYTHONUNBUFFERED=1
"$PYTHON" - <<'EOF' 2>&1 | tee "$OUT/versions.txt"
import importlib, platform
print("python", platform.python_version())
for name in ("jax", "jaxlib", "keras", "torch", "timm"):
    try:
        print(name, importlib.import_module(name).__version__)
    except Exception as error:
        print(name, "missing:", type(error).__name__)
import jax
print("devices", jax.devices())
EOF

stage() {  # stage NAME SECONDS COMMAND...: runs COMMAND with at most SECONDS, logs to $OUT/NAME.log
  local name=$1 limit=$2
  shift 2
  if [ "$limit" -lt 30 ]; then
    echo "== $name: skipped, $limit s left" | tee -a "$OUT/stages.txt"
    return
  fi
  echo "== $name (at most $limit s): $*" | tee -a "$OUT/stages.txt"
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
  echo "== $name: exit $? after $(( $(date +%s) - start )) s of the call" | tee -a "$OUT/stages.txt"
  tail -n 25 "$OUT/$name.log"
}

probe_limit=$(( $(left) < 240 ? $(left) : 240 ))
stage probe "$probe_limit" "$PYTHON" bench/nonfinite_probe.py --size "$SIZE" --batch "$BATCH" --mode none \
  --steps "$PROBE_STEPS" --timeout-s 75 --report "$OUT/probe.json"
peer=(--peer timm)  # a failed peer would end the stage: measure ours alone where timm cannot run
"$PYTHON" -c "import timm, torch; assert torch.cuda.is_available()" 2>/dev/null || { peer=(); echo "== no timm peer" \
  "(timm, torchvision or CUDA missing)" | tee -a "$OUT/stages.txt"; }
stage bf16 "$(left)" "$PYTHON" bench/train_throughput.py --backend jax --policy mixed_bfloat16 --size "$SIZE" \
  --batch "$BATCH" --steps "$STEPS" --rounds "$ROUNDS" "${peer[@]}" --report "$OUT/bf16.json"
stage float32 "$(left)" "$PYTHON" bench/train_throughput.py --backend jax --policy float32 --size "$SIZE" \
  --batch "$BATCH" --steps "$STEPS" --rounds "$ROUNDS" --report "$OUT/float32.json"
stage float16 "$(left)" "$PYTHON" bench/train_throughput.py --backend jax --policy mixed_float16 --size "$SIZE" \
  --batch "$BATCH" --steps "$STEPS" --rounds "$ROUNDS" --report "$OUT/float16.json"
echo "done after $(( $(date +%s) - start )) s"
