#!/usr/bin/env bash
# The default model from nothing: generate episodes, train ARMOR (+ the two baselines),
# export models/armor-tiny, regenerate test/golden, evaluate the served bundle.
#
#   bash models/tooling/make_default_model.sh [WORK_DIR]     (default WORK_DIR: /tmp/armor-train)
#
# Env: TRAIN_COUNT (3000), HELDOUT_COUNT (300), TRAIN_SEED (1), HELDOUT_SEED (31337),
#      DENSE_RATIO (0.25 = sparse:dense, so 80% of the training episodes carry an explanation),
#      VARIANTS (armor,mtl,sft; "armor" alone skips the baselines), PY (/usr/bin/python3),
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
TRAIN_COUNT="${TRAIN_COUNT:-3000}"
HELDOUT_COUNT="${HELDOUT_COUNT:-300}"
TRAIN_SEED="${TRAIN_SEED:-1}"
HELDOUT_SEED="${HELDOUT_SEED:-31337}"
DENSE_RATIO="${DENSE_RATIO:-0.25}"
VARIANTS="${VARIANTS:-armor,mtl,sft}"
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
    --dense-ratio "$DENSE_RATIO" --jobs 2
[ -f "$WORK/heldout/manifest.jsonl" ] || \
  "$PY" models/data/generate_episodes.py --out "$WORK/heldout" --count "$HELDOUT_COUNT" --seed "$HELDOUT_SEED" --jobs 2

# 2. tokenizer corpus: the prompt, task and explanation templates of the generator filled
#    with every item (deterministic; the committed corpus_episodes.txt is this output)
"$PY" models/tooling/corpus.py --out models/tooling/corpus_episodes.txt

# 3. train (ARMOR and the baselines, held-out comparison in $WORK/ckpt/train-report.json)
"$PY" models/tooling/train.py --train "$WORK/train" --heldout "$WORK/heldout" \
  --out "$WORK/ckpt" --variants "$VARIANTS"

# 4. export the trained ARMOR weights + golden vectors
"$PY" models/tooling/build.py --config models/configs/armor-tiny-train.json --weights "$WORK/ckpt/armor.pt"
# 4b. the optional one-call round graph, composed from the four exported graphs
"$PY" models/tooling/round_graph.py models/armor-tiny

# 5. the served numbers: armor-serve eval on the held-out set (bundle defaults), and the
#    multi-task baseline exported to a scratch bundle and served with max_rounds 1
if [ "${SKIP_EVAL:-0}" != 1 ]; then
  npm run build >/dev/null
  node dist/src/cli.js eval --data "$WORK/heldout" --out "$WORK/eval-armor"
  if [ -f "$WORK/ckpt/mtl.pt" ]; then
    "$PY" models/tooling/build.py --config models/configs/armor-tiny-train.json --weights "$WORK/ckpt/mtl.pt" --out "$WORK/bundle-mtl" --no-golden >/dev/null
    ARMOR_BUNDLE_DIR="$WORK/bundle-mtl" node dist/src/cli.js eval --data "$WORK/heldout" --out "$WORK/eval-mtl" \
      --options '{"max_rounds":1}'
  fi
  "$PY" models/tooling/report.py --train-report "$WORK/ckpt/train-report.json" \
    --ts-eval "$WORK/eval-armor/eval-report.json" \
    $( [ -f "$WORK/eval-mtl/eval-report.json" ] && echo --ts-eval-r0 "$WORK/eval-mtl/eval-report.json" ) \
    > "$WORK/report-tables.md"
  echo "tables for models/armor-tiny/REPORT.md: $WORK/report-tables.md"
fi
