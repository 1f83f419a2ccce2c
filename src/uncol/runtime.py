"""The leaf runtime layer: device, output folders, atomic file writes, safe ``torch.load`` and the
uncol checkpoint format. Every other layer (data, config, teachers, eval, engine, ...) may import it;
it imports nothing from uncol but :mod:`uncol.errors`.

- Writes are atomic: a temp file in the same folder, fsync, then rename (:func:`atomic_write`).
- Loads are safe: ``torch.load(..., weights_only=True)`` only, refusals reported in one line (:func:`safe_load`).
- An uncol checkpoint is a plain dict with ``format_version`` (see :mod:`uncol.engine.checkpoint` for its keys).
- The cache root (:func:`cache_root`): ``$XDG_CACHE_HOME/uncol``, else ``~/.cache/uncol``; the teacher
  feature cache and the downloaded weights live below it.
"""
from __future__ import annotations

import contextlib
import json
import os
import pickle
import re
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterator
from glob import escape as glob_escape
from pathlib import Path
from typing import Any

import torch
from torch import nn

from uncol.errors import CheckpointError, ConfigError, DataError


# ------------------------------------------------------------------------------------ device, folders
def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when visible, else CPU; a CUDA device that is not visible is a ConfigError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"config key 'train.device' is {name!r} but no CUDA device is visible; use 'cpu' or 'auto'")
    return torch.device(name)


def cache_root() -> Path:
    """``$XDG_CACHE_HOME/uncol``, else ``~/.cache/uncol``: teacher features (``teachers/``), weights (``weights/``)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "uncol"


def check_out_dir(out: Path) -> None:
    """DataError unless ``out`` is (or can become) a writable folder; creates nothing.

    Runs before any data is read so that a bad ``--out`` fails fast, and before anything is written
    so that a bad dataset or config leaves no run folder behind.
    """
    out = Path(out)
    if out.exists():
        if not out.is_dir():
            raise DataError(f"output folder {str(out)!r} is a file; choose another --out")
        if not os.access(out, os.W_OK | os.X_OK):
            raise DataError(f"output folder {str(out)!r} is not writable (permission denied); choose another --out")
        return
    parent = out.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise DataError(f"output folder {str(out)!r} cannot be created ({str(parent)!r} is not a writable folder); "
                        "choose another --out")


def prepare_out_dir(out: Path) -> None:
    """Create the output folder, checking it is writable (a probe file is written and removed)."""
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise DataError(f"output folder {str(out)!r} is not writable ({e.strerror}); choose another --out") from None


def remove_stale_temp_files(out: Path) -> None:
    """Delete ``.NAME.*.tmp`` files that an atomic write left behind when its process was killed."""
    for p in Path(out).glob(".*.tmp"):
        p.unlink(missing_ok=True)


# ------------------------------------------------------------------------------------- atomic writes
def atomic_write(path: Path, write: Callable[[Path], None], suffix: str = ".tmp") -> None:
    """Call ``write(tmp_path)`` then rename the temp file onto ``path``; no partial file is ever left.

    ``suffix`` is the temp file's suffix (writers that infer the format from it, like nibabel, need
    the real one, e.g. ``.nii.gz``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        write(tmp_path)
        with open(tmp_path, "rb") as f:
            os.fsync(f.fileno())
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def atomic_torch_save(obj: Any, path: Path) -> None:
    atomic_write(path, lambda p: torch.save(obj, p))


# ------------------------------------------------------------------------------- checkpoints, loads
#: Version of the checkpoint dict layout; a newer file is refused with "upgrade uncol".
FORMAT_VERSION = 1


def save_checkpoint(obj: dict[str, Any], path: str | Path) -> None:
    """Write ``obj`` (with ``format_version`` added) atomically: temp file + rename."""
    atomic_torch_save({"format_version": FORMAT_VERSION, **obj}, Path(path))


def safe_load(path: str | Path, what: str = "checkpoint") -> Any:
    """``torch.load(..., weights_only=True)``; refuse pickles that would run code, with one clear line."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{what} {str(p)!r} not found; pass the path of an existing file")
    try:
        with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4": the one-line error says it all
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "Unsupported global" not in str(e):  # garbage bytes or an unsupported pickle opcode
            raise CheckpointError(f"{what} {str(p)!r} was refused by the safe loader (weights_only=True): it is "
                                  "not a plain tensor file (corrupt, or a pickle of Python objects); re-create it, "
                                  "or re-save it as a state dict in an environment you trust") from None
        raise CheckpointError(
            f"{what} {str(p)!r} was refused by the safe loader (weights_only=True): it holds Python objects "
            f"that could run code ({_refusal_reason(str(e))}); load only files you trust, and re-save them as a "
            "plain state dict (torch.save(model.state_dict(), path))"
        ) from None
    except Exception as e:  # noqa: BLE001 - garbage bytes reach the unpickler's internals (IndexError, KeyError, ...)
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{what} {str(p)!r} is unreadable or truncated ({first}); re-create or re-download it") from None


def _refusal_reason(text: str) -> str:
    """The informative part of torch's weights-only refusal (``Unsupported global: GLOBAL x``), one line."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", text)
    m = re.search(r"Unsupported global[^.]*", text)
    if m:
        return m.group(0).replace(" was not an allowed global by default", " not allowed").strip()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return (lines[-1] if lines else "unsafe pickle")[:160]


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    ckpt = safe_load(path)
    if not isinstance(ckpt, dict) or "format_version" not in ckpt:
        raise CheckpointError(f"checkpoint {str(path)!r} is not an uncol checkpoint (no format_version); "
                              "use a file written by `uncol train`")
    if ckpt["format_version"] > FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {str(path)!r} has format {ckpt['format_version']}, newer than this uncol ({FORMAT_VERSION}); "
            "upgrade uncol"
        )
    return ckpt


