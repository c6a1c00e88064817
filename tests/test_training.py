"""The finetuning engine: it learns, it is safe on small data, and bad input is one sentence."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from joyq_studio import training
from joyq_studio.model import load_model, model_id, tiny_model
from joyq_studio.store import Project
from joyq_studio.training import (
    Cancelled,
    EvalSet,
    PairData,
    TrainConfig,
    TrainingError,
    default_config,
    image_disjoint_split,
    load_pairs_json,
    lr_at,
    prepare_splits,
    run_training,
    train_bayes_head,
    train_head_sgd,
)


def planted_pairs(n_items=600, n_pairs=6000, dim=64, noise=0.10, seed=0):
    """Embeddings with a planted linear preference; labels flipped with prob ``noise``.
    The last 10% of items only appear in the last 10% of pairs: an image-disjoint test split."""
    rng = np.random.default_rng(seed)
    emb = rng.normal(size=(n_items, dim)).astype(np.float32)
    w = rng.normal(size=dim)
    true = emb @ w
    n_test_items, n_test = n_items // 10, n_pairs // 10

    def draw(lo, hi, n):
        a = rng.integers(lo, hi, n)
        return a, lo + (a - lo + rng.integers(1, hi - lo, n)) % (hi - lo)

    (a1, b1), (a2, b2) = (
        draw(0, n_items - n_test_items, n_pairs - n_test),
        draw(n_items - n_test_items, n_items, n_test),
    )
    a, b = np.concatenate([a1, a2]), np.concatenate([b1, b2])
    y = (true[a] > true[b]).astype(float)
    flip = rng.random(n_pairs) < noise
    y[flip] = 1 - y[flip]
    split = np.array(["train"] * (n_pairs - n_test) + ["test"] * n_test, dtype=object)
    keys = [f"img{i}" for i in range(n_items)]
    return PairData(keys, [Path(k) for k in keys], a, b, y, split, "synthetic"), emb, true, w


def quick_run(data, emb, cfg, model=None, trainer=None):
    """Head training on embeddings: the SGD reference recipe by default, or ``trainer``."""
    model = model or tiny_model()
    cfg = default_config(len(data.a), "quick", **{k: v for k, v in cfg.__dict__.items() if k != "mode"})
    train_mask, val_mask, test_mask = prepare_splits(data, cfg)
    ta, tb, ty = data.subset(test_mask)
    es = EvalSet(ta, tb, ty, np.unique(np.concatenate([ta, tb])))
    return (trainer or train_head_sgd)(model.head, emb, data, train_mask, val_mask, es, {}, cfg), (ta, tb, ty)


def test_quick_mode_recovers_a_planted_preference_under_label_noise():
    data, emb, true, _ = planted_pairs()
    (head, history, before, after, _), (ta, tb, ty) = quick_run(data, emb, TrainConfig(total_samples=20_000))
    best_possible = np.mean((true[ta] > true[tb]) == (ty == 1))  # the planted model on noisy labels
    assert after["accuracy"] >= 0.9 * best_possible
    assert after["accuracy"] > before["accuracy"] + 0.2
    assert history[-1]["loss"] < history[1]["loss"]


def test_bayesian_quick_head_recovers_a_planted_preference_under_label_noise():
    data, emb, true, _ = planted_pairs()
    (_, history, before, after, best), (ta, tb, ty) = quick_run(data, emb, TrainConfig(), trainer=train_bayes_head)
    best_possible = np.mean((true[ta] > true[tb]) == (ty == 1))
    assert after["accuracy"] >= 0.95 * best_possible and after["accuracy"] > before["accuracy"] + 0.2
    assert best == 1 and history[-1]["alpha"] > 0


@pytest.mark.parametrize("scale", [0.3, 0.05])
@pytest.mark.parametrize("n_pairs", [20, 60, 300])
def test_bayesian_quick_head_on_few_clicks_keeps_a_good_base(n_pairs, scale):
    """A good base and a handful of noisy clicks: the evidence keeps the prior strong, so the
    head is not pulled away (the reference SGD recipe has no such anchor)."""
    data, emb, true, w = planted_pairs(n_items=400, n_pairs=n_pairs + 200, noise=0.2, seed=5)
    data.split[:] = "train"
    data.split[n_pairs:] = "test"  # 200 test pairs, n_pairs clicks
    model = tiny_model()
    with torch.no_grad():
        model.head.weight.copy_(torch.tensor(w, dtype=torch.float32)[None] * scale)  # over- or under-confident
        model.head.bias.zero_()
    (_, _, before, after, _), _ = quick_run(data, emb, TrainConfig(), model=model, trainer=train_bayes_head)
    # the base is the planted truth itself, so any move costs a little: allow ~2 SE of 200 pairs
    assert after["nll"] <= before["nll"] + 0.05
    assert after["accuracy"] >= before["accuracy"] - 0.05


def test_small_data_never_makes_a_good_starting_model_worse():
    # The user starts from a model that already agrees with them; 300 noisy clicks must not hurt it.
    data, emb, true, w = planted_pairs(n_items=400, n_pairs=300, noise=0.2, seed=3)
    model = tiny_model()
    with torch.no_grad():
        model.head.weight.copy_(torch.tensor(w, dtype=torch.float32)[None] * 0.3)
        model.head.bias.zero_()
    (_, _, before, after, _), _ = quick_run(data, emb, TrainConfig(), model=model)
    assert after["nll"] <= before["nll"] + 0.02
    assert after["accuracy"] >= before["accuracy"] - 0.02


def test_default_config_scales_with_the_number_of_pairs():
    small, big = default_config(300), default_config(50_000)
    assert small.total_samples < big.total_samples == 20_000
    assert small.lr == big.lr == 0.008  # the reference head-only recipe
    assert default_config(300, "full").lr < 1e-3


def test_schedules_follow_their_definition():
    total, warm = 78, 6
    assert lr_at(0, total, warm, "onecycle", 0.0) == pytest.approx(1 / 25)
    assert lr_at(warm, total, warm, "onecycle", 0.0) == pytest.approx(1.0)
    assert lr_at(total, total, warm, "onecycle", 0.1) == pytest.approx(0.1)
    assert lr_at(total, total, warm, "linear", 0.0) == pytest.approx(0.0)
    assert lr_at(40, total, warm, "constant", 0.0) == 1.0
    steps = [lr_at(s, total, warm, "cosine", 0.0) for s in range(warm, total)]
    assert all(x >= y for x, y in zip(steps, steps[1:]))


def test_default_test_split_is_image_disjoint_and_deterministic():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 300, 2000)
    b = (a + rng.integers(1, 300, 2000)) % 300
    s1 = image_disjoint_split(a, b, 300, 0.1, seed=1)
    assert (s1 == image_disjoint_split(a, b, 300, 0.1, seed=1)).all()
    test_imgs = set(a[s1 == "test"]) | set(b[s1 == "test"])
    train_imgs = set(a[s1 == "train"]) | set(b[s1 == "train"])
    assert not test_imgs & train_imgs
    assert 0.05 <= (s1 == "test").mean() <= 0.2
    # Separate groups (here 100 disconnected pairs) go wholly to one side: nothing dropped.
    a2, b2 = np.arange(200)[::2], np.arange(200)[1::2]
    s2 = image_disjoint_split(a2, b2, 200, 0.1, seed=0)
    assert "drop" not in set(s2) and (s2 == "test").sum() >= 5


# -- on real files -------------------------------------------------------------------
def test_quick_training_on_a_project_writes_a_small_head_only_version_and_adopts(demo_folder):
    pairs = json.loads((demo_folder / "pairs.json").read_text())
    with Project(demo_folder) as project:
        project.scan()
        for a, b, _label in pairs["train"] + pairs["test"]:
            project.add_comparison(project.hash_of(a), project.hash_of(b), 1.0)
        result = training.train_project(project, TrainConfig(), start_spec="tiny")
        assert sorted(os.listdir(result.path)) == ["head.safetensors", "version.json"]
        assert (result.path / "head.safetensors").stat().st_size < 10_000
        assert project.active_version is None  # never adopted by itself
        v = load_model(str(result.path))
        assert model_id(v).tower == model_id(tiny_model()).tower
        assert set(result.after) >= {"accuracy", "nll", "ece", "jpeg_accuracy", "lowres_accuracy", "weighted_accuracy"}
        summary = training.adopt(project, result.version_id)
        assert project.active_version == result.version_id
        assert summary["scored"] == len(project.image_paths())
        assert project.active_model_spec("x") == str(result.path)
        project.set_active_version(None)  # rollback
        assert project.active_model_spec("base") == "base"


def write_dataset(folder: Path, entries, name="pairs.json") -> Path:
    p = folder / name
    p.write_text(json.dumps(entries) if not isinstance(entries, str) else entries)
    return p


@pytest.mark.parametrize(
    "content, needle",
    [
        ("{not json", "not valid JSON"),
        ('["a", "b"]', "expected an object"),
        ('{"train": [["scene0000_clean.png", "scene0000_blur.jpg", 2]]}', "labels must be 1"),
        ('{"train": [["scene0000_clean.png", "scene0000_clean.png", 1]]}', "with itself"),
        ('{"train": [["scene0000_clean.png", "nope.jpg", 1]]}', "nope.jpg does not exist"),
        ('{"train": [["scene0000_clean.png"]]}', "must be [pathA, pathB, label]"),
    ],
)
def test_bad_dataset_json_is_one_clear_sentence(demo_folder, tmp_path, content, needle):
    ds = demo_folder / f"bad-{abs(hash(content))}.json"
    ds.write_text(content)
    try:
        with pytest.raises(TrainingError) as e:
            load_pairs_json(ds)
        assert needle in str(e.value) and str(ds) in str(e.value)
        assert "\n" not in str(e.value)
    finally:
        ds.unlink()


def test_too_few_pairs_and_empty_train_split_write_no_version(demo_folder, tmp_path):
    few = write_dataset(
        tmp_path, {"train": [[str(demo_folder / "scene0000_clean.png"), str(demo_folder / "scene0000_blur.jpg"), 1]]}
    )
    with pytest.raises(TrainingError, match="at least"):
        run_training(load_pairs_json(few), "tiny", TrainConfig(), tmp_path / "versions")
    pairs = json.loads((demo_folder / "pairs.json").read_text())
    only_test = write_dataset(
        tmp_path,
        {"train": [], "test": [[str(demo_folder / a), str(demo_folder / b), 1] for a, b, _ in pairs["train"]]},
        "t.json",
    )
    with pytest.raises(TrainingError, match="train split is empty"):
        run_training(load_pairs_json(only_test), "tiny", TrainConfig(), tmp_path / "versions")
    assert not (tmp_path / "versions").exists() or not list((tmp_path / "versions").iterdir())


def test_cancel_and_full_disk_leave_no_partial_version(demo_folder, tmp_path, monkeypatch):
    data = load_pairs_json(demo_folder / "pairs.json")
    out = tmp_path / "versions"
    first = run_training(data, "tiny", TrainConfig(total_samples=512), out)
    calls = {"n": 0}

    def cancel():
        calls["n"] += 1
        return calls["n"] > 3

    with pytest.raises(Cancelled):
        run_training(data, "tiny", TrainConfig(total_samples=2048), out, cancel=cancel)

    def disk_full(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("safetensors.torch.save_file", disk_full)
    with pytest.raises(TrainingError, match="disk is full"):
        run_training(data, "tiny", TrainConfig(total_samples=512, seed=1), out)
    assert [p.name for p in out.iterdir()] == [first.path.name]  # earlier version intact, nothing partial
    assert load_model(str(first.path)) is not None


def test_full_mode_trains_the_tower_and_saves_a_loadable_checkpoint(demo_folder, tmp_path):
    data = load_pairs_json(demo_folder / "pairs.json")
    cfg = TrainConfig(
        mode="full",
        total_samples=64,
        batch_size=16,
        device_batch_size=8,
        lr=1e-3,
        freeze_layers=1,
        augment=True,
        eval_every_samples=64,
        val_fraction=0,
    )
    result = run_training(data, "tiny", cfg, tmp_path / "v")
    assert (result.path / "model.safetensors").exists() and (result.path / "config.json").exists()
    trained = load_model(str(result.path))
    start = tiny_model()
    ts, ss = trained.tower_state_dict(), start.tower_state_dict()
    # Frozen: embeddings and layer 0 unchanged; layer 1 trained.
    assert torch.equal(ts["embeddings.patch_embedding.weight"], ss["embeddings.patch_embedding.weight"])
    assert torch.equal(ts["encoder.layers.0.mlp.fc1.weight"], ss["encoder.layers.0.mlp.fc1.weight"])
    assert not torch.equal(ts["encoder.layers.1.mlp.fc1.weight"], ss["encoder.layers.1.mlp.fc1.weight"])
