"""The `dakd` command: light parsers (no torch before a command runs), one flag vocabulary on every subcommand,
one NAME=VALUE parser, exit codes 0 / 1 / 2, --json on stdout, and the Python API's typed errors."""

from __future__ import annotations

import argparse
import ast
import importlib
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from videos import encode, pattern_frames

from pipeline import api, defaults
from pipeline.cli import extract
from pipeline.cli import main as cli
from pipeline.cli import commands as parsers
from pipeline import pairs
from pipeline.errors import InputError, UsageError, UserError

HEAVY = ("torch", "torchvision", "sklearn", "pandas", "matplotlib", "av", "decord")


def test_importing_the_cli_and_building_every_parser_loads_no_heavy_module():
    code = ("import sys, pipeline.cli.main, pipeline.cli.commands as c; c.dakd_parser(); "
            "[c.stage_parser(s) for s in c.COMMANDS]; "
            f"print([m for m in {HEAVY!r} if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def _help(*args: str, capsys) -> str:
    with pytest.raises(SystemExit) as exc:
        cli.main([*args, "--help"])
    assert exc.value.code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("stage", list(parsers.COMMANDS))
def test_every_subcommand_takes_the_common_flags(stage, capsys):
    text = _help(stage, capsys=capsys)
    assert text.startswith(f"usage: dakd {stage}")
    for flag in ("--quiet", "--verbose", "--json"):
        assert flag in text, (stage, flag)
    if stage not in ("fetch", "synthetic", "convert-i3d"):  # set-up: the user cache or a folder, no store
        assert "--store STORE" in text, stage
    assert "2 user error" in text


def test_store_defaults_to_the_environment(monkeypatch):
    monkeypatch.setenv(defaults.STORE_ENV, "/from/env")
    args = parsers.dakd_parser().parse_args(["evaluate", "abc"])
    assert args.store == "/from/env"
    args = parsers.dakd_parser().parse_args(["evaluate", "abc", "--store", "/given"])
    assert args.store == "/given"
    monkeypatch.delenv(defaults.STORE_ENV)
    with pytest.raises(SystemExit) as exc:  # required when the environment gives none
        parsers.dakd_parser().parse_args(["evaluate", "abc"])
    assert exc.value.code == 2


def test_old_spellings_stay_aliases():
    args = parsers.stage_parser("extract").parse_args(["v", "--store", "s", "--clip-frames", "3"])
    assert args.frames_per_snippet == 3
    assert parsers.dakd_parser().parse_args(["import-features", "a.list", "--backbone", "i3d", "--store",
                                             "s"]).command == "import-features"
    args = parsers.stage_parser("store").parse_args(["/positional", "--runs"])
    assert args.store_positional == "/positional"


def test_one_name_value_parser():
    assert pairs.parse_pairs(["i3d=a.pt,s3d = b.pt"], "--weights", split_commas=True) == {"i3d": "a.pt",
                                                                                         "s3d": "b.pt"}
    assert pairs.parse_pairs(["model.k=10", "model.k=12"], "--set") == {"model.k": "12"}
    for bad in ("foo", "=x", "x="):
        with pytest.raises(UsageError, match=f"`weights` takes NAME=PATH, got {bad!r}"):
            pairs.parse_pairs([bad], "weights", "NAME=PATH")


def test_a_bad_weights_flag_is_a_user_error_exit_2(tmp_path, capsys):
    (tmp_path / "in").mkdir()
    assert extract.main([str(tmp_path / "in"), "--store", str(tmp_path / "s"), "--weights", "foo"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --weights takes NAME=PATH (or NAME=random), got 'foo'")
    assert not (tmp_path / "s").exists()  # nothing written


def test_no_videos_is_a_user_error_exit_2(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert cli.main(["extract", str(tmp_path / "empty"), "--store", str(tmp_path / "s"), "--backbones",
                     "lowres"]) == 2
    assert "error: no videos found in" in capsys.readouterr().err


def test_dakd_extract_json_and_exit_1_when_a_video_fails(tmp_path, capsys):
    """dakd dispatches to the stage; --json puts the summary alone on stdout; a bad video gives exit code 1."""
    videos = tmp_path / "in"
    videos.mkdir()
    encode(videos / "good.mkv", pattern_frames(32, 48, 64, seed=1))
    (videos / "bad.mp4").write_bytes(b"not a video")
    code = cli.main(["extract", str(videos), "--store", str(tmp_path / "s"), "--backbones", "lowres", "--quiet",
                     "--json"])
    out, err = capsys.readouterr()
    assert code == 1
    summary = json.loads(out)
    assert (summary["extracted"], summary["backbones"]) == (1, ["lowres"])
    assert [f["path"].endswith("bad.mp4") for f in summary["failures"]] == [True]
    assert "extract: 2 videos: 1 extracted" in err and "FAILED" in err


def test_store_subcommand_takes_the_store_as_option_or_positional(tmp_path, capsys):
    videos = tmp_path / "in"
    videos.mkdir()
    encode(videos / "a.mkv", pattern_frames(32, 48, 64, seed=2))
    store = tmp_path / "s"
    assert cli.main(["extract", str(videos), "--store", str(store), "--backbones", "lowres", "--quiet"]) == 0
    capsys.readouterr()
    assert cli.main(["store", "--store", str(store), "--json"]) == 0
    by_option = json.loads(capsys.readouterr().out)
    assert cli.main(["store", str(store), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == by_option
    assert [r["backbone"] for r in by_option["rows"]] == ["lowres"]


def test_the_api_raises_typed_errors_and_never_exits(tmp_path):
    with pytest.raises(UsageError, match="unknown backbone"):
        api.extract([tmp_path], store=tmp_path / "s", backbones="nope")
    with pytest.raises(UsageError, match="`seeds` and `checkpoint_every` must be at least 1"):
        api.train("teacher", store=tmp_path, seeds=0)
    with pytest.raises(InputError, match="pass the `store` used for training"):
        api.evaluate(["abc"], store=tmp_path / "absent")
    with pytest.raises(UserError):
        api.detect([tmp_path], store=None)
    with pytest.raises(UsageError, match="calibrate chooses the threshold"):
        api.calibrate("abcdef12", store=tmp_path, normal=[tmp_path], rule=api.AlertRule(0.5))
    with pytest.raises(UsageError, match="must be a pipeline.alert_rule.AlertRule"):
        api.detect([tmp_path], store=tmp_path, rule=0.5)
    assert issubclass(UsageError, UserError) and issubclass(InputError, UserError)


# -- unknown flags, abbreviations ------------------------------------------------------------------------------
def _usage_error(argv: list[str], capsys, main=None) -> str:
    with pytest.raises(SystemExit) as exc:
        (main or cli.main)(argv)
    assert exc.value.code == 2
    return capsys.readouterr().err


def test_an_unknown_flag_shows_the_subcommands_usage_and_the_closest_flag(tmp_path, capsys):
    err = _usage_error(["evaluate", "abcdef", "--store", str(tmp_path), "--forse"], capsys)
    assert err.startswith("usage: dakd evaluate ")  # the subcommand's usage, not dakd's
    assert "dakd evaluate: error: unrecognized arguments: --forse (did you mean --force?)" in err
    err = _usage_error(["extract", str(tmp_path), "--store", str(tmp_path), "--backbone", "lowres"], capsys)
    assert err.startswith("usage: dakd extract ") and "(did you mean --backbones?)" in err
    err = _usage_error(["extract", str(tmp_path), "--store", str(tmp_path), "--bogus"], capsys)
    assert "unrecognized arguments: --bogus\n" in err and "did you mean" not in err  # nothing close: no guess
    err = _usage_error([str(tmp_path), "--store", str(tmp_path), "--dtyp", "float16"], capsys, extract.main)
    assert err.startswith("usage: python -m pipeline.extract ") and "did you mean --dtype?" in err
    err = _usage_error(["--json", "store", "--store", str(tmp_path)], capsys)  # a subcommand's flag before it
    assert err.startswith("usage: dakd store ") and "(--json goes after the command)" in err


def test_abbreviations_are_refused_with_did_you_mean(tmp_path, capsys, monkeypatch):
    """--stor is not taken for --store, even when $DAKD_STORE would have filled the required --store."""
    for env in (None, str(tmp_path / "env")):
        if env:
            monkeypatch.setenv(defaults.STORE_ENV, env)
        else:
            monkeypatch.delenv(defaults.STORE_ENV, raising=False)
        err = _usage_error(["extract", str(tmp_path), "--stor", str(tmp_path / "s")], capsys)
        assert err.startswith("usage: dakd extract ")
        assert "error: unrecognized arguments: --stor (did you mean --store?)" in err
    assert not (tmp_path / "s").exists() and not (tmp_path / "env").exists()
    for parser in [parsers.dakd_parser(), *(parsers.stage_parser(s) for s in parsers.COMMANDS)]:
        assert parser.allow_abbrev is False


def test_an_unknown_command_gets_a_did_you_mean(capsys):
    err = _usage_error(["extrat", "x"], capsys)
    assert "invalid choice: 'extrat'" in err and err.rstrip().endswith("did you mean extract?")


def test_every_argument_parser_of_the_project_refuses_abbreviations():
    """Each ``argparse.ArgumentParser(...)`` outside pipeline.cli.parser (whose Parser class sets it) passes
    allow_abbrev=False: an abbreviation silently taken for another flag is a wrong run nobody notices."""
    root = Path(__file__).resolve().parents[2]
    missing = []
    for path in sorted(root.glob("*/**/*.py")):
        if path.parts[len(root.parts)] in ("tests", ".git") or path.as_posix().endswith("pipeline/cli/parser.py"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "ArgumentParser"
                    and not any(k.arg == "allow_abbrev" and getattr(k.value, "value", True) is False
                                for k in node.keywords)):
                missing.append(f"{path.relative_to(root)}:{node.lineno}")
    assert not missing, missing


# -- fixes name dakd -------------------------------------------------------------------------------------------
def _message_strings(path: Path) -> list[tuple[int, str]]:
    """The string literals of ``path`` (f-string parts included) that are not docstrings."""
    tree = ast.parse(path.read_text())
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr)
                  and isinstance(node.body[0].value, ast.Constant)}
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings]


def test_every_fix_names_the_dakd_command():
    """Messages (errors, fixes, help) tell a user to run ``dakd STAGE``, the command they typed, never the module
    form ``python -m pipeline.STAGE`` (docstrings may still name it: it is an alias)."""
    root = Path(__file__).resolve().parents[2]
    module_form = re.compile(r"python -m pipeline\.|\brun pipeline\.\w+")
    found = [f"{path.relative_to(root)}:{line}: {text[:80]!r}"
             for package in ("pipeline", "extractors", "data", "models")
             for path in sorted((root / package).rglob("*.py"))
             for line, text in _message_strings(path) if module_form.search(text)]
    assert not found, found


def test_the_message_scan_sees_f_strings_and_skips_docstrings(tmp_path):
    sample = tmp_path / "m.py"
    sample.write_text('"""python -m pipeline.x in a docstring"""\n'
                      'def f(root):\n    raise ValueError(f"no store at {root}: run python -m pipeline.extract")\n')
    assert [text for _, text in _message_strings(sample) if "python -m pipeline." in text] == [
        ": run python -m pipeline.extract"]


# -- inputs first, before weights and torch --------------------------------------------------------------------
def _in_fresh_process(commands: list[list[str]], tmp_path, **env) -> list[tuple[int, bool, str]]:
    """Run ``dakd`` commands one after the other in one new interpreter; per command (exit code, whether torch
    was imported by then, stderr). A fresh process: this one has imported torch long ago."""
    code = ("import contextlib, io, json, sys\nfrom pipeline.cli import main as cli\nout = []\n"
            f"for argv in {commands!r}:\n"
            "    err = io.StringIO()\n"
            "    with contextlib.redirect_stderr(err):\n"
            "        try:\n            rc = cli.main(argv)\n"
            "        except SystemExit as exc:\n            rc = exc.code\n"
            "    out.append((rc, 'torch' in sys.modules, err.getvalue()))\n"
            "print(json.dumps(out))\n")
    environ = {**__import__("os").environ, "DAKD_CACHE_DIR": str(tmp_path / "empty-cache"), **env}
    environ.pop(defaults.STORE_ENV, None)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=environ)
    assert done.returncode == 0, done.stderr
    return [tuple(r) for r in json.loads(done.stdout)]


def test_no_videos_is_named_before_any_weights_are_looked_for(tmp_path):
    """The default backbones need weights that are not in the (empty) cache: an empty folder or a missing path is
    still what the user hears about, with the path and the fix, exit 2, nothing downloaded, no store made, and
    torch never imported."""
    (tmp_path / "empty").mkdir()
    results = _in_fresh_process([["extract", str(tmp_path / "empty"), "--store", str(tmp_path / "new")],
                                 ["extract", str(tmp_path / "absent"), "--store", str(tmp_path / "new")]], tmp_path)
    (rc, torch_loaded, err), (rc2, torch_loaded2, err2) = results
    assert (rc, torch_loaded, rc2, torch_loaded2) == (2, False, 2, False)
    assert err.startswith(f"error: no videos found in {tmp_path / 'empty'}: ") and "pass the folder" in err
    assert err2.startswith(f"error: {tmp_path / 'absent'}: no such file or folder; check the path")
    for text in (err, err2):
        assert "weights" not in text and "Downloading" not in text and len(text.strip().splitlines()) == 1
    assert not (tmp_path / "new").exists() and not (tmp_path / "empty-cache").exists()


def test_store_and_run_errors_come_before_torch(tmp_path):
    """A missing store, an unknown run key, a --store that is a file: named at once, without importing torch."""
    from pipeline.store import FeatureStore

    videos = tmp_path / "videos"
    videos.mkdir()
    encode(videos / "a.mkv", pattern_frames(32, 48, 64, seed=5))
    store = tmp_path / "store"
    FeatureStore(store, create=True).close()  # a store without runs
    a_file = tmp_path / "a-file"
    a_file.write_text("not a store")
    missing = str(tmp_path / "missing")
    cases = {
        "train: no store": (["train", "teacher", "--store", missing, "--dataset", "ucf-crime"],
                            f"no store at {missing}"),
        "train: unknown teacher": (["train", "student", "--store", str(store), "--teacher", "abcdef12"],
                                   "'abcdef12' matches no finished run"),
        "evaluate: no store": (["evaluate", "abcdef12", "--store", missing], f"no store at {missing}"),
        "evaluate: unknown run": (["evaluate", "abcdef12", "--store", str(store)], "'abcdef12' matches no finished"),
        "detect: unknown run": (["detect", str(videos), "--store", str(store), "--model", "abcdef12"],
                                "'abcdef12' matches no finished run"),
        "detect: no student": (["detect", str(videos), "--store", str(store)], "holds no finished student run"),
        "detect: no store": (["detect", str(videos), "--store", missing], f"no store at {missing}"),
        "extract: store is a file": (["extract", str(videos), "--store", str(a_file)], f"--store {a_file} is a file"),
        "export: unknown run": (["export", "abcdef12", "--store", str(store)], "'abcdef12' matches no finished run"),
        "export: no store": (["export", "abcdef12", "--store", missing], f"no store at {missing}"),
        "calibrate: unknown run": (["calibrate", "abcdef12", "--store", str(store), "--normal", str(videos)],
                                   "'abcdef12' matches no finished run"),
        "calibrate: no videos": (["calibrate", "abcdef12", "--store", str(store), "--normal", str(tmp_path / "e")],
                                 "no such file or folder"),
        "calibrate: no alert rule": (["calibrate", "abcdef12", "--store", str(store), "--normal", str(videos),
                                      "--close-after", "0"], "--open-after and --close-after make no alert rule"),
        "detect: no alert rule": (["detect", str(videos), "--store", str(store), "--open-after", "0"],
                                  "--open-after and --close-after make no alert rule: open_after must be"),
        "store: no store": (["store", "--store", missing], f"no store at {missing}"),
        "grid: no store": (["grid", "--store", missing, "--dataset", "ucf-crime"], f"no store at {missing}"),
        "demo: out is a file": (["demo", "--out", str(a_file)], f"--out {a_file} is a file"),
    }
    results = _in_fresh_process([argv for argv, _ in cases.values()], tmp_path)
    for (name, (_, needle)), (rc, torch_loaded, err) in zip(cases.items(), results):
        assert rc == 2, (name, err)
        assert err.startswith("error: ") and needle in err, (name, err)
        assert not torch_loaded, f"{name}: torch was imported before the error"
    assert "dakd store" in results[1][2] and "dakd extract" in results[0][2]  # each names the fix as a dakd command


# -- flags declared once: each flag's dest is its API parameter --------------------------------------------------
def _api_of(command: str):
    """The function a command's run() hands its flags to with call_api, and where that function's **kwargs go."""
    from pipeline.grid.runner import GridSettings

    return {"extract": (api.extract, api.check_extract_settings), "train": (api.train,),
            "evaluate": (api.evaluate,), "detect": (api.detect,), "calibrate": (api.calibrate,),
            "watch": (api.watch,), "export": (api.export,), "grid": (GridSettings,)}[command]


@pytest.mark.parametrize("command", ["extract", "train", "evaluate", "detect", "calibrate", "watch", "export", "grid"])
def test_every_flag_is_a_parameter_of_the_api_call_it_feeds(command):
    """No hand-kept mapping from flags to keywords: a flag's dest is the parameter's name, so call_api passes it
    on by name, and a flag the API does not take would be silently dropped; this keeps every flag mapped. Flags
    the command consumes itself (how it prints, evaluate's --summary file) are the module's OWN_FLAGS."""
    from pipeline.cli.parser import FLAGS_ATTRIBUTE, OUTPUT_FLAGS, parameters

    module = importlib.import_module(parsers.COMMANDS[command].module)
    dests = {a.dest for a in parsers.stage_parser(command)._actions} - {FLAGS_ATTRIBUTE}
    taken = set(parameters(*_api_of(command)))
    own = set(OUTPUT_FLAGS) | set(getattr(module, "OWN_FLAGS", ()))
    assert sorted(dests - taken - own) == []


def test_call_api_passes_flags_by_name_and_keeps_what_the_command_gives():
    from pipeline.cli.parser import call_api

    def f(paths, *, batch_size=1, progress=False):
        return paths, batch_size, progress

    args = argparse.Namespace(paths=["a"], batch_size=4, quiet=True, json=False)
    assert call_api(f, args, progress=True) == (["a"], 4, True)


def test_an_api_error_names_the_parameter_and_the_command_line_shows_the_flag(tmp_path, capsys):
    video = tmp_path / "v.mp4"
    video.write_bytes(b"")
    with pytest.raises(UsageError) as exc:
        api.detect([video], store=tmp_path / "s", batch_size=0)
    assert str(exc.value) == "`batch_size` must be at least 1"
    assert cli.main(["detect", str(video), "--store", str(tmp_path / "s"), "--batch-size", "0"]) == 2
    assert capsys.readouterr().err.strip() == "error: --batch-size must be at least 1"


def test_the_api_speaks_in_parameters_not_flags():
    """pipeline/api.py's strings (its docstrings aside) name no flag: the command line translates parameters."""
    tree = ast.parse((Path(__file__).resolve().parents[2] / "pipeline" / "api.py").read_text())
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef)) and node.body
                  and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    flags = sorted({m for node in ast.walk(tree) if isinstance(node, ast.Constant) and isinstance(node.value, str)
                    and id(node) not in docstrings for m in re.findall(r"(?<![\w-])--[a-z][\w-]*", node.value)})
    assert flags == []
