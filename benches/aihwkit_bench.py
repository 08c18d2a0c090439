#!/usr/bin/env python3
"""IBM aihwkit inference baseline for `gqcim bench`: Monte-Carlo analog inference of the
CIFAR-style ResNet-20 with gqcim's device model, as closely as aihwkit 1.1.0 allows.

The network (benches/resnet_cifar.py) is loaded from a gqcim checkpoint (`--checkpoint`,
strict) or randomly initialised (seeded), converted with
`aihwkit.nn.conversion.convert_to_analog(model, InferenceRPUConfig)` (every Conv2d / Linear
becomes an analog tile; BN, ReLU, pooling and biases stay digital), and then, per repeat
(one Monte-Carlo trial, seeded with seed + repeat):

    model.eval(); model.program_analog_weights(); model.drift_analog_weights(t)   # timed: "program"
    eval-mode forward over --images random images in batches of --batch        # timed: "inference"
    accuracy on the first --eval-images Fashion-MNIST test images (if --checkpoint; untimed)

Device model (see benches/README.md for the mapping onto gqcim's `analog` config):
  * GqcimNoiseModel (a BaseNoiseModel) on SinglePairConductanceConverter(g_max=25, g_min=1):
    programming noise N(0, (sigma*(g_max-g_min))^2) on each device of the pair, clipped to
    [g_min, g_max]; then a fraction of devices stuck at g_min (and optionally at g_max);
    drift g*(t/t0)^(-nu), nu ~ N(nu_mean, nu_std) per device, clipped to [g_min, g_max].
    By default the drift acts on the very devices that were programmed (`--drift-pairs
    programmed`, as gqcim); `--drift-pairs aihwkit` uses aihwkit's stock path, which
    re-derives a fresh pair (one device at g_min) from the programmed weight before drifting.
  * Global drift compensation: GlobalDriftCompensation with gqcim's read-out (mean |y| of
    --calibration-samples Gaussian input vectors instead of aihwkit's one-hot eye()).
  * --config weights: perfect periphery (forward.is_perfect, no DAC/ADC, no noise), one tile
    per layer (mapping.max_input_size = max_output_size = 0, so the conductance scale is per
    layer as in gqcim).
  * --config periphery: + 8-bit DAC (inp_res 1/(2^8-2), abs-max noise management), 8-bit ADC
    (out_res 1/(2^8-2), out_bound 12, no bound management), read noise as output-referred
    weight noise (w_noise_type ADDITIVE_CONSTANT, w_noise from --read-noise), 256x256 tiles.

Prints one JSON object on stdout (medians and all repeat values); logs go to stderr.
"""
import argparse
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

import aihwkit  # noqa: E402
from aihwkit.inference.compensation.drift import GlobalDriftCompensation  # noqa: E402
from aihwkit.inference.converter.conductance import SinglePairConductanceConverter  # noqa: E402
from aihwkit.inference.noise.base import BaseNoiseModel  # noqa: E402
from aihwkit.nn.conversion import convert_to_analog  # noqa: E402
from aihwkit.simulator.configs import InferenceRPUConfig, TorchInferenceRPUConfig  # noqa: E402
from aihwkit.simulator.parameters.enums import (  # noqa: E402
    BoundManagementType,
    NoiseManagementType,
    WeightClipType,
    WeightModifierType,
    WeightNoiseType,
    WeightRemapType,
)


