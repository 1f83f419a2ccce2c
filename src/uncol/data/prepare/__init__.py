"""Turn a downloaded dataset release into the folder ``uncol train`` reads (see ``common`` for the layout).

>>> from uncol.data.prepare import prepare
>>> prepare("oasis2d", "raw/neurite-oasis.2d", "data/oasis2d", seed=0)   # doctest: +SKIP

Each preparer is registered in ``PREPARERS`` under its name and has the signature
``fn(raw_dir: Path, out_dir: Path, *, download: bool, seed: int, **options) -> Path``.
``options(name)`` lists a preparer's extra keyword options and their defaults (for the CLI).
"""
from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

from uncol.data.prepare import imagetbad, msd, oasis2d, pancreas_ct  # noqa: F401  (fill PREPARERS)
from uncol.data.prepare.common import PREPARERS
from uncol.errors import ConfigError

_COMMON = ("raw_dir", "out_dir", "download", "seed")


def options(name: str) -> dict[str, Any]:
    """Extra keyword options of preparer ``name`` -> default value."""
    sig = inspect.signature(PREPARERS.get(name))
    return {p.name: p.default for p in sig.parameters.values()
            if p.name not in _COMMON and p.kind is inspect.Parameter.KEYWORD_ONLY}


def prepare(name: str, raw_dir: str | Path, out_dir: str | Path, download: bool = False,
            seed: int = 0, **opts: Any) -> Path:
    """Check the raw release in ``raw_dir`` and write the prepared dataset to ``out_dir``.

    Raises ``uncol.errors.DataError`` (one line: the file and the fix) for anything missing or
    inconsistent, ``ConfigError`` for an unknown option. Returns ``out_dir``.
    """
    fn = PREPARERS.get(name)
    known = options(name)
    unknown = sorted(set(opts) - set(known))
    if unknown:
        raise ConfigError(f"unknown option(s) {', '.join(unknown)} for dataset {name!r}; "
                          f"known: {', '.join(sorted(known)) or 'none'}")
    return fn(Path(raw_dir), Path(out_dir), download=download, seed=seed, **opts)


__all__ = ["PREPARERS", "options", "prepare"]
