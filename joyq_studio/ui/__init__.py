"""The PySide6 desktop app. The only package of joyq_studio that imports Qt.

Views render; :class:`~joyq_studio.ui.session.Session` owns the open project's state;
QThread workers (:mod:`~joyq_studio.ui.workers`) wrap plain core calls that take
progress and cancel callbacks.
"""
