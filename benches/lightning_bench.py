#!/usr/bin/env python3
"""IBM aihwkit-lightning baseline for `gqcim bench`: Monte-Carlo analog inference of the
CIFAR-style ResNet-20 with gqcim's weights-only device model.

aihwkit-lightning 2.1.0 (it requires torch 2.13.0, so it lives in its own venv; see
`make bench`) has analog layers for training and inference but no programming step or
device model: on CPU its layers run as unfold + matmul in plain PyTorch. A Monte-Carlo
trial is therefore written here as the same work gqcim's trial does, on each converted
layer's weight:

    map w to a differential pair in [g_min, g_max] µS (per-layer scale, zero at g_min);
    programming noise N(0, (sigma (g_max - g_min))^2) per device, clipped to the window;
    a fraction --stuck-gmin of devices stuck at g_min (and --stuck-gmax at g_max);
    drift g (t / t0)^(-nu), nu ~ N(nu_mean, nu_std) per device, clipped;
    global drift compensation: mean |y| of --calibration-samples Gaussian inputs, fresh
    over drifted; the weight written back is alpha (G+ - G-) times that factor;

then eval-mode inference over --images random images (timed with the programming, as one
trial) and accuracy on the first --eval-images Fashion-MNIST test images (untimed).

The periphery configuration is not mapped: lightning's DAC quantizes against a static
(learned or calibrated) input range, not gqcim's and aihwkit's per-sample abs-max, so the
same non-idealities cannot be set term by term; the script says so when asked.

Prints one JSON object on stdout (the keys of aihwkit_bench.py); logs go to stderr.
"""
import argparse
import contextlib
import json
import math
import os
import sys
import warnings

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from resnet_cifar import (  # noqa: E402
    accuracy,
    add_trial_args,
    load_checkpoint,
    load_fmnist_test,
    log,
    resnet_cifar,
    run_trials,
    seed_everything,
    setup_threads,
)

# aihwkit-lightning prints its triton fallback notice on stdout; stdout is for the JSON only.
with contextlib.redirect_stdout(sys.stderr):
    import aihwkit_lightning  # noqa: E402
    from aihwkit_lightning.nn.conversion import convert_to_analog  # noqa: E402
    from aihwkit_lightning.simulator.configs import TorchInferenceRPUConfig  # noqa: E402


def analog_layers(model):
    return [m for m in model.modules() if hasattr(m, "weight") and m.weight is not None
            and m.weight.dim() in (2, 4) and "Analog" in type(m).__name__]


@torch.no_grad()
def program_layer(target, a):
    """One trial's weights for one layer: the device model of the module docstring."""
    dg = a.g_max - a.g_min
    alpha = target.abs().max().clamp_min(1e-12) / dg
    pairs = [target.clamp_min(0) / alpha + a.g_min, (-target).clamp_min(0) / alpha + a.g_min]
    fresh, drifted = [], []
    for g in pairs:
        g = (g + torch.randn_like(g) * (a.sigma * dg)).clamp(a.g_min, a.g_max)
        u = torch.rand_like(g)
        g = torch.where(u < a.stuck_gmin, torch.full_like(g, a.g_min), g)
        if a.stuck_gmax > 0:
            high = (u >= a.stuck_gmin) & (u < a.stuck_gmin + a.stuck_gmax)
            g = torch.where(high, torch.full_like(g, a.g_max), g)
        fresh.append(g)
        if a.t_inference > 0:
            nu = torch.randn_like(g) * a.nu_std + a.nu_mean
            t = max(a.t_inference, a.t0)
            g = (g * torch.exp(-nu * math.log(t / a.t0))).clamp(a.g_min, a.g_max)
        drifted.append(g)
    w0 = (fresh[0] - fresh[1]) * alpha
    wt = (drifted[0] - drifted[1]) * alpha
    if a.gdc and a.t_inference > 0:
        cal = torch.randn(a.calibration_samples, target[0].numel())
        y0 = cal @ w0.reshape(w0.shape[0], -1).t()
        yt = cal @ wt.reshape(wt.shape[0], -1).t()
        wt = wt * (y0.abs().sum() / yt.abs().sum().clamp_min(1e-30))
    return wt


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_trial_args(p, images=500, batch=500, eval_images=300)
    args = p.parse_args()
    if args.config == "periphery":
        raise SystemExit("aihwkit-lightning: the periphery configuration is not mapped (its DAC uses a "
                         "static input range, not the per-sample abs-max of gqcim and aihwkit)")
    threads = setup_threads(args.threads)
    seed_everything(args.seed)
    warnings.filterwarnings("ignore")

    model = resnet_cifar(args.depth, 1, 10)
    if args.checkpoint:
        load_checkpoint(model, args.checkpoint)
    model.eval()
    eval_x = eval_y = None
    digital_acc = None
    if args.checkpoint and args.eval_images > 0:
        eval_x, eval_y = load_fmnist_test(args.eval_images)
        digital_acc = accuracy(model, eval_x, eval_y, args.batch)
    rpu = TorchInferenceRPUConfig()  # ideal forward: no DAC/ADC, no output noise
    analog = convert_to_analog(model, rpu)
    analog.eval()
    layers = analog_layers(analog)
    targets = [m.weight.detach().clone() for m in layers]
    log(f"aihwkit-lightning {aihwkit_lightning.__version__}: {len(layers)} analog layers")
    x = torch.randn(args.images, 1, 28, 28, generator=torch.Generator().manual_seed(args.seed))

    @torch.no_grad()
    def program():
        for m, t in zip(layers, targets):
            m.weight.data.copy_(program_layer(t, args))

    @torch.no_grad()
    def infer():
        acc = None
        for i in range(0, args.images, args.batch):
            s = analog(x[i : i + args.batch]).sum()
            acc = s if acc is None else acc + s
        return acc

    torch.manual_seed(args.seed + 10_000)
    program()
    infer()
    evaluate = None if eval_x is None else (lambda: accuracy(analog, eval_x, eval_y, args.batch))
    trials = run_trials(program, infer, args.repeats, args.seed, args.images, evaluate)
    print(json.dumps({
        "script": "lightning_bench.py",
        "config_name": args.config,
        "arch": f"resnet{args.depth}",
        "images": args.images,
        "batch": args.batch,
        **trials,
        "eval_images": int(eval_x.shape[0]) if eval_x is not None else 0,
        "digital_accuracy": digital_acc,
        "versions": {"torch": torch.__version__, "aihwkit_lightning": aihwkit_lightning.__version__,
                     "numpy": np.__version__},
        "config": {**vars(args), "threads_effective": threads},
    }))


if __name__ == "__main__":
    main()
