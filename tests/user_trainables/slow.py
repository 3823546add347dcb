"""A user's own trainable that takes a while per epoch and checkpoints, for stop/resume tests."""

import json
import os
import tempfile
import time

from ray import tune


def train(config: dict) -> None:
    start = 1
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as path:
            with open(os.path.join(path, "state.json")) as fh:
                start = json.load(fh)["epoch"] + 1
    for epoch in range(start, config["max_epochs"] + 1):
        time.sleep(config.get("sleep", 0.5))
        score = config["x"] * epoch
        with tempfile.TemporaryDirectory() as tmp:
            with open(os.path.join(tmp, "state.json"), "w") as fh:
                json.dump({"epoch": epoch}, fh)
            tune.report({"score": score, "epoch": epoch}, checkpoint=tune.Checkpoint.from_directory(tmp))
