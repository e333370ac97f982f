"""Packaging: every mapped subpackage is installed, and nothing else is top-level."""

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAPPED = {"operators": "tikhon.operators", "solvers": "tikhon.solvers", "learned": "tikhon.learned"}


def _pyproject():
    with open(ROOT / "pyproject.toml", "rb") as fh:
        return tomllib.load(fh)


def _packages_in_tree():
    found = {"tikhon"}
    for folder, package in MAPPED.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder)
            found.add(".".join([package, *rel.parts]) if rel.parts else package)
    for init in (ROOT / "tikhon").rglob("__init__.py"):
        rel = init.parent.relative_to(ROOT / "tikhon")
        found.add(".".join(["tikhon", *rel.parts]) if rel.parts else "tikhon")
    return found


def test_every_subpackage_is_listed():
    listed = set(_pyproject()["tool"]["setuptools"]["packages"])
    missing = _packages_in_tree() - listed
    assert not missing, f"add these packages to pyproject.toml [tool.setuptools] packages: {sorted(missing)}"
    stale = listed - _packages_in_tree()
    assert not stale, f"pyproject.toml lists packages that do not exist: {sorted(stale)}"


def test_package_dir_mapping():
    mapping = _pyproject()["tool"]["setuptools"]["package-dir"]
    for folder, package in MAPPED.items():
        assert mapping[package] == folder


@pytest.mark.parametrize("name", sorted(MAPPED))
def test_bare_top_level_import_is_refused(name):
    proc = subprocess.run(
        [sys.executable, "-c", f"import {name}"], cwd=ROOT, capture_output=True, text=True
    )
    assert proc.returncode != 0
    assert f"tikhon.{name}" in proc.stderr


def test_import_does_not_load_torch():
    code = (
        "import sys, tikhon, tikhon.operators, tikhon.operators.prox, tikhon.solvers, "
        "tikhon.solvers.transport\n"
        "assert 'torch' not in sys.modules, 'torch imported eagerly'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT.parent)


def test_public_names_resolve():
    import tikhon.operators
    import tikhon.operators.prox
    import tikhon.solvers
    import tikhon.solvers.transport

    missing = []
    for module in (tikhon.operators, tikhon.operators.prox, tikhon.solvers, tikhon.solvers.transport):
        for name in module.__all__:
            try:
                getattr(module, name)
            except (AttributeError, ImportError, ModuleNotFoundError):
                missing.append(f"{module.__name__}.{name}")
    assert not missing, f"public names that do not resolve: {sorted(missing)}"


def test_star_imports():
    code = (
        "from tikhon.operators import *\nfrom tikhon.operators.prox import *\n"
        "from tikhon.solvers import *\nfrom tikhon.solvers.transport import *\n"
        "from tikhon.learned import *\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT.parent)


@pytest.mark.slow
def test_regular_install_works(tmp_path):
    """``pip install .`` (not editable) gives importable subpackages from site-packages."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    python = venv / ("Scripts" if os.name == "nt" else "bin") / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--no-deps", str(ROOT)],
        check=True,
        cwd=tmp_path,
    )
    code = (
        "import importlib.util, tikhon, tikhon.operators, tikhon.solvers, tikhon.operators.prox\n"
        f"assert tikhon.operators.__file__.startswith({str(venv)!r}), tikhon.operators.__file__\n"
        "assert importlib.util.find_spec('operators') is None\n"
        "assert importlib.util.find_spec('solvers') is None\n"
        "print('ok')\n"
    )
    proc = subprocess.run([str(python), "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
