"""Downloads for the dataset preparers and ``uncol weights fetch``: mirrors, checksums, no partial files."""
from __future__ import annotations

import hashlib
import os
import tarfile
import tempfile
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from uncol.errors import DataError, UncolError


def download(url: str | Sequence[str], dest: Path, *, md5: str | None = None, sha256: str | None = None,
             verify: Callable[[Path], None] | None = None, progress: bool = False) -> Path:
    """Fetch ``url`` to ``dest`` with urllib and check it; nothing is left on failure.

    ``url`` may list mirrors, tried in order while a connection fails. The check is the checksum
    (``sha256`` or ``md5``) and/or ``verify(path)``, which raises :class:`UncolError` for a wrong file;
    one of them is required. An existing ``dest`` that passes the check is reused. ``progress`` shows a
    byte progress bar on stderr. Never called by the tests with a network URL.
    """
    if not (md5 or sha256 or verify):
        raise ValueError("download() needs an md5, a sha256 or a verify function")
    urls = [url] if isinstance(url, str) else list(url)
    dest = Path(dest)
    if dest.exists() and _passes(dest, md5, sha256, verify):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    errors: list[str] = []
    for u in urls:
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
        try:
            with os.fdopen(fd, "wb") as f, urllib.request.urlopen(u, timeout=60) as r:
                _copy_with_progress(r, f, dest.name, progress)
            _check(Path(tmp), u, dest, md5, sha256, verify)
            os.replace(tmp, dest)
            return dest
        except OSError as exc:
            errors.append(f"{u} ({exc})")
        finally:
            Path(tmp).unlink(missing_ok=True)
    raise DataError(f"could not download {'; '.join(errors)}; download it by hand to {dest}")


def _copy_with_progress(src: Any, dst: Any, name: str, progress: bool) -> None:
    from tqdm.auto import tqdm

    total = int(src.headers.get("Content-Length") or 0) if getattr(src, "headers", None) else 0
    with tqdm(total=total or None, unit="B", unit_scale=True, unit_divisor=1024, desc=name,
              disable=not progress, dynamic_ncols=True) as bar:
        for block in iter(lambda: src.read(1 << 20), b""):
            dst.write(block)
            bar.update(len(block))


def _check(path: Path, url: str, dest: Path, md5: str | None, sha256: str | None,
           verify: Callable[[Path], None] | None) -> None:
    """Raise DataError (checksum) or the verifier's UncolError when ``path`` is not the expected file."""
    if md5 or sha256:
        algo, want = ("sha256", sha256) if sha256 else ("md5", md5)
        got = _digest(path, algo)
        if got != want:
            raise DataError(f"{url} downloaded with {algo} {got}, expected {want}; retry, or download it by hand to {dest}")
    if verify is not None:
        try:
            verify(path)
        except UncolError as exc:
            msg = " ".join(str(exc).split()).replace(str(path), url)
            raise type(exc)(f"{msg} (downloaded from {url}; nothing was kept)") from None


def _passes(path: Path, md5: str | None, sha256: str | None, verify: Callable[[Path], None] | None) -> bool:
    try:
        _check(path, str(path), path, md5, sha256, verify)
    except UncolError:
        return False
    return True


def _digest(path: Path, algo: str) -> str:
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def extract_tar(archive: Path, dest: Path) -> None:
    """Unpack a tar archive, refusing members that would land outside ``dest``."""
    dest = Path(dest).resolve()
    with tarfile.open(archive) as tar:
        for m in tar.getmembers():
            if not (dest / m.name).resolve().is_relative_to(dest) or m.issym() or m.islnk():
                raise DataError(f"{archive} has an unsafe member {m.name!r}; re-download it")
        tar.extractall(dest)