class GqcimNoiseModel(BaseNoiseModel):
    """gqcim's device model (src/analog/device.rs) as an aihwkit noise model.

    Programming (per device of the differential pair, in µS):
        g = clip(g_target + N(0, (sigma * (g_max - g_min))^2), g_min, g_max)
        then a fraction `stuck_gmin` of devices -> g_min, `stuck_gmax` -> g_max
    Drift after t seconds (t0 <= t), nu ~ N(nu_mean, nu_std) drawn per device at programming:
        g(t) = clip(g * (t / t0)^(-nu), g_min, g_max)

    aihwkit's BaseNoiseModel converts the *programmed weights* back into a fresh conductance
    pair before drifting; with `drift_pairs="programmed"` this model instead keeps the
    programmed pair (and its conductance scale) in the tile's drift parameters, so drift acts
    on the devices that were actually programmed (both of them), as gqcim does.
    """

    def __init__(self, g_min=1.0, g_max=25.0, sigma=0.02, stuck_gmin=0.01, stuck_gmax=0.0,
                 nu_mean=0.05, nu_std=0.02, t0=1.0, drift=True, drift_pairs="programmed"):
        super().__init__(SinglePairConductanceConverter(g_max=g_max, g_min=g_min))
        self.g_min = float(g_min)
        self.g_max = float(g_max)
        self.sigma = float(sigma)
        self.stuck_gmin = float(stuck_gmin)
        self.stuck_gmax = float(stuck_gmax)
        self.nu_mean = float(nu_mean)
        self.nu_std = float(nu_std)
        self.t0 = float(t0)
        self.drift = bool(drift)
        self.drift_pairs = drift_pairs

    # --- per-conductance hooks (the BaseNoiseModel interface) ---------------------------
    @torch.no_grad()
    def apply_programming_noise_to_conductance(self, g_target):
        g = g_target
        if self.sigma > 0:
            g = g + torch.randn_like(g) * (self.sigma * (self.g_max - self.g_min))
        g = g.clamp(self.g_min, self.g_max)
        if self.stuck_gmin > 0 or self.stuck_gmax > 0:
            u = torch.rand_like(g)
            g = torch.where(u < self.stuck_gmin, torch.full_like(g, self.g_min), g)
            high = (u >= self.stuck_gmin) & (u < self.stuck_gmin + self.stuck_gmax)
            g = torch.where(high, torch.full_like(g, self.g_max), g)
        return g

    @torch.no_grad()
    def generate_drift_coefficients(self, g_target):
        if not self.drift:
            return None
        return torch.randn_like(g_target) * self.nu_std + self.nu_mean

    @torch.no_grad()
    def apply_drift_noise_to_conductance(self, g_prog, drift_noise_param, t_inference):
        if drift_noise_param is None or t_inference <= 0:
            return g_prog
        t = max(float(t_inference), self.t0)
        factor = torch.exp(-drift_noise_param * math.log(t / self.t0))
        return (g_prog * factor).clamp(self.g_min, self.g_max)

    # --- keep the programmed pair for drift ---------------------------------------------
    @torch.no_grad()
    def apply_programming_noise(self, weights):
        if self.drift_pairs != "programmed":
            return super().apply_programming_noise(weights)
        targets, params = self.g_converter.convert_to_conductances(weights)
        programmed = [self.apply_programming_noise_to_conductance(g) for g in targets]
        nus = [self.generate_drift_coefficients(g) for g in targets]
        noisy = self.g_converter.convert_back_to_weights(programmed, params)
        # Stored by the tile as `drift_noise_parameters` and handed back to apply_drift_noise.
        return noisy, [{"g_prog": programmed, "nu": nus, "params": params}]

    @torch.no_grad()
    def apply_drift_noise(self, weights, drift_noise_parameters, t_inference):
        if (self.drift_pairs != "programmed" or not drift_noise_parameters
                or not isinstance(drift_noise_parameters[0], dict)):
            return super().apply_drift_noise(weights, drift_noise_parameters, t_inference)
        state = drift_noise_parameters[0]
        drifted = [self.apply_drift_noise_to_conductance(g, nu, t_inference)
                   for g, nu in zip(state["g_prog"], state["nu"])]
        return self.g_converter.convert_back_to_weights(drifted, state["params"])


class GqcimDriftCompensation(GlobalDriftCompensation):
    """GlobalDriftCompensation (one scale per tile: mean|y(t0)| / mean|y(t)|) read out with
    gqcim's calibration inputs: `samples` standard-normal vectors instead of eye(in_size).
    The same read-out tensor is used for the baseline and after drift (aihwkit caches it)."""

    def __init__(self, samples=256):
        super().__init__()
        self.samples = int(samples)

    @torch.no_grad()
    def get_readout_tensor(self, in_size):
        return torch.randn(self.samples, in_size)

    def __str__(self):
        return f"{self.__class__.__name__}(samples={self.samples})"


def read_noise_to_w_noise(model, sigma, g_min, g_max):
    """gqcim read noise g -> g(1 + sigma*eps) per device (fresh per forward), expressed as
    aihwkit's output-referred additive weight noise in normalised weight units (|w| <= 1):
    per weight var = sigma^2 (g+^2 + g-^2) / (g_max - g_min)^2 with the ideal pair
    (g+ = g_min + |u|(g_max - g_min), g- = g_min for u = w / max|w_layer|); w_noise is the
    square root of its mean over all conv/linear weights of the model (a constant std
    cannot follow the conductance dependence)."""
    if sigma <= 0:
        return 0.0
    dg = g_max - g_min
    total, n = 0.0, 0
    for m in model.modules():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
            u = (m.weight.detach().abs() / m.weight.detach().abs().max().clamp_min(1e-12)).double()
            g_on = g_min + u * dg
            total += float((g_on**2 + g_min**2).sum())
            n += u.numel()
    return sigma * math.sqrt(total / max(n, 1)) / dg


