"""Sphinx configuration of tikhon's documentation.

Build (quick gallery, warnings as errors, as CI does)::

    pip install -e ".[docs]"
    python -m sphinx -W --keep-going -b html docs docs/_build/html

The gallery runs every ``examples/plot_*.py`` with ``TIKHON_EXAMPLES_QUICK=1``
(small sizes) unless the environment sets ``TIKHON_EXAMPLES_QUICK=0`` (the full
runs that reproduce the published numbers: an hour or more on 2 cores).
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # _apigen

import _apigen

import tikhon

# -- the examples: quick mode, outputs out of the source tree ------------------
os.environ.setdefault("TIKHON_EXAMPLES_QUICK", "1")
_EXAMPLE_OUT = HERE / "_build" / "example_outputs"
_EXAMPLE_OUT.mkdir(parents=True, exist_ok=True)
os.environ.setdefault("TIKHON_EXAMPLES_OUT", str(_EXAMPLE_OUT))
os.environ.setdefault("MPLBACKEND", "Agg")

# -- project -------------------------------------------------------------------
project = "tikhon"
author = "the tikhon developers"
copyright = "the tikhon developers, BSD-3-Clause"
release = tikhon.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
    "sphinx_copybutton",
]
try:  # renders docs/architecture.md (pip install myst-parser; in the docs extra)
    import myst_parser  # noqa: F401
except ImportError:
    _MYST = False
else:
    _MYST = True
    extensions.append("myst_parser")
    myst_heading_anchors = 3

source_suffix = {".rst": "restructuredtext"}
if _MYST:
    source_suffix[".md"] = "markdown"
templates_path = ["_templates"]
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "auto_examples/*.ipynb",
                    "auto_examples/*.py", "auto_examples/*.zip", "sg_execution_times.rst"]
if not _MYST:
    exclude_patterns.append("architecture.md")
    architecture_fallback = True
root_doc = "index"
default_role = "literal"  # `x` in docstrings is code, not a failed reference
nitpicky = True  # a reference to a name that is not documented fails the build
# types named in signatures and docstrings that live in other libraries (no
# intersphinx: the build runs offline)
nitpick_ignore_regex = [
    (r"py:.*", r"(numpy|np|scipy|torch|sklearn|matplotlib|ot|dask|distributed|numba)(\..*)?"),
    (r"py:.*", r"(array|array_like|array-like|ndarray|Tensor|tensor|optional|callable|dtype)"),
    (r"py:.*", r"(int|float|bool|str|tuple|list|dict|object|None|slice|Path|os\.PathLike)"),
    (r"py:.*", r"(skimage|astra|odl|pylops|pyproximal|cvxpy|celer|skglm)(\..*)?"),
    # private names (a private base class in "Bases:"): not documented by design
    (r"py:.*", r"(.*\.)?_[A-Za-z]\w*"),
]

# -- autodoc / autosummary / numpydoc -----------------------------------------
autosummary_generate = True
autosummary_imported_members = True
autodoc_typehints = "none"  # numpydoc's Parameters sections carry the types
autodoc_member_order = "bysource"
autodoc_default_options = {
    # scikit-learn's metadata-routing methods of estimators (their docstrings
    # refer to scikit-learn's glossary)
    "exclude-members": "__init__, __new__, set_fit_request, set_score_request, "
                       "set_predict_request, set_partial_fit_request, get_metadata_routing",
}
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False
# checks that fail the build (-W): a public name without a docstring (GL08),
# undocumented or unknown parameters (PR01, PR02), a missing Returns section
# where the function returns a value (RT01), Raises/Yields mismatches are left out
numpydoc_validation_checks = {"GL08", "PR01", "PR02", "RT01"}
numpydoc_validation_exclude = {
    # the public names themselves are validated, not their members: numpydoc
    # cannot locate the source of some class attributes (a StopIteration in
    # numpydoc.validate) and methods of the solver protocol share one contract
    r"\.[A-Z]\w*\.\w+$",
    r"\.__init__$",
    r"\._[a-zA-Z0-9]\w*$",  # private helpers reached through inheritance
    r"\.(forward|adjoint|step|init|monitor|optimality|start|due|done|finish|describe)$",
    r"\.(prox|conj|grad|value_and_grad|norm|abs|T|H)$",
    r"\.(extra_repr|train|eval|predict|fit|score|get_params|set_params)$",
    r"^builtins\.",
    # dataclasses documented by their Attributes (the fields are the parameters)
    r"^tikhon\.solvers\.Result$",
    # the internals page (docs/internals.rst): states and helpers that callbacks
    # and extensions meet, documented where they are defined
    r"^tikhon\._core\.",
    r"State$",
    r"\._\w+\.\w+$",
    r"^tikhon\.solvers\.primal_dual\.preconditioned_steps$",
    r"^tikhon\.operators\.prox\.(groups|indicators)\.",
}

# -- the gallery -----------------------------------------------------------------
sphinx_gallery_conf = {
    "examples_dirs": "../examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",  # train_tv_weight_net.py is shown, not run
    "ignore_pattern": r"__init__\.py",
    "image_scrapers": ("matplotlib",),
    "within_subsection_order": "FileNameSortKey",
    "reset_modules": ("matplotlib",),
    "download_all_examples": False,
    "remove_config_comments": True,
    "show_memory": False,
    "min_reported_time": 1,
    "backreferences_dir": None,
}

# -- HTML ----------------------------------------------------------------------
html_theme = "pydata_sphinx_theme"
html_title = f"tikhon {release}"
html_static_path = []
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "header_links_before_dropdown": 6,
}
html_show_sourcelink = False
copybutton_prompt_text = r">>> |\.\.\. |\$ "
copybutton_prompt_is_regexp = True


# -- references to a module path resolve to the public name ---------------------
_PUBLIC = {}


def _public_index():
    if not _PUBLIC:
        for module in _apigen.PUBLIC_MODULES:
            mod = importlib.import_module(module)
            for name in _apigen.public_names(module):
                try:
                    obj = getattr(mod, name)
                except Exception:  # reported by autosummary
                    continue
                _PUBLIC.setdefault(id(obj), f"{module}.{name}")
    return _PUBLIC


def _lookup(target):
    """The object a dotted path names, or None."""
    parts = target.split(".")
    for i in range(len(parts) - 1, 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except Exception:
            continue
        try:
            for attr in parts[i:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return None
        return obj
    return None


def _resolve_public(app, env, node, contnode):
    """``:func:`~tikhon.solvers.primal_dual.chambolle_pock``` -> ``tikhon.solvers.chambolle_pock``.

    Docstrings name objects by the module that defines them; the reference
    documents them under their public package (a method under its public
    class). A target that names no documented object stays unresolved, and
    fails the build.
    """
    if node.get("refdomain") != "py":
        return None
    target = node.get("reftarget", "")
    if not target.startswith("tikhon."):
        return _resolve_unique(app, env, node, contnode, target)
    index = _public_index()
    obj = _lookup(target)
    public = index.get(id(obj)) if obj is not None else None
    if public is None and "." in target:
        owner, _, attr = target.rpartition(".")
        parent = _lookup(owner)
        if parent is not None and id(parent) in index:
            public = f"{index[id(parent)]}.{attr}"
    if public is None or public == target:
        return _resolve_unique(app, env, node, contnode, target.rpartition(".")[2]
                               if public is None else target)
    new = node.deepcopy()
    new["reftarget"] = public
    return env.get_domain("py").resolve_xref(env, node["refdoc"], app.builder, node["reftype"],
                                             public, new, contnode)


def _resolve_unique(app, env, node, contnode, target):
    """A short name (``PDHGState``) that names exactly one documented object resolves to it."""
    domain = env.get_domain("py")
    matches = domain.find_obj(env, None, None, target, node.get("reftype"), 1)
    if len(matches) != 1:
        return None
    new = node.deepcopy()
    new["reftarget"] = matches[0][0]
    return domain.resolve_xref(env, node["refdoc"], app.builder, node["reftype"], matches[0][0],
                               new, contnode)


# the API pages are written before autosummary reads them
_apigen.write_api(HERE / "api")


def setup(app):
    app.connect("missing-reference", _resolve_public)
