"""service/space/_model.py: the models on their own, without the loader or the cross-section rules."""

from __future__ import annotations

from dataclasses import asdict, fields

from trainables import DataConfig

from service.space import DataSpec


def test_data_spec_has_the_data_config_fields_and_defaults():
    """config["data"] is a DataConfig built from `DataSpec.model_dump()`: same names, same defaults."""
    assert list(DataSpec.model_fields) == [f.name for f in fields(DataConfig)]
    assert DataSpec().model_dump() == asdict(DataConfig())
