"""Errors a trial can raise because of what the user asked for, not because of a bug.

Both are importable without torch, so the service can catch them by type during validation.
"""


class DataError(ValueError):
    """The data a study points at is missing or not in the expected format.

    The message is one sentence naming the path and what was expected, fit for a CLI user.
    """


class TrialDiverged(RuntimeError):
    """The training loss became nan or inf; the trial's hyperparameters do not train."""
