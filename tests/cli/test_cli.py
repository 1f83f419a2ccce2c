"""The command-line package: an explicit list of command modules, each with ``add_parser``; help everywhere."""
from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from uncol import cli


def _parsers(parser: argparse.ArgumentParser, path: str = "uncol"):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, f"{path} {name}")


def test_every_command_module_adds_a_parser_with_a_function() -> None:
    names = set()
    for module in cli.COMMAND_MODULES:
        sub = argparse.ArgumentParser().add_subparsers()
        module.add_parser(sub)
        assert sub.choices, module.__name__
        names |= set(sub.choices)
    assert {"train", "evaluate", "predict", "evaluate-masks", "data", "demo", "zero-shot", "profile", "bench",
            "uncertainty", "report", "weights"} <= names
    leaves = [(path, p) for path, p in _parsers(cli.build_parser())
              if not any(isinstance(a, argparse._SubParsersAction) for a in p._actions)]
    assert len(leaves) >= 14
    for path, p in leaves:
        assert callable(p.get_default("func")), f"{path} sets no func"


def test_every_option_has_help_text() -> None:
    missing = [f"{path} {a.dest}" for path, p in _parsers(cli.build_parser()) for a in p._actions
               if not isinstance(a, argparse._HelpAction) and not a.help]
    assert not missing, f"options without help text: {missing}"


def test_unknown_name_is_one_line_and_exit_2(capsys: pytest.CaptureFixture) -> None:
    assert cli.main(["weights", "fetch", "no_such_weights", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "no_such_weights" in err[0]


def test_python_dash_m_uncol_lists_the_commands() -> None:
    out = subprocess.run([sys.executable, "-m", "uncol", "--help"], check=False, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0
    assert "zero-shot" in out.stdout and "weights" in out.stdout


def test_version(capsys) -> None:
    import uncol
    from uncol.cli import main

    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f"uncol {uncol.__version__}"
