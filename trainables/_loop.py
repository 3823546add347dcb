"""The training loop shared by the built-in trainables: config -> device -> data -> model -> optimizer -> loop.

`fit` knows nothing about Ray: it calls `report(metrics, checkpoint_dir)` once per epoch, and the Ray Tune
wrappers (trainables/mlp.py, trainables/cnn.py) forward that to `tune.report`. Tests call it directly.

Batches are index slices of a per-epoch `randperm` over tensors that already live on the device (no
DataLoader): on digits a cnn epoch is ~22 steps of a few milliseconds each.
"""

from __future__ import annotations

import math
import numbers
import os
import tempfile
import time
from dataclasses import asdict, dataclass, fields
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn

from trainables._catalog import BUILTIN_TRAINABLES, LR_SCHEDULES, OPTIMIZERS, RESERVED_CONFIG_KEYS
from trainables._defaults import DEFAULT_MAX_EPOCHS, TrainConfig
from trainables._errors import TrialDiverged
from trainables.datasets import Dataset, check_data, load_dataset
from trainables.models import ARCHS, build_model, count_params, init_weights

CHECKPOINT_FILE = "checkpoint.pt"
EVAL_BATCH_SIZE = 2048  # examples per forward pass when evaluating; large, as no activations are kept


@dataclass(frozen=True)
class TrialConfig:
    """One trial's config, parsed and complete."""

    train: TrainConfig
    arch: dict  # the model-building hyperparameters: the fields of MLPArch / CNNArch
    data: dict  # config["data"] as given (load_dataset parses it)
    max_epochs: int


def fit(
    model_name: str,
    config: dict,
    report: Callable[[dict, str], None],
    restore_from: Optional[str] = None,
) -> None:
    """Train `model_name` ("mlp" or "cnn") as `config` says, calling `report(metrics, checkpoint_dir)` after
    every epoch. `checkpoint_dir` holds checkpoint.pt and is deleted when `report` returns. With
    `restore_from` (a directory holding checkpoint.pt), training resumes at the epoch after the saved one.
    """
    # config
    cfg = parse_trial_config(model_name, config)
    tc = cfg.train
    check_data(cfg.data, trainable=model_name)  # cheap: fails on missing files before any loading

    # device
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")

    # data: both splits on the device once
    data = load_dataset(cfg.data, device)

    # model
    torch.manual_seed(tc.seed)
    model = build_model(model_name, cfg.arch, data.input_shape, data.num_classes)
    init_weights(model, tc.initializer)
    # channels_last matches the image tensors' layout (load_dataset); ~20 % faster convolutions on CPU.
    # Linear-only models are unaffected.
    model = model.to(device, memory_format=torch.channels_last)
    n_params = count_params(model)

    # optimizer and lr schedule
    optimizer = make_optimizer(model, tc)
    scheduler = make_lr_scheduler(optimizer, tc.lr_schedule, cfg.max_epochs)
    start_epoch = 1
    if restore_from is not None:
        state = torch.load(os.path.join(restore_from, CHECKPOINT_FILE), map_location=device, weights_only=True)
        if state["model_name"] != model_name:
            raise ValueError(f"checkpoint in {restore_from} is of a {state['model_name']}, not a {model_name}")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None and state["lr_scheduler"] is not None:
            scheduler.load_state_dict(state["lr_scheduler"])
        start_epoch = state["epoch"] + 1

    # loop
    for epoch in range(start_epoch, cfg.max_epochs + 1):
        # Seeding per epoch, not once, makes a resumed run draw the same batches and dropout masks as an
        # uninterrupted one without storing RNG state (which differs between CPU and CUDA).
        torch.manual_seed(tc.seed * 100_003 + epoch)
        started = time.perf_counter()
        train_loss = train_one_epoch(model, optimizer, data, tc.batch_size)
        if not math.isfinite(train_loss):
            raise TrialDiverged(f"train_loss became {train_loss} in epoch {epoch}; lower lr or add batch_norm")
        val_loss, val_acc = evaluate(model, data.x_val, data.y_val)
        if not math.isfinite(val_loss):
            raise TrialDiverged(f"val_loss became {val_loss} in epoch {epoch}; lower lr or add batch_norm")
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            scheduler.step(val_loss)
        elif scheduler is not None:
            scheduler.step()
        if device.type == "cuda":
            torch.cuda.synchronize()  # count queued GPU work in this epoch's time
        epoch_time_s = time.perf_counter() - started

        metrics = {
            "epoch": epoch,
            "val_acc": val_acc,
            "val_loss": val_loss,
            "train_loss": train_loss,
            "n_params": n_params,
            "epoch_time_s": epoch_time_s,
        }
        with tempfile.TemporaryDirectory(prefix="hpsearch-ckpt-") as checkpoint_dir:
            torch.save(
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "lr_scheduler": scheduler.state_dict() if scheduler is not None else None,
                    "epoch": epoch,
                    "model_name": model_name,
                    "hparams": dict(cfg.arch),
                    "input_shape": tuple(data.input_shape),
                    "num_classes": data.num_classes,
                },
                os.path.join(checkpoint_dir, CHECKPOINT_FILE),
            )
            report(metrics, checkpoint_dir)


