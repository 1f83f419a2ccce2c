"""``uncol profile``: parameters and MACs of a config's student; ``--latency`` adds the student's and the
teacher's latency and peak memory."""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("profile", help="parameters and MACs of a config's student (--latency: and timings)")
    p.add_argument("config", help="YAML config (see configs/)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key (repeatable)")
    p.add_argument("--out", default=None, help="profile.json to write (default: print only)")
    p.add_argument("--size", type=int, nargs="+", default=None, help="input size (default: data.size)")
    p.add_argument("--latency", action="store_true",
                   help="also time the student and the config's teacher (batch 1) and report peak memory")
    p.add_argument("--device", default="cpu", help="device for --latency (default: %(default)s)")
    p.add_argument("--warmup", type=int, default=1, help="untimed runs before timing (default: %(default)s)")
    p.add_argument("--runs", type=int, default=5, help="timed runs; the median is reported (default: %(default)s)")
    p.set_defaults(func=run)


def run(a: argparse.Namespace) -> int:
    import sys

    from uncol.config import load_config
    from uncol.errors import ConfigError
    from uncol.eval.profile import profile_student
    from uncol.runtime import atomic_write_json, resolve_device

    if a.warmup < 0 or a.runs < 1:
        raise ConfigError(f"--warmup must be >= 0 and --runs >= 1, got {a.warmup} and {a.runs}")
    cfg = load_config(a.config, a.set)
    try:
        device = str(resolve_device(a.device)) if a.latency else "cpu"
    except RuntimeError as e:  # torch's own "Expected one of cpu, cuda, ..." for an unknown name
        raise ConfigError(f"--device {a.device!r} is not a device torch knows ({str(e).splitlines()[0]})") from None
    res = profile_student(cfg, size=tuple(a.size) if a.size else None, latency=a.latency, device=device,
                          warmup=a.warmup, runs=a.runs, log=lambda m: print(m, file=sys.stderr, flush=True))
    print(json.dumps(res, indent=2))
    if a.out:
        atomic_write_json(Path(a.out), res)
    return 0
