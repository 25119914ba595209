"""The documented usage runs (README.md and the docs it sends readers to, docs/usage.md and docs/results.md): every
documented `dakd` command line names a real subcommand and only flags its `--help` lists, the usage guide's command
chain runs as written on a tiny frame-label folder, and so does its Python
API session."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import numpy as np
import pytest
from videos import encode, pattern_frames

from pipeline import defaults
from pipeline.cli import main as cli
from pipeline.cli import commands as parsers

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCUMENTS = (README, ROOT / "docs" / "usage.md", ROOT / "docs" / "results.md")  # where commands are documented
CHAIN_MARK = "# the chain tests/architecture/test_readme.py runs"
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")
# The tiny frame-label folder: 3 anomalous + 3 normal 32-frame clips (2 snippets each); per class in name order
# the split is train, test, train, so cam1 and cam3 (anomalous), cam4 and cam6 (normal) train.
ANOMALOUS, NORMAL = ("cam1", "cam2", "cam3"), ("cam4", "cam5", "cam6")
FRAMES = 32
# Test-only: a tiny model and small batches, so the README's train line takes a second (appended, not replacing).
FAST_TRAIN = ["--epochs", "2", "--set", "train.batch_anomalous=2", "--set", "train.batch_normal=2", "--set",
              "model.d_model=32", "--set", "model.n_heads=4", "--set", "model.projection_hidden=32", "--set",
              "model.ffn_dim=64", "--set", "model.classifier_hidden=32", "--set", "model.k=8"]


def documentation() -> str:
    return "\n".join(path.read_text(encoding="utf-8") for path in DOCUMENTS)


def blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", documentation(), re.S | re.M)


def command_lines(block: str) -> list[str]:
    """The block's lines with continuations (a trailing backslash, or an indented next line) joined, comments
    dropped."""
    lines: list[str] = []
    for raw in block.splitlines():
        text = raw.split(" #")[0].rstrip() if not raw.startswith("#") else ""
        if lines and (lines[-1].endswith("\\") or raw.startswith((" ", "\t"))):
            lines[-1] = lines[-1].rstrip("\\").rstrip() + " " + text.strip()
        elif text:
            lines.append(text)
    return lines


def documented_commands() -> list[str]:
    """Every `dakd ...` line of the bash blocks (also after `&&`) and every inline `dakd ...` in the text."""
    lines = [line for block in blocks("bash") for line in command_lines(block)]
    found = [part.strip() for line in lines for part in line.split("&&") if part.strip().startswith("dakd ")]
    text = re.sub(r"^```.*?^```", "", documentation(), flags=re.S | re.M)
    inline = [" ".join(c.split()) for c in re.findall(r"`(dakd [^`]+)`", text)]
    return found + [c for c in inline if c.split()[1] not in ("COMMAND", "STAGE")]


def test_the_readme_documents_dakd_commands():
    commands = documented_commands()
    assert len(commands) > 20
    assert {c.split()[1] for c in commands} >= {"extract", "train", "evaluate", "detect", "export", "store",
                                                "import", "grid", "fetch", "demo"}


def test_every_documented_command_line_parses_its_subcommand_and_flags(capsys):
    """`dakd SUBCOMMAND --help` for each documented line (cheap: no torch), and every flag the line shows is in
    that help; `train`'s stage words are its choices."""
    helps: dict[str, str] = {}
    for line in documented_commands():
        sub = line.split()[1]
        if sub.startswith("-"):  # `dakd --help`
            with pytest.raises(SystemExit) as exc:
                cli.main(line.split()[1:])
            assert exc.value.code == 0 and "usage: dakd" in capsys.readouterr().out, line
            continue
        assert sub in parsers.COMMANDS or sub in parsers.ALIASES, line
        if sub not in helps:
            with pytest.raises(SystemExit) as exc:
                cli.main([sub, "--help"])
            assert exc.value.code == 0, line
            helps[sub] = capsys.readouterr().out
        missing = [f for f in FLAG.findall(line) if f not in helps[sub]]
        assert not missing, f"{line}: {missing} not in dakd {sub} --help"
        if sub == "train":
            stages = line.split()[2].split("|")
            assert set(stages) <= set(defaults.TRAIN_STAGES), line


def make_folder(root: Path) -> Path:
    """my_cams/: videos/cam1.mp4 ... cam6.mp4 and labels/camN.npy (frames 8-24 anomalous) for the anomalous."""
    folder = root / "my_cams"
    (folder / "videos").mkdir(parents=True)
    (folder / "labels").mkdir()
    for i, name in enumerate((*ANOMALOUS, *NORMAL)):
        encode(folder / "videos" / f"{name}.mp4", pattern_frames(FRAMES, 48, 64, seed=30 + i))
        if name in ANOMALOUS:
            labels = np.zeros(FRAMES, np.int64)
            labels[8:24] = 1
            np.save(folder / "labels" / f"{name}.npy", labels)
    return folder


def chain() -> list[str]:
    (block,) = [b for b in blocks("bash") if CHAIN_MARK in b]
    return command_lines(block)


def test_the_readme_chain_runs_as_written(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DAKD_STORE", raising=False)
    make_folder(tmp_path)
    run = None
    for line in chain():
        argv = shlex.split(line)[1:]
        if argv[0] == "train":
            argv += FAST_TRAIN
        argv = [run if a == "RUN" else a for a in argv]
        assert cli.main([*argv, "--quiet"] if argv[0] != "store" else argv) == 0, line
        out = capsys.readouterr().out
        if argv[0] == "train":
            (trained,) = json.loads(out)  # --json: the runs' metrics alone on stdout
            run = trained["run"][:12]
        elif argv[0] == "evaluate":
            (evaluated,) = json.loads(out)["runs"]
            assert evaluated["run"].startswith(run) and 0.0 <= evaluated["metrics"]["auc"] <= 1.0
        elif argv[0] == "store":
            assert run in out and "teacher" in out and "evaluate" in out
    assert (tmp_path / "detections" / "cam1.csv").is_file()


def test_the_readme_python_api_session_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    make_folder(tmp_path)
    (session,) = blocks("python")
    session = session.replace("epochs=5", "epochs=2")  # the only change: fewer epochs, same calls
    exec(compile(session, str(DOCUMENTS[1]), "exec"), {})
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("6 0 []")  # 6 extracted, none cached, no failure
    assert (tmp_path / "detections" / "cam1.json").is_file()
    assert out[-1].startswith(f"({FRAMES},)")
