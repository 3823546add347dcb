"""trainables._loop: fit's metrics and checkpoints, resuming, divergence, config checks, optimisers and
schedules. Everything trains for real on digits with small networks."""

from __future__ import annotations

import math
import os
import shutil
from pathlib import Path
from typing import Optional

import pytest
import torch

from trainables import DataError, TrialDiverged, build_model, count_params, fit, load_dataset
from trainables._defaults import TrainConfig
from trainables._loop import CHECKPOINT_FILE, evaluate, make_lr_scheduler, make_optimizer, train_one_epoch

pytestmark = pytest.mark.slow  # these train models for a few epochs each: out of the fast lane

SMALL = {
    "mlp": {"units": 32},
    "cnn": {"maps": 8, "dense_units": 32},
}


def run(model_name: str, config: dict, keep_dir: Optional[Path] = None, restore_from: Optional[str] = None):
    """fit, returning the reported metrics; with keep_dir, every epoch's checkpoint is copied to
    keep_dir/<epoch>, as Ray Tune would persist it."""
    rows = []

    def report(metrics: dict, checkpoint_dir: str) -> None:
        assert os.listdir(checkpoint_dir) == [CHECKPOINT_FILE]
        rows.append(metrics)
        if keep_dir is not None:
            shutil.copytree(checkpoint_dir, keep_dir / str(metrics["epoch"]))

    fit(model_name, config, report, restore_from=restore_from)
    return rows


def without_time(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "epoch_time_s"} for row in rows]


# ---- training ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits():
    return load_dataset({"dataset": "digits"}, "cpu")


@pytest.mark.parametrize("model_name", ["mlp", "cnn"])
def test_train_one_epoch_lowers_the_training_loss(digits, model_name):
    torch.manual_seed(0)
    model = build_model(model_name, SMALL[model_name], digits.input_shape, digits.num_classes)
    optimizer = make_optimizer(model, TrainConfig())  # adam, lr 1e-2
    before, _ = evaluate(model, digits.x_train, digits.y_train)
    train_one_epoch(model, optimizer, digits, batch_size=64)
    after, accuracy = evaluate(model, digits.x_train, digits.y_train)
    assert after < 0.85 * before and accuracy > 0.2  # chance: 2.30 and 0.1


@pytest.mark.parametrize("model_name", ["mlp", "cnn"])
def test_fit_reports_every_epoch_with_plain_metrics(model_name):
    rows = run(model_name, {**SMALL[model_name], "max_epochs": 3, "data": {"dataset": "digits"}})
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    for row in rows:
        assert set(row) == {"epoch", "val_acc", "val_loss", "train_loss", "n_params", "epoch_time_s"}
        assert type(row["epoch"]) is int and type(row["n_params"]) is int
        assert all(type(row[k]) is float for k in ("val_acc", "val_loss", "train_loss", "epoch_time_s"))
        assert 0 <= row["val_acc"] <= 1 and row["epoch_time_s"] > 0
    assert rows[-1]["val_acc"] > 0.85 and rows[-1]["train_loss"] < rows[0]["train_loss"]


def test_fit_checkpoint_rebuilds_the_reported_model(tmp_path):
    rows = run("cnn", {**SMALL["cnn"], "batch_norm": True, "max_epochs": 2}, keep_dir=tmp_path)
    state = torch.load(tmp_path / "2" / CHECKPOINT_FILE, weights_only=True)
    assert state["epoch"] == 2 and state["model_name"] == "cnn"
    assert state["input_shape"] == (1, 8, 8) and state["num_classes"] == 10
    assert state["lr_scheduler"] is None and "state" in state["optimizer"]
    assert state["hparams"] == {"conv_blocks": 2, "maps": 8, "convs_per_block": 1, "kernel_size": 3,
                                "dense_units": 32, "activation": "relu", "dropout": 0.1, "batch_norm": True}
    model = build_model(state["model_name"], state["hparams"], state["input_shape"], state["num_classes"])
    model.load_state_dict(state["model"])
    assert count_params(model) == rows[-1]["n_params"]
    digits = load_dataset({"dataset": "digits"}, "cpu")
    val_loss, val_acc = evaluate(model, digits.x_val, digits.y_val)
    assert val_acc == rows[-1]["val_acc"] and val_loss == pytest.approx(rows[-1]["val_loss"], rel=1e-6)


def test_fit_deletes_the_checkpoint_dir_after_report():
    seen = []
    fit("mlp", {**SMALL["mlp"], "max_epochs": 2}, lambda metrics, d: seen.append(d))
    assert len(seen) == 2 and not any(os.path.exists(d) for d in seen)


