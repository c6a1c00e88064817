"""Benchmarks of the desktop app: `python -m joyq_studio.ui.bench [--startup]`.

Click-to-shown latency of the Compare view: drives the real window offscreen on a
generated demo folder (tiny model, so scoring is instant): waits until a pair is on
screen, "thinks" for a while (as a person does, which gives the prefetcher its chance),
presses Left / Right / T, and measures the time from the key press to the next pair fully
painted (both images). Reports p50 / p95 / max and names the machine. A second run without
think time shows the worst case (clicking faster than images can be decoded).

``--startup``: seconds from launching the app (a fresh Python process, offscreen, empty
data dir) to the window's first paint, median of ``--runs`` launches, and whether torch
or transformers had been imported by then.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# The child of `startup_times`: start the app as `joyq-studio` does; at the first paint,
# print the seconds since the parent launched it and which heavy modules are loaded, then exit.
_STARTUP_CHILD = """
import os, sys, time
t0 = float(sys.argv[1])
from joyq_studio.ui import window
init = window.MainWindow.__init__
def probe(self, *a, **k):
    init(self, *a, **k)
    def painted():
        heavy = [m for m in ("torch", "transformers") if m in sys.modules]
        print(f"painted {time.time() - t0:.4f} {','.join(heavy) or '-'}", flush=True)
        os._exit(0)
    self.first_painted.connect(painted)
window.MainWindow.__init__ = probe
from joyq_studio.ui.app import main
sys.exit(main([]))
"""


def _percentile(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    if not xs:
        return float("nan")
    k = (len(xs) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def measure(
    clicks: int = 60,
    images: int = 80,
    size: int = 1024,
    think_ms: float = 300.0,
    window=None,
    folder: Path | None = None,
) -> dict:
    """Latencies (seconds) of ``clicks`` decisions; creates what it needs when not given."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QEventLoop, Qt
    from PySide6.QtTest import QTest

    from .app import create_app

    app = create_app([sys.argv[0]])

    def pump(ms: float = 0) -> None:
        end = time.perf_counter() + ms / 1000
        app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 5)
        while time.perf_counter() < end:
            app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 5)
            time.sleep(0.001)

    def wait(cond, timeout: float = 60.0) -> None:
        t0 = time.perf_counter()
        while not cond():
            pump(1)
            if time.perf_counter() - t0 > timeout:
                raise TimeoutError("the compare view did not become ready")

    own = window is None
    if own:
        from .window import MainWindow

        if folder is None:
            from ..demo import make_demo_folder

            folder = Path(tempfile.mkdtemp(prefix="joyq-bench-")) / "images"
            make_demo_folder(folder, count=images, seed=1, size=size)
        window = MainWindow()
        window.resize(1400, 900)
        window.show()
        window.controller.open_folder(str(folder), "tiny")
        wait(lambda: not window.controller.busy_scoring(), 300)
    view = window.compare
    latencies: list[float] = []
    view.shown.connect(latencies.append)
    keys = [Qt.Key.Key_Left, Qt.Key.Key_Right, Qt.Key.Key_Left, Qt.Key.Key_T, Qt.Key.Key_Right]
    wait(view.ready)
    for n in range(clicks):
        pump(think_ms)
        wait(view.ready)
        before = len(latencies)
        QTest.keyClick(view, keys[n % len(keys)])
        wait(lambda before=before: len(latencies) > before or view.current is None)
        if view.current is None:
            break
    view.shown.disconnect(latencies.append)
    if own:
        window.close()
    return {
        "clicks": len(latencies),
        "p50_ms": 1000 * statistics.median(latencies) if latencies else float("nan"),
        "p95_ms": 1000 * _percentile(latencies, 0.95),
        "max_ms": 1000 * max(latencies) if latencies else float("nan"),
    }


