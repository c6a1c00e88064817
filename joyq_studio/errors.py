"""The one base class of every error meant for the user's eyes.

Its message is one sentence naming the file (or setting) and the problem. The CLI prints
it and exits 2; the GUI shows it in the window. Anything else is a bug.
"""


class JoyqError(Exception):
    pass
