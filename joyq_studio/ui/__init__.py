"""The PySide6 desktop app. The only package of joyq_studio that imports Qt.

* ``app``: the entry point (``joyq-studio``), the QApplication, the log file (``logfile``).
* ``window``: the main window's layout, menus and navigation.
* ``controller``: the open project's state and every action on it; no widgets. The window
  and the views call it and render its signals.
* ``session``: one project on the GUI thread: images, scores, the live model (a
  ``taste.TasteModel`` that chooses every pair and learns from every click), undo.
* ``workers``: QThread tasks around plain core calls that take progress and cancel
  callbacks (exactly one of succeeded / failed / cancelled, on the GUI thread).
* ``imagecache``: image and thumbnail decoding off the GUI thread, bounded in memory.
* ``views/``: the pages (welcome, compare, train, rank) and their widgets.
* ``dialogs/``: choosing a model, exports (CSV, captions, chosen images into a folder, each
  with a preview or dry run), unreadable files, pre-labelling with an LLM.
* ``bench`` and ``screenshots``: the app driven offscreen, for benchmarks and the docs.
"""
