#!/usr/bin/env bash
# Makes .gpu_data/datasets/ (ignored), the training data `scripts/gpu_check_device.sh train` carries to
# the GPU machine (issue 36's GPU path). The datasets are built here, where the indexes, the graph
# server and the embedder are, by the product's own `assistant dataset`: the evidence-reading
# examples hold the prompts the chat would send.
#
#   - the three demo domains (medicine, finance, law) of the app's data dir (DATA, default data/,
#     where `make run` indexes them; index them first if it has not);
#   - the PubMedQA development domain (biomedical) with a seeded share of its labelled questions
#     (SHARE 0.8, SEED 0) as user examples; the rest are the held-out questions to score. The
#     corpus is indexed in its evaluation workspace (`assistant eval --no-generate`, reused when
#     current), and the two shares are written to .gpu_data/splits/.
#
# Then, on the device tool: `prepare` (carry .whl .gpu1), then `train` (carry .gpu2 .gpu_data), and
# back here: `assistant adapters load <files_at>/adapters/<domain>-gpu` and `assistant eval` (the
# README's "Adapters on a GPU"). Environment: PY (.venv/bin/python), DATA (data), DEVDATA
# (../shared/devdata), SHARE (0.8), SEED (0), DEMO_DOMAINS ("medicine finance law").
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
DATA=${DATA:-data}
DEVDATA=${DEVDATA:-../shared/devdata}
SHARE=${SHARE:-0.8}
SEED=${SEED:-0}
OUT=.gpu_data
grep -qxF "/$OUT/" .git/info/exclude 2>/dev/null || echo "/$OUT/" >>.git/info/exclude
rm -rf "$OUT" && mkdir -p "$OUT/datasets" "$OUT/splits"

for domain in ${DEMO_DOMAINS:-medicine finance law}; do
  [ -d "$DATA/domains/$domain" ] || { echo "gpu_train_files: $DATA has no $domain domain: run 'make run' (or assistant index) first" >&2; exit 1; }
  ASSISTANT_DATA_DIR=$DATA "$PY" -m assistant.cli dataset --domain "$domain" --quiet
  cp -a "$DATA/datasets/$domain" "$OUT/datasets/$domain"
done

corpus=$DEVDATA/pubmedqa/corpus.jsonl
"$PY" -m assistant.cli eval --corpus "$corpus" --questions "$DEVDATA/pubmedqa/questions.jsonl" --no-generate --quiet \
  --out "$OUT/index-report" >/dev/null
workspace=$("$PY" - "$corpus" "$DEVDATA/pubmedqa/questions.jsonl" "$SHARE" "$SEED" "$OUT/splits" <<'EOF'
import sys
from pathlib import Path
from assistant.evaluation.questions import load_questions, split_for_training, write_questions
from assistant.evaluation.workspace import workspace_settings
from assistant.settings import load_settings

corpus, questions, share, seed, splits = Path(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), Path(sys.argv[5])
train, held_out = split_for_training(load_questions(questions), share, seed)
write_questions(train, splits / f"pubmedqa-train-s{seed}.jsonl")
write_questions(held_out, splits / f"pubmedqa-heldout-s{seed}.jsonl")
print(workspace_settings(load_settings(), corpus).data_dir)
EOF
)
ASSISTANT_DATA_DIR=$workspace "$PY" -m assistant.cli dataset --domain biomedical --quiet \
  --user-file "$OUT/splits/pubmedqa-train-s$SEED.jsonl"
cp -a "$workspace/datasets/biomedical" "$OUT/datasets/biomedical"
rm -rf "$OUT/index-report"
du -sh "$OUT"/datasets/* "$OUT"
echo "carry .gpu_data (with .gpu2) in the device call: bash scripts/gpu_check_device.sh train"