def parse_trial_config(model_name: str, config: dict) -> TrialConfig:
    """Split a trial's flat config into its parts, with defaults; unknown keys and bad values raise
    ValueError (the space validator catches these earlier; this is the second line of defence)."""
    if model_name not in BUILTIN_TRAINABLES:
        raise ValueError(f"model_name is {model_name!r}, but must be one of {', '.join(BUILTIN_TRAINABLES)}")
    spec = BUILTIN_TRAINABLES[model_name]
    unknown = sorted(k for k in config if k not in spec.params and k not in RESERVED_CONFIG_KEYS)
    if unknown:
        raise ValueError(
            f"the {model_name} trainable does not accept {', '.join(map(repr, unknown))}; "
            f"it accepts {', '.join(sorted(spec.params))}"
        )
    values = {}
    for name, rule in spec.params.items():
        if name not in config:
            continue
        value = config[name]
        if not rule.accepts(value):
            raise ValueError(f"`{name}` is {value!r}, but must be {rule.describe()}")
        values[name] = _plain(rule.kind, value)
    max_epochs = config.get("max_epochs", DEFAULT_MAX_EPOCHS)
    if isinstance(max_epochs, bool) or not isinstance(max_epochs, numbers.Integral) or max_epochs < 1:
        raise ValueError(f"`max_epochs` is {max_epochs!r}, but must be an integer >= 1")
    max_epochs = int(max_epochs)

    train_names = {f.name for f in fields(TrainConfig)}
    train = TrainConfig(**{k: v for k, v in values.items() if k in train_names})
    arch = {**asdict(ARCHS[model_name]()), **{k: v for k, v in values.items() if k not in train_names}}
    if arch["batch_norm"] and train.batch_size < 2:
        raise ValueError(
            "`batch_size` is 1, but batch_norm needs >= 2 examples per step; raise it or drop batch_norm"
        )
    return TrialConfig(train=train, arch=arch, data=dict(config.get("data") or {}), max_epochs=max_epochs)


def _plain(kind: str, value):
    """A plain Python value: numpy scalars from a sampler would otherwise reach torch and the checkpoint."""
    if kind == "int":
        return int(value)
    if kind == "float":
        return float(value)
    if kind == "bool":
        return bool(value)
    return value


def make_optimizer(model: nn.Module, tc: TrainConfig) -> torch.optim.Optimizer:
    params = model.parameters()
    if tc.optimizer == "sgd":
        # torch rejects nesterov without momentum; the catalog allows the pair, so nesterov applies only when
        # there is momentum to look ahead with.
        nesterov = tc.nesterov and tc.momentum > 0
        return torch.optim.SGD(
            params, lr=tc.lr, momentum=tc.momentum, nesterov=nesterov, weight_decay=tc.weight_decay
        )
    if tc.optimizer == "adam":
        return torch.optim.Adam(params, lr=tc.lr, weight_decay=tc.weight_decay)
    if tc.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=tc.lr, momentum=tc.momentum, weight_decay=tc.weight_decay)
    if tc.optimizer == "adagrad":
        return torch.optim.Adagrad(params, lr=tc.lr, weight_decay=tc.weight_decay)
    raise ValueError(f"`optimizer` is {tc.optimizer!r}, but must be one of {', '.join(OPTIMIZERS)}")


def make_lr_scheduler(optimizer: torch.optim.Optimizer, schedule: str, max_epochs: int):
    """An epoch-stepped scheduler, or None for a constant lr."""
    sched = torch.optim.lr_scheduler
    if schedule == "none":
        return None
    if schedule == "step":
        # x0.1 after half and after three quarters of the epochs, rounded down (15 epochs: after 7 and 11).
        milestones = sorted({max(1, max_epochs // 2), max(1, max_epochs * 3 // 4)})
        return sched.MultiStepLR(optimizer, milestones=milestones, gamma=0.1)
    if schedule == "cosine":
        return sched.CosineAnnealingLR(optimizer, T_max=max_epochs, eta_min=0.0)
    if schedule == "plateau":
        # x0.1 once val_loss has not improved for 3 epochs (patience 2); stepped with val_loss
        return sched.ReduceLROnPlateau(optimizer, mode="min", factor=0.1, patience=2)
    raise ValueError(f"`lr_schedule` is {schedule!r}, but must be one of {', '.join(LR_SCHEDULES)}")


def train_one_epoch(
    model: nn.Module, optimizer: torch.optim.Optimizer, data: Dataset, batch_size: int
) -> float:
    """One pass over a random permutation of the train split; the mean loss over its examples."""
    model.train()
    n = len(data.y_train)
    batch_size = min(batch_size, n)
    # Drop the ragged last batch: a batch of 1 breaks batch norm, and a fresh permutation every epoch means
    # every example still gets seen.
    n_steps = n // batch_size
    perm = torch.randperm(n, device=data.y_train.device)
    loss_sum = torch.zeros((), device=data.y_train.device)
    for step in range(n_steps):
        idx = perm[step * batch_size : (step + 1) * batch_size]
        logits = model(data.x_train[idx])  # (B, num_classes)
        loss = F.cross_entropy(logits, data.y_train[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss_sum += loss.detach()  # kept on the device: no host sync per step
    return loss_sum.item() / n_steps


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) over x, y in a few large batches, in eval mode."""
    model.eval()
    loss_sum = torch.zeros((), device=y.device)
    correct = torch.zeros((), device=y.device, dtype=torch.int64)
    for start in range(0, len(y), EVAL_BATCH_SIZE):
        logits = model(x[start : start + EVAL_BATCH_SIZE])  # (B, num_classes)
        target = y[start : start + EVAL_BATCH_SIZE]
        loss_sum += F.cross_entropy(logits, target, reduction="sum")
        correct += (logits.argmax(dim=1) == target).sum()
    return loss_sum.item() / len(y), correct.item() / len(y)
