"""The documentation: the API reference builds, and the public API has docstrings.

(a) `mkdocs build --strict` of `mkdocs.yml` into a temporary folder (skipped when the `dev` extra's
mkdocs is not installed); (b) in every module of the package, every public name (its `__all__`, or
its public globals), and every public method and property of those classes (defined in reparam,
inherited ones included), has a non-empty `inspect.getdoc`.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import reparam

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTED_MODULES = tuple(["reparam"] + [info.name for info in pkgutil.walk_packages(reparam.__path__, "reparam.")])
"""Every module of the package: each public function, class, method and property needs a docstring."""


def test_docs_build_strict(tmp_path):
    for module in ("mkdocs", "mkdocstrings", "mkdocstrings_handlers.python", "material"):
        if importlib.util.find_spec(module.split(".")[0]) is None:
            pytest.skip(f"{module} is not installed (pip install -e '.[dev]')")
    if not (ROOT / "mkdocs.yml").exists():
        pytest.skip("no mkdocs.yml (not a source checkout)")
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mkdocs",
            "build",
            "--strict",
            "--config-file",
            str(ROOT / "mkdocs.yml"),
            "--site-dir",
            str(tmp_path / "site"),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{result.stdout}\n{result.stderr}"
    for page in ("index.html", "architecture/index.html", "api/distributions/index.html"):
        assert (tmp_path / "site" / page).is_file(), page


def public_names(module) -> list[str]:
    names = getattr(module, "__all__", None)
    if names is None:
        names = [n for n in vars(module) if not n.startswith("_")]
    return list(names)


def is_ours(obj) -> bool:
    return getattr(obj, "__module__", "").startswith("reparam")


def class_members(cls: type):
    """`(name, attribute)` for each public method and property of `cls` defined in a reparam class."""
    for name in dir(cls):
        if name.startswith("_"):
            continue
        owner = next((k for k in cls.__mro__ if name in vars(k)), None)
        if owner is None or not is_ours(owner):
            continue
        attr = vars(owner)[name]
        if isinstance(attr, (staticmethod, classmethod)):
            attr = attr.__func__
        if getattr(attr, "__name__", "") == "<lambda>":  # a dataclass field's default, documented with the field
            continue
        if inspect.isfunction(attr) or isinstance(attr, property):
            yield name, getattr(cls, name)


def undocumented() -> list[str]:
    missing, seen = [], set()
    for module_name in DOCUMENTED_MODULES:
        module = importlib.import_module(module_name)
        if not inspect.getdoc(module):
            missing.append(module_name)
        for name in public_names(module):
            obj = getattr(module, name)
            if inspect.ismodule(obj) or not (inspect.isclass(obj) or callable(obj)) or not is_ours(obj):
                continue
            if id(obj) in seen:
                continue
            seen.add(id(obj))
            if not inspect.getdoc(obj):
                missing.append(f"{module_name}.{name}")
            if inspect.isclass(obj):
                for member, attr in class_members(obj):
                    if not inspect.getdoc(attr):
                        missing.append(f"{module_name}.{name}.{member}")
    return missing


def test_public_api_has_docstrings():
    missing = undocumented()
    assert not missing, f"{len(missing)} public objects without a docstring:\n  " + "\n  ".join(missing)


def test_bound_methods_show_the_contract():
    """`help(dist.log_prob)` on an instance shows the inherited contract (equinox's bound methods
    carry the function's own `__doc__`, which `inherit_docstrings` fills in)."""
    import jax.numpy as jnp

    import reparam as rp

    normal = rp.Normal(jnp.zeros(3), jnp.ones(3))
    assert "log p(x)" in normal.log_prob.__doc__
    assert "sample_shape + batch_shape + event_shape" in rp.Independent(normal, 1).rsample.__doc__
    assert "log |det" in rp.bijectors.Tanh().inverse_log_det_jacobian.__doc__
