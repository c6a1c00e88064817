"""The shipped demo tower is a faithful miniature of JoyQuality (docs/learning.md, section 3):
its scores put every scene on one quality scale, and its embedding keeps the degradation
kinds apart, so a personal head can learn a taste that splits them. Measured on a small
demo folder that is not the GUI's (seed 1, 20 scenes); a few seconds."""

from __future__ import annotations

import copy
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter

from joyq_studio.bench.learn import demo_tower_figures
from joyq_studio.demo import degrade, draw_scene, make_demo_folder
from joyq_studio.model import demo_config, load_model
from joyq_studio.training.demo_tower import degradation_strength


@pytest.fixture(scope="module")
def figures(tmp_path_factory) -> dict[str, float]:
    folder: Path = tmp_path_factory.mktemp("demo-seed1")
    make_demo_folder(folder, count=100, seed=1, size=512)
    return demo_tower_figures(load_model("demo"), folder)


def test_demo_tower_has_its_own_config():
    model = load_model("demo")
    assert model.config.hidden_size == demo_config().hidden_size
    assert model.config.num_hidden_layers == demo_config().num_hidden_layers


def test_clean_beats_degraded_across_scenes(figures):
    assert figures["same-scene"] >= 0.95, figures
    assert figures["cross-scene"] >= 0.9, figures  # one quality scale for every scene


def test_a_linear_head_can_learn_a_taste_that_splits_the_degradations(figures):
    """Blur beats clean, JPEG / noise / pixelation lose: a one-dimensional "how degraded"
    embedding cannot express it (the previous demo tower: 0.58). The issue's target is
    0.85; the shipped tower reaches 0.84 here and 0.81 on the GUI's folder (docs/learning.md)."""
    assert figures["split-taste probe"] >= 0.75, figures


def test_degradation_strength_reads_demo_degrade_s_first_draw():
    img = draw_scene(np.random.default_rng(5), (96, 96))
    for seed in range(3):
        rng = np.random.default_rng(seed)
        s = {k: degradation_strength(k, rng) for k in ("jpeg", "blur", "lowres", "noise")}
        assert all(0.0 <= v <= 1.0 for v in s.values())
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=round(11 - 8 * s["jpeg"]))
        assert np.array_equal(np.asarray(degrade(img, "jpeg", copy.deepcopy(rng))), np.asarray(Image.open(buf)))
        blurred = img.filter(ImageFilter.GaussianBlur(1.5 + 2.5 * s["blur"]))
        assert np.array_equal(np.asarray(degrade(img, "blur", copy.deepcopy(rng))), np.asarray(blurred))
        f = 0.35 - 0.2 * s["lowres"]
        small = img.resize((max(8, int(96 * f)),) * 2, Image.Resampling.BILINEAR)
        small = small.resize((96, 96), Image.Resampling.NEAREST)
        assert np.array_equal(np.asarray(degrade(img, "lowres", copy.deepcopy(rng))), np.asarray(small))
        grey = Image.new("RGB", (96, 96), (128, 128, 128))
        noise = np.asarray(degrade(grey, "noise", copy.deepcopy(rng))).astype(float) - 128
        assert abs(noise.std() / (25 + 25 * s["noise"]) - 1) < 0.05
