"""Lazy re-exports for package ``__init__`` files (PEP 562).

A package lists ``{module: (name, ...)}``; a name is imported from its module on first use. So
``import cryokit`` (or ``cryokit.inference``) is instant, a program that only scores submissions never
imports torch, and the Kaggle packer, which follows real import statements only, packs no module that
the notebook does not use.
"""

from __future__ import annotations

import importlib
from typing import Callable, Mapping

__all__ = ["lazy_exports"]


def lazy_exports(
    package: str, exports: Mapping[str, tuple[str, ...]], namespace: dict
) -> tuple[Callable[[str], object], Callable[[], list[str]], list[str]]:
    """``(__getattr__, __dir__, __all__)`` for ``package`` re-exporting ``exports`` lazily.

    Args:
        package: the package's ``__name__`` (for error messages).
        exports: ``{module name: names it defines}``.
        namespace: the package's ``globals()``; each name is cached there after its first use.
    """
    module_of = {name: module for module, names in exports.items() for name in names}

    def __getattr__(name: str):
        module = module_of.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value  # later look-ups skip this function
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(module_of))

    return __getattr__, __dir__, list(module_of)
