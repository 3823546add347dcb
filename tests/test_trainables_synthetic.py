"""trainables/synthetic.py: curves that cross, a known optimum, the same curve for the same configuration."""

from __future__ import annotations

import pytest

from trainables.synthetic import BEST_CONFIG, KNOWN_BEST, SyntheticConfig, curve, parse_config, run


def _curve(max_epochs: int = 27, **params) -> list[float]:
    reports = []
    run({**params, "max_epochs": max_epochs}, reports.append)
    return [r["val_acc"] for r in reports]


def test_synthetic_optimum_reaches_the_known_best():
    assert _curve(**BEST_CONFIG)[-1] == pytest.approx(KNOWN_BEST, abs=0.01)


def test_synthetic_curves_cross_fast_starters_plateau_slow_starters_finish_best():
    fast = _curve(lr=0.3, width=16, optimizer="adam")
    slow = _curve(**BEST_CONFIG)
    assert fast[0] > slow[0] + 0.3  # judged at epoch 1, the best configuration looks hopeless
    assert slow[-1] > fast[-1] + 0.1


def test_synthetic_same_configuration_same_curve_and_seed_changes_only_the_noise():
    assert _curve(lr=0.02, width=100) == _curve(lr=0.02, width=100)
    other = _curve(lr=0.02, width=100, seed=1)
    assert other != _curve(lr=0.02, width=100)
    assert max(abs(a - b) for a, b in zip(other, _curve(lr=0.02, width=100))) < 0.02


@pytest.mark.parametrize("config, words", [({"units": 3}, "does not accept 'units'"), ({"width": 8}, "`width` is 8")])
def test_synthetic_refuses_what_the_catalog_refuses(config, words):
    with pytest.raises(ValueError, match=words):
        parse_config(config)


def test_synthetic_reports_every_epoch_and_config_keys_reserved_by_the_runner_pass():
    reports = []
    run({"data": {"dataset": "digits"}, "max_epochs": 5}, reports.append)
    assert [r["epoch"] for r in reports] == [1, 2, 3, 4, 5]
    assert set(reports[0]) == {"epoch", "val_acc", "val_loss", "epoch_time_s"}
    assert all(0.0 <= curve(SyntheticConfig(), e, 5) <= 1.0 for e in range(1, 6))
