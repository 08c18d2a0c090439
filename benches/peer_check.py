#!/usr/bin/env python3
"""Peer check (`make peer-check`): gqcim's `pcm` preset against IBM aihwkit's
PCMLikeNoiseModel + GlobalDriftCompensation on the reference ResNet-20 with fixed 8-level
quanta, accuracy over Monte-Carlo trials at several times after programming.

1. `gqcim quantize --method gq --levels 8` fixes the per-layer quanta (results.json);
2. gqcim: `gqcim eval --analog` with `analog.preset=pcm`, t_inference = the times, `--trials`;
3. aihwkit 1.1.0: the network of benches/resnet_cifar.py loaded from the same checkpoint,
   every conv/linear weight snapped to gqcim's quanta (nearest level, gqcim's midpoint
   thresholds), converted with InferenceRPUConfig (perfect periphery: forward.is_perfect,
   one tile per layer, no clipping/remap/modifier, digital bias, as benches/aihwkit_bench.py
   --config weights), noise_model = PCMLikeNoiseModel(g_max=25) on
   SinglePairConductanceConverter(g_max=25, g_min=0), drift_compensation =
   GlobalDriftCompensation(); per trial (seed + trial) program_analog_weights() once, then
   drift_analog_weights(t) and the accuracy at each time;
4. writes a Markdown table (mean, std, 95% CI of the mean per side, difference, combined CI).
"""
import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import warnings

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from resnet_cifar import (accuracy, load_checkpoint, load_fmnist_test, log, resnet_cifar,  # noqa: E402
                          setup_threads, snap_to_quanta)

T95 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
       2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
       2.052, 2.048, 2.045, 2.042]


def ci95(v):
    n = len(v)
    if n < 2:
        return 0.0
    t = T95[n - 2] if n - 1 <= 30 else 1.96
    return t * float(np.std(v, ddof=1)) / math.sqrt(n)


def label(t):
    for s, u in [(31_536_000, "y"), (86_400, "d"), (3600, "h")]:
        if t >= s:
            return f"{t / s:g} {u}"
    return f"{t:g} s"


def run(cmd):
    log("$ " + " ".join(cmd))
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.stderr.write(r.stdout + r.stderr)
        raise SystemExit(f"command failed ({r.returncode}): {' '.join(cmd)}")
    return r.stdout


def gqcim_side(args, work):
    common = ["--config", args.config, "--checkpoint", args.checkpoint, "--set", f"threads={args.threads}",
              "--set", "device=cpu", "--set", f"data.test_limit={args.images}", "--set", f"seed={args.seed}"]
    qdir = os.path.join(work, "quantize")
    run([args.bin, "quantize", *common, "--method", "gq", "--levels", "8", "--run-dir", qdir])
    quanta = {k: v for k, v in json.load(open(os.path.join(qdir, "results.json")))["layers"].items()
              if "quanta" in v}
    edir = os.path.join(work, "eval")
    times = "[" + ",".join(f"{t:g}" for t in args.times) + "]"
    t = time.perf_counter()
    out = run([args.bin, "eval", *common, "--analog", "--trials", str(args.trials), "--set", "quant.method=gq",
               "--set", "quant.levels=8", "--set", "analog.preset=pcm", "--set", f"analog.t_inference={times}",
               *[a for kv in args.gqcim_set for a in ("--set", kv)], "--run-dir", edir])
    wall = time.perf_counter() - t
    log(out)
    r = json.load(open(os.path.join(edir, "results.json")))
    per_time = {ts["t_inference"]: [x["metric"] for x in ts["stats"]["trials"]] for ts in r["analog"]["analog_by_time"]}
    return quanta, per_time, r, wall


