#!/usr/bin/env python3
"""The peer check's two simulators re-written in plain PyTorch, to find the term behind a gap.

`benches/peer_check.py` compares gqcim's `pcm` preset with aihwkit's PCMLikeNoiseModel on the
reference ResNet-20 (fixed 8-level gq quanta). This script re-implements, from the sources, what
each side does in one trial, drawing the random numbers in that side's own order from that
side's own seeds, so that every trial can be checked one by one against the real run:

  aihwkit               aihwkit 1.1.0 (inference/noise/base.py, noise/pcm.py,
                        converter/conductance.py, simulator/tiles/inference.py,
                        compensation/drift.py): the tile's weights scaled to max |w| = 1,
                        per slice G+ then G-: programming noise then drift exponents; the
                        programmed weights re-converted at every read (scale from their
                        abs-max), drift, 1/f read noise; GlobalDriftCompensation on one-hot
                        inputs, baseline = the programmed tile; seed = --seed + trial.
                        --check-against a peer-check table compares with its aihwkit trials.
  gqcim                 gqcim's AnalogPath with the peer check's aihwkit conventions
                        (resplit_after_programming, resplit_scale=programmed,
                        calibration_inputs=one-hot): both devices' programming noise, then both
                        drift exponents, a read at the first time while programming, then per
                        read time a re-seed and a read; seeds from montecarlo.rs trial_seed.
                        --gqcim-results an `eval --analog` results.json (layer order, trials).
  aihwkit-gqcim-stream  aihwkit's arithmetic (the first variant's code) driven by gqcim's
                        random stream (its seeds, draw order and layer order).

If `aihwkit` reproduces aihwkit's trials, `gqcim` reproduces gqcim's, and `aihwkit-gqcim-stream`
reproduces gqcim's too, the two simulators compute the same function of the random draws, and
a difference of their means can only come from the draws (sampling), not from a model term.

Accuracy: torch's conv2d/linear on the effective weights (programmed-and-read weights × the
compensation), the first `--images` Fashion-MNIST test images, 1 thread.
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from resnet_cifar import (accuracy, load_checkpoint, load_fmnist_test, log, resnet_cifar,  # noqa: E402
                          setup_threads, snap_to_quanta)

G_MAX = 25.0
PROG = [0.26348, 1.9650, -1.1731]  # pcm.py prog_coeff, µS, polynomial in g/g_max
T0, T_READ = 20.0, 250e-9
ZERO_CLIP = 1e-7  # pcm.py _ZERO_CLIP


def to_pair(w):
    """SinglePairConductanceConverter(g_max=25, g_min=0): scale from the tile's abs-max."""
    scale = G_MAX / w.abs().max().clamp(min=ZERO_CLIP)
    s = w * scale
    return [s.clamp(0.0, G_MAX), (-s).clamp(0.0, G_MAX)], scale


def program(g):
    x = g / G_MAX
    sig = PROG[0] + PROG[1] * x + PROG[2] * x * x
    return (g + sig * torch.randn_like(g)).clamp(min=0.0)


def draw_nu(g):
    rel = (g / G_MAX).abs().clamp(min=ZERO_CLIP)
    mu = (-0.0155 * rel.log() + 0.0244).clamp(0.049, 0.1)
    sd = (-0.0125 * rel.log() - 0.0059).clamp(0.008, 0.045)
    return (mu + sd * torch.randn_like(rel)).abs()


def drift_read(g, nu, t_inf):
    t = t_inf + T0
    g_d = g * (t / T0) ** (-nu) if t > T0 else g
    q = (0.0088 / ((g.abs() / G_MAX) ** 0.65).clamp(min=1e-3)).clamp(max=0.2)
    sig = q * math.sqrt(math.log((t + T_READ) / (2 * T_READ)))
    return (g_d + g_d.abs() * sig * torch.randn_like(g)).clamp(min=0.0)


