"""Generate the API reference pages from the packages' ``__all__`` lists.

Called by ``docs/conf.py`` at the start of every build (so a name added to a
package's ``__init__.pyi`` appears without editing the docs) and by
``tests/test_docs.py`` (which checks the pages against the ``__all__`` lists).
Each public package gets one page ``docs/api/<package>.rst`` with an
``autosummary`` table; autosummary writes one page per name under
``docs/api/generated/``.
"""

from __future__ import annotations

import importlib
import inspect
import types
from pathlib import Path

#: The public packages, in the order of the reference, with a one-line summary.
PUBLIC_MODULES = {
    "tikhon": "The import root: the version.",
    "tikhon.data": "Phantoms, noise models, sinogram simulation and the noise estimate.",
    "tikhon.metrics": "Image quality metrics.",
    "tikhon.operators": "Linear operators and the dot test.",
    "tikhon.operators.prox": "Functionals with proximal maps.",
    "tikhon.solvers": "Solvers, their result, and the CT recipes.",
    "tikhon.solvers.transport": "Optimal transport.",
    "tikhon.solvers.bilevel": "Bilevel learning of regularization parameters.",
    "tikhon.learned": "Torch modules on tikhon's interfaces (needs PyTorch).",
}


def public_names(module_name):
    """``module.__all__`` without the subpackages (they have their own page)."""
    mod = importlib.import_module(module_name)
    names = []
    for name in mod.__all__:
        if f"{module_name}.{name}" in PUBLIC_MODULES:
            continue
        names.append(name)
    return names


def _kind(module_name, name):
    """'data' for plain values (``__version__``), else 'object' (autosummary can document it)."""
    try:
        obj = getattr(importlib.import_module(module_name), name)
    except Exception:  # an import error is autosummary's to report, with the name
        return "object"
    if isinstance(obj, (str, int, float, tuple, dict)) and not inspect.isclass(obj):
        return "data"
    if isinstance(obj, types.ModuleType):
        return "module"
    return "object"


def module_page(module_name):
    """The reST of one package's reference page."""
    title = f"``{module_name}``"
    lines = [f".. _api-{module_name}:", "", title, "=" * len(title), "",
             f".. module:: {module_name}", "", PUBLIC_MODULES[module_name], ""]
    mod = importlib.import_module(module_name)
    if mod.__doc__:
        # the package docstring's first paragraph, as prose (not an automodule:
        # its members are the table below)
        first = inspect.cleandoc(mod.__doc__).split("\n\n")[0]
        if not first.startswith(module_name):
            lines += [first, ""]
    names = public_names(module_name)
    objects = [n for n in names if _kind(module_name, n) == "object"]
    data = [n for n in names if _kind(module_name, n) == "data"]
    subs = [m for m in PUBLIC_MODULES if m.rpartition(".")[0] == module_name]
    if objects:
        lines += [".. autosummary::", "   :toctree: generated/", "   :nosignatures:", ""]
        lines += [f"   {n}" for n in sorted(objects, key=str.lower)]
        lines.append("")
    for n in data:
        value = getattr(mod, n)
        lines += [f".. data:: {n}", f"   :value: {value!r}", "", f"   ``{module_name}.{n}``.", ""]
    if subs:
        lines += ["Subpackages: " + ", ".join(f":ref:`{m} <api-{m}>`" for m in subs) + ".", ""]
    if not names:
        lines += ["No public names yet: this package is planned.", ""]
    return "\n".join(lines)


def index_page():
    lines = [".. _api:", "", "API reference", "=============", "",
             "Every public name of tikhon, package by package: the pages are generated from "
             "each package's ``__all__`` (its ``__init__.pyi`` stub) at every build.", "",
             ".. toctree::", "   :maxdepth: 1", ""]
    lines += [f"   {m}" for m in PUBLIC_MODULES]
    return "\n".join(lines) + "\n"


def write_api(out_dir):
    """Write ``index.rst`` and one page per package into ``out_dir``; only changed files are touched."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pages = {"index.rst": index_page()}
    pages.update({f"{m}.rst": module_page(m) for m in PUBLIC_MODULES})
    for name, text in pages.items():
        path = out / name
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
    return pages
