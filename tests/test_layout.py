"""The package layout's rules, read from the source with ``ast`` (nothing imported): no import cycles between the
modules of ``data/``, ``extractors/``, ``models/`` and ``pipeline/`` (lazy and ``TYPE_CHECKING`` imports count
too), dependencies pointing one way as docs/design.md's package table says (``data/`` imports none of the other
three, nor torch; ``extractors/`` imports ``data/`` only; ``models/`` never imports ``pipeline/``), and one
definition of ``SNIPPET_FRAMES``."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("data", "extractors", "models", "pipeline")
# package -> the top-level packages it must never import (docs/design.md, "Packages and the direction of imports")
FORBIDDEN = {"data": {"extractors", "models", "pipeline", "torch"}, "extractors": {"models", "pipeline"},
             "models": {"pipeline"}}


def _modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the four packages (``pkg.sub`` for ``pkg/sub/__init__``)."""
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _imported(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The project modules ``name`` imports anywhere in its file (``from pkg import mod`` names ``pkg.mod``)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            targets.add(base)
            targets.update(f"{base}.{alias.name}" for alias in node.names)
    out = set()
    for target in targets:
        while target and target not in modules:
            target = target.rpartition(".")[0]
        if target and target != name:
            out.add(target)
    return out


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imported(name, path, modules) for name, path in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles_between_modules():
    assert _cycles(_graph()) == []


def _top_level_imports(path: Path) -> set[str]:
    """The top-level package of every absolute import in ``path`` (``torch`` for ``import torch.nn``)."""
    tops = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            tops.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            tops.add(node.module.split(".")[0])
    return tops


def test_dependencies_point_one_way():
    wrong = sorted(f"{module} imports {top}" for module, path in _modules().items()
                   for top in _top_level_imports(path) if top in FORBIDDEN.get(module.split(".")[0], set()))
    assert wrong == []


def test_snippet_frames_is_defined_once():
    """``SNIPPET_FRAMES`` is assigned in one module of the project (data.decode); every other one imports it."""
    defining = []
    for folder in (*PACKAGES, "benchmarks", "tests"):
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                targets = (node.targets if isinstance(node, ast.Assign)
                           else [node.target] if isinstance(node, ast.AnnAssign) else [])
                if any(isinstance(t, ast.Name) and t.id == "SNIPPET_FRAMES" for t in targets):
                    defining.append(path.relative_to(ROOT).as_posix())
    assert defining == ["data/decode.py"]


def test_every_package_folder_is_installed():
    """pyproject.toml lists packages explicitly, so a new sub-package (``data/synthetic/``) must be listed too, or
    a non-editable install leaves it out."""
    import tomllib

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    folders = {".".join(init.parent.relative_to(ROOT).parts) for package in PACKAGES
               for init in (ROOT / package).rglob("__init__.py")}
    assert folders == listed


def test_the_code_passes_the_linter():
    """``ruff check .`` with the rules of pyproject.toml (pyflakes, pycodestyle at 120 columns): the rules the code
    follows, kept so by the test suite, which CI runs."""
    import shutil
    import subprocess
    import sys

    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    assert ruff, "ruff is missing: pip install -e '.[test]' installs it"
    done = subprocess.run([ruff, "check", "--no-cache", "."], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
