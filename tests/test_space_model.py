"""service/space/_model.py: the models on their own, without the loader or the cross-section rules."""

from __future__ import annotations

import sys
from dataclasses import asdict, fields
from typing import Optional

import pytest

from trainables import DataConfig

from service.space import DataSpec, SearchSpace


def test_data_spec_has_the_data_config_fields_and_defaults():
    """config["data"] is a DataConfig built from `DataSpec.model_dump()`: same names, same defaults."""
    assert list(DataSpec.model_fields) == [f.name for f in fields(DataConfig)]
    assert DataSpec().model_dump() == asdict(DataConfig())


def test_search_space_builds_without_importing_the_trainable_or_reading_data(tmp_path, monkeypatch):
    """The model checks sections only; the trainable and the files are checked later, by parse_space."""
    (tmp_path / "hps_model_probe.py").write_text("raise RuntimeError('imported')\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    space = SearchSpace.model_validate(
        {
            "name": "pure",
            "trainable": "hps_model_probe:train",
            "metric": "score",
            "data": {"dataset": "csv", "path": str(tmp_path / "missing.csv"), "target": "y"},
            "params": {"x": {"type": "int", "low": 1, "high": 4}},
        }
    )
    assert space.trainable == "hps_model_probe:train" and space.data.path.endswith("missing.csv")
    assert "hps_model_probe" not in sys.modules


def _space(scheduler: dict, max_epochs: int = 27, sampler: Optional[dict] = None) -> SearchSpace:
    return SearchSpace.model_validate({"name": "g", "trainable": "synthetic", "metric": "val_acc",
                                       "budget": {"max_epochs": max_epochs}, "scheduler": scheduler,
                                       "sampler": sampler or {}, "params": {"lr": {"type": "float", "low": 0.01, "high": 1}}})


@pytest.mark.parametrize(
    "grace, max_epochs, stored, epochs",
    [
        (1, 27, 1, 1),
        ("3", 27, 3, 3),
        (4.0, 27, 4, 4),
        ("25%", 27, "25%", 7),  # 6.75 rounds to 7
        (" 10 % ", 27, "10%", 3),  # 2.7 -> 3
        ("100%", 27, "100%", 27),
        ("1%", 27, "1%", 1),  # never below one epoch
        ("12.5%", 8, "12.5%", 1),
        (0.25, 27, 0.25, 7),
        (0.5, 15, 0.5, 8),  # 7.5 rounds half up
        (0.01, 10, 0.01, 1),
    ],
)
def test_scheduler_grace_period_epochs_or_share_of_max_epochs(grace, max_epochs, stored, epochs):
    space = _space({"type": "asha", "grace_period": grace}, max_epochs)
    assert space.scheduler.grace_period == stored
    assert space.grace_epochs == epochs
    assert SearchSpace.model_validate({**space.to_dict()}).grace_epochs == epochs  # round trip keeps the share


def test_sampler_deterministic_round_trips_and_defaults_off():
    assert _space({}).sampler.deterministic is False and "deterministic" not in _space({}).to_dict()["sampler"]
    space = _space({}, sampler={"type": "tpe", "seed": 3, "deterministic": True, "n_startup_trials": 5})
    assert space.sampler.deterministic and space.sampler.options == {"n_startup_trials": 5}
    assert space.to_dict()["sampler"] == {"type": "tpe", "seed": 3, "n_startup_trials": 5, "deterministic": True}
