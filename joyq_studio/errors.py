"""The error types shared by every layer.

A ``JoyqError``'s message is one sentence naming the file (or setting) and the problem.
The CLI prints it and exits 2; the GUI shows it in the window. Anything else is a bug.
"""


class JoyqError(Exception):
    pass


class Cancelled(JoyqError):
    """The user (or a cancel check) stopped a long task; what was finished is kept."""

    def __init__(self, message: str = "Cancelled.") -> None:
        super().__init__(message)


class NoPairAvailable(JoyqError):
    """No pair of images can be shown: too few images, or every pair is excluded or capped."""


class ExportError(JoyqError):
    """An export or import cannot be done; one sentence naming the file and the problem."""
