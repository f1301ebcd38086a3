"""`swedge data` sub-commands through their own parser (independent of other sub-commands' modules)."""

import argparse

import pytest

from swedge.cli import data as cli
from swedge.errors import DataError


def _run(argv):
    parser = argparse.ArgumentParser(prog="swedge")
    cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


def test_synth_then_info(tmp_path, capsys):
    out = tmp_path / "s"
    assert _run(["data", "synth", "--out", str(out), "--train-ids", "4", "--test-ids", "3", "--cameras", "2",
                 "--size", "64x32", "--quiet"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"wrote {out}: train 4 ids") and "images/s" in line
    assert _run(["data", "info", str(out)]) == 0
    assert "query 3 ids" in capsys.readouterr().out
    with pytest.raises(DataError, match="not empty"):
        _run(["data", "synth", "--out", str(out), "--quiet"])


def test_bad_size_is_an_argparse_error(tmp_path, capsys):
    with pytest.raises(SystemExit):
        _run(["data", "synth", "--out", str(tmp_path / "x"), "--size", "128"])
    assert "HxW" in capsys.readouterr().err


def test_help_has_examples(capsys):
    for cmd in (["data", "synth", "--help"], ["data", "fetch", "--help"]):
        with pytest.raises(SystemExit):
            _run(cmd)
        assert "examples:" in capsys.readouterr().out
