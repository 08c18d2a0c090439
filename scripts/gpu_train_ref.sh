#!/usr/bin/env bash
# One GPU visit: train the reference ResNet-20 on Fashion-MNIST with the committed config.
set -uo pipefail
TL=$(python3 -c "import torch,os;print(os.path.dirname(torch.__file__)+'/lib')")
export LD_LIBRARY_PATH=$TL
chmod +x gpu/gqcim
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  date -u
  /usr/bin/time -v timeout 500 ./gpu/gqcim train --config configs/classify_fmnist.yaml \
    --set data.root=gpu/fmnist --set device=cuda --run-dir "$OUT/ref"
  echo "exit: $?"
  date -u
} > "$OUT/train.log" 2>&1
cp "$OUT/ref/checkpoints/last.json" "$OUT/ref/last_checkpoint.json" 2>/dev/null
rm -rf "$OUT/ref/checkpoints"
ls -la "$OUT" "$OUT/ref"
tail -n 30 "$OUT/train.log"
