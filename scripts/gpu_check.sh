#!/usr/bin/env bash
# The prepared QLoRA GPU check (issue 4): 4-bit NF4 vs bfloat16 LoRA training of the default base
# on CUDA, printing tokens/s and peak GPU memory. Needs the project's .venv with a CUDA build of
# torch (the CPU wheel in the Makefile has no CUDA); it installs nothing itself.
# On the `device` tool's machine (no .venv, no network) use scripts/gpu_check_device.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
"$PY" -c "import torch, bitsandbytes; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'bitsandbytes', bitsandbytes.__version__)"
exec "$PY" bench/qlora_gpu.py --steps "${STEPS:-300}" --batch "${BATCH:-8}"
