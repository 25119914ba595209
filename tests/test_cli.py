"""The `dakd` command: light parsers (no torch before a command runs), one flag vocabulary on every subcommand,
one NAME=VALUE parser, exit codes 0 / 1 / 2, --json on stdout, and the Python API's typed errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from videos import encode, pattern_frames

from pipeline import api, cli, defaults, extract, parsers
from pipeline.errors import InputError, UsageError, UserError

HEAVY = ("torch", "torchvision", "sklearn", "pandas", "matplotlib", "av", "decord")


def test_importing_the_cli_and_building_every_parser_loads_no_heavy_module():
    code = ("import sys, pipeline.cli, pipeline.parsers as p; p.dakd_parser(); [p.stage_parser(s) for s in p.STAGES]; "
            f"print([m for m in {HEAVY!r} if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_mirrored_names_agree_with_the_modules_that_import_torch():
    from extractors.registry import BACKBONES
    from extractors.transforms import VIEWS

    assert defaults.BACKBONE_NAMES == tuple(BACKBONES)
    assert defaults.VIEW_NAMES == tuple(VIEWS)


def _help(*args: str, capsys) -> str:
    with pytest.raises(SystemExit) as exc:
        cli.main([*args, "--help"])
    assert exc.value.code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("stage", list(parsers.STAGES))
def test_every_subcommand_takes_the_common_flags(stage, capsys):
    text = _help(stage, capsys=capsys)
    assert text.startswith(f"usage: dakd {stage}")
    for flag in ("--quiet", "--verbose", "--json"):
        assert flag in text, (stage, flag)
    if stage != "fetch":  # fetch fills the user cache, no store
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
    assert parsers.parse_pairs(["i3d=a.pt,s3d = b.pt"], "--weights", split_commas=True) == {"i3d": "a.pt",
                                                                                         "s3d": "b.pt"}
    assert parsers.parse_pairs(["model.k=10", "model.k=12"], "--set") == {"model.k": "12"}
    for bad in ("foo", "=x", "x="):
        with pytest.raises(UsageError, match=f"--weights takes NAME=PATH, got {bad!r}"):
            parsers.parse_pairs([bad], "--weights", "NAME=PATH")


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
    with pytest.raises(UsageError, match="--seeds and --checkpoint-every must be at least 1"):
        api.train("teacher", store=tmp_path, seeds=0)
    with pytest.raises(InputError, match="pass the --store used for training"):
        api.evaluate(["abc"], store=tmp_path / "absent")
    with pytest.raises(UserError):
        api.detect([tmp_path], store=None)
    assert issubclass(UsageError, UserError) and issubclass(InputError, UserError)
