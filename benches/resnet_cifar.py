#!/usr/bin/env python3
"""CIFAR-style ResNet (He et al., CVPR 2016, sec. 4.2) with gqcim's state-dict names.

The module tree mirrors `cifar_resnet` in src/nets/resnet.rs exactly, so a checkpoint written
by the Rust side (e.g. models/resnet20_fmnist.safetensors) loads with
`load_state_dict(..., strict=True)`:

    conv1 (3x3, c_in->16, stride 1, pad 1, no bias), bn1, relu
    layer1/2/3: n = (depth-2)/6 torchvision-style BasicBlocks, widths 16/32/64, the first block
        of layer2/3 with stride 2; `downsample.0` (1x1 conv, stride s, no bias) + `downsample.1`
        (BN) when the stride is not 1 or the width changes (option B shortcuts)
    global average pool, fc (Linear(64, classes), with bias)

BN uses PyTorch defaults (eps 1e-5, momentum 0.1). Init as torchvision: convs
kaiming_normal_(mode='fan_out', nonlinearity='relu'), BN weight 1 / bias 0, Linear default.

Also holds the Fashion-MNIST IDX reader used by the other bench scripts.

Run as a script it checks strict loading of a checkpoint and its eval-mode accuracy on the
first N Fashion-MNIST test images, printing one JSON object on stdout:

    python benches/resnet_cifar.py --checkpoint models/resnet20_fmnist.safetensors --images 1000
"""
import argparse
import gzip
import json
import os
import struct
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

FMNIST_DIR = "/usr/share/datasets/fashion-mnist"
FMNIST_MEAN = 0.2860
FMNIST_STD = 0.3530


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def setup_threads(threads):
    """torch.set_num_threads(threads) (if > 0) and one inter-op thread (if still possible)."""
    if threads and threads > 0:
        torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass  # already set, or parallel work has started
    return torch.get_num_threads()


def seed_everything(seed):
    import random

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def summary(values):
    """Median and all values (in the order measured)."""
    return {"median": float(np.median(values)) if len(values) else float("nan"),
            "values": [float(v) for v in values]}


class BasicBlock(nn.Module):
    """Two 3x3 convs (torchvision `BasicBlock` names)."""

    def __init__(self, c_in, c_out, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        if stride != 1 or c_in != c_out:
            self.downsample = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out)
            )
        else:
            self.downsample = None

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        shortcut = x if self.downsample is None else self.downsample(x)
        return F.relu(y + shortcut)


