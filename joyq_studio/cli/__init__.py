"""The `joyq` command line (an outer layer: it imports the core, never the GUI)."""

from .main import main

__all__ = ["main"]
