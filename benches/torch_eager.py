#!/usr/bin/env python3
"""PyTorch eager baseline for `gqcim bench`: training-step and inference throughput.

--mode train: one step = optimizer.zero_grad(), forward, cross_entropy, backward,
    optimizer.step() with torch.optim.SGD(lr 0.1, momentum 0.9, nesterov=True,
    weight_decay 5e-4), on one fixed random batch [batch, 1, size, size] with random labels
    (train mode, so BN uses batch statistics and updates its running stats).
    `--warmup` untimed steps, then `--repeats` timed windows of `--steps` steps each;
    reports seconds per step (median over windows) and images/s.
--mode eval: eval-mode forward under torch.no_grad() over `--images` random images in
    batches of `--batch`; `--warmup` untimed passes, then `--repeats` timed passes; reports
    seconds per pass (median) and images/s.

Networks: CIFAR ResNets (`--arch cifar --depth 20|32|44|56`, or `--arch resnet20` etc.) as in
benches/resnet_cifar.py, or torchvision `resnet18` / `resnet50` (num_classes 10, conv1
replaced by a 1-input-channel conv of the same shape: 7x7, stride 2, pad 3, no bias).

Prints one JSON object on stdout; logs go to stderr.
"""
import argparse
import json
import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from resnet_cifar import log, resnet_cifar, seed_everything, setup_threads, summary  # noqa: E402


def build_model(arch, depth, in_channels=1, num_classes=10):
    """(model, canonical arch name)."""
    arch = arch.lower()
    if arch in ("cifar", "resnet-cifar"):
        return resnet_cifar(depth, in_channels, num_classes), f"resnet{depth}"
    if arch in ("resnet20", "resnet32", "resnet44", "resnet56", "resnet110"):
        d = int(arch[len("resnet"):])
        return resnet_cifar(d, in_channels, num_classes), arch
    if arch in ("resnet18", "resnet34", "resnet50"):
        import torchvision

        model = getattr(torchvision.models, arch)(weights=None, num_classes=num_classes)
        if in_channels != 3:
            old = model.conv1
            model.conv1 = nn.Conv2d(in_channels, old.out_channels, old.kernel_size, old.stride,
                                    old.padding, bias=False)
            nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
        return model, arch
    if arch == "yolo":
        return Yolo(in_channels, num_classes), arch
    if arch == "deeplabv3_resnet18":
        return DeepLabV3R18(in_channels, num_classes), arch
    raise SystemExit(f"unknown --arch {arch!r} (cifar, resnet20/32/44/56, resnet18, resnet34, resnet50, "
                     "yolo, deeplabv3_resnet18)")


# --- gqcim's dense-task networks (src/nets/yolo.rs, src/nets/deeplab.rs), layer for layer ----