class CifarResNet(nn.Module):
    def __init__(self, depth, in_channels=1, num_classes=10):
        super().__init__()
        if (depth - 2) % 6 != 0 or depth < 8:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2 (20, 32, 44, 56, ...), got {depth}")
        n = (depth - 2) // 6
        self.depth = depth
        self.conv1 = nn.Conv2d(in_channels, 16, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        c_in = 16
        for i, w in enumerate((16, 32, 64)):
            blocks = []
            for b in range(n):
                stride = 2 if (b == 0 and i > 0) else 1
                blocks.append(BasicBlock(c_in, w, stride))
                c_in = w
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        self.fc = nn.Linear(64, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.fc(x)


def resnet_cifar(depth, in_channels=1, num_classes=10):
    """CIFAR-style ResNet-`depth` (20/32/44/56/...) with gqcim / torchvision state-dict names."""
    return CifarResNet(depth, in_channels, num_classes)


def add_trial_args(p, images, batch, eval_images):
    """The options the Monte-Carlo peer scripts (aihwkit_bench.py, lightning_bench.py) share: the
    run, and gqcim's weights-only device model with the defaults of `gqcim bench`'s
    `weights_only_device` (programming noise, stuck-at faults, power-law drift, global drift
    compensation)."""
    p.add_argument("--config", choices=["weights", "periphery"], default="weights")
    p.add_argument("--depth", type=int, default=20)
    p.add_argument("--checkpoint", default=None, help="gqcim safetensors checkpoint (strict load)")
    p.add_argument("--images", type=int, default=images, help="random images per timed inference pass")
    p.add_argument("--batch", type=int, default=batch)
    p.add_argument("--eval-images", type=int, default=eval_images,
                   help="first N Fashion-MNIST test images for accuracy (with --checkpoint; 0: skip)")
    p.add_argument("--repeats", type=int, default=3, help="Monte-Carlo trials (each timed)")
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch default)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--g-min", type=float, default=1.0)
    p.add_argument("--g-max", type=float, default=25.0)
    p.add_argument("--sigma", type=float, default=0.02, help="programming noise, relative to g_max - g_min")
    p.add_argument("--stuck-gmin", type=float, default=0.01)
    p.add_argument("--stuck-gmax", type=float, default=0.0)
    p.add_argument("--nu-mean", type=float, default=0.05)
    p.add_argument("--nu-std", type=float, default=0.02)
    p.add_argument("--t0", type=float, default=1.0)
    p.add_argument("--t-inference", type=float, default=86400.0, help="drift time in s (0: no drift)")
    p.add_argument("--no-gdc", dest="gdc", action="store_false", help="disable global drift compensation")
    p.add_argument("--calibration-samples", type=int, default=256)


def run_trials(program, infer, repeats, seed, images, evaluate=None, after=None):
    """The timed Monte-Carlo trials of the peer scripts. Per repeat r: seed torch with seed + r,
    time program() and infer() (one trial), then, untimed, after() and evaluate() -> accuracy.
    Returns the trial keys of the scripts' JSON (medians and every repeat value)."""
    prog_s, infer_s, trial_s, accs = [], [], [], []
    for r in range(repeats):
        torch.manual_seed(seed + r)
        t = time.perf_counter()
        program()
        t1 = time.perf_counter()
        infer()
        t2 = time.perf_counter()
        prog_s.append(t1 - t)
        infer_s.append(t2 - t1)
        trial_s.append(t2 - t)
        if after is not None:
            after()
        msg = f"trial {r + 1}/{repeats}: program+drift {prog_s[-1]:.3f}s, inference {infer_s[-1]:.3f}s"
        if evaluate is not None:
            accs.append(evaluate())
            msg += f", accuracy {accs[-1]:.4f}"
        log(msg)
    ips = [images / s for s in infer_s]
    tips = [images / s for s in trial_s]
    return {
        "median_images_per_s": float(np.median(ips)),
        "images_per_s": ips,
        "median_inference_s": float(np.median(infer_s)),
        "inference_s": infer_s,
        "median_program_drift_s": float(np.median(prog_s)),
        "program_drift_s": prog_s,
        "median_trial_s": float(np.median(trial_s)),
        "trial_s": trial_s,
        "median_trial_images_per_s": float(np.median(tips)),
        "trial_images_per_s": tips,
        "accuracy": summary(accs) if accs else None,
        "accuracy_mean": float(np.mean(accs)) if accs else None,
    }


def load_checkpoint(model, path):
    """Strictly loads a safetensors state dict (as written by gqcim) into `model`."""
    from safetensors.torch import load_file

    state = load_file(path)
    result = model.load_state_dict(state, strict=True)
    return state, result


def snap_to_quanta(model, quanta):
    """Snaps every conv/linear weight named in `quanta` (gqcim `quantize` results.json
    "layers") to its layer's levels with gqcim's midpoint thresholds (w <= th[i] -> level i,
    as gqcim's first threshold above the value); returns how many layers were snapped."""
    n = 0
    with torch.no_grad():
        for name, mod in model.named_modules():
            if name in quanta and hasattr(mod, "weight"):
                lv = torch.tensor(quanta[name]["quanta"], dtype=torch.float64)
                th = torch.tensor(quanta[name]["thresholds"], dtype=torch.float64)
                idx = torch.bucketize(mod.weight.double(), th)
                mod.weight.copy_(lv[idx].to(mod.weight.dtype))
                n += 1
    return n


def _read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic = struct.unpack(">I", data[:4])[0]
    ndim = magic & 0xFF
    dims = struct.unpack(">" + "I" * ndim, data[4 : 4 + 4 * ndim])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load_fmnist_test(n=0, root=FMNIST_DIR):
    """The first `n` (0: all) Fashion-MNIST test images, normalised as gqcim does
    ((x/255 - 0.2860)/0.3530), as float32 [n, 1, 28, 28], and int64 labels [n]."""
    images = _read_idx(os.path.join(root, "t10k-images-idx3-ubyte.gz"))
    labels = _read_idx(os.path.join(root, "t10k-labels-idx1-ubyte.gz"))
    if n and n > 0:
        images, labels = images[:n], labels[:n]
    x = torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)
    x = (x - FMNIST_MEAN) / FMNIST_STD
    return x, torch.from_numpy(labels.astype(np.int64))


@torch.no_grad()
def accuracy(model, x, y, batch=1000, device="cpu"):
    model.eval()
    correct = 0
    for i in range(0, x.shape[0], batch):
        logits = model(x[i : i + batch].to(device))
        correct += (logits.argmax(1).cpu() == y[i : i + batch]).sum().item()
    return correct / max(1, x.shape[0])


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--depth", type=int, default=20)
    p.add_argument("--in-channels", type=int, default=1)
    p.add_argument("--num-classes", type=int, default=10)
    p.add_argument("--checkpoint", default="models/resnet20_fmnist.safetensors")
    p.add_argument("--images", type=int, default=1000, help="first N test images (0: all 10k)")
    p.add_argument("--batch", type=int, default=1000)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    args = p.parse_args()

    threads = setup_threads(args.threads)
    seed_everything(args.seed)
    model = resnet_cifar(args.depth, args.in_channels, args.num_classes)
    state, result = load_checkpoint(model, args.checkpoint)
    log(f"strict load of {args.checkpoint}: {len(state)} tensors, {result}")
    model.to(args.device)
    x, y = load_fmnist_test(args.images)
    t = time.perf_counter()
    acc = accuracy(model, x, y, args.batch, args.device)
    secs = time.perf_counter() - t
    print(json.dumps({
        "script": "resnet_cifar.py",
        "checkpoint": args.checkpoint,
        "strict_load": "ok",
        "missing_keys": list(result.missing_keys),
        "unexpected_keys": list(result.unexpected_keys),
        "tensors": len(state),
        "parameters": sum(p.numel() for p in model.parameters()),
        "images": int(x.shape[0]),
        "accuracy": acc,
        "eval_seconds": secs,
        "versions": {"torch": torch.__version__, "numpy": np.__version__},
        "config": {**vars(args), "threads_effective": threads},
    }))


if __name__ == "__main__":
    main()
