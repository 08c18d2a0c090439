"""Reads every TensorBoard run under a folder (each folder holding event files) with
TensorBoard's own EventAccumulator and prints, per run (path relative to the folder, "." for
the folder itself), {"scalars": {tag: [[step, value], ...]}, "histograms": {tag: [[step,
count], ...]}, "images": {tag: [[step, width, height], ...]}, "text": {tag: [[step, text]]}}
as JSON. Text summaries are the text plugin's tensors (plugin_name "text", DT_STRING)."""
import json
import os
import sys

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def read_run(path: str) -> dict:
    acc = EventAccumulator(
        path, size_guidance={"scalars": 0, "histograms": 0, "images": 0, "tensors": 0}
    )
    acc.Reload()
    tags = acc.Tags()
    try:
        text_tags = set(acc.PluginTagToContent("text").keys())
    except KeyError:  # no summary of the text plugin in this run
        text_tags = set()
    return {
        "scalars": {t: [[e.step, e.value] for e in acc.Scalars(t)] for t in tags["scalars"]},
        "histograms": {
            t: [[e.step, e.histogram_value.num] for e in acc.Histograms(t)] for t in tags["histograms"]
        },
        "images": {t: [[e.step, e.width, e.height] for e in acc.Images(t)] for t in tags["images"]},
        "text": {
            t: [[e.step, e.tensor_proto.string_val[0].decode("utf-8")] for e in acc.Tensors(t)]
            for t in tags["tensors"]
            if t in text_tags
        },
    }


def main(root: str) -> None:
    out = {}
    for d, _, files in sorted(os.walk(root)):
        if any(f.startswith("events.out.tfevents") for f in files):
            out[os.path.relpath(d, root)] = read_run(d)
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1])
