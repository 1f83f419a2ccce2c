"""Where commands write, and the rule that they never write into what they read.

- :func:`refuse_overlap`: an output folder (or file) that is, contains or is inside an input is a
  :class:`~uncol.errors.DataError` naming both paths, raised before anything is read or written.
- :func:`output_names` / :func:`planned_outputs`: the files ``uncol predict`` writes for each input;
  two inputs that would write the same file (``scan.nii.gz`` and ``scan.png`` -> one
  ``uncertainty/scan_entropy.nii.gz``) or share a case name (which ``uncol evaluate-masks`` could not
  tell apart) are refused before the first file is written.

Layout of ``uncol predict --output OUT``: masks ``OUT/<case><ext>`` (with the label tables), entropy
maps ``OUT/uncertainty/<case>_entropy<ext>``, probability maps ``OUT/probabilities/<case>_prob<k><ext>``,
so that ``uncol evaluate-masks --pred OUT`` sees masks only.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from uncol.errors import DataError

#: Sub-folders of a ``predict`` output folder for the float maps.
UNCERTAINTY_DIR = "uncertainty"
PROBABILITIES_DIR = "probabilities"


def _resolved(p: str | Path) -> Path:
    return Path(p).expanduser().resolve()


def refuse_overlap(out: str | Path, out_flag: str, inputs: Sequence[tuple[str, str | Path | None]],
                   allow_inside: bool = False) -> None:
    """DataError if ``out`` is an input, contains one, or (unless ``allow_inside``) lies inside one.

    ``inputs``: ``(flag, path)`` pairs as the user named them (``None`` paths are skipped), e.g.
    ``[("--input", "scans/")]``. Symbolic links are resolved, so a link to the input folder is caught.
    ``allow_inside``: the output may be a sub-folder of the inputs (``uncol report RUN`` writes RUN/report).
    """
    o = _resolved(out)
    for flag, path in inputs:
        if path is None:
            continue
        i = _resolved(path)
        if o == i:
            why, fix = "is the same path as", f"choose another {out_flag}"
        elif o in i.parents:
            why, fix = "contains", f"choose an {out_flag} that does not hold {str(path)!r}"
        elif i in o.parents and not allow_inside:
            why, fix = "is inside", f"choose an {out_flag} outside {str(path)!r}"
        else:
            continue
        raise DataError(f"{out_flag} {str(out)!r} {why} {flag} {str(path)!r}: uncol never writes into its inputs; {fix}")


def output_names(path: Path) -> tuple[str, str, str]:
    """``(stem, mask suffix, float-map suffix)`` of the outputs for input ``path``: the input's own format,
    except DICOM (a ``.dcm`` or a series folder) -> ``.nii.gz``, detached headers (``.nhdr``/``.mhd``) ->
    ``.nrrd``/``.mha``, and PNG float maps -> ``.nii.gz``."""
    from uncol.data.io import split_suffix

    stem, ext = split_suffix(path)
    if path.is_dir():
        stem, ext = path.name, ""
    mask_ext = _OUT_EXT.get(ext, ext)
    return stem, mask_ext, ".nii.gz" if mask_ext == ".png" else mask_ext


_OUT_EXT = {".dcm": ".nii.gz", "": ".nii.gz", ".nhdr": ".nrrd", ".mhd": ".mha", ".hdf5": ".h5"}


def planned_outputs(path: Path, uncertainty: bool, probabilities: int) -> list[Path]:
    """Relative paths ``predict`` writes for input ``path``: the mask first, then the entropy map
    (``uncertainty``) and ``probabilities`` probability maps (0: none)."""
    stem, mask_ext, map_ext = output_names(Path(path))
    rel = [Path(f"{stem}{mask_ext}")]
    if uncertainty:
        rel.append(Path(UNCERTAINTY_DIR) / f"{stem}_entropy{map_ext}")
    rel += [Path(PROBABILITIES_DIR) / f"{stem}_prob{k}{map_ext}" for k in range(probabilities)]
    return rel


def refuse_collisions(inputs: Sequence[Path]) -> None:
    """DataError when two inputs share a case name (their outputs would overwrite each other or be
    indistinguishable to ``evaluate-masks``), naming both files."""
    seen: dict[str, Path] = {}
    for p in inputs:
        stem = output_names(Path(p))[0]
        if stem in seen:
            raise DataError(f"inputs {str(seen[stem])!r} and {str(p)!r} have the same case name {stem!r}, so their "
                            "masks and maps would overwrite each other; rename one or predict them separately")
        seen[stem] = Path(p)
