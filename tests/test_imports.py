"""The package's import graph: no import circle between modules and no import from a lower layer to a higher one.

Every ``import``/``from ... import`` of ``uncol`` in every module counts, those inside functions too. The
layer order is the one ``docs/ARCHITECTURE.md`` gives ("Layers"); a module may import its own layer or
lower ones.
"""
from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "uncol"

#: Lowest first; a module may import modules of its own layer or of a lower one (docs/ARCHITECTURE.md).
LAYERS: tuple[tuple[str, ...], ...] = (
    ("uncol", "errors", "registry", "runtime", "schedules"),
    ("config", "config_docs", "config_overrides"),
    ("data",),
    ("teachers",),
    ("pseudo",),
    ("losses",),
    ("models",),
    ("methods",),
    ("eval",),
    ("engine",),
    ("bench", "demo"),
    ("cli", "__main__"),
)
#: Known upward imports in files being changed elsewhere (remove an entry once its file is fixed).
ALLOWED_UPWARD: set[tuple[str, str]] = set()


def _modules() -> dict[str, Path]:
    mods = {}
    for f in SRC.rglob("*.py"):
        parts = ("uncol", *f.relative_to(SRC).with_suffix("").parts)
        mods[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    return mods


def _resolve(name: str, mods: dict[str, Path]) -> str:
    """The deepest module of ``name`` (``uncol.a.b.func`` -> ``uncol.a.b`` when that is a module)."""
    while name not in mods and "." in name:
        name = name.rsplit(".", 1)[0]
    return name


def import_graph() -> dict[str, set[str]]:
    """module -> the uncol modules it imports (anywhere in the file)."""
    mods = _modules()
    graph: dict[str, set[str]] = {}
    for mod, path in mods.items():
        deps = set()
        package = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                deps |= {_resolve(a.name, mods) for a in node.names if a.name.split(".")[0] == "uncol"}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
                if base.split(".")[0] != "uncol":
                    continue
                for a in node.names:  # `from uncol.data import io` imports the module uncol.data.io
                    deps.add(_resolve(f"{base}.{a.name}", mods))
        graph[mod] = deps - {mod}
    return graph


def layer(mod: str) -> int:
    top = mod.split(".")[1] if "." in mod else mod
    for i, names in enumerate(LAYERS):
        if top in names:
            return i
    raise AssertionError(f"{mod}: its folder {top!r} is in no layer of LAYERS (add it, and to docs/ARCHITECTURE.md)")


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle (``[a, b, ..., a]``), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for d in sorted(graph.get(m, ())):
            if state.get(d) == 1:
                return stack[stack.index(d):] + [d]
            if d not in state and (c := visit(d)):
                return c
        state[m] = 2
        stack.pop()
        return None

    for m in sorted(graph):
        if m not in state and (c := visit(m)):
            return c
    return None


def test_the_graph_sees_imports_inside_functions() -> None:
    g = import_graph()
    assert "uncol.runtime" in g["uncol.engine.checkpoint"]
    assert "uncol.eval.evaluate" in g["uncol.cli.evaluate"]  # imported inside run()
    assert len(g) > 80


def test_no_import_circle() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "import circle: " + " -> ".join(cycle or [])


def test_no_import_from_a_lower_layer_to_a_higher_one() -> None:
    bad = sorted(f"{m} imports {d}" for m, deps in import_graph().items() for d in deps
                 if layer(d) > layer(m) and (m, d) not in ALLOWED_UPWARD)
    assert not bad, "upward imports (layer order in docs/ARCHITECTURE.md):\n" + "\n".join(bad)


def test_a_circle_and_an_upward_import_are_caught() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    assert layer("uncol.data.io") < layer("uncol.engine.loop")
