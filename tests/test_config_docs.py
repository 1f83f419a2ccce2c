"""docs/config.md is generated from the config dataclasses; it fails here when it is stale."""
from __future__ import annotations

import dataclasses
import importlib.util
import typing
from pathlib import Path

from uncol.config import Config

ROOT = Path(__file__).resolve().parents[1]


def _tool():
    spec = importlib.util.spec_from_file_location("gen_config_docs", ROOT / "tools" / "gen_config_docs.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _keys(cls: type, prefix: str) -> list[str]:
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        key = f"{prefix}.{f.name}" if prefix else f.name
        out += _keys(hints[f.name], key) if dataclasses.is_dataclass(hints[f.name]) else [key]
    return out


def test_docs_config_md_is_up_to_date() -> None:
    text = (ROOT / "docs" / "config.md").read_text()
    assert text == _tool().render(), "docs/config.md is stale: run python tools/gen_config_docs.py"


def test_every_key_is_listed_with_its_default_and_source() -> None:
    text = (ROOT / "docs" / "config.md").read_text()
    rows = {line.split("|")[1].strip().strip("`"): line.split("|") for line in text.splitlines()
            if line.startswith("| `")}
    for key in _keys(Config, ""):
        assert key in rows, key
        assert rows[key][3].strip() and rows[key][4].strip(), key  # default, source
    for key in ("method.params.lora_rank", "teacher.params.intensity", "model.params.feature_chns"):
        assert key in rows, key
    assert rows["train.iterations"][4].strip() == "paper" and rows["data.augment.rotate_deg"][4].strip() == "ours"


def test_comment_parser_reads_trailing_and_preceding_comments() -> None:
    tool = _tool()

    @dataclasses.dataclass
    class P:
        a: int = 1  # paper: one
        # ours: spread over
        # two lines
        b: int = 2
        c: int = 3

    assert tool.field_comments(P) == {"a": "paper: one", "b": "ours: spread over two lines"}
    assert [tool.source_of(n) for n in ("paper: x", "x (ours)", "authors' code: y", "MedSAM recipe", "")] == [
        "paper", "ours", "authors' code", "MedSAM", "setting"]