def conv_bn(c_in, c_out, k, relu):
    layers = [nn.Conv2d(c_in, c_out, k, 1, k // 2, bias=False), nn.BatchNorm2d(c_out)]
    return nn.Sequential(*layers, *([nn.ReLU()] if relu else []))


class Yolo(nn.Module):
    """The YOLOX-style detector of src/nets/yolo.rs with its default shape: a CIFAR-style
    ResNet of basic blocks (stem 3x3/1, stages 16/32/64/128 of one block, each stride 2), an
    FPN over stages 2-4 (1x1 lateral + BN, nearest upsampling and addition, 3x3 + BN + ReLU,
    64 channels) and a decoupled head per level (3x3 cls and reg branches, 1x1 cls/reg/obj
    predictions with bias). Output [b, cells, 5 + C]."""

    def __init__(self, in_channels=1, num_classes=10, widths=(16, 32, 64, 128), neck=64, levels=(2, 3, 4)):
        super().__init__()
        from torchvision.models.resnet import BasicBlock

        self.stem = conv_bn(in_channels, widths[0], 3, True)
        stages, c = [], widths[0]
        for w in widths:
            down = nn.Sequential(nn.Conv2d(c, w, 1, 2, bias=False), nn.BatchNorm2d(w))
            stages.append(BasicBlock(c, w, 2, down))
            c = w
        self.stages = nn.ModuleList(stages)
        self.levels = levels
        self.lateral = nn.ModuleList(conv_bn(widths[l - 1], neck, 1, False) for l in levels)
        self.output = nn.ModuleList(conv_bn(neck, neck, 3, True) for _ in levels)
        self.heads = nn.ModuleList(
            nn.ModuleDict({"cls": conv_bn(neck, neck, 3, True), "reg": conv_bn(neck, neck, 3, True),
                           "cls_pred": nn.Conv2d(neck, num_classes, 1), "reg_pred": nn.Conv2d(neck, 4, 1),
                           "obj_pred": nn.Conv2d(neck, 1, 1)}) for _ in levels)

    def forward(self, x):
        y, outs = self.stem(x), []
        for s in self.stages:
            y = s(y)
            outs.append(y)
        lat = [conv(outs[l - 1]) for l, conv in zip(self.levels, self.lateral)]
        merged, above = [], None
        for t in reversed(lat):
            m = t if above is None else t + F.interpolate(above, size=t.shape[2:], mode="nearest")
            above = m
            merged.append(m)
        merged.reverse()
        preds = []
        for m, conv, h in zip(merged, self.output, self.heads):
            f = conv(m)
            c, r = h["cls"](f), h["reg"](f)
            o = torch.cat([h["reg_pred"](r), h["obj_pred"](r), h["cls_pred"](c)], 1)
            preds.append(o.flatten(2).transpose(1, 2))
        return torch.cat(preds, 1)


class DilatedBasicBlock(nn.Module):
    """torchvision's BasicBlock with dilation d in both 3x3 convs (torchvision raises for
    d > 1; src/nets/resnet.rs allows it)."""

    def __init__(self, c_in, c_out, stride, d):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, d, d, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, d, d, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.downsample = (nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))
                           if stride != 1 or c_in != c_out else None)

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + (x if self.downsample is None else self.downsample(x)))


class DeepLabV3R18(nn.Module):
    """src/nets/deeplab.rs's `deeplabv3_resnet18`: a resnet18 backbone (1-channel 7x7/2 stem,
    max-pool) at output stride 8 (the strides of stages 3 and 4 replaced by dilation 2 and 4,
    torchvision's rule), torchvision's ASPP with 64 channels and rates 3/6/9, a 3x3 conv + BN
    + ReLU, a 1x1 classifier with bias, bilinear upsampling to the input size."""

    def __init__(self, in_channels=1, num_classes=11):
        super().__init__()
        from torchvision.models.segmentation.deeplabv3 import ASPP

        layers = [nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(),
                  nn.MaxPool2d(3, 2, 1)]
        c_in, dilation = 64, 1
        for i, planes in enumerate([64, 128, 256, 512]):
            stride, previous = (1 if i == 0 else 2), dilation
            if i >= 2:  # replace_stride_with_dilation = [False, True, True]
                dilation *= stride
                stride = 1
            layers.append(DilatedBasicBlock(c_in, planes, stride, previous))
            layers.append(DilatedBasicBlock(planes, planes, 1, dilation))
            c_in = planes
        self.backbone = nn.Sequential(*layers)
        self.classifier = nn.Sequential(ASPP(512, [3, 6, 9], 64), nn.Conv2d(64, 64, 3, padding=1, bias=False),
                                        nn.BatchNorm2d(64), nn.ReLU(), nn.Conv2d(64, num_classes, 1))

    def forward(self, x):
        y = self.classifier(self.backbone(x))
        return F.interpolate(y, size=x.shape[2:], mode="bilinear", align_corners=False)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_train(model, args, device):
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
    x = torch.randn(args.batch, args.in_channels, args.size, args.size, device=device)
    y = torch.randint(0, args.num_classes, (args.batch,), device=device)
    model.train()

    def step():
        opt.zero_grad(set_to_none=True)
        out = model(x)
        # Dense tasks: the mean square of all outputs, the same stand-in loss gqcim's bench
        # uses for them (the speed of network + optimizer, not of a task loss).
        loss = F.cross_entropy(out, y) if out.dim() == 2 else out.square().mean()
        loss.backward()
        opt.step()
        return loss

    for _ in range(args.warmup):
        step()
    sync(device)
    per_step = []
    loss = None
    for r in range(args.repeats):
        t = time.perf_counter()
        for _ in range(args.steps):
            loss = step()
        sync(device)
        per_step.append((time.perf_counter() - t) / args.steps)
        log(f"repeat {r + 1}/{args.repeats}: {per_step[-1] * 1e3:.2f} ms/step")
    s = summary(per_step)
    return {
        "median_step_s": s["median"],
        "step_s": s["values"],
        "median_images_per_s": args.batch / s["median"],
        "images_per_s": [args.batch / v for v in s["values"]],
        "final_loss": float(loss.item()) if loss is not None else None,
    }


