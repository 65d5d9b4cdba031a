"""The library never imports the CLI: no module outside `conceptlens.cli` imports `conceptlens.cli`
(checked on the source with `ast`, so a lazy import inside a function counts too)."""

from __future__ import annotations

import ast
from pathlib import Path

import conceptlens

PACKAGE = Path(conceptlens.__file__).resolve().parent


def cli_imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names if alias.name.startswith("conceptlens.cli")]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.startswith("conceptlens.cli") or (node.module == "conceptlens"
                                                             and any(a.name == "cli" for a in node.names)):
                found.append(node.module)
    return found


def test_no_library_module_imports_the_cli():
    offenders = {str(path.relative_to(PACKAGE)): names for path in sorted(PACKAGE.rglob("*.py"))
                 if "cli" not in path.relative_to(PACKAGE).parts[:1] and (names := cli_imports(path))}
    assert not offenders, offenders


def test_the_check_sees_an_import(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from conceptlens.cli.common import console\n")
    assert cli_imports(module) == ["conceptlens.cli.common"]
