#!/usr/bin/env bash
# GPU visit 2: the issue-3 quantization table (full test set), then the CUDA benchmark suite.
set -uo pipefail
TL=$(python3 -c "import torch,os;print(os.path.dirname(torch.__file__)+'/lib')")
export LD_LIBRARY_PATH=$TL:$PWD/gpu/lib
chmod +x gpu/gqcim
NAME=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1 | tr ' ' '-' | tr -cd 'A-Za-z0-9-')
echo "card: $NAME"
mkdir -p "$OUT/quant" "$OUT/bench"
# 1. classify-quant: gq, gq-exact, uniform-mse, lsq at N = 2,3,4,8,16; PTQ and 0.25-epoch QAT.
timeout 200 ./gpu/gqcim compare --config configs/classify_fmnist_quant.yaml \
  --checkpoint models/resnet20_fmnist.safetensors --set data.root=gpu/fmnist --set device=cuda \
  --run-dir "$OUT/quant" > "$OUT/quant.log" 2>&1
echo "quant exit $?"; grep -v INFO "$OUT/quant.log" | tail -60
rm -f "$OUT"/quant/events.* "$OUT"/quant/*.png
# 2. Benchmarks on CUDA (PyTorch eager peer on the same card; aihwkit has no CUDA build here).
timeout 240 ./gpu/gqcim bench --device cuda --python python3 --machine "$NAME" --out "$OUT/bench" \
  --skip-aihwkit > "$OUT/bench.log" 2>&1
echo "bench exit $?"; tail -30 "$OUT/bench.log"
