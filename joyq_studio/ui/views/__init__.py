"""The window's pages and their widgets: they render what the controller says and call its
actions; none owns project state. ``welcome``, ``compare`` (with ``canvas``), ``train``
(with ``plot``), ``rank`` (with the full-size ``viewer``), and the ``message_bar``."""
