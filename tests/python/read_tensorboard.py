"""Reads a run folder's TensorBoard events with TensorBoard's own EventAccumulator and prints
{"scalars": {tag: [[step, value], ...]}, "histograms": {tag: [[step, count], ...]}} as JSON."""
import json
import sys

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def main(run_dir: str) -> None:
    acc = EventAccumulator(run_dir, size_guidance={"scalars": 0, "histograms": 0, "images": 0})
    acc.Reload()
    tags = acc.Tags()
    out = {
        "scalars": {t: [[e.step, e.value] for e in acc.Scalars(t)] for t in tags["scalars"]},
        "histograms": {
            t: [[e.step, e.histogram_value.num] for e in acc.Histograms(t)] for t in tags["histograms"]
        },
        "images": {t: [[e.step, e.width, e.height] for e in acc.Images(t)] for t in tags["images"]},
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1])
