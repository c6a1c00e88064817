"""The app's log file, so that every "details are in the log" can say where it is.

``joyq-studio.log`` in the user log dir (platformdirs); beside ``$JOYQ_DATA_DIR`` (in a
``logs`` folder next to it) when that is set, so tests and portable installs keep their
logs with their data; ``$JOYQ_LOG_DIR`` overrides both. The file rotates at 1 MB.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
from pathlib import Path

import platformdirs

from ..redact import RedactingFormatter
from ..settings import APP_NAME

LOG_NAME = f"{APP_NAME}.log"
MAX_BYTES = 1_000_000
BACKUPS = 3
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
LOGGER = "joyq_studio"  # the package's logger: the core's and the app's records

_handler: logging.Handler | None = None


def log_dir() -> Path:
    env = os.environ.get("JOYQ_LOG_DIR")
    if env:
        return Path(env)
    data = os.environ.get("JOYQ_DATA_DIR")
    if data:
        return Path(data).parent / "logs"
    return Path(platformdirs.user_log_dir(APP_NAME, appauthor=False))


def log_path() -> Path:
    return log_dir() / LOG_NAME


def install_log_file() -> Path | None:
    """Send the package's log records to :func:`log_path` (once per path); returns the file,
    or None when it cannot be opened (records then go to stderr only)."""
    global _handler
    path = log_path()
    if _handler is not None and getattr(_handler, "baseFilename", None) == str(path.absolute()):
        return path
    logger = logging.getLogger(LOGGER)
    if _handler is not None:
        logger.removeHandler(_handler)
        _handler.close()
        _handler = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.handlers.RotatingFileHandler(path, maxBytes=MAX_BYTES, backupCount=BACKUPS, encoding="utf-8")
    except OSError:
        return None
    handler.setFormatter(RedactingFormatter(FORMAT))  # no key ever reaches the log file
    handler.setLevel(logging.INFO)
    logger.addHandler(handler)
    _handler = handler
    return path
