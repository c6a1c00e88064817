"""Measure the prompt loop on the fake server (issue 21, docs/prelabel.md "Measured").

Run: PYTHONPATH=$PWD python tests/measure_optimise.py [SEEDS]
Per seed and mode (rotating / fixed round sets): the round at which the planted best prompt
was adopted, the money spent (labeller $1/$2, editor $3/$6 per million tokens, as billed by
the fake), the final held-out agreement and the overfitting gap (best round - held-out).
"""

from __future__ import annotations

import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from fake_llm_server import FakeLLM

from joyq_studio.prelabel import EndpointConfig, LLMClient, Pricing, default_prompt
from joyq_studio.prelabel import prompts as pv
from joyq_studio.prelabel.optimise import plan_optimise, run_optimise
from joyq_studio.store import Project

HINT = "judge by brightness only"


def project_with_clicks(root: Path, n_images: int = 60, n_pairs: int = 400, seed: int = 0) -> Project:
    folder = root / f"imgs{seed}"
    folder.mkdir()
    rng = np.random.default_rng(seed)
    levels = {}
    for i in range(n_images):
        v = 20 + 3 * i
        Image.fromarray(np.clip(v + rng.integers(-1, 2, (16, 16, 3)), 0, 255).astype(np.uint8)).save(
            folder / f"im{i:02d}.png"
        )
        levels[f"im{i:02d}.png"] = v
    project = Project(folder)
    project.scan()
    hashes = dict(project.file_hashes())
    names = sorted(hashes)
    seen, rows = set(), []
    while len(rows) < n_pairs:
        a, b = rng.choice(names, 2, replace=False)
        if frozenset((a, b)) not in seen:
            seen.add(frozenset((a, b)))
            rows.append((hashes[a], hashes[b], 1.0 if levels[a] > levels[b] else 0.0, "train", "click"))
    project.add_comparisons(rows)
    return project


def main(seeds: int = 4) -> None:
    results = {True: [], False: []}
    with tempfile.TemporaryDirectory() as tmp:
        import os

        os.environ["JOYQ_DATA_DIR"] = str(Path(tmp) / "data")
        for seed in range(seeds):
            for rotate in (True, False):
                fake = FakeLLM(
                    error_rate=0.35,
                    position_bias=0.0,
                    prompt_rates={HINT: 0.05, "more interesting subject": 0.6},
                    editor_model="fake-editor",
                    editor_plan=("neutral", "worse", "better", "neutral", "none", "neutral"),
                    seed=seed,
                )
                url = fake.start()
                project = project_with_clicks(Path(tmp), seed=seed * 2 + rotate)
                lab = LLMClient(EndpointConfig(url, "fake-vision", retries=1))
                ed = LLMClient(EndpointConfig(url, "fake-editor", json_mode=False, retries=1))
                plan = plan_optimise(
                    project, "fake-vision", "fake-editor", default_prompt(), Pricing(1, 2), Pricing(3, 6),
                    rounds=6, per_round=40, held_out=60, rotate=rotate, seed=seed, patience=3,
                )  # fmt: skip
                rep = run_optimise(project, lab, ed, plan)
                chosen = pv.version(project, rep.chosen)
                reached = next((r.round for r in rep.rounds if r.adopted and r.round and HINT in (
                    pv.version(project, r.version).text if r.version else "")), None)  # fmt: skip
                results[rotate].append(
                    (reached, rep.spent, rep.final.agreement.value, rep.overfitting_gap, HINT in chosen.text)
                )
                lab.close()
                ed.close()
                project.close()
                fake.stop()
    for rotate, rows in results.items():
        name = "rotating" if rotate else "fixed"
        print(
            f"{name}: best prompt chosen {sum(r[4] for r in rows)}/{len(rows)}; adopted at round "
            f"{[r[0] for r in rows]}; spent median ${statistics.median(r[1] for r in rows):.3f}; held-out "
            f"{[round(r[2], 3) for r in rows]}; gap median {statistics.median(r[3] for r in rows):+.3f} "
            f"({[round(r[3], 3) for r in rows]})"
        )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 4)
