#!/usr/bin/env bash
# The GPU figures the README reports, in one pass, most wanted first (about 9 minutes on one H200):
#   1. the demo's learning configuration (params.yaml) end to end through the DVC stages (`dvc repro`)
#      on the GPU (~6.5 minutes on an H200 before); the log stamps each stage's start;
#   2. predict_speed.py: fmae predict end to end on a 640x480 clip with RetinaFace batched on the GPU
#      and the crops cut there, ViT-B/16 and ViT-L/16 at 224 (targets: >= 300 and >= 100 frames/s);
#   3. model_step.py: bf16 img/s, counted FLOPs and MFU of MAE pretraining (ViT-B/L, decoder 512x8x16),
#      AU finetuning with IAT (ViT-L, the paper's batch 64) and AU prediction (ViT-B/L), eager and
#      compiled, for as long as the deadline leaves.
# Usage: benchmarks/gpu_figures.sh [OUT_DIR] [SECONDS]   (defaults: $OUT or ./gpu_figures, 560 s)
# Each figure lands in OUT_DIR as it is made (model_step.jsonl, *.log, the metrics), so a run cut
# short still returns what it measured.
set -u
out=${1:-${OUT:-gpu_figures}}
deadline=$((SECONDS + ${2:-560}))
mkdir -p "$out"
export PYTHONUNBUFFERED=1
python=${PYTHON:-python3}

nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm,power.limit --format=csv | tee "$out/gpu.csv"
$python -c "import torch, timm; print('torch', torch.__version__, 'timm', timm.__version__, 'cuda', torch.version.cuda)" \
  | tee -a "$out/gpu.csv"

step() {  # step SECONDS ARGS...: one model_step.py run, cut at SECONDS
  local limit=$1; shift
  echo "== model_step $*"
  timeout "$limit" $python benchmarks/model_step.py "$@" --json "$out/model_step.jsonl" 2>&1 | tee -a "$out/model_step.log" | tail -6
}
echo "== dvc repro (the learning configuration)"
timeout $((deadline - SECONDS - 150)) $python -m dvc repro 2>&1 | while IFS= read -r line; do printf '%s %s\n' "$(date +%T)" "$line"; done \
  | tee "$out/repro.log" | grep -E "Running stage|EXIT|rror" | tail -40
cp -r metrics "$out/" 2>/dev/null

echo "== predict_speed (RetinaFace and crops on the GPU)"
timeout 120 $python benchmarks/predict_speed.py --frames 512 --batch-sizes 1,64 \
  --models vit_base_patch16_224@224,vit_large_patch16_224@224 2>&1 | tee "$out/predict_speed.log" | tail -12

for args in "60 --task mae --model vit_base_patch16_224 --batch 256" \
            "60 --task predict --model vit_large_patch16_224 --batch 256" \
            "60 --task predict --model vit_base_patch16_224 --batch 256" \
            "150 --task au --model vit_large_patch16_224 --batch 64 --iat-lambda 1 --compile" \
            "150 --task mae --model vit_large_patch16_224 --batch 128 --compile" \
            "60 --task mae --model vit_tiny_patch16_224 --img-size 112 --decoder 128,2,4 --batch 64"; do
  set -- $args
  [ $((deadline - SECONDS)) -gt "$1" ] && step $args
done
touch "$out/model_step.jsonl"
$python - "$out/model_step.jsonl" <<'EOF'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
print("\n| task | model | px | batch | compiled | GFLOPs/img | img/s | TFLOP/s | MFU (datasheet) | MFU (measured matmul) | GiB |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for r in rows:
    print(f"| {r['what']} | {r['model']} | {r['img_size']} | {r['batch']} | {'yes' if r['compiled'] else 'no'} | "
          f"{r['gflops_per_image']:.1f} | {r['img_per_s']:,.0f} | {r['tflops']:.0f} | {r['mfu_datasheet'] or 0:.1%} | "
          f"{r['mfu_measured_peak'] or 0:.1%} | {r['peak_memory_gib'] or 0:.1f} |")
EOF
