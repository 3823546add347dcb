"""Seconds per epoch of the built-in trainables on digits, one CPU thread (as one trial gets with cpu: 1).

    python benchmarks/trainable_epoch.py [--seeds 3] [--epochs 15]

Runs `trainables.fit` directly (no Ray); reports mean ± std of `epoch_time_s` over all epochs and seeds,
and the final val_acc.
"""

from __future__ import annotations

import argparse
import statistics

import torch

from trainables import fit

CASES = {
    "cnn default (2 blocks, 16 maps)": ("cnn", {}),
    "cnn 2 blocks, 32 maps, adam 3e-3": ("cnn", {"maps": 32, "lr": 3e-3}),
    "cnn 3 blocks, 48 maps": ("cnn", {"conv_blocks": 3, "maps": 48}),
    "mlp default (2 x 128)": ("mlp", {}),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=15)
    args = parser.parse_args()
    torch.set_num_threads(1)
    for name, (model, params) in CASES.items():
        times, accs = [], []
        for seed in range(args.seeds):
            rows = []
            fit(model, {**params, "seed": seed, "max_epochs": args.epochs, "data": {"dataset": "digits"}},
                lambda metrics, _dir: rows.append(metrics))
            times += [r["epoch_time_s"] for r in rows[1:]]  # epoch 1 includes warm-up
            accs.append(rows[-1]["val_acc"])
        print(f"{name:<34} {statistics.mean(times):.3f} ± {statistics.stdev(times):.3f} s/epoch; "
              f"val_acc {statistics.mean(accs):.4f} ± {statistics.stdev(accs):.4f} (seeds={args.seeds})")


if __name__ == "__main__":
    main()
