"""uncol.runtime.staged_output_dir: all or nothing, earlier outputs kept byte-identical on failure."""
from __future__ import annotations

from pathlib import Path

import pytest

from uncol.errors import DataError
from uncol.runtime import staged_output_dir


def _files(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): p.read_text() for p in sorted(root.rglob("*")) if p.is_file()}


def test_a_new_folder_appears_only_on_success(tmp_path: Path) -> None:
    out = tmp_path / "a" / "b" / "out"
    with pytest.raises(RuntimeError), staged_output_dir(out) as stage:
        (stage / "x.txt").write_text("1")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []  # the folders created above out are gone too
    with staged_output_dir(out) as stage:
        assert stage.parent == out.parent and stage.name.startswith(".out.tmp-")
        (stage / "sub").mkdir()
        (stage / "sub" / "y.txt").write_text("2")
    assert _files(out) == {"sub/y.txt": "2"} and sorted(p.name for p in out.parent.iterdir()) == ["out"]


def test_an_existing_folder_gets_new_files_replaced_and_keeps_the_rest(tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "sub").mkdir(parents=True)
    (out / "keep.txt").write_text("mine")
    (out / "sub" / "y.txt").write_text("old")
    with pytest.raises(DataError), staged_output_dir(out) as stage:
        (stage / "sub").mkdir()
        (stage / "sub" / "y.txt").write_text("new")
        raise DataError("bad case")
    assert _files(out) == {"keep.txt": "mine", "sub/y.txt": "old"}
    with staged_output_dir(out) as stage:
        (stage / "sub").mkdir()
        (stage / "sub" / "y.txt").write_text("new")
    assert _files(out) == {"keep.txt": "mine", "sub/y.txt": "new"} and [p.name for p in tmp_path.iterdir()] == ["out"]


def test_a_clash_leaves_the_folder_untouched(tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "report.html").mkdir(parents=True)  # a folder where a file goes
    (out / "a.txt").write_text("old")
    with pytest.raises(DataError, match="report.html: is in the way"), staged_output_dir(out) as stage:
        (stage / "a.txt").write_text("new")
        (stage / "report.html").write_text("page")
    assert _files(out) == {"a.txt": "old"} and [p.name for p in tmp_path.iterdir()] == ["out"]


def test_stale_stages_of_dead_processes_are_removed(tmp_path: Path) -> None:
    dead = tmp_path / ".out.tmp-999999999"
    dead.mkdir()
    (tmp_path / "out").write_text("a file")
    with pytest.raises(DataError, match="is a file"), staged_output_dir(tmp_path / "out"):
        pass
    with staged_output_dir(tmp_path / "out2"):
        pass
    assert dead.exists()  # another output's stage is not touched
    with staged_output_dir(tmp_path / "out3"):
        pass
    (tmp_path / "out").unlink()
    with staged_output_dir(tmp_path / "out"):
        pass
    assert not dead.exists()