class Layer:
    """One conv/linear layer as aihwkit's InferenceTile holds it."""

    def __init__(self, mod, gqcim_order=False):
        self.mod = mod
        self.gqcim_order = gqcim_order
        self.w_ref = mod.weight.detach().clone()
        self.omega = self.w_ref.abs().max()  # mapping.weight_scaling_omega = 1: tile max |w| = 1
        self.tile_ref = (self.w_ref / self.omega).reshape(self.w_ref.shape[0], -1)

    def readout(self, w):
        # GlobalDriftCompensation: mean |eye(in) @ W^T| = mean |W|, clamped at 1e-4.
        return w.abs().mean().clamp(min=1e-4)

    def program(self):
        pair, scale = to_pair(self.tile_ref)
        if self.gqcim_order:  # both devices' programming noise, then both nu
            prog = [program(g) for g in pair]
            self.nu = [draw_nu(g) for g in pair]
        else:
            prog, self.nu = [], []
            for g in pair:  # aihwkit's order: programming noise, then nu, per slice
                prog.append(program(g))
                self.nu.append(draw_nu(g))
        self.w_prog = (prog[0] - prog[1]) / scale
        self.baseline = self.readout(self.w_prog)

    def read(self, t):
        pair, scale = to_pair(self.w_prog)  # re-converted at every read (apply_drift_noise)
        g = [drift_read(gi, nu, t) for gi, nu in zip(pair, self.nu)]
        w_t = (g[0] - g[1]) / scale
        alpha = self.baseline / self.readout(w_t)
        eff = (w_t * alpha * self.omega).reshape(self.w_ref.shape)
        self.mod.weight.data.copy_(eff)


class GqcimLayer:
    """One layer as gqcim's AnalogPath programs it (src/analog/path.rs, src/device/model.rs)
    with the peer check's aihwkit conventions on (analog.resplit_after_programming,
    analog.resplit_scale=programmed, analog.calibration_inputs=one-hot)."""

    def __init__(self, mod):
        self.mod = mod
        self.w_ref = mod.weight.detach().clone()
        self.alpha0 = self.w_ref.abs().max().clamp(min=1e-12) / G_MAX  # map_to_pairs

    def program(self):
        w = self.w_ref
        ideal = [w.clamp(min=0.0) / self.alpha0, (-w).clamp(min=0.0) / self.alpha0]
        prog = []
        for g in ideal:  # gqcim's order: both devices' programming noise, then both nu
            sig = (PROG[0] + PROG[1] / G_MAX * g + PROG[2] / G_MAX**2 * g * g).clamp(min=0.0)
            prog.append((g + torch.randn_like(g) * sig).clamp(min=0.0))
        d = prog[0] - prog[1]  # resplit, re-scaled to the largest programmed |weight|
        k = G_MAX / d.abs().max().clamp(min=1e-12)
        d = d * k
        self.alpha = self.alpha0 / k
        self.fresh = [d.relu(), (-d).relu()]
        self.nu = [draw_nu(g) for g in ideal]
        self.w0 = (self.fresh[0] - self.fresh[1]) * self.alpha

    def read(self, t):
        g = [drift_read(gi, nu, t) for gi, nu in zip(self.fresh, self.nu)]
        w_t = (g[0] - g[1]) * self.alpha
        gdc = self.w0.abs().sum() / w_t.abs().sum().clamp(min=1e-30)  # one-hot readout
        self.mod.weight.data.copy_(w_t * gdc)


def trial_seed(base, trial):
    """src/analog/montecarlo.rs trial_seed."""
    m = (1 << 64) - 1
    x = (((base ^ 0xA5A55A5AC3C33C3C) * 0x9E3779B97F4A7C15) & m)
    x = (x + (((trial + 1) * 0xD1B54A32D192ED03) & m)) & m
    return ((x ^ (x >> 31)) & m) & ((1 << 63) - 1)


