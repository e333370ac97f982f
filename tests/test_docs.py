"""The documentation: the API reference covers every public name, the docstring examples run.

The reference pages are generated from the packages' ``__all__`` lists by
``docs/_apigen.py`` (the same code ``docs/conf.py`` runs); here they are checked
against the lists and against the package tree, and, after a build
(``python -m sphinx -b html docs docs/_build/html``), against the HTML pages.
The ``Examples`` sections of the public names run as doctests (the package is
laid out with a package-dir mapping, so pytest's ``--doctest-modules`` cannot
collect it from the source folders: the modules are imported by their
installed names instead).
"""

import doctest
import importlib
import inspect
import os
import pkgutil
import re
import sys
import types
from pathlib import Path

import numpy as np
import pytest

import tikhon

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
sys.path.insert(0, str(DOCS))
import _apigen

sys.path.remove(str(DOCS))


def _has_torch():
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def _modules():
    mods = list(_apigen.PUBLIC_MODULES)
    return [m for m in mods if m != "tikhon.learned" or _has_torch()]


def _public_packages():
    """Every module of the installed package tree without a private component, that has ``__all__``."""
    found = {"tikhon"}
    for info in pkgutil.walk_packages(tikhon.__path__, "tikhon."):
        if any(part.startswith("_") for part in info.name.split(".")) or not info.ispkg:
            continue
        found.add(info.name)
    return found


def test_reference_lists_every_public_package():
    # a new public subpackage must get a page (PUBLIC_MODULES); plain modules
    # (tikhon.data, tikhon.metrics, tikhon.cli) are listed there by hand
    missing = _public_packages() - set(_apigen.PUBLIC_MODULES)
    assert not missing, f"packages without an API page (add them to docs/_apigen.py): {missing}"


@pytest.mark.parametrize("module", _modules())
def test_reference_lists_every_name_of_all(module):
    mod = importlib.import_module(module)
    page = _apigen.module_page(module)
    entries = set(re.findall(r"^   (\w+)$", page, re.MULTILINE)) | set(re.findall(r"^\.\. data:: (\w+)$", page, re.MULTILINE))
    subpackages = {n for n in mod.__all__ if f"{module}.{n}" in _apigen.PUBLIC_MODULES}
    assert entries == set(mod.__all__) - subpackages
    for name in mod.__all__:  # strict: every listed name imports (autosummary needs it)
        obj = getattr(mod, name)
        if isinstance(obj, types.ModuleType):
            assert f"{module}.{name}" in _apigen.PUBLIC_MODULES


def test_built_html_has_a_page_per_name():
    html = DOCS / "_build" / "html"
    # .ci/run sets TIKHON_REQUIRE_DOCS=1 after its build: there a missing or stale build fails
    skip = pytest.fail if os.environ.get("TIKHON_REQUIRE_DOCS") == "1" else pytest.skip
    if not (html / "api" / "index.html").exists():
        skip("the documentation is not built (python -m sphinx -b html docs docs/_build/html)")
    built = (html / "api" / "index.html").stat().st_mtime
    stubs = [p for d in ("tikhon", "operators", "solvers", "learned") for p in (ROOT / d).rglob("*.pyi")]
    if any(p.stat().st_mtime > built for p in stubs):
        skip("the documentation build is older than the __init__.pyi stubs: rebuild it")
    missing = []
    for module in _modules():
        mod = importlib.import_module(module)
        for name in _apigen.public_names(module):
            if isinstance(getattr(mod, name), (str, int, float)):
                continue  # tikhon.__version__: on the package page
            if not (html / "api" / "generated" / f"{module}.{name}.html").exists():
                missing.append(f"{module}.{name}")
    assert not missing, f"no reference page for {missing}"


# -- doctests --------------------------------------------------------------------
# Examples that take more than about a second each are skipped here (they still
# render in the reference); the list is by object name
SLOW_DOCTESTS = set()


def _doctests():
    """The doctests of every public name (and its methods), grouped by defining module."""
    finder = doctest.DocTestFinder(exclude_empty=True)
    by_module, seen = {}, set()
    for module in _modules():
        mod = importlib.import_module(module)
        for name in _apigen.public_names(module):
            obj = getattr(mod, name)
            if not (inspect.isclass(obj) or callable(obj)) or id(obj) in seen:
                continue
            seen.add(id(obj))
            home = getattr(obj, "__module__", module) or module
            if not home.startswith("tikhon"):
                continue
            for test in finder.find(obj, f"{home}.{obj.__name__}", module=sys.modules.get(home)):
                if test.examples and test.name not in SLOW_DOCTESTS:
                    by_module.setdefault(home, []).append(test)
    return by_module


_TESTS = _doctests()


def test_main_public_functions_have_examples():
    names = {t.name.rsplit(".", 1)[-1] for tests in _TESTS.values() for t in tests}
    main = {"Radon", "Gradient", "dot_test", "stack", "tv_reconstruction", "default_tv_lam",
            "fbp_reconstruction", "pilot_wtv_reconstruction", "space_variant_weights", "admm",
            "sinkhorn", "shepp_logan", "simulate_sinogram", "estimate_noise_sigma", "psnr", "ssim",
            "L1", "smooth_functional", "fista", "ista", "iht", "chambolle_pock"}
    assert main <= names, main - names


@pytest.mark.parametrize("home", sorted(_TESTS))
def test_docstring_examples_run(home):
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    rng_state = np.random.get_state()
    out = []
    try:
        # NumPy's own print options (a pytest plugin may have set legacy="1.13")
        with np.printoptions(legacy=False, linewidth=75, sign="-"):
            for test in _TESTS[home]:
                runner.run(test, out=out.append)
    finally:
        np.random.set_state(rng_state)
    failed, attempted = runner.summarize(verbose=False)
    assert attempted > 0
    assert failed == 0, "".join(out)


# -- README and .gitignore (friction point 6) ------------------------------------
def test_readme_and_gitignore_lines():
    readme = (ROOT / "README.md").read_text()
    assert "demo_out/" in (ROOT / ".gitignore").read_text().split()
    # the demo runs four methods, learned weights included
    intro = readme.split("<!-- demo-command -->")[0]
    assert "learned" in intro and "wtv" in intro
    # how to get the small CPU build of torch on an ordinary machine
    assert "--index-url https://download.pytorch.org/whl/cpu" in readme
    # asv needs the machine registered before the first run
    assert readme.index("asv machine --yes") < readme.index("asv run --python=same --quick")
    # how to build and open the documentation
    assert "python -m sphinx -W --keep-going -b html docs docs/_build/html" in readme
    assert "docs/_build/html/index.html" in readme
