"""Dialogs: choosing a model (``model``), exporting CSV and captions (``export``), the
files that could not be read (``unreadable``)."""
