"""A user's own trainable (no torch) for fault tests: it writes down every epoch it starts, checkpoints every
epoch the way every trainable should (through `tune.report(..., checkpoint=...)`), and hangs or reports a NaN
when its config asks.

    x           the score is x * epoch
    sleep       seconds per epoch
    journal     a folder every node shares: each epoch started appends "EPOCH NODE TIME" to JOURNAL/<Tune trial
                id>, NODE being the local cluster's node name (HPSEARCH_LOCAL_CLUSTER_NODE) and TIME seconds
                since the epoch, so a test can tell which trials a killed node was running and count the epochs
                redone after it
    nan_above   trials with x above it report a NaN score in epoch 2 only (finite before and after)
    hang_above  trials with x above it hang in epoch 2 (an hour's sleep)
"""

import json
import math
import os
import tempfile
import time

from ray import tune


def train(config: dict) -> None:
    x = config["x"]
    start = 1
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as path:
            with open(os.path.join(path, "state.json")) as fh:
                start = json.load(fh)["epoch"] + 1
    journal = os.path.join(config["journal"], tune.get_context().get_trial_id())
    for epoch in range(start, config["max_epochs"] + 1):
        with open(journal, "a") as fh:
            fh.write(f"{epoch} {os.environ.get('HPSEARCH_LOCAL_CLUSTER_NODE', '?')} {time.time():.3f}\n")
        time.sleep(config.get("sleep", 0.5))
        if epoch == 2 and x > config.get("hang_above", 1.0):
            time.sleep(3600)
        score = math.nan if epoch == 2 and x > config.get("nan_above", 1.0) else x * epoch
        with tempfile.TemporaryDirectory() as tmp:
            with open(os.path.join(tmp, "state.json"), "w") as fh:
                json.dump({"epoch": epoch}, fh)
            tune.report({"score": score, "epoch": epoch}, checkpoint=tune.Checkpoint.from_directory(tmp))
