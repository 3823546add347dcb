"""constraints.txt: the exact versions `make setup`, CI and the Docker image install, within pyproject's ranges,
for the Python they were resolved for."""

from __future__ import annotations

import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

tomllib = pytest.importorskip("tomllib")  # Python 3.11 on; the pins are for 3.11 too

REPO = Path(__file__).resolve().parents[1]


def _pins() -> dict[str, Requirement]:
    pins = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            pin = Requirement(line)
            assert len(pin.specifier) == 1 and next(iter(pin.specifier)).operator == "==", line
            pins[canonicalize_name(pin.name)] = pin
    return pins


def _version(pin: Requirement) -> str:
    return next(iter(pin.specifier)).version


def _requirements() -> list[Requirement]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    lines = project["dependencies"] + [r for extra in project["optional-dependencies"].values() for r in extra]
    return [Requirement(line) for line in lines]


def test_every_dependency_is_pinned_inside_its_range():
    """A range moved in pyproject.toml without `make constraints` would install what the range no longer
    allows (pip fails) or leave a dependency unpinned: said here, with the package."""
    pins = _pins()
    for req in _requirements():
        name = canonicalize_name(req.name)
        if name == "torch":  # pinned where it is installed (make setup, the Dockerfile's TORCH_SPEC)
            assert name not in pins
            continue
        assert name in pins, f"{req.name} is not in constraints.txt: run `make constraints`"
        assert req.specifier.contains(_version(pins[name]), prereleases=True), (
            f"constraints.txt pins {pins[name]}, outside pyproject's {req}: run `make constraints`")


def test_the_pins_are_for_the_python_of_the_image():
    """Every pin holds for one Python (its marker), the one the Docker image runs: another Python installs
    within pyproject's ranges (requires-python allows older ones, for which some pins do not exist)."""
    image = re.search(r"^FROM python:(\d+\.\d+)", (REPO / "Dockerfile").read_text(), re.M).group(1)
    for pin in _pins().values():
        assert str(pin.marker) == f'python_version == "{image}"', pin


def test_this_environment_has_the_pinned_versions():
    """The suite runs on what `make setup` installed: the versions constraints.txt names (on their Python)."""
    for name, pin in _pins().items():
        if pin.marker.evaluate():
            try:
                installed = metadata.version(name)
            except metadata.PackageNotFoundError:
                continue  # a dependency of a dependency this platform does without
            assert installed == _version(pin), f"{name}: installed {installed}, constraints.txt pins {pin}"


@pytest.mark.slow  # pip freeze: seconds
def test_freeze_constraints_writes_every_installed_distribution_but_pip_and_torch(tmp_path):
    """scripts/freeze-constraints on this venv: the header kept, pip and torch left out, every line with its
    Python's marker, and no pin that differs from what is installed."""
    copy = tmp_path / "scripts"
    copy.mkdir()
    script = copy / "freeze-constraints"
    script.write_text((REPO / "scripts" / "freeze-constraints").read_text())
    (tmp_path / "constraints.txt").write_text("# a header\nold==1 ; python_version == \"3.0\"\n")
    subprocess.run([sys.executable, str(script), sys.executable], check=True, timeout=120)
    lines = (tmp_path / "constraints.txt").read_text().splitlines()
    assert lines[0] == "# a header" and not any(line.startswith("old==") for line in lines)
    names = {canonicalize_name(Requirement(line).name) for line in lines[1:]}
    assert "pip" not in names and "torch" not in names and "numpy" in names
    here = "%d.%d" % sys.version_info[:2]
    assert all(line.endswith(f'; python_version == "{here}"') for line in lines[1:])
    for line in lines[1:]:
        pin = Requirement(line)
        assert metadata.version(pin.name) == _version(pin), line
