import subprocess
import sys
import types

import pytest

from papers_shared.lazy import import_ref, lazy_exports
from papers_shared.methods import Method, lazy_method


def test_lazy_exports_imports_on_first_use_and_caches():
    module = types.ModuleType("fake_pkg_for_lazy")
    sys.modules["fake_pkg_for_lazy"] = module
    try:
        getter, lister = lazy_exports("fake_pkg_for_lazy", {"sqrt": "math", "dumps": "json"})
        module.__getattr__ = getter
        assert getter("sqrt")(9.0) == 3.0
        assert "sqrt" in vars(module)  # cached after the first access
        assert {"sqrt", "dumps"} <= set(lister())
        with pytest.raises(AttributeError, match="no attribute 'nope'"):
            getter("nope")
    finally:
        del sys.modules["fake_pkg_for_lazy"]


def test_import_ref_and_lazy_method():
    assert import_ref("math:sqrt")(16) == 4
    with pytest.raises(ValueError, match="module:attribute"):
        import_ref("math.sqrt")
    method = lazy_method("x", "X", info="math:sqrt", demo="builtins:dict")
    assert isinstance(method, Method) and method.name == "x"
    out = method.demo(full=True, seed=3)
    assert out["full"] is True and out["seed"] == 3


def test_papers_shared_import_stays_light():
    code = "import sys, papers_shared; papers_shared.Table; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
