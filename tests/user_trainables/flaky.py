"""A user's own trainable (no torch) whose trials fail in the ways real ones do.

`x` in [0, 1] decides the outcome: x > 0.8 raises in epoch 1; 0.6 < x <= 0.8 reports a NaN score from
epoch 2 on (a diverged loss); anything else learns a curve whose final score is 1 - (x - 0.3)^2.
"""

import math

from ray import tune


def train(config: dict) -> None:
    x = config["x"]
    for epoch in range(1, config["max_epochs"] + 1):
        if x > 0.8:
            raise ValueError(f"x={x:.3f} is out of this model's range")
        score = (1 - (x - 0.3) ** 2) * epoch / config["max_epochs"]
        if 0.6 < x <= 0.8 and epoch >= 2:
            score = math.nan
        tune.report({"score": score, "epoch": epoch})
