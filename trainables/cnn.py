"""The `cnn` built-in trainable: conv-pool blocks with maps doubling per block, then a dense layer.

Image data only (digits, mnist, fashion_mnist, cifar10). What it accepts and reports:
BUILTIN_TRAINABLES["cnn"] in trainables/_catalog.py; defaults: CNNArch and TrainConfig in
trainables/_defaults.py; the loop: trainables/_loop.py.
"""

from __future__ import annotations


def train(config: dict) -> None:
    """Ray Tune function trainable: one `tune.report` (metrics + checkpoint) per epoch."""
    from trainables._tune import run_with_tune

    run_with_tune("cnn", config)
