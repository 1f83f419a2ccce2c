"""``uncol cache list`` / ``uncol cache clear``: the teacher feature cache on disk."""
from __future__ import annotations

import argparse
from pathlib import Path

_DIR_HELP = ("cache folder (default: the config's teacher.cache_dir, else $UNCOL_CACHE, "
             "else ~/.cache/uncol/teachers, where training puts it)")


def add_parser(sub: argparse._SubParsersAction) -> None:
    c = sub.add_parser("cache", help="list or clear the teacher feature cache")
    csub = c.add_subparsers(dest="cache_command", required=True, metavar="CACHE_COMMAND", help="one of:")
    ls = csub.add_parser("list", help="size on disk per teacher configuration (and per dataset with --config)")
    cl = csub.add_parser("clear", help="delete cache entries (all, one teacher's, or one dataset's)")
    for p in (ls, cl):
        p.add_argument("--dir", default=None, help=_DIR_HELP)
        p.add_argument("--config", default=None, help="training YAML: count/clear the entries of its dataset "
                       "(images hashed as training does; reads every image)")
        p.add_argument("--data", default=None, help="dataset folder (default: the config's data.root)")
        p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    cl.add_argument("--teacher", default=None, help="only this teacher (class name as listed, or folder name)")
    cl.add_argument("--all", action="store_true", help="clear everything in the folder (needed without "
                    "--teacher or --config)")
    cl.add_argument("--dry-run", action="store_true", help="say what would be deleted, delete nothing")
    ls.set_defaults(func=run_list)
    cl.set_defaults(func=run_clear)


def _setup(a: argparse.Namespace) -> tuple[Path, dict[str, set[str]] | None]:
    from uncol.engine.setup import default_teacher_cache
    from uncol.teachers import resolve_cache_dir
    from uncol.teachers.cache_admin import dataset_keys

    if a.config is None:
        if a.data:
            from uncol.errors import ConfigError

            raise ConfigError("--data needs --config (the preprocessing decides the cache keys); pass both")
        from uncol.config import TeacherConfig

        return Path(a.dir) if a.dir else resolve_cache_dir(TeacherConfig(), default_teacher_cache()), None
    from uncol.config import load_config

    cfg = load_config(a.config, a.set)
    root = Path(a.dir) if a.dir else resolve_cache_dir(cfg.teacher, default_teacher_cache())
    name = Path(a.data or cfg.data.root).name
    return root, {name: dataset_keys(cfg, a.data)}


def run_list(a: argparse.Namespace) -> int:
    from uncol.teachers.cache_admin import human_bytes, list_cache

    root, datasets = _setup(a)
    folders = list_cache(root, datasets)
    print(f"teacher cache {root}: {len(folders)} teacher configuration(s), "
          f"{human_bytes(sum(f.bytes for f in folders))}")
    for f in folders:
        per = f" ({human_bytes(f.bytes // f.files)} per image)" if f.files else ""
        print(f"  {f.path.name}: {f.teacher}, {f.files} images, {human_bytes(f.bytes)}{per}")
        if f.fingerprint:
            print(f"    {f.fingerprint[:160]}")
        for name, (n, b) in f.datasets.items():
            total = len((datasets or {}).get(name, ()))
            print(f"    dataset {name}: {n} of its {total} images cached, {human_bytes(b)}")
    return 0


def run_clear(a: argparse.Namespace) -> int:
    from uncol.errors import ConfigError
    from uncol.teachers.cache_admin import clear_cache, human_bytes

    if not (a.all or a.teacher or a.config):
        raise ConfigError("uncol cache clear: say what to clear: --teacher NAME, --config CFG (one dataset) or --all")
    root, datasets = _setup(a)
    keys = next(iter(datasets.values())) if datasets else None
    n, size = clear_cache(root, teacher=a.teacher, keys=keys, dry_run=a.dry_run)
    print(f"{'would delete' if a.dry_run else 'deleted'} {n} cache files, {human_bytes(size)}, in {root}")
    return 0
