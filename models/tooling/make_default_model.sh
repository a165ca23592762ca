#!/usr/bin/env bash
# The default model from nothing: generate episodes, train ARMOR (+ the two baselines),
# export models/armor-tiny, regenerate test/golden, evaluate the served bundle.
#
#   bash models/tooling/make_default_model.sh [WORK_DIR]     (default WORK_DIR: /tmp/armor-train)
#
# Env: TRAIN_COUNT (4000), HELDOUT_COUNT (300), TRAIN_SEED (1),
#      HELDOUT_SEEDS ("60101 60202 60303": three held-out sets, chosen before training, never trained on),
#      CALIB_SEED (60404: the split the calibration temperature and the input-novelty threshold are fit on),
#      DENSE_RATIO (0.25 = sparse:dense, so 80% of the training episodes carry an explanation),
#      MODE_WEIGHTS (damaged_item=2: twice as many damaged items as each other failure mode),
#      VARIANTS (armor; "armor,mtl,sft" also trains the two baselines for train-report.json), PY (/usr/bin/python3),
#      SKIP_EVAL (1 skips step 5).
# Needs ffmpeg/ffprobe, torch, and OpenBLAS: torch on Debian links the system libblas.so.3,
# and the reference BLAS (Debian's default alternative) trains ~50x slower. The Python
# steps load OpenBLAS through LD_LIBRARY_PATH (the system alternative is left alone) and
# the package is installed if missing. The trained weights and golden floats depend on
# the BLAS and thread counts, so the committed bundle is reproduced with exactly these.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
WORK="${1:-/tmp/armor-train}"
PY="${PY:-/usr/bin/python3}"
TRAIN_COUNT="${TRAIN_COUNT:-4000}"
HELDOUT_COUNT="${HELDOUT_COUNT:-300}"
TRAIN_SEED="${TRAIN_SEED:-1}"
HELDOUT_SEEDS="${HELDOUT_SEEDS:-60101 60202 60303}"
CALIB_SEED="${CALIB_SEED:-60404}"
MODE_WEIGHTS="${MODE_WEIGHTS:-damaged_item=2}"
DENSE_RATIO="${DENSE_RATIO:-0.25}"
VARIANTS="${VARIANTS:-armor}"
cd "$ROOT"

OPENBLAS_DIR=/usr/lib/x86_64-linux-gnu/openblas-pthread
if [ ! -e "$OPENBLAS_DIR/libblas.so.3" ]; then
  echo "installing OpenBLAS (torch's BLAS)" >&2
  apt-get install -y --no-install-recommends libopenblas0-pthread >/dev/null
fi
export LD_LIBRARY_PATH="$OPENBLAS_DIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export OPENBLAS_NUM_THREADS=1

mkdir -p "$WORK"
# 1. data (deterministic per seed; skipped when already there)
[ -f "$WORK/train/manifest.jsonl" ] || \
  "$PY" models/data/generate_episodes.py --out "$WORK/train" --count "$TRAIN_COUNT" --seed "$TRAIN_SEED" \
    --dense-ratio "$DENSE_RATIO" --mode-weights "$MODE_WEIGHTS" --jobs 2
HELDOUT_DIRS=()
for seed in $HELDOUT_SEEDS; do
  [ -f "$WORK/heldout-$seed/manifest.jsonl" ] || \
    "$PY" models/data/generate_episodes.py --out "$WORK/heldout-$seed" --count "$HELDOUT_COUNT" --seed "$seed" --jobs 2
  HELDOUT_DIRS+=("$WORK/heldout-$seed")
done
[ -f "$WORK/calib/manifest.jsonl" ] || \
  "$PY" models/data/generate_episodes.py --out "$WORK/calib" --count "$HELDOUT_COUNT" --seed "$CALIB_SEED" --jobs 2

# 2. tokenizer corpus: the prompt, task and explanation templates of the generator filled
#    with every item (deterministic; the committed corpus_episodes.txt is this output)
"$PY" models/tooling/corpus.py --out models/tooling/corpus_episodes.txt

# 3. train (ARMOR and the baselines, held-out comparison in $WORK/ckpt/train-report.json)
"$PY" models/tooling/train.py --train "$WORK/train" --heldout "${HELDOUT_DIRS[0]}" \
  --out "$WORK/ckpt" --variants "$VARIANTS"

# 4. export the trained ARMOR weights + golden vectors
"$PY" models/tooling/build.py --config models/configs/armor-tiny-train.json --weights "$WORK/ckpt/armor.pt"
# 4b. the optional one-call round graph, composed from the four exported graphs
"$PY" models/tooling/round_graph.py models/armor-tiny
npm run build >/dev/null
# 4c. needs_review's input-novelty statistics: fit on the training episodes, threshold at the
#     99.5th percentile of the calibration split (written into the bundle)
node dist/src/cli.js fit-novelty --train "$WORK/train" --calib "$WORK/calib" models/armor-tiny
# 4d. the calibration temperature: fit on the calibration split's served answers, written into
#     armor.json labels.calibration_temperature (it scales only the reported probability)
node dist/src/cli.js eval --data "$WORK/calib" --out "$WORK/eval-calib"
"$PY" - "$WORK/eval-calib/eval-report.json" models/armor-tiny/armor.json <<'PYEOF'
import json, sys
t = json.load(open(sys.argv[1]))["calibration"]["fitted_temperature"]
m = json.load(open(sys.argv[2]))
m["labels"]["calibration_temperature"] = round(t, 4)
with open(sys.argv[2], "w") as f:
    json.dump(m, f, indent=2)
    f.write("\n")
print(f"calibration temperature {t:.4f}")
PYEOF

# 5. the served numbers on each held-out set: the bundle's defaults, the same seeds with
#    max_rounds 1 (round 0 alone), every round without the early stop (first set), and the
#    out-of-distribution clips (needs_review)
if [ "${SKIP_EVAL:-0}" != 1 ]; then
  EVALS=()
  for dir in "${HELDOUT_DIRS[@]}"; do
    name="$(basename "$dir")"
    node dist/src/cli.js eval --data "$dir" --out "$WORK/eval-$name"
    node dist/src/cli.js eval --data "$dir" --out "$WORK/eval-$name-r0" --options '{"max_rounds":1}'
    EVALS+=("$WORK/eval-$name")
  done
  node dist/src/cli.js eval --data "${HELDOUT_DIRS[0]}" --out "$WORK/eval-$(basename "${HELDOUT_DIRS[0]}")-all-rounds" --options '{"early_stop":false}'
  [ -f "$WORK/ood/manifest.jsonl" ] || "$PY" models/data/ood_clips.py --heldout "${HELDOUT_DIRS[2]}" --out "$WORK/ood"
  node dist/src/cli.js eval --data "$WORK/ood" --out "$WORK/eval-ood"
  "$PY" models/tooling/report.py --train-report "$WORK/ckpt/train-report.json" \
    --ts-eval "${EVALS[0]}/eval-report.json" > "$WORK/report-tables.md"
  "$PY" models/tooling/report_sets.py --sets "${EVALS[@]}" \
    --all-rounds "$WORK/eval-$(basename "${HELDOUT_DIRS[0]}")-all-rounds" --ood "$WORK/eval-ood" \
    --calib "$WORK/eval-calib" >> "$WORK/report-tables.md"
  echo "tables for models/armor-tiny/REPORT.md: $WORK/report-tables.md"
fi
