#!/usr/bin/env python3
"""scikit-learn KMeans baseline for fitting N quantization levels per layer (1-D k-means).

Builds ResNet-50-shaped random weights (torchvision.models.resnet50(weights=None), the stock
ImageNet shapes: 3-channel stem, 1000-class fc, torchvision's init, after
torch.manual_seed(--seed)) and keeps every conv and linear weight (53 convs incl. the 4
downsample convs, plus fc.weight: 54 tensors, 25.50M weights). For each layer, in state-dict
order, it runs

    KMeans(n_clusters=N, n_init=1, random_state=seed).fit(w.reshape(-1, 1))

and reports the total and per-layer fit seconds and squared error. Timing covers the
`fit` calls only (not tensor generation, conversion or the error check).

Squared error: `sklearn_inertia` is KMeans' own inertia_ (computed in the input dtype);
`squared_error` is recomputed in float64 by assigning every weight to its nearest centre, i.e.
the same quantity gqcim's `squared_error(w, levels)` computes; sums over layers are reported.

--export PATH.safetensors writes the exact data that was fitted (flat dict name -> float32
tensor; the original shapes, or 1-D if --subsample picked a subset) so that the Rust bench can
fit gq / gq-exact on identical data and compare squared errors directly.

Full runs take minutes (2.4M-weight layers in layer4); use --max-layers / --subsample for
smoke tests.
"""
import argparse
import contextlib
import json
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from resnet_cifar import log, seed_everything, setup_threads, summary  # noqa: E402


def resnet50_weights(seed):
    """Ordered (name, float32 tensor) of ResNet-50's conv and linear weights."""
    import torchvision

    torch.manual_seed(seed)
    model = torchvision.models.resnet50(weights=None)
    out = []
    for name, mod in model.named_modules():
        if isinstance(mod, (torch.nn.Conv2d, torch.nn.Linear)):
            out.append((f"{name}.weight", mod.weight.detach().clone().contiguous()))
    return out


def nearest_sse(x64, centers):
    """Sum of squared distances of x (float64, 1-D) to the nearest of `centers`."""
    c = np.sort(np.asarray(centers, dtype=np.float64).ravel())
    mids = 0.5 * (c[1:] + c[:-1])
    idx = np.searchsorted(mids, x64)
    return float(np.sum((x64 - c[idx]) ** 2))


def fit_one(args, name, w, per_layer, KMeans):
    """Fits one layer; appends its record to per_layer (timing covers km.fit only)."""
    x = w.reshape(-1).numpy().astype(args.dtype).reshape(-1, 1)
    km = KMeans(n_clusters=args.levels, n_init=1, random_state=args.seed, max_iter=args.max_iter, tol=args.tol)
    t = time.perf_counter()
    km.fit(x)
    secs = time.perf_counter() - t
    centers = np.sort(km.cluster_centers_.ravel())
    sse = nearest_sse(x.ravel().astype(np.float64), centers)
    per_layer.append({"name": name, "shape": list(w.shape), "numel": int(x.shape[0]), "seconds": secs,
                      "squared_error": sse, "sklearn_inertia": float(km.inertia_),
                      "iterations": int(km.n_iter_), "levels": centers.tolist()})
    log(f"{name:<32} n={x.shape[0]:>8} {secs:7.3f}s iters={km.n_iter_:>3} sse={sse:.6g}")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--levels", type=int, default=8, help="n_clusters")
    p.add_argument("--seed", type=int, default=0, help="torch seed of the weights and KMeans random_state")
    p.add_argument("--max-layers", type=int, default=0, help="only the first K layers (0: all 54)")
    p.add_argument("--subsample", type=int, default=0,
                   help="fit at most this many weights per layer (a seeded random subset; 0: all)")
    p.add_argument("--dtype", choices=["float64", "float32"], default="float64",
                   help="dtype handed to KMeans (float64 keeps inertia comparable to gqcim's f64 error)")
    p.add_argument("--max-iter", type=int, default=300)
    p.add_argument("--tol", type=float, default=1e-4)
    p.add_argument("--export", default=None, help="write the fitted data as safetensors (name -> float32)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads and threadpoolctl limit for sklearn's OpenMP/BLAS (0: library default)")
    args = p.parse_args()

    threads = setup_threads(args.threads)
    seed_everything(args.seed)
    import sklearn
    from sklearn.cluster import KMeans

    layers = resnet50_weights(args.seed)
    if args.max_layers and args.max_layers > 0:
        layers = layers[: args.max_layers]
    rng = np.random.default_rng(args.seed)
    data = []
    for name, w in layers:
        if args.subsample and args.subsample > 0 and w.numel() > args.subsample:
            idx = np.sort(rng.choice(w.numel(), size=args.subsample, replace=False))
            w = w.reshape(-1)[torch.from_numpy(idx)].contiguous()
        data.append((name, w))

    if args.export:
        from safetensors.torch import save_file

        save_file({n: w.to(torch.float32).contiguous() for n, w in data}, args.export)
        log(f"exported {len(data)} tensors to {args.export}")

    limits = contextlib.nullcontext()
    if args.threads and args.threads > 0:
        try:
            from threadpoolctl import threadpool_limits

            limits = threadpool_limits(limits=args.threads)
        except ImportError:
            log("threadpoolctl not available: sklearn uses its default thread count")

    per_layer = []
    with limits:
        for name, w in data:
            fit_one(args, name, w, per_layer, KMeans)
    total_s = sum(l["seconds"] for l in per_layer)
    total_sse = sum(l["squared_error"] for l in per_layer)
    total_inertia = sum(l["sklearn_inertia"] for l in per_layer)
    total_n = sum(l["numel"] for l in per_layer)

    print(json.dumps({
        "script": "kmeans_sklearn.py",
        "model": "torchvision resnet50(weights=None), conv+linear weights",
        "layers": len(per_layer),
        "weights": total_n,
        "levels": args.levels,
        "total_seconds": total_s,
        "squared_error": total_sse,
        "sklearn_inertia": total_inertia,
        "seconds_per_layer": summary([l["seconds"] for l in per_layer]),
        "per_layer": per_layer,
        "exported": args.export,
        "versions": {"torch": torch.__version__, "sklearn": sklearn.__version__, "numpy": np.__version__},
        "config": {**vars(args), "threads_effective": threads,
                   "kmeans": {"n_clusters": args.levels, "n_init": 1, "init": "k-means++", "algorithm": "lloyd",
                              "max_iter": args.max_iter, "tol": args.tol, "random_state": args.seed}},
    }))


if __name__ == "__main__":
    main()
