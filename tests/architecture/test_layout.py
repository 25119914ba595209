"""The package layout's rules, read from the source with ``ast`` (nothing imported): no import cycles between the
modules of ``data/``, ``extractors/``, ``models/`` and ``pipeline/`` (lazy and ``TYPE_CHECKING`` imports count
too), dependencies pointing one way as docs/design.md's package table says (``data/`` imports none of the other
three, nor torch; ``extractors/`` imports ``data/`` only; ``models/`` never imports ``pipeline/``), and one
definition of ``SNIPPET_FRAMES``; inside ``pipeline/``, its floors (docs/design.md "Rooms"): nothing imports
the command line, only the command line parses arguments, no import runs up a floor, and a module over
``LONG_MODULE_LINES`` lines says why at its top."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("data", "extractors", "models", "pipeline")
# package -> the top-level packages it must never import (docs/design.md, "Packages and the direction of imports")
FORBIDDEN = {"data": {"extractors", "models", "pipeline", "torch"}, "extractors": {"models", "pipeline"},
             "models": {"pipeline"}}


# pipeline/'s floors, bottom to top (docs/design.md "Rooms"): a module imports its own floor and the floors below.
PIPELINE_FLOORS = (
    ("foundations", ("pipeline.defaults", "pipeline.errors", "pipeline.keys", "pipeline.atomic", "pipeline.precision",
                     "pipeline.pairs", "pipeline.alert_rule", "pipeline.config", "pipeline.methods", "pipeline.store",
                     "pipeline.features",
                     "pipeline.runs", "pipeline.run_refs", "pipeline.inputs")),
    ("stages", ("pipeline.extract", "pipeline.train", "pipeline.evaluate", "pipeline.detect", "pipeline.calibrate",
                "pipeline.watch", "pipeline.export", "pipeline.import_features", "pipeline.fetch", "pipeline.demo")),
    ("api", ("pipeline.api",)),
    ("stages over the api", ("pipeline.grid",)),
    ("command line and test support", ("pipeline.cli", "pipeline.testing")),
)
LONG_MODULE_LINES = 600  # above it, a module's docstring holds a paragraph starting "Long:" that says why
SHIMS = "__main__.py"  # ``python -m X``: hands the command line over; no module imports one


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
    wrong = sorted(f"{module} imports {top}" for module, path in _modules().items() if path.name != SHIMS
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


def _floor(module: str) -> int | None:
    for level, (_, rooms) in enumerate(PIPELINE_FLOORS):
        if any(module == room or module.startswith(room + ".") for room in rooms):
            return level
    return None


def test_every_pipeline_module_stands_on_a_floor():
    """A new room of pipeline/ is placed on a floor (PIPELINE_FLOORS, and docs/design.md) before it lands."""
    unplaced = sorted(m for m in _modules() if m.startswith("pipeline.") and _floor(m) is None)
    assert unplaced == []


def _upward(graph: dict[str, set[str]], shims: set[str]) -> list[str]:
    """Every import of ``graph`` that runs from a floor of pipeline/ to a higher one (shims left out)."""
    return sorted(f"{module} ({PIPELINE_FLOORS[_floor(module)][0]}) imports {target} "
                  f"({PIPELINE_FLOORS[_floor(target)][0]})"
                  for module, targets in graph.items() if module not in shims for target in targets
                  if _floor(module) is not None and _floor(target) is not None and _floor(target) > _floor(module))


def _shims() -> set[str]:
    return {module for module, path in _modules().items() if path.name == SHIMS}


def test_no_import_runs_up_a_floor():
    assert _upward(_graph(), _shims()) == []


def test_the_floor_rule_finds_an_upward_import():
    graph = {"pipeline.store.manifest": {"pipeline.api"}, "pipeline.detect.detector": {"pipeline.store.manifest"},
             "pipeline.cli.detect": {"pipeline.api"}}
    assert _upward(graph, set()) == ["pipeline.store.manifest (foundations) imports pipeline.api (api)"]


def test_nothing_imports_the_command_line():
    """pipeline.cli is the top room: only its own modules and the ``python -m`` shims import it."""
    modules = _modules()
    wrong = sorted(f"{module} imports {target}" for module, targets in _graph().items() for target in targets
                   if target.startswith("pipeline.cli") and not module.startswith("pipeline.cli")
                   and modules[module].name != SHIMS)
    assert wrong == []


def _talks_to_the_terminal(path: Path) -> list[str]:
    """The ``print(...)`` and ``sys.exit(...)``/``exit(...)`` calls of a file, as ``name:line``."""
    calls = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call):
            f = node.func
            name = f.id if isinstance(f, ast.Name) else f"{getattr(f.value, 'id', '?')}.{f.attr}" \
                if isinstance(f, ast.Attribute) else ""
            if name in ("print", "exit", "sys.exit"):
                calls.append(f"{name}:{node.lineno}")
    return calls


def test_only_the_command_line_parses_arguments_prints_or_exits():
    """argparse, printing to the terminal and sys.exit belong to pipeline/cli: the rest of pipeline/ raises,
    returns and logs, so that the Python API and every command share it (the ``python -m`` shims exit with the
    command's code)."""
    offenders = []
    for module, path in _modules().items():
        if module.startswith("pipeline.cli") or path.name == SHIMS:
            continue
        if "argparse" in _top_level_imports(path):
            offenders.append(f"{module} imports argparse")
        if module.startswith("pipeline"):
            offenders += [f"{module} calls {call}" for call in _talks_to_the_terminal(path)]
    assert offenders == []


def test_the_terminal_check_finds_a_print_and_an_exit(tmp_path):
    source = tmp_path / "m.py"
    source.write_text("import sys\nprint('x')\nsys.exit(1)\nlog = print\n")
    assert _talks_to_the_terminal(source) == ["print:2", "sys.exit:3"]


def test_a_long_module_says_why_at_its_top():
    unexplained = []
    for module, path in _modules().items():
        text = path.read_text(encoding="utf-8")
        if text.count("\n") > LONG_MODULE_LINES:
            doc = ast.get_docstring(ast.parse(text)) or ""
            if not any(line.startswith("Long:") for line in doc.splitlines()):
                unexplained.append(f"{path.relative_to(ROOT)} ({text.count(chr(10))} lines)")
    assert unexplained == []
