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