def load_state_strict(module: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """``load_state_dict(strict=True)`` with an error that lists which keys differ."""
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shape = [k for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape)]
    if missing or unexpected or shape:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} keys (e.g. {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} keys (e.g. {', '.join(unexpected[:3])})")
        if shape:
            k = shape[0]
            parts.append(f"{len(shape)} shape mismatches (e.g. {k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)})")
        raise CheckpointError(
            f"{source} was made for another architecture: {'; '.join(parts)}; use the config the checkpoint was trained with"
        )
    module.load_state_dict(state, strict=True)


def nonfinite_keys(state: dict[str, Any]) -> list[str]:
    """The keys of a state dict whose floating-point tensor holds a NaN or an infinity (nested dicts walked)."""
    bad = []
    for k, v in state.items():
        if isinstance(v, dict):
            bad += [f"{k}.{sub}" for sub in nonfinite_keys(v)]
        elif torch.is_tensor(v) and v.is_floating_point() and not bool(torch.isfinite(v).all()):
            bad.append(str(k))
    return bad


def check_finite_state(state: dict[str, Any], path: str | Any) -> None:
    """:class:`CheckpointError` naming ``path`` when any weight of ``state`` is NaN or infinite.

    Such a file comes from a run that diverged (before uncol stopped at the first non-finite loss); its
    predictions are meaningless. Called when training resumes from ``last.pt``; ``evaluate``/``predict``
    should call it on the checkpoint's ``model`` too (this is the runtime layer: eval may import it).
    """
    bad = nonfinite_keys(state)
    if bad:
        raise CheckpointError(f"checkpoint {str(path)!r} holds non-finite weights ({len(bad)} tensors, e.g. {bad[0]}): "
                              "the run that wrote it diverged; retrain with a lower train.lr or use another checkpoint")


def read_json_object(path: Path, what: str, missing_fix: str, expected: str) -> dict:
    """The JSON object in ``path``; a missing file, bad JSON or a non-object is a one-line ``DataError``
    naming the file (``what`` names it for people, ``missing_fix`` says what to do, ``expected`` its content)."""
    from uncol.errors import DataError

    if not path.is_file():
        raise DataError(f"{path}: {what} not found; {missing_fix}")
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: {what} is not valid JSON ({e}); fix the syntax") from None
    if not isinstance(obj, dict):
        raise DataError(f"{path}: {what} must be a JSON object with {expected}")
    return obj


# ------------------------------------------------------------------------------- staged output folders
@contextlib.contextmanager
def staged_output_dir(out: str | Path) -> Iterator[Path]:
    """Yield an empty temp folder ``.OUT.tmp-<pid>`` beside ``out``; move its files into ``out`` only when
    the block succeeds, so that a failed command leaves nothing behind.

    A new ``out`` is the temp folder renamed; an existing one gets each new file replaced (atomic
    ``os.replace``) and keeps its other files, so earlier outputs stay byte-identical after a failure.
    Folders created above ``out`` are removed again on failure. Temp folders of dead processes are deleted.
    """
    out = Path(out).absolute()
    if out.exists() and not out.is_dir():
        raise DataError(f"output folder {str(out)!r} is a file; choose another output folder")
    created = [p for p in (out.parent, *out.parent.parents) if not p.exists()]
    _remove_dead_stages(out)
    stage = out.parent / f".{out.name}.tmp-{os.getpid()}"
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(stage, ignore_errors=True)
        stage.mkdir()
    except OSError as e:
        raise DataError(f"output folder {str(out)!r} cannot be created ({e.strerror}); choose another output folder") from None
    try:
        yield stage
        _commit_stage(stage, out)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        for p in created:  # deepest first
            with contextlib.suppress(OSError):
                p.rmdir()
        raise


def _commit_stage(stage: Path, out: Path) -> None:
    """Rename ``stage`` onto a missing ``out``, else replace ``out``'s files one by one with the staged ones."""
    if not out.exists():
        os.replace(stage, out)
        return
    files = sorted(p for p in stage.rglob("*") if not p.is_dir())
    for f in files:  # check everything first: a clash must not leave ``out`` half-updated
        rel = f.relative_to(stage)
        dest = out / rel
        parents = [q for q in dest.parents if out in q.parents]
        clash = dest if dest.is_dir() else next((q for q in parents if q.exists() and not q.is_dir()), None)
        if clash is not None:
            raise DataError(f"{clash}: is in the way of output {rel} (a folder where a file goes, or the reverse); "
                            "move it away or choose another output folder")
    for f in files:
        dest = out / f.relative_to(stage)
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(f, dest)
    shutil.rmtree(stage, ignore_errors=True)


def _remove_dead_stages(out: Path) -> None:
    """Delete ``.OUT.tmp-<pid>`` folders whose process no longer runs (a killed earlier command)."""
    if not out.parent.is_dir():
        return
    for p in out.parent.glob(f".{glob_escape(out.name)}.tmp-*"):
        pid = p.name.rsplit("-", 1)[-1]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            shutil.rmtree(p, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. another user's process
        return True
    return True
