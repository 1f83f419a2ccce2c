"""User-facing errors: one line naming the file or key and the fix; the CLI exits with status 2."""
from __future__ import annotations


class UncolError(Exception):
    """A problem with the user's input (data, config, checkpoint, paths).

    The message must be one line that names the offending file or key and says how to fix it.
    The CLI prints ``error: <message>`` and exits with status 2, without a traceback.
    """


class DataError(UncolError):
    """A dataset file or description is missing, unreadable or inconsistent."""


class ConfigError(UncolError):
    """A config key is unknown, missing or has the wrong type/value."""


class CheckpointError(UncolError):
    """A checkpoint is missing, unsafe, corrupt or made for another architecture."""


class TrainingError(UncolError):
    """Training ran but cannot have learned (a non-finite loss or non-finite weights): not a success.

    One line saying the stage, the iteration and what to check; the CLI exits with status 1 (the inputs
    were valid, the run failed), and no non-finite weights are saved.
    """

    exit_status = 1


#: Set by ``uncol train --nproc N`` for its ranks: a folder where a rank that exits with an error writes
#: its exit status, so that the launcher exits 1 for a failed run and 2 for bad input (torchrun's own
#: exit status is 1 for either).
STATUS_DIR_ENV = "UNCOL_RANK_STATUS_DIR"


def record_exit_status(status: int) -> None:
    """Under a ``--nproc`` launch, leave this rank's exit status for the launcher (no-op otherwise)."""
    import os
    from pathlib import Path

    folder = os.environ.get(STATUS_DIR_ENV)
    if folder:
        try:
            (Path(folder) / f"rank{os.environ.get('RANK', '0')}.status").write_text(str(int(status)))
        except OSError:
            pass  # the launcher then falls back to what the rank printed
