"""Training *learns*, not just runs.

(b) Full mode: the tiny tower trained from its random initialisation on generated images
    (clean vs JPEG-crushed and clean vs low-res, the reference recipes of corruptions.py)
    ranks held-out images well above chance after a fixed number of steps.
(c) Quick mode on the embeddings of a tower that has learned something (the shipped demo
    tower): a head trained on the user's clicks beats the untrained head on held-out pairs,
    and learns a taste opposite to the shipped head's.

Seeds are fixed and runs are counted in steps, never seconds (CI machines differ).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from joyq_studio.bench.learn import demo_folder_accuracy, load_dataset, make_learning_dataset, per_kind_accuracy
from joyq_studio.demo import make_demo_folder
from joyq_studio.model import DEMO_MODEL_DIR, load_model, save_model
from joyq_studio.training import TrainConfig, load_pairs_json, run_training

pytestmark = pytest.mark.slow  # learning runs: `pytest -m 'not slow'` skips them while iterating

# ---------------------------------------------------------------------------------------
# (b) full mode from scratch
# ---------------------------------------------------------------------------------------
FULL_STEPS = 40
FULL_BATCH = 32


@pytest.fixture(scope="module")
def learning_set(tmp_path_factory) -> Path:
    """120 generated 256 px bases (scenes and 2x2 mosaics) x (clean, JPEG, low-res): 360 PNGs;
    30 bases held out."""
    folder = tmp_path_factory.mktemp("learn")
    return make_learning_dataset(folder, n_bases=120, size=256, test_bases=30, seed=0, workers=1)


def test_dataset_is_split_by_base_image(learning_set):
    raw = json.loads(learning_set.read_text())
    train_imgs = {p for pair in raw["train"] for p in pair[:2]}
    test_imgs = {p for pair in raw["test"] for p in pair[:2]}
    assert not train_imgs & test_imgs
    assert {p.split("_")[0] for p in train_imgs}.isdisjoint({p.split("_")[0] for p in test_imgs})
    assert all(p.endswith(".png") for p in train_imgs | test_imgs)  # lossless: only the recipe degrades
    assert sorted(set(raw["test_kinds"])) == ["jpeg", "lowres"] and len(raw["test"]) == 60


def test_full_mode_from_scratch_learns_quality(learning_set, tmp_path):
    data, kinds, _ = load_dataset(learning_set)  # clean held-out images first: the robustness tasks use them
    cfg = TrainConfig(
        mode="full",
        lr=1e-3,
        batch_size=FULL_BATCH,
        device_batch_size=FULL_BATCH,
        augment=True,
        total_samples=FULL_STEPS * FULL_BATCH,
        eval_every_samples=10**9,
        seed=0,
        device="cpu",
    )
    result = run_training(data, "tiny", cfg, tmp_path / "versions")
    before, after = result.before, result.after
    assert len(result.history) == FULL_STEPS + 1
    assert abs(before["accuracy"] - 0.5) < 0.2  # a random tower is at chance ...
    assert after["accuracy"] >= 0.65  # ... a trained one ranks held-out images well above it
    assert after["jpeg_accuracy"] >= 0.65 and after["lowres_accuracy"] >= 0.6
    per_kind = per_kind_accuracy(load_model(str(result.path)), data, kinds)
    assert per_kind["jpeg"] >= 0.65 and per_kind["lowres"] >= 0.6


# ---------------------------------------------------------------------------------------
# (c) quick mode on the embeddings of the shipped demo tower
# ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def gui_demo(tmp_path_factory) -> Path:
    """The folder the GUI's "Try the demo" opens (make_demo_folder: 200 images, seed 0,
    512 px), plus halves.json: its clean-beats-degraded pairs with every other scene held
    out (the folder's own pairs.json holds out only one scene in ten: 8 test pairs)."""
    folder = tmp_path_factory.mktemp("gui-demo")
    make_demo_folder(folder, count=200, seed=0, size=512)
    raw = json.loads((folder / "pairs.json").read_text())
    pairs = raw["train"] + raw["test"]
    odd = [int(p[0][5:9]) % 2 == 1 for p in pairs]  # "scene0012_clean.jpg" -> scene 12
    split = {"train": [p for p, o in zip(pairs, odd) if o], "test": [p for p, o in zip(pairs, odd) if not o]}
    (folder / "halves.json").write_text(json.dumps(split), encoding="utf-8")
    return folder


def test_demo_tower_is_small_and_sees_quality(gui_demo):
    # demo_config (96 wide, 4 layers, patch 32) in fp32: 3.45 MB, "a few MB" to ship
    assert sum(f.stat().st_size for f in DEMO_MODEL_DIR.iterdir()) < 4_000_000
    acc = demo_folder_accuracy(load_model("demo"), gui_demo)
    for kind in ("jpeg", "blur", "lowres", "noise"):
        assert acc[kind] >= 0.9, (kind, acc)
    assert acc["cross-scene"] >= 0.85, acc  # a clean image beats other scenes' degraded ones


def test_quick_head_on_demo_tower_beats_untrained_head(gui_demo, tmp_path):
    model = load_model("demo")
    with torch.no_grad():  # untrained: a zero head scores every image alike (all ties)
        model.head.weight.zero_()
        model.head.bias.zero_()
    save_model(model, tmp_path / "untrained-head")
    data = load_pairs_json(gui_demo / "halves.json")
    result = run_training(
        data, str(tmp_path / "untrained-head"), TrainConfig(mode="quick", seed=0), tmp_path / "versions"
    )
    assert result.record["counts"]["test"] == 40  # of 80 held-out pairs: half pick the step, half report
    assert result.before["accuracy"] == 0.5
    assert result.after["accuracy"] >= 0.85
    assert result.after["nll"] < result.before["nll"] - 0.2


def test_quick_head_follows_clicks_that_disagree_with_the_shipped_head(gui_demo, tmp_path):
    """A user who prefers the degraded look ("lo-fi"): every click says degraded beats clean.
    Starting from the shipped head, which disagrees, the default quick finetune follows them."""
    raw = json.loads((gui_demo / "halves.json").read_text())
    lofi = {split: [[a, b, -1] for a, b, _ in pairs] for split, pairs in raw.items()}
    (gui_demo / "lofi.json").write_text(json.dumps(lofi), encoding="utf-8")
    result = run_training(
        load_pairs_json(gui_demo / "lofi.json"), "demo", TrainConfig(mode="quick", seed=0), tmp_path / "versions"
    )
    assert result.before["accuracy"] <= 0.2
    assert result.after["accuracy"] >= 0.8
