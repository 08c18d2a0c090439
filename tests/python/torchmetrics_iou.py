"""Reference segmentation metrics from torchmetrics, for tests/seg_metrics.rs.

Reads <in> (safetensors: `pred_<i>` and `target_<i>`, int64 [b, h, w], i = 0..n-1, one pair
per batch), accumulates them batch by batch as an evaluation loop does, and prints JSON:
  miou       MulticlassJaccardIndex(average="macro", ignore_index=255)
  per_class  MulticlassJaccardIndex(average=None, ignore_index=255)  (0 for absent classes)
  acc        MulticlassAccuracy(average="micro", ignore_index=255)
Usage: python torchmetrics_iou.py IN.safetensors NUM_CLASSES
"""
import json
import sys

from safetensors.torch import load_file
from torchmetrics.classification import MulticlassAccuracy, MulticlassJaccardIndex


def main(path: str, k: int) -> None:
    data = load_file(path)
    miou = MulticlassJaccardIndex(num_classes=k, average="macro", ignore_index=255)
    per_class = MulticlassJaccardIndex(num_classes=k, average=None, ignore_index=255)
    acc = MulticlassAccuracy(num_classes=k, average="micro", ignore_index=255)
    n = len([name for name in data if name.startswith("pred_")])
    for i in range(n):
        pred, target = data[f"pred_{i}"], data[f"target_{i}"]
        for metric in (miou, per_class, acc):
            metric.update(pred, target)
    print(json.dumps({
        "miou": miou.compute().item(),
        "per_class": per_class.compute().tolist(),
        "acc": acc.compute().item(),
    }))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
