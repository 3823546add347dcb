"""The `synthetic` built-in trainable: learning curves from a formula, with a known optimum, in microseconds.

It exists to measure search itself (benchmarks/search_quality.py, the reproducibility tests): hundreds of trials
cost seconds, and the best configuration is known, so a strategy's regret is exact. Its curves cross the way
real ones do, which is what early stopping gets wrong when it judges too early:

- a high `lr`, a narrow `width`, no `warmup` and `optimizer: adam` learn fast and plateau low;
- a wide model with warmup at its best lr starts slowly and finishes highest.

    val_acc(t) = FLOOR + (ceiling - FLOOR) * (1 - exp(-max(0, t - delay) / tau)) + noise(t)

    ceiling = 0.99 - 0.05 * (log10 lr - log10 best_lr)^2 - 0.06 * (1 - log2(width/16)/6)^2
              - 0.02 * (1 - warmup/0.5) - 0.015 * [adam]                                   (t = epoch)
    best_lr = 10 ** (-2 + 2 * warmup)          warmup lets a higher lr be used: 0.01 without, 0.1 at 0.5
    tau     = 1.2 * (width/16) ** 0.4 * (0.01/lr) ** 0.3 * (0.4 if adam else 1)   epochs
    delay   = warmup * max_epochs / 2          half of the warmup epochs teach nothing

The optimum is lr = 0.1, width = 1024, warmup = 0.5, optimizer = sgd: val_acc -> 0.99 (`KNOWN_BEST`). The
noise is Gaussian (sd 0.002), seeded by `seed`, the epoch and the other parameters, so a configuration always
gives the same curve. `epoch_seconds` sleeps that long per epoch, scaled by width/1024, to stand in for
training time (0 by default: the benchmarks count epochs, not seconds).
"""

from __future__ import annotations

import math
import time
import zlib
from dataclasses import dataclass, fields
from typing import Callable

FLOOR = 0.1  # chance level of a 10-class problem
KNOWN_BEST = 0.99  # the ceiling at the optimum (lr 0.1, width 1024, warmup 0.5, sgd), without noise
NOISE_SD = 0.002  # per-epoch noise, about what digits' 360 validation images give
BEST_CONFIG = {"lr": 0.1, "width": 1024, "warmup": 0.5, "optimizer": "sgd"}  # reaches KNOWN_BEST


@dataclass(frozen=True)
class SyntheticConfig:
    """The curve's knobs; defaults are a middling configuration (ceiling ~0.93)."""

    lr: float = 0.01  # learning rate; the best one grows with warmup
    width: int = 64  # units; wider learns slower and ends higher, best at 1024
    warmup: float = 0.0  # fraction of max_epochs spent warming up, in [0, 0.5]; delays the start, raises the end
    optimizer: str = "sgd"  # adam: 2.5x faster start, 0.015 lower ceiling
    seed: int = 0  # seeds the noise
    epoch_seconds: float = 0.0  # sleep per epoch at width 1024 (scaled by width/1024), to mimic training time


def curve(cfg: SyntheticConfig, epoch: int, max_epochs: int) -> float:
    """val_acc after `epoch` (1-based) epochs of `max_epochs`, noise included."""
    best_lr = 10 ** (-2 + 2 * cfg.warmup)
    ceiling = (
        KNOWN_BEST
        - 0.05 * (math.log10(cfg.lr) - math.log10(best_lr)) ** 2
        - 0.06 * (1 - math.log2(cfg.width / 16) / 6) ** 2
        - 0.02 * (1 - cfg.warmup / 0.5)
        - (0.015 if cfg.optimizer == "adam" else 0.0)
    )
    ceiling = max(FLOOR, ceiling)
    tau = 1.2 * (cfg.width / 16) ** 0.4 * (0.01 / cfg.lr) ** 0.3 * (0.4 if cfg.optimizer == "adam" else 1.0)
    delay = cfg.warmup * max_epochs / 2
    progress = 1 - math.exp(-max(0.0, epoch - delay) / tau)
    return min(1.0, max(0.0, FLOOR + (ceiling - FLOOR) * progress + _noise(cfg, epoch)))


def _noise(cfg: SyntheticConfig, epoch: int) -> float:
    """Gaussian noise that depends only on the configuration and the epoch (crc32: the same in every process)."""
    import random

    key = f"{cfg.lr!r}|{cfg.width}|{cfg.warmup!r}|{cfg.optimizer}|{cfg.seed}|{epoch}".encode()
    return random.Random(zlib.crc32(key)).gauss(0.0, NOISE_SD)


def parse_config(config: dict) -> tuple[SyntheticConfig, int]:
    """(SyntheticConfig, max_epochs) from a trial's config; unknown keys and bad values raise ValueError."""
    from trainables._catalog import BUILTIN_TRAINABLES, RESERVED_CONFIG_KEYS

    spec = BUILTIN_TRAINABLES["synthetic"]
    names = {f.name for f in fields(SyntheticConfig)}
    unknown = sorted(k for k in config if k not in names and k not in RESERVED_CONFIG_KEYS)
    if unknown:
        raise ValueError(f"the synthetic trainable does not accept {', '.join(map(repr, unknown))}; "
                         f"it accepts {', '.join(sorted(names))}")
    values = {}
    for name in names & set(config):
        if not spec.params[name].accepts(config[name]):
            raise ValueError(f"`{name}` is {config[name]!r}, but must be {spec.params[name].describe()}")
        kind = spec.params[name].kind
        values[name] = int(config[name]) if kind == "int" else float(config[name]) if kind == "float" else config[name]
    max_epochs = int(config.get("max_epochs", 27))
    return SyntheticConfig(**values), max_epochs


def run(config: dict, report: Callable[[dict], None], start_epoch: int = 1) -> None:
    """Report {epoch, val_acc, val_loss, epoch_time_s} for every epoch from `start_epoch` to max_epochs."""
    cfg, max_epochs = parse_config(config)
    for epoch in range(start_epoch, max_epochs + 1):
        started = time.perf_counter()
        if cfg.epoch_seconds:
            time.sleep(cfg.epoch_seconds * cfg.width / 1024)
        acc = curve(cfg, epoch, max_epochs)
        report({"epoch": epoch, "val_acc": acc, "val_loss": -math.log(max(acc, 1e-6)),
                "epoch_time_s": time.perf_counter() - started})


def train(config: dict) -> None:
    """Ray Tune function trainable: one `tune.report` per epoch (no checkpoint: a retry recomputes the curve)."""
    import ray.tune as tune

    run(config, tune.report)
