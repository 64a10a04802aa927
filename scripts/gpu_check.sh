#!/usr/bin/env bash
# Measure harvest and training throughput on a GPU node and set them beside the plan's estimates.
#
#   scripts/gpu_check.sh [OUT_DIR]          # default OUT_DIR: results/gpu_check
#
# Runs, each on one GPU, with a fresh activation cache so the harvest is timed:
#   1. the demo pair (SmolLM2-135M-Instruct vs the demo persona organism), 1M tokens, 4,096 latents;
#   2. a 1B-class pair, $BASE vs $FT (default HuggingFaceTB/SmolLM2-1.7B vs -Instruct, ungated; for Llama-3.2-1B set
#      BASE=meta-llama/Llama-3.2-1B FT=meta-llama/Llama-3.2-1B-Instruct and log in to the hub), 2M tokens, 16,384
#      latents, two hooks.
# Needs: a CUDA build of torch, network to the Hugging Face hub for the 1B pair, ~20 GB of disk under OUT_DIR.
# Writes OUT_DIR/gpu_check.json (tokens/s of harvest and training per pair, with the plan's numbers) and prints it.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-results/gpu_check}
BASE=${BASE:-HuggingFaceTB/SmolLM2-1.7B}
FT=${FT:-HuggingFaceTB/SmolLM2-1.7B-Instruct}
GPU=${GPU:-}                      # plan hardware: a100-80gb | h100-80gb | l40s (default: the visible GPU)
export WANDB_MODE=disabled TOKENIZERS_PARALLELISM=false
mkdir -p "$OUT"

python - <<'PY'
import torch
assert torch.cuda.is_available(), "no GPU visible: run this on a GPU node with a CUDA build of torch"
p = torch.cuda.get_device_properties(0)
print(f"GPU: {p.name}, {p.total_memory / 2**30:.0f} GiB, torch {torch.__version__}, CUDA {torch.version.cuda}")
PY
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true

GPU_ARGS=()
[[ -n $GPU ]] && GPU_ARGS=(--gpu "$GPU")
COMMON=(models.device=cuda trainer.device=cuda trainer.checkpoint_every=0 trainer.log_every=100
        logging.progress=false "data.cache_root=$OUT/activations")

run_pair() {  # name, then Hydra overrides
  local name=$1; shift
  local args=("$@" "${COMMON[@]}" "name=$name")
  python -m crosscoder.plan "${GPU_ARGS[@]}" --json "$OUT/$name.plan.json" "${args[@]}"
  rm -rf "$OUT/activations" "$OUT/$name"
  python train.py "${args[@]}" "hydra.run.dir=$OUT/$name" 2>&1 | tee "$OUT/$name.log" | grep -E "FVE|error" || true
}

run_pair demo data.n_tokens=1000000 data.seq_len=256 data.harvest_batch_size=64 trainer.steps=2000 \
  trainer.batch_size=2048 crosscoder.n_latents=4096
run_pair pair-1b models=pair "models.models.0.source=$BASE" "models.models.1.source=$FT" \
  "data.hooks=[blocks.8.hook_resid_post,blocks.12.hook_resid_post]" data.sources=[shipped] data.n_tokens=2000000 \
  data.seq_len=512 data.harvest_batch_size=32 data.store_dtype=float16 trainer.steps=2000 trainer.batch_size=2048 \
  crosscoder.n_latents=16384

python - "$OUT" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
rows = {}
for name in ("demo", "pair-1b"):
    run, plan = out / name, json.loads((out / f"{name}.plan.json").read_text())
    manifest = json.loads(Path(json.loads((run / "run.json").read_text())["activations"], "manifest.json").read_text())
    metrics = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    train = [m["tokens_per_s"] for m in metrics if "tokens_per_s" in m]
    rows[name] = {
        "harvest_tokens_per_s": manifest["n_rows"] / manifest["harvest"]["seconds_last_run"],
        "train_tokens_per_s": sum(train[1:]) / max(1, len(train) - 1),  # the first window includes warm-up
        "plan_harvest_tokens_per_s": plan["tokens"] / (plan["harvest_hours"] * 3600),
        "plan_train_tokens_per_s": plan["steps"] * plan["batch_size"] / (plan["train_hours"] * 3600),
        "hardware": plan["hardware"],
    }
(out / "gpu_check.json").write_text(json.dumps(rows, indent=2) + "\n")
print(json.dumps(rows, indent=2))
PY