def aihwkit_side(args, quanta):
    import aihwkit
    from aihwkit.inference.compensation.drift import GlobalDriftCompensation
    from aihwkit.inference.converter.conductance import SinglePairConductanceConverter
    from aihwkit.inference.noise.pcm import PCMLikeNoiseModel
    from aihwkit.nn.conversion import convert_to_analog
    from aihwkit.simulator.configs import InferenceRPUConfig
    from aihwkit.simulator.parameters.enums import (BoundManagementType, NoiseManagementType, WeightClipType,
                                                     WeightModifierType, WeightNoiseType, WeightRemapType)

    model = resnet_cifar(20, 1, 10)
    state, _ = load_checkpoint(model, args.checkpoint)
    snapped = snap_to_quanta(model, quanta)
    log(f"snapped {snapped} layers to gqcim's 8-level quanta")
    x, y = load_fmnist_test(args.images)
    digital = accuracy(model, x, y, 500)
    log(f"digital 8-level accuracy (aihwkit side, before conversion): {digital:.4f}")

    rpu = InferenceRPUConfig()
    rpu.noise_model = PCMLikeNoiseModel(g_converter=SinglePairConductanceConverter(g_max=25.0, g_min=0.0))
    rpu.drift_compensation = GlobalDriftCompensation()
    rpu.mapping.weight_scaling_omega = 1.0
    rpu.mapping.weight_scaling_columnwise = False
    rpu.mapping.digital_bias = True
    rpu.mapping.learn_out_scaling = False
    rpu.mapping.max_input_size = 0
    rpu.mapping.max_output_size = 0
    rpu.clip.type = WeightClipType.NONE
    rpu.remap.type = WeightRemapType.NONE
    rpu.modifier.type = WeightModifierType.NONE
    f = rpu.forward
    f.is_perfect = True
    f.inp_noise = f.out_noise = f.w_noise = 0.0
    f.w_noise_type = WeightNoiseType.NONE
    f.inp_res = f.out_res = -1.0
    f.inp_bound = f.out_bound = -1.0
    f.bound_management = BoundManagementType.NONE
    f.noise_management = NoiseManagementType.NONE
    analog = convert_to_analog(model, rpu)
    analog.eval()
    per_time = {t: [] for t in args.times}
    t0 = time.perf_counter()
    for r in range(args.trials):
        torch.manual_seed(args.seed + r)
        analog.program_analog_weights()
        for t in args.times:
            analog.drift_analog_weights(t)
            per_time[t].append(accuracy(analog, x, y, 500))
        log(f"aihwkit trial {r + 1}/{args.trials}: " + ", ".join(f"{label(t)} {per_time[t][-1]:.4f}" for t in args.times))
    return per_time, digital, time.perf_counter() - t0, aihwkit.__version__


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bin", default="target/release/gqcim")
    p.add_argument("--config", default="configs/classify_fmnist.yaml")
    p.add_argument("--checkpoint", default="models/resnet20_fmnist.safetensors")
    p.add_argument("--trials", type=int, default=25)
    p.add_argument("--images", type=int, default=1000, help="first N Fashion-MNIST test images")
    p.add_argument("--times", type=float, nargs="+", default=[1.0, 3600.0, 86400.0, 31536000.0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="docs/peer_check_table.md", help="the table (docs/peer_check.md explains it)")
    p.add_argument("--gqcim-set", action="append", default=[], metavar="KEY=VALUE",
                   help="extra --set for gqcim's evaluation (an ablation, e.g. analog.resplit_after_programming=true)")
    p.add_argument("--aihwkit-from", metavar="TABLE",
                   help="reuse the aihwkit side (per-time mean, std, CI) of an earlier table's JSON block "
                        "instead of running aihwkit again (same trials, images, seed)")
    args = p.parse_args()
    setup_threads(args.threads)
    warnings.filterwarnings("ignore")
    with tempfile.TemporaryDirectory() as work:
        quanta, g, g_res, g_wall = gqcim_side(args, work)
        if args.aihwkit_from:
            text = open(args.aihwkit_from).read()
            earlier = json.loads(text[text.index("```json") + 7:text.rindex("```")])
            for k in ("trials", "images", "seed"):  # (tables before 2026-12-03 did not record the seed)
                if k in earlier and earlier[k] != getattr(args, k):
                    raise SystemExit(f"{args.aihwkit_from}: {k} {earlier[k]} != {getattr(args, k)}")
            # Per time: (mean, std, 95% CI) of the aihwkit side, as the earlier run wrote them.
            a_stats = {r[0]: (r[4], r[5], r[6]) for r in earlier["rows"]}
            a_digital, a_wall, a_ver = earlier["aihwkit_digital_quantized"], earlier["aihwkit_wall_s"], earlier["aihwkit"]
            a_trials = earlier.get("aihwkit_trials")
        else:
            a, a_digital, a_wall, a_ver = aihwkit_side(args, quanta)
            a_stats = {t: (float(np.mean(a[t])), float(np.std(a[t], ddof=1)), ci95(a[t])) for t in args.times}
            a_trials = {str(t): a[t] for t in args.times}
    # The code version is the binary's own (embedded at build time), not the checkout's HEAD.
    commit = str(g_res.get("git_commit", ""))[:7]
    rows = []
    for t in args.times:
        gv = g[t]
        gm, gc = float(np.mean(gv)), ci95(gv)
        am, as_, ac = a_stats[t]
        comb = math.sqrt(gc ** 2 + ac ** 2)
        rows.append((t, gm, float(np.std(gv, ddof=1)), gc, am, as_, ac, gm - am, comb))
    lines = [
        "| t after programming | gqcim pcm: mean ± std (95% CI) | aihwkit PCMLikeNoiseModel: mean ± std (95% CI) "
        "| difference | combined 95% CI | within? |",
        "|---|---|---|---|---|---|",
    ]
    for t, gm, gs, gc, am, as_, ac, d, comb in rows:
        lines.append(f"| {label(t)} | {100 * gm:.2f} ± {100 * gs:.2f} (± {100 * gc:.2f}) | "
                     f"{100 * am:.2f} ± {100 * as_:.2f} (± {100 * ac:.2f}) | {100 * d:+.2f} | ± {100 * comb:.2f} | "
                     f"{'yes' if abs(d) <= comb else 'no'} |")
    table = "\n".join(lines)
    print(table)
    summary = {
        "commit": commit, "trials": args.trials, "images": args.images, "threads": args.threads, "seed": args.seed,
        "gqcim_digital_quantized": g_res["analog"]["digital_quantized"], "aihwkit_digital_quantized": a_digital,
        "gqcim_wall_s": g_wall, "aihwkit_wall_s": a_wall, "aihwkit": a_ver, "torch": torch.__version__,
        "gqcim_set": args.gqcim_set, "aihwkit_from": args.aihwkit_from, "rows": rows,
        "gqcim_trials": {str(t): g[t] for t in args.times}, "aihwkit_trials": a_trials,
    }
    print(json.dumps(summary))
    if args.out:
        with open(args.out + ".tmp", "w") as fh:
            fh.write(table + "\n\n```json\n" + json.dumps(summary, indent=1) + "\n```\n")
        os.replace(args.out + ".tmp", args.out)


if __name__ == "__main__":
    main()