def make_rpu_config(args, w_noise):
    rpu = TorchInferenceRPUConfig() if args.simulator == "torch" else InferenceRPUConfig()
    rpu.noise_model = GqcimNoiseModel(
        g_min=args.g_min, g_max=args.g_max, sigma=args.sigma, stuck_gmin=args.stuck_gmin,
        stuck_gmax=args.stuck_gmax, nu_mean=args.nu_mean, nu_std=args.nu_std, t0=args.t0,
        drift=args.t_inference > 0, drift_pairs=args.drift_pairs)
    rpu.drift_compensation = GqcimDriftCompensation(args.calibration_samples) if args.gdc else None
    # Weights in the tile are scaled to max|w| = 1 per tile (digital out-scale), as gqcim
    # normalises each layer's weights by its bound before the periphery.
    rpu.mapping.weight_scaling_omega = 1.0
    rpu.mapping.weight_scaling_columnwise = False
    rpu.mapping.digital_bias = True
    rpu.mapping.learn_out_scaling = False
    rpu.clip.type = WeightClipType.NONE
    rpu.remap.type = WeightRemapType.NONE
    rpu.modifier.type = WeightModifierType.NONE
    f = rpu.forward
    f.inp_noise = 0.0
    f.out_noise = 0.0
    f.out_noise_std = 0.0
    f.ir_drop = 0.0
    f.out_nonlinearity = 0.0
    f.w_read_asymmetry_dtod = 0.0
    f.v_offset_std = 0.0
    f.r_series = 0.0
    f.bound_management = BoundManagementType.NONE
    if args.config == "weights":
        f.is_perfect = True
        f.inp_res = -1.0
        f.out_res = -1.0
        f.inp_bound = -1.0  # <= 0: no clipping (ignored anyway with is_perfect)
        f.out_bound = -1.0
        f.noise_management = NoiseManagementType.NONE
        f.w_noise = 0.0
        f.w_noise_type = WeightNoiseType.NONE
        rpu.mapping.max_input_size = 0  # one tile per layer: per-layer conductance scale
        rpu.mapping.max_output_size = 0
    else:
        f.is_perfect = False
        f.inp_bound = 1.0
        f.inp_res = 1.0 / (2 ** (args.dac_bits) - 2)  # aihwkit's "n-bit" convention
        f.out_bound = args.out_bound
        f.out_res = 1.0 / (2 ** (args.adc_bits) - 2)
        f.noise_management = NoiseManagementType.ABS_MAX
        f.nm_thres = 0.0
        f.w_noise = w_noise
        f.w_noise_type = WeightNoiseType.ADDITIVE_CONSTANT if w_noise > 0 else WeightNoiseType.NONE
        rpu.mapping.max_input_size = args.tile
        rpu.mapping.max_output_size = args.tile
    return rpu