def ci95(v):
    """Student-t 95% half-width of the mean (percentage points in, points out)."""
    from scipy import stats

    v = np.asarray(v, dtype=np.float64)
    return float(stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v)))


def summarize(gqcim_results, chain_json):
    """The markdown table of gqcim's trials against the aihwkit chain's, per time."""
    from scipy import stats

    g = json.load(open(gqcim_results))
    g_trials = {ts["t_inference"]: ts["stats"]["trials"] for ts in g["analog"]["analog_by_time"]}
    chain = json.load(open(chain_json))
    label = {1.0: "1 s", 3600.0: "1 h", 86400.0: "1 d", 2592000.0: "30 d", 31536000.0: "1 y"}
    lines = [
        f"gqcim binary {g['git_commit']}, {g['threads']} thread, seed {g['seed']}; aihwkit chain "
        f"(benches/peer_check_terms.py, variant {chain['variant']}), seeds {chain['seed']}–"
        f"{chain['seed'] + len(next(iter(chain['trials'].values()))) - 1}, 1 thread; "
        f"first {chain['images']} test images. Points; rank test: Mann-Whitney U, two-sided.",
        "",
        "| t | trials gqcim / aihwkit | gqcim: mean ± std (95% CI) | aihwkit: mean ± std (95% CI) "
        "| difference ± combined 95% CI | within? | rank test p | trials below 85% (gqcim / aihwkit) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for t in sorted(g_trials):
        if str(t) not in chain["trials"]:
            continue
        x = 100 * np.array([tr["metric"] for tr in g_trials[t]])
        y = 100 * np.array(chain["trials"][str(t)])
        d, c = x.mean() - y.mean(), math.hypot(ci95(x), ci95(y))
        p = stats.mannwhitneyu(x, y, alternative="two-sided").pvalue
        lines.append(
            f"| {label.get(t, f'{t:g} s')} | {len(x)} / {len(y)} | {x.mean():.2f} ± {x.std(ddof=1):.2f} (± {ci95(x):.2f}) "
            f"| {y.mean():.2f} ± {y.std(ddof=1):.2f} (± {ci95(y):.2f}) | {d:+.2f} ± {c:.2f} "
            f"| {'yes' if abs(d) <= c else 'no'} | {p:.2f} | {(x < 85).sum()} / {(y < 85).sum()} |")
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default="models/resnet20_fmnist.safetensors")
    p.add_argument("--quanta", help="results.json of `gqcim quantize --method gq --levels 8`")
    p.add_argument("--trials", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--images", type=int, default=1000)
    p.add_argument("--times", type=float, nargs="+", default=[1.0])
    p.add_argument("--variant", choices=["aihwkit", "gqcim", "aihwkit-gqcim-stream"], default="aihwkit")
    p.add_argument("--gqcim-results", help="gqcim eval results.json: its layer order and trials to compare with")
    p.add_argument("--check-against", metavar="TABLE:SEED", action="append", default=[],
                   help="a peer-check table whose aihwkit_trials to compare with, and the seed of its first trial "
                        "(its --seed); repeatable")
    p.add_argument("--require-match", action="store_true",
                   help="exit 1 unless every trial compared (--check-against, --gqcim-results) is reproduced exactly")
    p.add_argument("--out", help="write the per-trial accuracies here (JSON)")
    p.add_argument("--summarize", nargs=2, metavar=("GQCIM_RESULTS", "CHAIN_JSON"),
                   help="print the table of an `eval --analog` results.json against an --out of the aihwkit chain")
    args = p.parse_args()
    if args.summarize:
        print(summarize(*args.summarize))
        return
    if not args.quanta:
        p.error("--quanta is required")
    setup_threads(1)
    quanta = {k: v for k, v in json.load(open(args.quanta))["layers"].items() if "quanta" in v}
    model = resnet_cifar(20, 1, 10)
    load_checkpoint(model, args.checkpoint)
    log(f"snapped {snap_to_quanta(model, quanta)} layers")
    model.eval()
    x, y = load_fmnist_test(args.images)
    mods = dict(model.named_modules())
    gqcim_stream = args.variant in ("gqcim", "aihwkit-gqcim-stream")
    if gqcim_stream and not args.gqcim_results:
        p.error(f"--variant {args.variant} needs --gqcim-results (gqcim's layer order)")
    if gqcim_stream:
        order = json.load(open(args.gqcim_results))["analog"]["quantized_layers"]
    if args.variant == "gqcim":
        layers = [GqcimLayer(mods[n]) for n in order]
    elif args.variant == "aihwkit-gqcim-stream":
        layers = [Layer(mods[n], gqcim_order=True) for n in order]
    else:
        layers = [Layer(m) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    # Reference trials to reproduce: {time: {trial index of this run: accuracy}}.
    refs = {}
    if args.gqcim_results:
        for ts in json.load(open(args.gqcim_results))["analog"]["analog_by_time"]:
            refs.setdefault(ts["t_inference"], {}).update({i: tr["metric"] for i, tr in enumerate(ts["stats"]["trials"])})
    for spec in args.check_against:
        path, _, seed = spec.rpartition(":")
        if not path or not seed.isdigit():
            p.error(f"--check-against {spec}: expected TABLE:SEED")
        text = open(path).read()
        earlier = json.loads(text[text.index("```json") + 7:text.rindex("```")])["aihwkit_trials"]
        for key, v in earlier.items():
            refs.setdefault(float(key), {}).update({int(seed) + i - args.seed: a for i, a in enumerate(v)})
    per_time = {t: [] for t in args.times}
    compared = matched = 0
    start = time.perf_counter()
    with torch.no_grad():
        for r in range(args.trials):
            torch.manual_seed(trial_seed(args.seed, r) if gqcim_stream else args.seed + r)
            for layer in layers:
                layer.program()
                if gqcim_stream:
                    layer.read(args.times[0])  # AnalogPath::program reads at the first time
            line = []
            for k, t in enumerate(args.times):
                if gqcim_stream:  # monte_carlo_times re-seeds every read time
                    s = trial_seed(args.seed, r)
                    torch.manual_seed((((s ^ 0x5EED) + 0x9E3779B9 * k) % (1 << 64)) & ((1 << 63) - 1))
                for layer in layers:
                    layer.read(t)
                acc = accuracy(model, x, y, 500)
                per_time[t].append(acc)
                ref = refs.get(t, {}).get(r)
                if ref is not None:
                    compared += 1
                    matched += abs(acc - ref) < 1e-9
                line.append(f"t={t:g}: {acc:.4f}" + (f" (reference {ref:.4f})" if ref is not None else ""))
            log(f"trial {r} seed {args.seed + r}: " + ", ".join(line))
    for t, v in per_time.items():
        v = torch.tensor(v, dtype=torch.float64)
        log(f"t={t:g}: mean {100 * v.mean():.2f} std {100 * v.std():.2f} below 85%: {(v < 0.85).sum().item()} "
            f"of {len(v)} ({time.perf_counter() - start:.0f} s)")
    if compared:
        log(f"reproduced {matched} of {compared} reference (trial, time) accuracies exactly")
    if args.require_match and (compared == 0 or matched < compared):
        raise SystemExit(f"{args.variant}: reproduced {matched} of {compared} reference trials")
    if args.out:  # via a temporary file: an interrupted run leaves no half-written result
        with open(args.out + ".tmp", "w") as f:
            json.dump({"variant": args.variant, "seed": args.seed, "images": args.images, "compared": compared,
                       "matched": matched, "trials": {str(t): v for t, v in per_time.items()}}, f, indent=1)
        os.replace(args.out + ".tmp", args.out)


if __name__ == "__main__":
    main()
