"""Run `fit` as a Ray Tune function trainable: resume from Tune's checkpoint, report through `tune.report`.

Ray and torch are imported inside the function so that importing a trainable module stays cheap and works
without Ray (the CLI and the tests import these modules).
"""

from __future__ import annotations


def run_with_tune(model_name: str, config: dict) -> None:
    import ray.tune as tune

    from trainables._loop import fit

    def report(metrics: dict, checkpoint_dir: str) -> None:
        # Tune persists the directory's contents before report returns, so fit may delete it afterwards.
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(checkpoint_dir))

    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        fit(model_name, config, report)
        return
    with checkpoint.as_directory() as checkpoint_dir:
        fit(model_name, config, report, restore_from=checkpoint_dir)
