"""trainables/__init__.py: the public names, and that importing the package stays torch- and Ray-free."""

from __future__ import annotations

import subprocess
import sys

import trainables


def test_import_trainables_imports_neither_torch_nor_ray():
    code = (
        "import sys, trainables\n"
        "trainables.check_data({'dataset': 'digits'})\n"  # the service's validation path, torch-free too
        "heavy = [m for m in ('torch', 'ray', 'pandas', 'sklearn') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=trainables.__path__[0] + "/..")


def test_every_public_name_resolves():
    for name in trainables.__all__:
        assert getattr(trainables, name) is not None, name
    assert issubclass(trainables.DataError, ValueError)
    assert issubclass(trainables.TrialDiverged, RuntimeError)
