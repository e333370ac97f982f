"""Packaging: every mapped subpackage is installed, and nothing else is top-level."""

import ast
import importlib
import inspect
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAPPED = {"operators": "tikhon.operators", "solvers": "tikhon.solvers", "learned": "tikhon.learned"}
# the packages of the public API that need no torch (tikhon.learned does)
PUBLIC_MODULES = ("tikhon.operators", "tikhon.operators.prox", "tikhon.solvers", "tikhon.solvers.transport")


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
    missing = []
    for module in map(importlib.import_module, PUBLIC_MODULES):
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


def _stubs():
    return sorted(p for folder in ("tikhon", *MAPPED) for p in (ROOT / folder).rglob("__init__.pyi"))


def _stub_names(path):
    """The names a stub imports (what lazy_loader loads) and the names its ``__all__`` lists."""
    tree = ast.parse(path.read_text())
    imported, listed = set(), None
    for node in tree.body:
        if isinstance(node, ast.ImportFrom):
            imported |= {alias.asname or alias.name for alias in node.names}
        target = node.target if isinstance(node, ast.AnnAssign) else (
            node.targets[0] if isinstance(node, ast.Assign) else None)
        if isinstance(target, ast.Name) and target.id == "__all__":
            listed = set(ast.literal_eval(node.value))
    return imported, listed


def test_every_lazy_package_has_a_consistent_stub():
    """Each ``__init__.pyi`` lists in ``__all__`` exactly the names it imports.

    lazy_loader loads the imported names; a type checker re-exports only those
    in ``__all__``: a name missing from one of the two would work at run time
    and be invisible to the checker, or the reverse.
    """
    stubs = _stubs()
    public = [init for folder in MAPPED for init in (ROOT / folder).rglob("__init__.py")
              if not any(part.startswith("_") for part in init.parent.relative_to(ROOT).parts)]
    missing = [str(init.relative_to(ROOT)) for init in public if init.with_suffix(".pyi") not in stubs]
    assert not missing, f"public packages without an __init__.pyi stub: {missing}"
    for path in stubs:
        imported, listed = _stub_names(path)
        assert listed is not None, f"{path.relative_to(ROOT)} has no __all__"
        assert imported == listed, (
            f"{path.relative_to(ROOT)}: imported but not in __all__: {sorted(imported - listed)}; "
            f"in __all__ but not imported: {sorted(listed - imported)}"
        )
        assert "attach_stub" in (path.with_suffix(".py")).read_text()


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """A venv with ``pip install .`` (not editable) of the sources, and its python.

    The sources are copied first: setuptools reuses the ``build/`` folder of
    the tree it builds from, whose stale copies of removed modules would
    otherwise end up in the wheel.
    """
    tmp = tmp_path_factory.mktemp("install")
    src = tmp / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("tikhon", *MAPPED):
        shutil.copytree(ROOT / name, src / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    python = venv / ("Scripts" if os.name == "nt" else "bin") / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--no-deps", str(src)],
        check=True,
        cwd=tmp,
    )
    return python, venv


@pytest.mark.slow
def test_regular_install_works(installed, tmp_path):
    """``pip install .`` (not editable) gives importable subpackages from site-packages, stubs included."""
    python, venv = installed
    code = (
        "import importlib.util, tikhon, tikhon.operators, tikhon.solvers, tikhon.operators.prox\n"
        f"assert tikhon.operators.__file__.startswith({str(venv)!r}), tikhon.operators.__file__\n"
        "assert importlib.util.find_spec('operators') is None\n"
        "assert importlib.util.find_spec('solvers') is None\n"
        "from tikhon.solvers import fista\n"
        "print(tikhon.__file__)\n"
    )
    proc = subprocess.run([str(python), "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    site = Path(proc.stdout.strip()).parent.parent
    for stub in _stubs():
        rel = stub.relative_to(ROOT)
        target = site.joinpath(*MAPPED.get(rel.parts[0], rel.parts[0]).split("."), *rel.parts[1:])
        assert target.is_file(), f"{rel} is not installed (package-data)"


def _revealed_matches(revealed, obj):
    """Whether mypy's revealed type is that of ``obj``: its class, its signature or a module."""
    if inspect.ismodule(obj):
        return revealed == "types.ModuleType"
    if not revealed.startswith("def ("):  # Any, a module where a function was meant, ...
        return False
    try:
        expected = list(inspect.signature(obj).parameters)
    except ValueError:  # a builtin's constructor (an exception class) has no signature
        expected = None
    if expected is not None and re.findall(r"[(,] ?\**(\w+):", revealed) != expected:
        return False
    return not isinstance(obj, type) or revealed.endswith(f"-> {obj.__module__}.{obj.__qualname__}")


@pytest.mark.slow
def test_static_checker_resolves_public_names(installed, tmp_path):
    """mypy, run on the non-editable install, sees every public name as the real object.

    An editable install with package-dir mapping is an import hook, which
    static checkers do not run; the regular install is what users' checkers see.
    """
    python, _ = installed
    objects = {f"{module.__name__}.{name}": getattr(module, name)
               for module in map(importlib.import_module, PUBLIC_MODULES) for name in module.__all__}
    lines = []
    for key in objects:
        module, name = key.rsplit(".", 1)
        alias = key.replace(".", "_")
        lines += [f"from {module} import {name} as {alias}", f"reveal_type({alias})"]
    probe = tmp_path / "probe.py"
    probe.write_text("\n".join(lines) + "\n")
    # tikhon's own modules are read but not reported on; numpy's and torch's
    # (which tikhon's modules import) are not read at all: they would take most
    # of the time (torch alone 15 s) and change no revealed signature here
    (tmp_path / "mypy.ini").write_text(
        "[mypy]\nfollow_imports = silent\nignore_missing_imports = True\n"
        "[mypy-numpy.*,torch.*]\nfollow_imports = skip\n"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", "mypy.ini", "--python-executable", str(python),
         "--cache-dir", str(tmp_path / "cache"), "--no-error-summary", probe.name],
        cwd=tmp_path, capture_output=True, text=True,
    )
    assert "Revealed type" in proc.stdout, proc.stdout + proc.stderr  # mypy ran (the test extra has it)
    revealed = dict(re.findall(r'^probe\.py:(\d+): note: Revealed type is "(.*)"$', proc.stdout, re.M))
    wrong = []
    for i, (key, obj) in enumerate(objects.items()):
        got = revealed.get(str(2 * i + 2), "(nothing revealed)")
        if not _revealed_matches(got, obj):
            wrong.append(f"{key}: {got}")
    errors = [line for line in proc.stdout.splitlines() if ": error:" in line]
    assert len(objects) > 60 and not wrong, "\n".join(["mypy does not resolve:", *wrong, *errors])
