"""The top-level API: light to import, and its lazily imported functions stay functions whichever
module was imported first."""

from __future__ import annotations

import subprocess
import sys


def test_lazy_functions_survive_importing_their_modules_first() -> None:
    code = (
        "import lepton_platform.api.transfer, lepton_platform.api.compare\n"
        "import lepton_platform.api.predictor, lepton_platform.artifacts\n"
        "import lepton_platform as lp\n"
        "assert callable(lp.transfer) and lp.transfer.__name__ == 'transfer'\n"
        "assert callable(lp.compare) and lp.compare.__name__ == 'compare'\n"
        "assert callable(lp.load) and lp.load.__name__ == 'load'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_importing_the_package_imports_no_torch() -> None:
    code = "import sys, lepton_platform\nassert 'torch' not in sys.modules, 'torch imported'\n"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_a_library_user_never_imports_the_cli() -> None:
    code = (
        "import sys\n"
        "import lepton_platform as lp\n"
        "lp.list_tasks(); lp.list_strategies(); lp.list_metrics()\n"
        "print([m for m in sys.modules if m.startswith('lepton_platform.cli')])\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_the_lazy_names_are_typed_for_type_checkers() -> None:
    """Every lazily imported name has a ``TYPE_CHECKING`` import of the same object, so that
    ``lp.transfer`` is the typed function for mypy and IDEs, not ``object``."""
    import ast
    from pathlib import Path

    import lepton_platform as lp

    source = Path(lp.__file__).read_text(encoding="utf-8")
    typed: dict[str, tuple[str, str]] = {}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            for stmt in node.body:
                assert isinstance(stmt, ast.ImportFrom) and stmt.module
                for alias in stmt.names:
                    typed[alias.asname or alias.name] = (stmt.module, alias.name)
    assert typed == lp._LAZY
