"""Write ``docs/config.md`` from the config dataclasses: every key with its type, default, source and note.

    python tools/gen_config_docs.py            # rewrite docs/config.md
    python tools/gen_config_docs.py --check    # exit 1 when docs/config.md is stale (tests/test_config_docs.py)

The note and the source of a key come from the comment on its field (the line's trailing ``# ...``, or
comment lines right above it). Convention: say where a value comes from with one of the words
``paper``, ``ours`` or ``authors' code``, the default's source first (e.g. ``# paper: 15,000 per stage``,
``# ours``, ``# authors' code: 0.1 (paper's value lost)``); another
reference (``MedSAM``, ``SSL4MIS/BCP``, ``official``) is shown as it is written. A key without one is
listed as "setting" (a run setting, not a method choice). Component sections (``model.params``,
``teacher.params``, ``method.params``) are found through the registries: a teacher's or method's
``Params`` class, a model builder's ``from_dict(XParams, ...)``.
"""
from __future__ import annotations

import argparse
import dataclasses
import inspect
import io
import re
import sys
import textwrap
import tokenize
import typing
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "config.md"
REFERENCES = ("MedSAM", "SSL4MIS", "BCP", "SAMed", "official", "SPEC", "lucidrains", "nnU-Net", "MONAI")


def field_comments(cls: type) -> dict[str, str]:
    """Field name -> its comment text (trailing comment, else the comment lines right above it)."""
    try:
        src = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    names = {f.name for f in dataclasses.fields(cls)}
    notes: dict[str, str] = {}
    above: list[str] = []
    current: str | None = None  # the field whose (possibly wrapped) definition is being read
    for tok in tokenize.generate_tokens(io.StringIO(src).readline):
        if tok.type == tokenize.COMMENT:
            text = tok.string.lstrip("#").strip()
            if current is not None:
                notes[current] = (notes.get(current, "") + " " + text).strip()
            else:
                above.append(text)
        elif tok.type == tokenize.NAME and tok.start[1] == 4 and tok.string in names and current is None:
            current = tok.string
            if above:
                notes[current] = " ".join(above)
        elif tok.type == tokenize.NEWLINE:
            current, above = None, [] if current is not None else above
        elif tok.type == tokenize.NL and current is None and not tok.line.strip().startswith("#"):
            above = []
    return notes


def source_of(note: str) -> str:
    """The first of ``paper``, ``ours``, ``authors' code`` in ``note`` (else a named reference, else "setting")."""
    low = note.lower().replace("paper's lost", "").replace("paper's value lost", "")
    found = [(m.start(), tag) for tag, pat in (("paper", r"\bpaper\b"), ("ours", r"\bours\b"),
                                               ("authors' code", r"\bauthors' code\b"))
             if (m := re.search(pat, low))]
    if found:
        return min(found)[1]
    for ref in REFERENCES:
        if re.search(rf"\b{re.escape(ref)}\b", note):
            return ref
    return "setting"


def type_name(tp: object) -> str:
    if typing.get_origin(tp) is typing.Literal:
        return " \\| ".join(repr(a) for a in typing.get_args(tp)).replace("'", '"')
    return re.sub(r"typing\.|<class '([^']+)'>", r"\1", str(tp)).replace("NoneType", "None").replace("|", "\\|")


def default_of(f: dataclasses.Field) -> str:
    if f.default is not dataclasses.MISSING:
        value = f.default
    elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        value = f.default_factory()  # type: ignore[misc]
        if dataclasses.is_dataclass(value):
            return "(section)"
    else:
        return "(required)"
    if isinstance(value, tuple):
        value = list(value)
    return f"`{value!r}`".replace("'", '"').replace("|", "\\|")


def rows(cls: type, prefix: str) -> list[str]:
    hints = typing.get_type_hints(cls)
    notes = field_comments(cls)
    out = []
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            continue
        note = notes.get(f.name, "").replace("|", "\\|")
        out.append(f"| `{prefix}.{f.name}` | {type_name(tp)} | {default_of(f)} | {source_of(note)} | {note} |")
    return out


def table(cls: type, prefix: str, title: str) -> list[str]:
    head = [f"### {title}", "", "| key | type | default | source | note |", "|---|---|---|---|---|"]
    return head + rows(cls, prefix) + [""]


def model_params(builder: object) -> type | None:
    m = re.search(r"from_dict\((\w+Params)", inspect.getsource(builder))  # type: ignore[arg-type]
    return getattr(inspect.getmodule(builder), m.group(1)) if m else None


def render() -> str:
    import uncol.methods
    import uncol.models
    import uncol.teachers  # noqa: F401
    from uncol.config import Config
    from uncol.methods import METHODS
    from uncol.models import MODELS
    from uncol.teachers import TEACHERS

    lines = ["# Configuration keys", "",
             "<!-- generated by tools/gen_config_docs.py from the dataclasses; do not edit by hand -->", "",
             "Every key a YAML config (or `--set key=value`) can set, with its type, default and where the value",
             "comes from: **paper** (the UnCoL paper), **authors' code**, **ours** (our choice where the paper is",
             "silent), another named reference, or **setting** (a run setting, not a method choice). A choice",
             "type lists the allowed values. An unknown key, a wrong type or a value outside the choices stops",
             "`uncol train` before anything is written.", "", "## Sections", ""]
    hints = typing.get_type_hints(Config)
    for f in dataclasses.fields(Config):
        sec = hints[f.name]
        lines += table(sec, f.name, f"`{f.name}`")
        sub_hints = typing.get_type_hints(sec)
        for g in dataclasses.fields(sec):
            if dataclasses.is_dataclass(sub_hints[g.name]):
                lines += table(sub_hints[g.name], f"{f.name}.{g.name}", f"`{f.name}.{g.name}`")
    for title, prefix, registry, params_of in (
        ("model.params", "model.params", MODELS, model_params),
        ("teacher.params", "teacher.params", TEACHERS, lambda c: getattr(c, "Params", None)),
        ("method.params", "method.params", METHODS, lambda c: getattr(c, "Params", None)),
    ):
        lines += [f"## `{title}` (by `{prefix.split('.')[0]}.name`)", ""]
        for name in registry.names():
            if not getattr(registry.get(name), "__module__", "").startswith("uncol."):
                continue  # registered by a test or a user's program, not the package
            cls = params_of(registry.get(name))
            if cls is None or not dataclasses.is_dataclass(cls) or not dataclasses.fields(cls):
                lines += [f"### `{name}`", "", "No parameters.", ""]
                continue
            lines += table(cls, prefix, f"`{name}` ({cls.__name__})")
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="exit 1 when docs/config.md differs from the dataclasses")
    a = p.parse_args(argv)
    text = render()
    if a.check:
        stale = not OUT.is_file() or OUT.read_text() != text
        if stale:
            print(f"{OUT} is stale: run python tools/gen_config_docs.py", file=sys.stderr)
        return int(stale)
    OUT.write_text(text)
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
