"""service/space/_trainable.py: built-in and user trainables, and the policy that admits user modules."""

from __future__ import annotations

import sys

import pytest

from service.space import SpaceError, TrainablePolicy, parse_space

SPACE = """\
name: policy
trainable: {trainable}
metric: val_acc
params:
  lr: {{type: float, low: 0.001, high: 0.1}}
"""
TRAINABLE_LINE = 2


def _parse(trainable: str, policy: TrainablePolicy, **kwargs):
    return parse_space(SPACE.format(trainable=trainable), source="space.yaml", trainables=policy, **kwargs)


@pytest.mark.parametrize("builtin", ["mlp", "cnn", "synthetic"])
def test_trainable_policy_admitted_always_passes_builtins(builtin):
    assert _parse(builtin, TrainablePolicy.admitted([])).trainable == builtin


@pytest.mark.parametrize(
    "target, admitted",
    [
        ("mylab.models:train", True),
        ("mylab.models.deep:train", True),
        ("mylab.models.deep.er:train", True),
        ("mylab.modelsx:train", False),
        ("mylab:train", False),
        ("mylab.model:train", False),
        ("other.pkg:fit", True),
        ("other:fit", False),
        ("os:system", False),
        ("subprocess:run", False),
        ("subprocess:Popen", False),
        ("builtins:exec", False),
        ("this:x", False),
        ("antigravity:x", False),
        ("pip.__main__:x", False),
        (".relative:x", False),
        ("..mylab.models:train", False),
        (".mylab.models:train", False),
    ],
)
def test_trainable_policy_admits_only_modules_inside_a_prefix(target, admitted):
    policy = TrainablePolicy.admitted(["mylab.models", "other.pkg"])
    if admitted:
        assert _parse(target, policy).trainable == target
        return
    with pytest.raises(SpaceError) as caught:
        _parse(target, policy)
    error = caught.value
    assert (error.line, error.field, error.value) == (TRAINABLE_LINE, "trainable", target), str(error)
    assert "trainable policy" in error.message and "HPSEARCH_TRAINABLE_MODULES" in error.message
    assert "admitted: mylab.models, other.pkg" in error.message
    assert "ask the cluster admin to add the module to HPSEARCH_TRAINABLE_MODULES and install it in the image" in error.hint


@pytest.mark.parametrize("target", ["mylab.models:train:again", "mylab.models:train\\n", "mylab.models..x:train"])
def test_trainable_policy_admitted_refuses_malformed_names_inside_a_prefix(target):
    with pytest.raises(SpaceError, match="is not package.module:function"):
        _parse(f'"{target}"', TrainablePolicy.admitted(["mylab.models"]))


@pytest.fixture
def probes(tmp_path, monkeypatch):
    """Modules that would be found from the space's folder, the current one and sys.path, and that write a
    marker file when imported."""
    package = tmp_path / "hps_probe_admitted"
    package.mkdir()
    for path, name in ((package / "__init__.py", "package"), (package / "models.py", "models"), (tmp_path / "hps_probe_refused.py", "refused")):
        path.write_text(f"open({str(tmp_path / name)!r} + '.imported', 'w').close()\ndef train(config):\n    pass\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name in ("hps_probe_admitted", "hps_probe_admitted.models", "hps_probe_refused"):
        sys.modules.pop(name, None)


def _imported(folder) -> list[str]:
    return sorted(p.stem for p in folder.glob("*.imported"))


def test_trainable_policy_admitted_never_imports_the_module(probes):
    policy = TrainablePolicy.admitted(["hps_probe_admitted"])
    assert _parse("hps_probe_admitted.models:train", policy, base_dir=probes).trainable_spec is None
    with pytest.raises(SpaceError, match="not admitted"):
        _parse("hps_probe_refused:train", policy, base_dir=probes)
    assert _imported(probes) == []
    assert not {"hps_probe_admitted", "hps_probe_admitted.models", "hps_probe_refused"} & set(sys.modules)


def test_trainable_policy_local_imports_the_module_to_check_it(probes):
    """The counterpart of the test above: the probes do record an import when one happens."""
    _parse("hps_probe_admitted.models:train", TrainablePolicy.local(), base_dir=probes)
    _parse("hps_probe_refused:train", TrainablePolicy.local(), base_dir=probes)
    assert _imported(probes) == ["models", "package", "refused"]


def test_trainable_policy_local_is_the_default(probes):
    assert TrainablePolicy.local().imports and not TrainablePolicy.admitted(["x"]).imports
    parse_space(SPACE.format(trainable="hps_probe_refused:train"), base_dir=probes)
    assert _imported(probes) == ["refused"]


@pytest.mark.parametrize(
    "value, modules",
    [
        (None, ()),
        ("", ()),
        ("mylab.models", ("mylab.models",)),
        ("mylab.models, other.pkg ,,", ("mylab.models", "other.pkg")),
    ],
)
def test_trainable_policy_from_env(value, modules):
    environ = {} if value is None else {"HPSEARCH_TRAINABLE_MODULES": value}
    policy = TrainablePolicy.from_env(environ)
    assert policy.modules == modules and not policy.imports


@pytest.mark.parametrize("prefix", ["my-lab", ".mylab", "mylab.", "mylab..models", "mylab:train", "mylab\n", "", 3])
def test_trainable_policy_refuses_a_prefix_that_is_not_a_module_name(prefix):
    with pytest.raises(ValueError, match="HPSEARCH_TRAINABLE_MODULES"):
        TrainablePolicy.admitted([prefix])


def test_trainable_policy_a_driver_refuses_a_function_an_admitted_module_only_imported(tmp_path, monkeypatch):
    """The name check admits `hps_reexport:system` (the module is admitted), but `system` is os.system, which
    the module merely imported: a driver refuses it before running anything (service/_runner.py), and runs
    the module's own `train`. The local policy checks nothing here."""
    (tmp_path / "hps_reexport.py").write_text("from os import system\nfrom os import path\ndef train(config):\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        policy = TrainablePolicy.admitted(["hps_reexport"])
        for borrowed, home in (("system", "posix"), ("path", "nowhere")):
            with pytest.raises(SpaceError, match=f"comes from '{home}'") as refused:
                policy.check_loaded(f"hps_reexport:{borrowed}")
            assert refused.value.field == "trainable" and refused.value.value == f"hps_reexport:{borrowed}"
        policy.check_loaded("hps_reexport:train")
        policy.check_loaded("mlp")  # a built-in
        TrainablePolicy.local().check_loaded("hps_reexport:system")
    finally:
        sys.modules.pop("hps_reexport", None)


def test_trainable_policy_a_driver_fails_the_study_with_the_reason_when_the_module_does_not_import(tmp_path, monkeypatch):
    """Not installed where the driver runs, raising or exiting while it imports: a SpaceError naming the module
    and the cause (the study fails with it), never a traceback or a silent exit."""
    (tmp_path / "hps_broken.py").write_text("raise RuntimeError('no GPU driver here')\n")
    (tmp_path / "hps_exits.py").write_text("import sys\nsys.exit(0)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    policy = TrainablePolicy.admitted(["hps_missing", "hps_broken", "hps_exits"])
    try:
        for target, says in (("hps_missing:train", "is not importable"),
                             ("hps_broken:train", "RuntimeError: no GPU driver here"),
                             ("hps_exits:train", "SystemExit")):
            with pytest.raises(SpaceError, match=says) as refused:
                policy.check_loaded(target)
            assert refused.value.field == "trainable" and refused.value.value == target
    finally:
        for name in ("hps_broken", "hps_exits"):
            sys.modules.pop(name, None)
