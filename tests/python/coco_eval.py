"""Scores a COCO results file against a COCO ground-truth file with pycocotools' COCOeval
(iouType "bbox", default params) and prints
{"map": stats[0], "map50": stats[1], "map75": stats[2], "per_class": [ap or null, ...]}
as JSON; per_class follows the sorted category ids, AP@[.5:.95], area "all", maxDets 100."""
import contextlib
import io
import json
import sys

from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval


def main(gt_path: str, pred_path: str) -> None:
    # pycocotools prints progress on stdout; keep stdout for the JSON answer only.
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(gt_path)
        dt = gt.loadRes(pred_path)
        ev = COCOeval(gt, dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    precision = ev.eval["precision"]  # [T, R, K, A, M]; A=0 is "all", M=-1 is maxDets 100
    per_class = []
    for k in range(len(ev.params.catIds)):
        p = precision[:, :, k, 0, -1]
        per_class.append(float(p[p > -1].mean()) if (p > -1).any() else None)
    out = {
        "map": float(ev.stats[0]),
        "map50": float(ev.stats[1]),
        "map75": float(ev.stats[2]),
        "per_class": per_class,
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
