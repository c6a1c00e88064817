"""`joyq bench startup`: how long commands take to start, in fresh processes (medians).

Each measurement starts a new Python process, so imports are paid every time, as a user
pays them: `joyq --help`, a subcommand's `--help`, `joyq versions` and `joyq calibrate` on
a scored folder (neither needs the model), and `import torch` for scale.
"""

from __future__ import annotations

import io
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

from ..store import Project
from .common import machine_name


def _run(code: str, env: dict) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True)
    return time.perf_counter() - t0


def bench_startup(args) -> int:
    with tempfile.TemporaryDirectory(prefix="joyq-startup-") as tmp:
        folder = Path(tmp) / "images"
        folder.mkdir()
        for i in range(20):
            (folder / f"{i:03d}.png").write_bytes(_png(i))
        env = {**os.environ, "JOYQ_DATA_DIR": str(Path(tmp) / "data")}
        os.environ["JOYQ_DATA_DIR"] = env["JOYQ_DATA_DIR"]
        with Project(folder) as p:
            p.scan()
            p.save_scores("bench", [(h, float(k)) for k, (h, _) in enumerate(p.image_paths())])
            p.set_current_model_key("bench")
        cli = "from joyq_studio.cli import main\nimport sys\ntry:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
        cases = {
            "joyq --help": cli.format(argv=["--help"]),
            "joyq train --help": cli.format(argv=["train", "--help"]),
            "joyq versions FOLDER": cli.format(argv=["versions", str(folder)]),
            "joyq calibrate FOLDER": cli.format(argv=["calibrate", str(folder)]),
            "python -c 'import torch' (scale)": "import torch",
        }
        print(f"machine: {machine_name()}\n{args.repeats} fresh processes each, median seconds")
        print(f"{'command':<36} {'median s':>9}")
        for label, code in cases.items():
            times = [_run(code, env) for _ in range(args.repeats)]
            print(f"{label:<36} {statistics.median(times):>9.3f}")
    return 0


def _png(i: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (i * 10 % 256, 0, 0)).save(buf, "PNG")
    return buf.getvalue()
