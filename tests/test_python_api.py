"""docs/python_api.md: its example runs as written."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[1] / "docs" / "python_api.md"


@pytest.mark.slow
def test_python_api_example_runs(capsys: pytest.CaptureFixture[str]) -> None:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.DOTALL)
    assert len(blocks) == 1
    scope: dict = {}
    exec(compile(blocks[0], str(DOC), "exec"), scope)  # noqa: S102  the documented example, verbatim
    printed = capsys.readouterr().out
    assert re.search(r"Dice \d\.\d{3}, HD95 \d+\.\d (mm|px)", printed), printed
    assert scope["metrics"]["num_cases"] == 3 and scope["onnx_file"].is_file()
    assert [p.name for p in scope["written"]][-1] == f"{scope['test_ids'][0]}.nii.gz"
    assert (scope["out"] / "pred" / "labels.json").is_file()
