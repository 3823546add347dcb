"""A trial that reports one result and returns: what is left of a study's cost is its bookkeeping.

Used by benchmarks/compare.py's no-op throughput, the same function for hpsearch (`noop_trainable:train`, with
benchmarks/ on PYTHONPATH) and for benchmarks/reference_tune.py.
"""

from __future__ import annotations


def train(config: dict) -> None:
    from ray import tune

    tune.report({"val_acc": 0.5, "epoch": 1})
