"""Public names imported on first use, so that ``import <package>`` and ``<package> --help`` stay
fast (torch, timm and friends load only when a name that needs them is touched).

In a package's ``__init__.py``::

    _WHERE = {"RIDG": "ridg.algorithm", "RationaleInvarianceLoss": "ridg.losses"}
    __all__ = ["__version__", "RIDG", "RationaleInvarianceLoss"]
    if TYPE_CHECKING:  # for type checkers and IDEs
        from ridg.algorithm import RIDG
        from ridg.losses import RationaleInvarianceLoss
    __getattr__, __dir__ = lazy_exports(__name__, _WHERE)
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports", "import_ref"]


def lazy_exports(
    module_name: str, where: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """PEP 562 ``__getattr__`` and ``__dir__`` for ``module_name``.

    ``where`` maps each public name to the module that defines it (absolute, or relative such as
    ``".losses"``). A name is imported once, then cached in the package's namespace.
    """
    table = dict(where)

    def __getattr__(name: str) -> Any:
        target = table.get(name)
        if target is None:
            raise AttributeError(f"module {module_name!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(target, package=module_name), name)
        setattr(sys.modules[module_name], name, value)
        return value

    def __dir__() -> list[str]:
        module = sys.modules[module_name]
        return sorted(set(vars(module)) | set(table) | set(getattr(module, "__all__", ())))

    return __getattr__, __dir__


def import_ref(ref: str) -> Any:
    """The object named by ``"package.module:attribute"``."""
    module, sep, attr = ref.partition(":")
    if not sep or not module or not attr:
        raise ValueError(f"expected 'module:attribute', got {ref!r}")
    return getattr(importlib.import_module(module), attr)
