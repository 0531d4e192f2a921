"""The house plan: imports go one way (CLI/runner -> stages -> media, common under all), and
modules and functions stay small enough to read at a glance."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("common", "media", "stages", "curation", "models")
# what each package may import from the project (besides itself)
ALLOWED = {
    "common": set(),
    "media": {"common"},
    "stages": {"common", "media"},
    "models": {"common", "media"},
    "curation": {"common", "media", "stages"},
}
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60


def _modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def _project_imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                 else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
        found |= {name.split(".")[0] for name in names if name.split(".")[0] in PACKAGES}
    return found


@pytest.mark.parametrize("package", PACKAGES)
def test_imports_go_one_way(package: str) -> None:
    wrong = {}
    for path in _modules(package):
        imported = _project_imports(path) - {package} - ALLOWED[package]
        if path.relative_to(ROOT).as_posix() == "curation/cli.py":
            imported -= {"models"}  # `curate train` and `curate sample` live in models
        if imported:
            wrong[path.relative_to(ROOT).as_posix()] = sorted(imported)
    assert not wrong, f"imports against the layers: {wrong}"


@pytest.mark.parametrize("package", PACKAGES)
def test_modules_and_functions_stay_small(package: str) -> None:
    long_modules, long_functions = [], []
    for path in _modules(package):
        text = path.read_text()
        name = path.relative_to(ROOT).as_posix()
        if len(text.splitlines()) > MAX_MODULE_LINES:
            long_modules.append(name)
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                if node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES:
                    long_functions.append(f"{name}:{node.name}")
    assert not long_modules, f"modules over {MAX_MODULE_LINES} lines: {long_modules}"
    assert not long_functions, f"functions over {MAX_FUNCTION_LINES} lines: {long_functions}"