def test_fit_is_deterministic_per_seed():
    config = {**SMALL["mlp"], "max_epochs": 2, "dropout": 0.2}
    first, again = run("mlp", config), run("mlp", config)
    other = run("mlp", {**config, "seed": 1})
    assert without_time(first) == without_time(again)
    assert without_time(first) != without_time(other)


@pytest.mark.parametrize(
    "model_name, extra",
    [
        ("mlp", {"lr_schedule": "none", "optimizer": "adam", "dropout": 0.3}),
        ("mlp", {"lr_schedule": "step", "optimizer": "sgd", "lr": 0.05, "nesterov": True, "batch_norm": True}),
        ("mlp", {"lr_schedule": "cosine", "optimizer": "rmsprop", "lr": 1e-3, "momentum": 0.5}),
        ("mlp", {"lr_schedule": "plateau", "optimizer": "adagrad", "weight_decay": 1e-4}),
        ("cnn", {"lr_schedule": "cosine", "batch_norm": True, "dropout": 0.3, "initializer": "he_normal"}),
    ],
)
def test_fit_resumes_at_the_next_epoch_like_an_uninterrupted_run(tmp_path, model_name, extra):
    config = {**SMALL[model_name], **extra, "max_epochs": 4}
    whole = run(model_name, config, keep_dir=tmp_path / "whole")
    resumed = run(model_name, config, keep_dir=tmp_path / "resumed", restore_from=str(tmp_path / "whole" / "2"))
    assert [r["epoch"] for r in resumed] == [3, 4]
    assert without_time(resumed) == without_time(whole[2:])
    final_whole = torch.load(tmp_path / "whole" / "4" / CHECKPOINT_FILE, weights_only=True)
    final_resumed = torch.load(tmp_path / "resumed" / "4" / CHECKPOINT_FILE, weights_only=True)
    for name, tensor in final_whole["model"].items():
        assert torch.equal(tensor, final_resumed["model"][name]), name


def test_fit_rejects_a_checkpoint_of_another_model(tmp_path):
    run("mlp", {**SMALL["mlp"], "max_epochs": 1}, keep_dir=tmp_path)
    with pytest.raises(ValueError, match="is of a mlp, not a cnn"):
        run("cnn", {"max_epochs": 2}, restore_from=str(tmp_path / "1"))


# ---- divergence --------------------------------------------------------------------------------------


def test_fit_raises_trial_diverged_when_a_huge_lr_blows_up():
    config = {"lr": 10.0, "optimizer": "sgd", "momentum": 0.9, "activation": "leaky_relu", "dropout": 0.0,
              "max_epochs": 3}
    expected = r"train_loss became (nan|inf) in epoch 1; lower lr or add batch_norm"
    with pytest.raises(TrialDiverged, match=expected):
        run("mlp", config)


def test_fit_raises_trial_diverged_naming_the_epoch_of_an_injected_inf(tmp_path):
    config = {**SMALL["mlp"], "max_epochs": 3}
    run("mlp", config, keep_dir=tmp_path)
    path = tmp_path / "1" / CHECKPOINT_FILE
    state = torch.load(path, weights_only=True)
    state["model"]["head.weight"][0, 0] = math.inf
    torch.save(state, path)
    with pytest.raises(TrialDiverged, match=r"train_loss became nan in epoch 2"):
        run("mlp", config, restore_from=str(tmp_path / "1"))


# ---- config ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "model_name, config, message",
    [
        ("mlp", {"maps": 8}, "the mlp trainable does not accept 'maps'"),
        ("cnn", {"units": 8, "learning_rate": 0.1}, "does not accept 'learning_rate', 'units'"),
        ("mlp", {"lr": 0}, r"`lr` is 0, but must be a number in \(0, 10\]"),
        ("mlp", {"lr": float("nan")}, "`lr` is nan"),
        ("mlp", {"batch_size": 0}, "`batch_size` is 0, but must be an integer >= 1"),
        ("mlp", {"batch_size": 2.5}, "`batch_size` is 2.5"),
        ("mlp", {"optimizer": "lbfgs"}, "`optimizer` is 'lbfgs', but must be one of sgd, adam"),
        ("mlp", {"nesterov": "yes"}, "`nesterov` is 'yes', but must be true or false"),
        ("cnn", {"conv_blocks": 7}, r"`conv_blocks` is 7, but must be an integer in \[1, 6\]"),
        ("mlp", {"max_epochs": 0}, "`max_epochs` is 0, but must be an integer >= 1"),
        ("mlp", {"batch_norm": True, "batch_size": 1}, "batch_norm needs >= 2 examples per step"),
        ("rnn", {}, "model_name is 'rnn'"),
    ],
)
def test_fit_rejects_a_bad_config_before_training(model_name, config, message):
    with pytest.raises(ValueError, match=message):
        fit(model_name, config, lambda metrics, d: pytest.fail("trained despite a bad config"))