def describe_tiles(model):
    """Analog tiles per converted layer (layers split into 256x256 tiles have several)."""
    from aihwkit.nn import AnalogConv2d, AnalogLinear

    return {name: sum(1 for _ in mod.analog_tiles()) for name, mod in model.named_modules()
            if isinstance(mod, (AnalogConv2d, AnalogLinear))}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_trial_args(p, images=2000, batch=1000, eval_images=1000)
    p.add_argument("--warmup", type=int, default=1, help="untimed warm-up batches (after one programming)")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--simulator", choices=["rpucuda", "torch"], default="rpucuda",
                   help="rpucuda: InferenceRPUConfig (aihwkit's C++ RPUCuda tiles, the default); "
                        "torch: TorchInferenceRPUConfig (pure-PyTorch tiles; no w_noise, so no read noise)")
    p.add_argument("--drift-pairs", choices=["programmed", "aihwkit"], default="programmed")
    # periphery
    p.add_argument("--dac-bits", type=int, default=8)
    p.add_argument("--adc-bits", type=int, default=8)
    p.add_argument("--out-bound", type=float, default=12.0)
    p.add_argument("--tile", type=int, default=256, help="periphery: max_input_size = max_output_size")
    p.add_argument("--read-noise", type=float, default=0.01,
                   help="periphery: gqcim read-noise sigma (relative to g), mapped to w_noise")
    p.add_argument("--w-noise", type=float, default=None, help="periphery: set aihwkit w_noise directly")
    args = p.parse_args()
    if args.repeats < 1 or args.images < 1 or args.batch < 1:
        raise SystemExit("--repeats, --images and --batch must be positive")
    if args.device == "cuda":
        from aihwkit.simulator.rpu_base import cuda as rpu_cuda

        if not torch.cuda.is_available():
            raise SystemExit("--device cuda but torch.cuda.is_available() is False")
        if args.simulator == "rpucuda" and not rpu_cuda.is_compiled():
            raise SystemExit("--device cuda: this aihwkit build has no CUDA support (rpu_base.cuda.is_compiled() "
                             "is False); use --simulator torch or --device cpu")

    threads = setup_threads(args.threads)
    seed_everything(args.seed)
    warnings.filterwarnings("ignore", category=UserWarning)
    device = torch.device(args.device)

    model = resnet_cifar(args.depth, 1, 10)
    if args.checkpoint:
        state, res = load_checkpoint(model, args.checkpoint)
        log(f"strict load of {args.checkpoint}: {len(state)} tensors, {res}")
    model.eval()

    eval_x = eval_y = None
    digital_acc = None
    if args.checkpoint and args.eval_images > 0:
        eval_x, eval_y = load_fmnist_test(args.eval_images)
        digital_acc = accuracy(model, eval_x, eval_y, args.batch)
        log(f"digital fp32 accuracy on {eval_x.shape[0]} test images: {digital_acc:.4f}")

    if args.config == "periphery":
        w_noise = args.w_noise if args.w_noise is not None else read_noise_to_w_noise(
            model, args.read_noise, args.g_min, args.g_max)
    else:
        w_noise = 0.0
    if args.simulator == "torch" and w_noise > 0:
        raise SystemExit("--simulator torch does not support forward.w_noise (aihwkit raises ConfigError); "
                         "use --read-noise 0 or --simulator rpucuda")
    rpu = make_rpu_config(args, w_noise)
    analog = convert_to_analog(model, rpu)
    analog.to(device)
    analog.eval()
    tiles = describe_tiles(analog)
    n_tiles = sum(1 for _ in analog.analog_tiles())
    log(f"config {args.config}: {n_tiles} analog tiles, w_noise {w_noise:.5g}")

    x = torch.randn(args.images, 1, 28, 28, generator=torch.Generator().manual_seed(args.seed)).to(device)

    @torch.no_grad()
    def program():
        analog.eval()
        analog.program_analog_weights()
        if args.t_inference > 0:
            analog.drift_analog_weights(args.t_inference)

    @torch.no_grad()
    def infer(n_batches=None):
        acc = None
        for k, i in enumerate(range(0, args.images, args.batch)):
            if n_batches is not None and k >= n_batches:
                break
            out = analog(x[i : i + args.batch])
            acc = out.sum() if acc is None else acc + out.sum()
        return acc

    torch.manual_seed(args.seed + 10_000)
    program()
    if args.warmup > 0:
        infer(args.warmup)

    gdc = []

    def record_gdc():
        alphas = [float(tile.alpha.reshape(-1)[0]) for tile in analog.analog_tiles() if hasattr(tile, "alpha")]
        gdc.append(float(np.mean(alphas)) if alphas else 1.0)

    evaluate = None if eval_x is None else (lambda: accuracy(analog, eval_x, eval_y, args.batch, args.device))
    trials = run_trials(program, infer, args.repeats, args.seed, args.images, evaluate, record_gdc)
    out = {
        "script": "aihwkit_bench.py",
        "config_name": args.config,
        "simulator": args.simulator,
        "rpu_config_class": type(rpu).__name__,
        "arch": f"resnet{args.depth}",
        "checkpoint": args.checkpoint,
        "images": args.images,
        "batch": args.batch,
        **trials,
        "eval_images": int(eval_x.shape[0]) if eval_x is not None else 0,
        "digital_accuracy": digital_acc,
        "gdc_alpha_mean_per_trial": gdc,
        "analog_tiles": n_tiles,
        "tiles_per_layer": tiles,
        "w_noise": w_noise,
        "versions": {"torch": torch.__version__, "aihwkit": aihwkit.__version__, "numpy": np.__version__},
        "config": {**vars(args), "threads_effective": threads},
        "rpu_config": {
            "forward": {k: (v.value if hasattr(v, "value") else v) for k, v in vars(rpu.forward).items()},
            "mapping": dict(vars(rpu.mapping)),
            "noise_model": str(rpu.noise_model),
            "g_converter": str(rpu.noise_model.g_converter),
            "drift_compensation": str(rpu.drift_compensation),
        },
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
