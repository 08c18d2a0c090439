#!/usr/bin/env python3
"""Markdown tables of a `gqcim bench` result (benches/results/<machine>-<date>.json), with the
commit and thread count that produced it, for the README's Performance section.

Usage: python3 scripts/bench_table.py benches/results/cpu2-20261202.json
"""
import json
import sys


def main(path):
    d = json.load(open(path))
    dev = d.get("device") or {}
    where = f"{dev.get('host_cores', '?')}-core CPU" if not dev.get("cuda_available") else "CUDA"
    cpu = dev.get("cpu") or {}
    if cpu:
        # Speed ratios depend on the CPU's vector width (src/run.rs, cpu_info).
        name = cpu.get("model_name") or "?"
        where += f" ({name}, family {cpu.get('family')} model {cpu.get('model')}, {cpu.get('simd')})"
    commit = d["git_commit"][:7] + ("-dirty" if d["git_commit"].endswith("-dirty") else "")
    print(f"`{path}`: commit {commit}, {where}, {d['threads']} libtorch thread(s), "
          f"{d['date']}\n")
    print("| measure | result | target |\n| --- | --- | --- |")
    for row in d["summary"]:
        print(f"| {row['measure']} | {row['result']} | {row['target']} |")
    if isinstance(d.get("peers"), dict):
        # gqcim's trial is re-timed just before and after each peer; the ratio uses their mean.
        print("\n| peer (device config) | versions | trial images/s | gqcim images/s before / after "
              "| gqcim ÷ peer | accuracy (300 images) |")
        print("| --- | --- | --- | --- | --- | --- |")
        for config in ("weights", "periphery"):
            sec = d["peers"].get(config)
            if not isinstance(sec, dict):
                continue
            acc = sec.get("gqcim_accuracy_mean")
            print(f"| gqcim ({config}) | this commit | {sec['gqcim_images_per_s']:.0f} | - | 1 | "
                  f"{'-' if acc is None else f'{100 * acc:.1f}%'} |")
            for name, v in sec["peers"].items():
                if "error" in v:
                    print(f"| {name} ({config}) | - | error: {v['error'][:80]} | - | - | - |")
                    continue
                p = v["peer"]
                vers = ", ".join(f"{k} {x}" for k, x in p.get("versions", {}).items() if k != "numpy")
                a = p.get("accuracy_mean")
                around = v.get("gqcim_images_per_s_before_after")
                around = " / ".join(f"{x:.0f}" for x in around) if around else "-"
                print(f"| {name} ({config}) | {vers} | {p['median_trial_images_per_s']:.0f} | {around} | "
                      f"{v['ratio_gqcim_vs_peer']:.1f}× | {'-' if a is None else f'{100 * a:.1f}%'} |")
    wall = d.get("wall_seconds")
    if isinstance(wall, dict):
        # The suite's own time (without the build): `make bench` must fit 15 minutes.
        order = ["train", "qat", "mc", "peers", "fit", "scaling", "tasks"]
        parts = ", ".join(f"{k} {wall[k]:.0f} s" for k in order if k in wall)
        print(f"\nwall time: {wall.get('suite', float('nan')) / 60:.1f} min ({parts})")
    if isinstance(d.get("scaling"), list) and d["scaling"]:
        print("\n| network | parameters | batch | fp32 images/s | analog trial images/s | trial cost ÷ fp32 |")
        print("| --- | --- | --- | --- | --- | --- |")
        for r in d["scaling"]:
            print(f"| {r['arch']} | {r['parameters'] / 1e6:.2f} M | {r['batch']} | "
                  f"{r['fp32_images_per_s']:.0f} | {r['analog_images_per_s']:.0f} | "
                  f"{r['analog_cost_ratio']:.2f}× |")


if __name__ == "__main__":
    main(sys.argv[1])
