"""The `mlp` built-in trainable: a fully connected network on flattened inputs (images or tabular rows).

What it accepts and reports: BUILTIN_TRAINABLES["mlp"] in trainables/_catalog.py; defaults: MLPArch and
TrainConfig in trainables/_defaults.py; the loop: trainables/_loop.py.
"""

from __future__ import annotations


def train(config: dict) -> None:
    """Ray Tune function trainable: one `tune.report` (metrics + checkpoint) per epoch."""
    from trainables._tune import run_with_tune

    run_with_tune("mlp", config)
