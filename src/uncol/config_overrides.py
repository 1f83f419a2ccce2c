"""``--set key=value`` overrides of a config's plain dict, and the one rule that keeps a schedule whole.

Stage lengths: a method's ``Params`` field named ``<stage>_iterations`` is the length of that stage, 0
meaning ``train.iterations`` (UnCoL's ``stage1_iterations``/``stage2_iterations``, BCP's
``pretrain_iterations``/``selftrain_iterations``; see :func:`uncol.methods.base.stage_iteration_keys`).
A config file that sets them explicitly would silently ignore ``--set train.iterations=N``; so when
``train.iterations`` is overridden and explicit stage lengths were not, :func:`scale_stage_iterations`
rescales them in proportion so that the stages sum to ``N`` (at least 1 each) and says so in one line.
"""
from __future__ import annotations

from typing import Any

import yaml

from uncol.errors import ConfigError

STAGE_SUFFIX = "_iterations"


def parse_override(item: str) -> tuple[list[str], Any]:
    """``"train.iterations=100"`` -> (["train", "iterations"], 100); the value is parsed as YAML."""
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected key=value, e.g. --set train.iterations=100")
    key, raw = item.split("=", 1)
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        value = raw
    return key.strip().split("."), value


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """``data`` with every ``key=value`` of ``overrides`` set (sections created as needed), in order."""
    for item in overrides:
        path, value = parse_override(item)
        node = data
        for p in path[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {item!r}: {p!r} is not a section")
        node[path[-1]] = value
    return data


def dotted_keys(pairs: list[tuple[str, Any]]) -> set[str]:
    """The dotted keys that ``(key, value)`` settings set (``method.params: {...}`` counts for each key it holds)."""
    keys = set()
    for key, value in pairs:
        keys.add(key)
        if isinstance(value, dict):
            keys |= {f"{key}.{k}" for k in value}
    return keys


def overridden_keys(overrides: list[str]) -> set[str]:
    """The dotted keys that ``overrides`` set (``method.params={...}`` counts for each key it holds)."""
    pairs = []
    for item in overrides:
        path, value = parse_override(item)
        pairs.append((".".join(path), value))
    return dotted_keys(pairs)


def _proportional(values: list[int], total: int) -> list[int]:
    """``values`` rescaled to integers >= 1 that sum to ``max(total, len(values))`` (largest remainders)."""
    total = max(total, len(values))
    raw = [total * v / sum(values) for v in values]
    out = [max(1, int(r)) for r in raw]
    order = sorted(range(len(values)), key=lambda i: raw[i] - int(raw[i]), reverse=True)
    i = 0
    while sum(out) != total:
        j = order[i % len(order)]
        if sum(out) < total:
            out[j] += 1
        elif out[j] > 1:
            out[j] -= 1
        i += 1
    return out


def scale_stage_iterations(data: dict, overrides: list[str]) -> str | None:
    """Apply the stage-length rule (module docstring) to ``data`` (overrides already applied) in place.

    Returns the one-line note to show, or None when nothing changed: ``train.iterations`` was not
    overridden, or no explicit, non-overridden, positive ``method.params.*_iterations`` exists.
    Explicitly overridden stage lengths are kept and count towards the total.
    """
    return scale_stages_for_keys(data, overridden_keys(overrides))


def scale_stages_for_keys(data: dict, keys: set[str]) -> str | None:
    """:func:`scale_stage_iterations` given the set of dotted keys that were overridden (bench ``set:``)."""
    train, params = data.get("train"), (data.get("method") or {}).get("params")
    if "train.iterations" not in keys or not isinstance(train, dict) or not isinstance(params, dict):
        return None
    total = train.get("iterations")
    if isinstance(total, bool) or not isinstance(total, int) or total < 1:
        return None  # validate() reports a bad train.iterations
    stage = {k: v for k, v in params.items() if k.endswith(STAGE_SUFFIX) and isinstance(v, int)
             and not isinstance(v, bool)}
    fixed = {k: v for k, v in stage.items() if f"method.params.{k}" in keys or "method.params" in keys}
    free = {k: v for k, v in stage.items() if k not in fixed and v > 0}
    if not free:
        return None
    scaled = _proportional(list(free.values()), total - sum(v for v in fixed.values() if v > 0))
    params.update(dict(zip(free, scaled)))
    change = ", ".join(f"method.params.{k} {free[k]} -> {n}" for k, n in zip(free, scaled))
    return (f"train.iterations={total} overridden: scaled the config's stage lengths to match ({change}); "
            "--set them explicitly to choose otherwise")
