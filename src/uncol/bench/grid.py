"""A bench file (YAML) and its expansion into cells: methods × labelled ratios × seeds.

A bench file::

    name: hc18_2d                        # names the tables
    title: HC18 fetal head, 2D           # optional heading of results.md
    base: ../configs/hc18_2d_uncol.yaml  # config file(s) merged in order (relative to this file), or a mapping
    set: {data.root: data/hc18, train.iterations: 300}   # dotted keys applied to every cell
    ratios: [0.05, 0.1]                  # -> data.split.labeled (a float <= 1 is a ratio, an int a count)
    seeds: [0, 1, 2]                     # each written to every key of seed_keys
    seed_keys: [train.seed]              # add data.split.seed for random trials (new split per seed)
    order: seed                          # run all methods of seed 0 first (default), or `method`
    highlight: uncol                     # method id compared with the best other row in results.md
    methods:
      - label: Supervised                # row name in the tables
        method: supervised               # shorthand for set: {method.name: ...}
        set: {model.name: unet}
      - label: Supervised (100 %)
        method: supervised
        ratios: [1.0]                    # per-method ratios / seeds override the bench's
      - label: LiteMedSAM zero-shot
        kind: zero_shot                  # no training: the teacher prompted with ground-truth boxes
        ratios: []                       # [] = independent of the labelled ratio (one cell per seed)
        seeds: [0]
        jitter_px: 0
      - label: UnCoL (stage 1 only)
        method: uncol
        params: {semantic_distill: false}   # shorthand for method.params.* keys
        stages: [stage1]                 # run only these stages of the method

Each cell's config is: base file(s) → ``set`` → the method's ``method``/``params``/``set`` → the ratio
and seed keys. A ``train.iterations`` set there rescales stage lengths that only the base file gives
(``method.params.stage1_iterations`` ...), as ``--set`` does. Each cell is validated when the grid is
expanded (``uncol bench --dry-run`` shows the cells).
"""
from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from uncol.config import Config, from_dict, validate
from uncol.errors import ConfigError

KINDS = ("train", "zero_shot")
#: What a method id (a folder name of every cell's path) may be: no separators, no "..", no hidden names.
ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
RATIO_KEY = "data.split.labeled"


@dataclass(frozen=True)
class MethodSpec:
    label: str
    id: str = ""
    kind: str = "train"
    method: str | None = None
    params: dict = field(default_factory=dict)
    set: dict = field(default_factory=dict)
    ratios: list[int | float] | None = None  # None: the bench's; []: ratio-independent
    seeds: list[int] | None = None
    stages: list[str] | None = None
    jitter_px: float = 0.0  # zero_shot: box jitter in MedSAM's 1024-px frame
    teacher: str | None = None  # zero_shot: teacher name (default: the cell config's teacher.name)


@dataclass(frozen=True)
class BenchSpec:
    name: str
    methods: list[MethodSpec]
    title: str = ""
    base: Any = None
    set: dict = field(default_factory=dict)
    ratios: list[int | float] = field(default_factory=lambda: [0.1])
    seeds: list[int] = field(default_factory=lambda: [0])
    seed_keys: list[str] = field(default_factory=lambda: ["train.seed"])
    order: str = "seed"  # seed: all methods for seed 0 first (useful partial tables) | method: a method's cells together
    highlight: str = ""  # id of the method compared with the best other row in the tables' summary line
    description: str = ""
    notes: str = ""


@dataclass(frozen=True)
class Cell:
    """One run of the grid. ``ratio`` None: ratio-independent (zero-shot)."""

    method: MethodSpec
    ratio: int | float | None
    seed: int
    config: dict  # the resolved plain-dict config (``from_dict(Config, config)`` validates)

    @property
    def key(self) -> str:
        """Folder name, unique in the grid: ``<method id>/<ratio tag>/s<seed>``."""
        return f"{self.method.id}/{ratio_tag(self.ratio)}/s{self.seed}"

    @property
    def cfg(self) -> Config:
        return from_dict(Config, self.config)


def ratio_tag(ratio: float | None) -> str:
    """``0.05 -> "5pct"``, ``1.0 -> "100pct"``, ``12 -> "n12"``, ``None -> "any"`` (folder-safe)."""
    if ratio is None:
        return "any"
    if isinstance(ratio, bool):
        raise ConfigError(f"labelled ratio {ratio!r} must be a number")
    if isinstance(ratio, int) and ratio > 1:
        return f"n{ratio}"
    return f"{100 * float(ratio):g}pct"


def ratio_label(ratio: float | None) -> str:
    """Human form for tables: ``5 %``, ``100 %``, ``12 labelled``, ``–``."""
    if ratio is None:
        return "–"
    if isinstance(ratio, int) and ratio > 1:
        return f"{ratio} labelled"
    return f"{100 * float(ratio):g} %"


def slug(text: str) -> str:
    s = re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_").lower()
    return s or "method"


def set_dotted(d: dict, key: str, value: Any) -> None:
    """``set_dotted(d, "train.seed", 1)``: nested assignment, creating sections."""
    parts = key.split(".")
    node = d
    for p in parts[:-1]:
        nxt = node.setdefault(p, {})
        if not isinstance(nxt, dict):
            raise ConfigError(f"bench key {key!r}: {p!r} is not a section")
        node = nxt
    node[parts[-1]] = copy.deepcopy(value)


def _merge(a: dict, b: dict) -> dict:
    out = copy.deepcopy(a)
    for k, v in b.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def _read_yaml(path: Path, what: str) -> dict:
    if not path.is_file():
        raise ConfigError(f"{what} {str(path)!r} not found; fix the path (relative paths start at the bench file's folder)")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{what} {str(path)!r} is not valid YAML ({str(e).splitlines()[0]}); fix the syntax") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{what} {str(path)!r} must hold a mapping")
    return data


