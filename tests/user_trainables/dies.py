"""A user's own trainables (no torch) whose worker processes die, as workers do whose node is lost.

- `OnReuse`, a Trainable class: its worker dies the first time Tune hands it another trial (Tune reuses a
  finished trial's worker for the next: `reuse_actors`), in `reset_config`, once per study: the first to get
  there leaves a marker file (`marker`) behind it.
- `in_epoch_2`, a function: the worker of a trial with x > 0.7 dies in epoch 2, every time it gets there.

The score is 1 - (x - 0.3)^2, reached at the last epoch.
"""

import os
from pathlib import Path

from ray import tune


def _score(x: float, epoch: int, max_epochs: int) -> float:
    return (1 - (x - 0.3) ** 2) * epoch / max_epochs


class OnReuse(tune.Trainable):
    def setup(self, config: dict) -> None:
        self.x = config["x"]
        self.max_epochs = config["max_epochs"]
        self.epoch = 0

    def step(self) -> dict:
        self.epoch += 1
        return {"score": _score(self.x, self.epoch, self.max_epochs), "epoch": self.epoch,
                "done": self.epoch >= self.max_epochs}

    def reset_config(self, new_config: dict) -> bool:
        try:
            Path(new_config["marker"]).touch(exist_ok=False)
        except FileExistsError:
            self.setup(new_config)
            return True
        os._exit(1)  # the worker process ends here, in the middle of Tune's reset of it

    def save_checkpoint(self, checkpoint_dir: str) -> dict:
        return {"epoch": self.epoch}

    def load_checkpoint(self, checkpoint: dict) -> None:
        self.epoch = checkpoint["epoch"]


def in_epoch_2(config: dict) -> None:
    for epoch in range(1, config["max_epochs"] + 1):
        if config["x"] > 0.7 and epoch == 2:
            os._exit(1)
        tune.report({"score": _score(config["x"], epoch, config["max_epochs"]), "epoch": epoch})
