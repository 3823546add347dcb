"""service/space/_model.py: the models on their own, without the loader or the cross-section rules."""

from __future__ import annotations

import sys
from dataclasses import asdict, fields

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