def load_bench(path: str | Path) -> tuple[BenchSpec, Path]:
    """Parse a bench YAML file; returns the spec and the file's folder (base paths are relative to it)."""
    p = Path(path)
    data = _read_yaml(p, "bench file")
    data.setdefault("name", p.stem)
    methods = data.get("methods")
    if not isinstance(methods, list) or not methods:
        raise ConfigError(f"bench file {str(p)!r}: 'methods' must be a non-empty list of {{label: ..., method: ...}}")
    specs = []
    for i, m in enumerate(methods):
        if not isinstance(m, dict) or "label" not in m:
            raise ConfigError(f"bench file {str(p)!r}: methods[{i}] needs a 'label' (its row name)")
        ms = from_dict(MethodSpec, m, prefix=f"methods[{i}]")
        if ms.kind not in KINDS:
            raise ConfigError(f"bench file {str(p)!r}: methods[{i}].kind must be one of {', '.join(KINDS)}, got {ms.kind!r}")
        if ms.id and not ID_PATTERN.fullmatch(ms.id):
            raise ConfigError(f"bench file {str(p)!r}: methods[{i}].id {ms.id!r} must match {ID_PATTERN.pattern} "
                              "(a folder name under OUT/cells: letters, digits, _ and -)")
        specs.append(ms if ms.id else MethodSpec(**{**ms.__dict__, "id": slug(ms.label)}))
    ids = [m.id for m in specs]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise ConfigError(f"bench file {str(p)!r}: method ids {dup} repeat; give each method a distinct label or id")
    rest = {k: v for k, v in data.items() if k != "methods"}
    bench = from_dict(BenchSpec, {**rest, "methods": []}, prefix="")
    return BenchSpec(**{**bench.__dict__, "methods": specs}), p.parent


def base_config(bench: BenchSpec, root: Path) -> dict:
    """The merged base config (files in order, or an inline mapping) with the bench's ``set`` applied."""
    base = bench.base
    files = [base] if isinstance(base, str) else (base if isinstance(base, list) else [])
    out: dict = base if isinstance(base, dict) else {}
    out = copy.deepcopy(out)
    for f in files:
        d = _read_yaml(root / f, "base config")
        d.pop("_base_", None)
        out = _merge(out, d)
    for k, v in bench.set.items():
        set_dotted(out, k, v)
    return out


def expand(bench: BenchSpec, root: Path, only: list[str] | None = None) -> list[Cell]:
    """All cells of the grid in run order, validated: ``order: seed`` sorts by (seed, ratio, method),
    ``order: method`` by (method, ratio, seed); methods keep their file order, reference rows come first.

    ``only``: keep the methods whose id or label is listed.
    """
    import uncol.methods
    import uncol.methods.finetune  # noqa: F401
    from uncol.methods import METHODS

    base = base_config(bench, root)
    methods = bench.methods
    if only:
        methods = [m for m in methods if m.id in only or m.label in only]
        if not methods:
            known = ", ".join(m.id for m in bench.methods)
            raise ConfigError(f"--only {', '.join(only)} matches no method of bench {bench.name!r}; known: {known}")
    cells: list[tuple[tuple[int, ...], Cell]] = []
    for mi, m in enumerate(methods):
        ratios: list = list(bench.ratios if m.ratios is None else m.ratios) or [None]
        for r in ratios:
            for s in bench.seeds if m.seeds is None else m.seeds:
                cfg = copy.deepcopy(base)
                if m.method:
                    set_dotted(cfg, "method.name", m.method)
                for k, v in m.params.items():
                    set_dotted(cfg, f"method.params.{k}", v)
                for k, v in m.set.items():
                    set_dotted(cfg, k, v)
                if r is not None:
                    set_dotted(cfg, RATIO_KEY, r)
                for k in bench.seed_keys:
                    set_dotted(cfg, k, int(s))
                _scale_stages(cfg, bench, m)
                cell = Cell(m, r, int(s), cfg)
                _check(cell, METHODS)
                ri = bench.ratios.index(r) if r in bench.ratios else -1  # reference rows first
                cells.append(((int(s), ri, mi) if bench.order == "seed" else (mi, ri, int(s)), cell))
    if bench.order not in ("seed", "method"):
        raise ConfigError(f"bench key 'order' must be seed or method, got {bench.order!r}")
    return [c for _, c in sorted(cells, key=lambda kc: kc[0])]


def _scale_stages(cfg: dict, bench: BenchSpec, m: Any) -> None:
    """The ``--set`` rule for stage lengths (:mod:`uncol.config_overrides`) for a bench's settings: a
    ``train.iterations`` set by the bench or the method rescales stage lengths that came only from the
    base file (e.g. ``stage1_iterations: 15000`` in the YAML) so that the stages sum to it."""
    from uncol.config_overrides import dotted_keys, scale_stages_for_keys

    pairs = [*bench.set.items(), *m.set.items(), *((f"method.params.{k}", v) for k, v in m.params.items())]
    scale_stages_for_keys(cfg, dotted_keys(pairs))


def _check(cell: Cell, methods: Any) -> None:
    """Validate the cell's config now (its components' params and the model's stride too, for a trained
    cell; the device is checked when the cell runs), naming the cell on failure."""
    from uncol.engine.setup import check_config

    try:
        cfg = cell.cfg
        validate(cfg)
        if cell.method.kind == "train":
            check_config(cfg, check_device=False)
    except (ConfigError, KeyError) as e:
        raise ConfigError(f"bench cell {cell.key}: {' '.join(str(e).split())}") from None
