"""Screenshots of the real window for the docs: `python -m joyq_studio.ui.screenshots [OUT_DIR]`.

Generates a demo folder, opens it, makes a few dozen consistent judgements, trains (quick),
adopts, and grabs the Welcome, Compare, Train and Rank views (offscreen, widget.grab())."""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    out = Path(argv[0] if argv else "docs/screenshots")
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    tmp = Path(tempfile.mkdtemp(prefix="joyq-shots-"))
    os.environ["JOYQ_DATA_DIR"] = str(tmp / "data")
    os.environ["JOYQ_CACHE_DIR"] = str(tmp / "cache")
    from PySide6.QtCore import QEventLoop, Qt
    from PySide6.QtTest import QTest

    from ..demo import make_demo_folder
    from .app import app_icon, create_app
    from .util import add_recent_folder, demo_model_spec
    from .window import MainWindow

    app = create_app([sys.argv[0]])

    def pump(ms: float = 30) -> None:
        end = time.perf_counter() + ms / 1000
        while True:
            app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 10)
            if time.perf_counter() >= end:
                return
            time.sleep(0.005)

    def wait(cond, timeout=120.0) -> None:
        t0 = time.perf_counter()
        while not cond():
            pump(10)
            if time.perf_counter() - t0 > timeout:
                raise TimeoutError("screenshot scenario timed out")

    folder = tmp / "holiday-photos"
    make_demo_folder(folder, count=60, seed=4, size=512)
    w = MainWindow(app_icon())
    w.resize(1360, 860)
    w.show()
    pump(200)
    c = w.controller
    for f in ("~/Pictures/holiday-2024", "~/Pictures/portraits", "~/datasets/anime-v3"):
        add_recent_folder(os.path.expanduser(f))
    w.welcome.refresh()
    pump(100)
    w.grab().save(str(out / "welcome.png"))

    c.open_folder(str(folder), demo_model_spec())
    wait(lambda: not c.busy_scoring() and w.compare.ready())

    def names() -> tuple[str, str]:
        p, s = w.compare.current, c.session
        if p is None or s is None:
            raise RuntimeError("the demo folder has no pair to compare")
        return s.rel(p.left), s.rel(p.right)

    def verdict() -> Qt.Key:
        a, b = names()
        if ("_clean" in a) != ("_clean" in b):
            return Qt.Key.Key_Left if "_clean" in a else Qt.Key.Key_Right
        return Qt.Key.Key_T if a[:9] == b[:9] else (Qt.Key.Key_Left if a < b else Qt.Key.Key_Right)

    for _ in range(150):
        QTest.keyClick(w.compare, verdict())
        wait(w.compare.ready)
    # a same-scene pair makes the best picture of what comparing looks like
    for _ in range(200):
        a, b = names()
        if a[:9] == b[:9]:
            break
        QTest.keyClick(w.compare, Qt.Key.Key_Space)
        wait(w.compare.ready)
    pump(300)
    w.grab().save(str(out / "compare.png"))

    w.train.adv_toggle.setChecked(False)
    w.train_now()
    wait(lambda: not w.train.running())
    pump(200)
    w.grab().save(str(out / "train.png"))
    w.train.use_result()
    wait(lambda: not c.busy_scoring())

    w.show_tab(2)
    wait(lambda: c.ranking.cal is not None and c.ranking.task is None)
    t0 = time.perf_counter()
    wait(lambda: not w.rank.thumbs.pending or time.perf_counter() - t0 > 20)
    pump(500)
    w.grab().save(str(out / "rank.png"))
    w.close()
    print(f"wrote {', '.join(p.name for p in sorted(out.glob('*.png')))} to {out}")
    import shutil

    if not os.environ.get("JOYQ_KEEP_SHOTS_DATA"):
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        print(tmp)
    return 0


if __name__ == "__main__":
    sys.exit(main())
