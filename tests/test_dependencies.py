"""constraints.txt: the exact versions `make setup`, CI and the Docker image install, within pyproject's ranges."""

from __future__ import annotations

import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]


def _pins() -> dict[str, str]:
    pins = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"constraints.txt: {line!r} is not NAME==VERSION"
            pins[canonicalize_name(name)] = version.strip()
    return pins


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
        assert req.specifier.contains(pins[name], prereleases=True), (
            f"constraints.txt pins {req.name}=={pins[name]}, outside pyproject's {req}: run `make constraints`")


def test_this_environment_has_the_pinned_versions():
    """The suite runs on what `make setup` installed: the versions constraints.txt names."""
    pins = _pins()
    for req in _requirements():
        name = canonicalize_name(req.name)
        if name in pins:
            assert metadata.version(req.name) == pins[name], f"{req.name}: installed {metadata.version(req.name)}"


def test_setup_and_the_image_install_with_the_constraints():
    makefile = (REPO / "Makefile").read_text()
    assert 'pip install --quiet -c constraints.txt -e ".[test]"' in makefile
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "pip install -c /tmp/constraints.txt -r /tmp/requirements.txt" in dockerfile
