"""Files shipped inside the package (the demo tower, icons), read with importlib.resources.

They travel in the wheel as package data, so an installed ``joyq`` finds them the same as
a checkout does.
"""

from __future__ import annotations

from importlib.resources import as_file, files
from pathlib import Path


def resource_path(name: str) -> Path:
    """A real path to a shipped file or folder (``demo-model``, ``icon.svg``, ...).

    The package is installed as plain files (a wheel or a checkout), so the traversable is
    a path already; ``as_file`` would copy out of a zip import, which we do not support.
    """
    with as_file(files(__name__) / name) as p:
        return Path(p)


DEMO_MODEL_DIR = resource_path("demo-model")