def bench_eval(model, args, device):
    x = torch.randn(args.images, args.in_channels, args.size, args.size, device=device)
    model.eval()

    @torch.no_grad()
    def one_pass():
        acc = None
        for i in range(0, args.images, args.batch):
            out = model(x[i : i + args.batch])
            acc = out.sum() if acc is None else acc + out.sum()
        return acc

    for _ in range(args.warmup):
        one_pass()
    sync(device)
    per_pass = []
    for r in range(args.repeats):
        t = time.perf_counter()
        one_pass()
        sync(device)
        per_pass.append(time.perf_counter() - t)
        log(f"repeat {r + 1}/{args.repeats}: {per_pass[-1]:.3f} s/pass")
    s = summary(per_pass)
    return {
        "median_pass_s": s["median"],
        "pass_s": s["values"],
        "median_images_per_s": args.images / s["median"],
        "images_per_s": [args.images / v for v in s["values"]],
    }


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mode", choices=["train", "eval"], required=True)
    p.add_argument("--arch", default="cifar", help="cifar (with --depth), resnet20/32/44/56, resnet18, resnet50")
    p.add_argument("--depth", type=int, default=20, help="CIFAR ResNet depth 6n+2 (with --arch cifar)")
    p.add_argument("--size", type=int, default=28, help="input side")
    p.add_argument("--in-channels", type=int, default=1)
    p.add_argument("--num-classes", type=int, default=10)
    p.add_argument("--batch", type=int, default=None, help="default: 128 (train), 1000 (eval)")
    p.add_argument("--steps", type=int, default=10, help="train: steps per timed repeat")
    p.add_argument("--images", type=int, default=2000, help="eval: images per pass")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps (train) / passes (eval)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch default)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    args = p.parse_args()
    if args.batch is None:
        args.batch = 128 if args.mode == "train" else 1000
    if args.repeats < 1 or args.batch < 1 or args.steps < 1 or args.images < 1:
        raise SystemExit("--repeats, --batch, --steps and --images must be positive")

    threads = setup_threads(args.threads)
    seed_everything(args.seed)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda but torch.cuda.is_available() is False")
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    model, arch = build_model(args.arch, args.depth, args.in_channels, args.num_classes)
    model.to(device)
    params = sum(t.numel() for t in model.parameters())
    log(f"{arch}: {params} parameters, mode {args.mode}, device {device}, threads {threads}")
    result = bench_train(model, args, device) if args.mode == "train" else bench_eval(model, args, device)
    out = {
        "script": "torch_eager.py",
        "mode": args.mode,
        "arch": arch,
        "parameters": params,
        **result,
        "versions": {"torch": torch.__version__, "numpy": np.__version__,
                     "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version()},
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "config": {**vars(args), "threads_effective": threads,
                   "interop_threads": torch.get_num_interop_threads()},
    }
    if args.mode == "train":
        out["optimizer"] = {"type": "SGD", "lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 5e-4}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