def startup_times(runs: int = 5, timeout: float = 120.0) -> list[tuple[float, str]]:
    """(seconds from launch to the window's first paint, heavy modules loaded by then) of
    ``runs`` fresh launches, offscreen, each with its own empty data and cache dirs."""
    out = []
    for _ in range(runs):
        tmp = Path(tempfile.mkdtemp(prefix="joyq-startup-"))
        env = dict(
            os.environ, QT_QPA_PLATFORM="offscreen", JOYQ_DATA_DIR=str(tmp / "data"), JOYQ_CACHE_DIR=str(tmp / "cache")
        )
        try:
            t0 = time.time()
            r = subprocess.run(
                [sys.executable, "-c", _STARTUP_CHILD, repr(t0)],
                env=env,
                capture_output=True,
                text=True,
                timeout=timeout,
            )
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        line = next((x for x in r.stdout.splitlines() if x.startswith("painted ")), None)
        if line is None:
            raise RuntimeError(f"the app did not paint its window: {r.stderr.strip()[-500:]}")
        _, seconds, heavy = line.split()
        out.append((float(seconds), heavy))
    return out


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    system = f"{platform.system()} {platform.release()}"
    return f"{cpu}, {os.cpu_count()} cores, {system}, Python {platform.python_version()}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m joyq_studio.ui.bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--clicks", type=int, default=60)
    p.add_argument("--images", type=int, default=80, help="demo images to generate")
    p.add_argument("--size", type=int, default=1024, help="demo image size in pixels")
    p.add_argument("--think-ms", type=float, default=300.0, help="pause before each click (a person's think time)")
    p.add_argument("--folder", help="use this folder of images instead of a generated one")
    p.add_argument("--startup", action="store_true", help="measure the time from launch to the first paint instead")
    p.add_argument("--runs", type=int, default=5, help="launches to take the median of (--startup)")
    args = p.parse_args(argv)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    if args.startup:
        times = startup_times(args.runs)
        secs = [t for t, _ in times]
        print(f"machine: {machine()}; QPA offscreen")
        print(
            f"launch to first paint: median {statistics.median(secs):.2f} s over {len(secs)} launches "
            f"({', '.join(f'{t:.2f}' for t in secs)}); heavy modules loaded at first paint: "
            f"{', '.join(sorted({h for _, h in times}))}"
        )
        return 0
    if "JOYQ_DATA_DIR" not in os.environ:  # never touch the user's real projects
        import atexit
        import shutil

        tmp = Path(tempfile.mkdtemp(prefix="joyq-bench-data-"))
        atexit.register(shutil.rmtree, tmp, True)
        os.environ["JOYQ_DATA_DIR"] = str(tmp / "data")
        os.environ["JOYQ_CACHE_DIR"] = str(tmp / "cache")
    import shutil

    from PySide6 import __version__ as qt_version

    folder = Path(args.folder) if args.folder else None
    made = None
    if folder is None:
        from ..demo import make_demo_folder

        made = Path(tempfile.mkdtemp(prefix="joyq-bench-"))
        folder = made / "images"
        make_demo_folder(folder, count=args.images, seed=1, size=args.size)
    print(f"machine: {machine()}; PySide6 {qt_version}; QPA {os.environ.get('QT_QPA_PLATFORM')}")
    print(f"folder: {folder} ({f'generated, {args.size} px' if not args.folder else 'given'})")
    r = measure(args.clicks, folder=folder, think_ms=args.think_ms)
    print(
        f"click-to-shown latency, {args.think_ms:.0f} ms think time: p50 {r['p50_ms']:.1f} ms, "
        f"p95 {r['p95_ms']:.1f} ms, max {r['max_ms']:.1f} ms over {r['clicks']} clicks"
    )
    r0 = measure(max(10, args.clicks // 2), folder=folder, think_ms=0)
    print(
        f"click-to-shown latency, no think time (worst case): p50 {r0['p50_ms']:.1f} ms, "
        f"p95 {r0['p95_ms']:.1f} ms, max {r0['max_ms']:.1f} ms over {r0['clicks']} clicks"
    )
    if made is not None:
        shutil.rmtree(made, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