def test_fit_cnn_rejects_tabular_data(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("x,y\n1,a\n2,b\n3,a\n4,b\n")
    with pytest.raises(DataError, match="the cnn trainable needs image data"):
        fit("cnn", {"data": {"dataset": "csv", "path": str(path), "target": "y"}}, lambda m, d: None)


def test_fit_mlp_trains_on_tabular_data(tmp_path):
    path = tmp_path / "t.csv"
    rows = [f"{i % 7},{'ab'[i % 2]},{'yes' if i % 2 else 'no'}" for i in range(60)]
    path.write_text("n,letter,label\n" + "\n".join(rows) + "\n")
    metrics = run("mlp", {"max_epochs": 3, "batch_size": 8,
                          "data": {"dataset": "csv", "path": str(path), "target": "label"}})
    assert metrics[-1]["val_acc"] == 1.0  # the label is the letter


# ---- optimisers and schedules ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "optimizer, momentum, nesterov, expected",
    [
        ("sgd", 0.9, True, {"momentum": 0.9, "nesterov": True}),
        ("sgd", 0.0, True, {"momentum": 0.0, "nesterov": False}),  # nesterov needs momentum
        ("sgd", 0.9, False, {"momentum": 0.9, "nesterov": False}),
        ("rmsprop", 0.5, False, {"momentum": 0.5}),
        ("adam", 0.5, False, {}),
        ("adagrad", 0.5, False, {}),
    ],
)
def test_make_optimizer_builds_the_named_optimiser(optimizer, momentum, nesterov, expected):
    model = torch.nn.Linear(3, 2)
    tc = TrainConfig(lr=0.02, optimizer=optimizer, momentum=momentum, nesterov=nesterov, weight_decay=1e-3)
    opt = make_optimizer(model, tc)
    classes = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "rmsprop": torch.optim.RMSprop,
               "adagrad": torch.optim.Adagrad}
    assert type(opt) is classes[optimizer]
    group = opt.param_groups[0]
    assert group["lr"] == 0.02 and group["weight_decay"] == 1e-3
    assert {k: group[k] for k in expected} == expected


def lrs_per_epoch(schedule: str, max_epochs: int, val_losses=None) -> list[float]:
    opt = torch.optim.SGD(torch.nn.Linear(2, 2).parameters(), lr=1.0)
    scheduler = make_lr_scheduler(opt, schedule, max_epochs)
    lrs = []
    for epoch in range(max_epochs):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()  # an epoch's updates (no gradients here), before the scheduler as torch expects
        if schedule == "plateau":
            scheduler.step(val_losses[epoch])
        elif scheduler is not None:
            scheduler.step()
    return lrs


@pytest.mark.parametrize(
    "max_epochs, expected",
    [
        (15, [1.0] * 7 + [0.1] * 4 + [0.01] * 4),
        (4, [1.0, 1.0, 0.1, 0.01]),
        (2, [1.0, 0.1]),
        (1, [1.0]),
    ],
)
def test_make_lr_scheduler_step_divides_by_10_at_half_and_three_quarters(max_epochs, expected):
    assert lrs_per_epoch("step", max_epochs) == pytest.approx(expected)


@pytest.mark.parametrize("max_epochs", [1, 4, 15])
def test_make_lr_scheduler_cosine_anneals_to_zero_over_max_epochs(max_epochs):
    lrs = lrs_per_epoch("cosine", max_epochs)
    expected = [(1 + math.cos(math.pi * e / max_epochs)) / 2 for e in range(max_epochs)]
    assert lrs == pytest.approx(expected)
    opt = torch.optim.SGD(torch.nn.Linear(2, 2).parameters(), lr=1.0)
    scheduler = make_lr_scheduler(opt, "cosine", max_epochs)
    for _ in range(max_epochs):
        opt.step()
        scheduler.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)


def test_make_lr_scheduler_plateau_follows_val_loss():
    lrs = lrs_per_epoch("plateau", 8, val_losses=[1.0, 0.9, 0.9, 0.9, 0.9, 0.5, 0.5, 0.5])
    assert lrs == pytest.approx([1.0] * 5 + [0.1] * 3)


def test_make_lr_scheduler_none_keeps_the_lr():
    assert lrs_per_epoch("none", 5) == [1.0] * 5
