"""The QLoRA GPU check: on a CUDA machine, LoRA-train the default base in 4-bit NF4 and in
bfloat16 for a few hundred steps and print tokens/s, peak GPU memory and weight memory of each.
On a machine without CUDA it says so and exits 0 (``make bench`` runs it everywhere).

    .venv/bin/python bench/qlora_gpu.py [--steps 300] [--batch 8]

scripts/gpu_check.sh runs it on a CUDA machine that has the project's .venv;
scripts/gpu_check_device.sh runs the same benchmark on the `device` tool's machine, which has none.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse  # noqa: E402
import subprocess  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args()
    import torch

    if not torch.cuda.is_available():
        print("qlora_gpu: no CUDA device here; skipped (run scripts/gpu_check.sh on a GPU machine)")
        return 0
    print(f"GPU: {torch.cuda.get_device_name(0)}, torch {torch.__version__}, CUDA {torch.version.cuda}", flush=True)
    bench = Path(__file__).resolve().parent / "train_speed.py"
    return subprocess.call([sys.executable, str(bench), "--modes", "nf4,bf16", "--steps", str(args.steps),
                            "--batch", str(args.batch)])


if __name__ == "__main__":
    sys.exit(main())
