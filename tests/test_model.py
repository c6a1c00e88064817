"""model.py: every supported checkpoint form loads to the same scores; bad checkpoints give
one clear ModelError; the save format is transformers' own; the score uses the MAP head."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from joyq_studio import model as M
from joyq_studio.model import ModelError, load_model, save_model


@pytest.fixture(scope="module")
def tiny():
    return M.tiny_model()


@pytest.fixture(scope="module")
def pixels(tiny):
    gen = torch.Generator().manual_seed(1)
    return torch.rand(3, 3, tiny.image_size, tiny.image_size, generator=gen) * 2 - 1


def scores(model, pixels):
    with torch.no_grad():
        return model(pixels)


@pytest.fixture(scope="module")
def saved(tmp_path_factory, tiny):
    folder = tmp_path_factory.mktemp("saved")
    save_model(tiny, folder)
    return folder


def tower_keys(tiny, prefix):
    return {prefix + k: v.clone() for k, v in tiny.tower_state_dict().items()}


def with_config(folder, saved):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text((saved / "config.json").read_text())
    return folder


def assert_same(model, tiny, pixels):
    assert torch.equal(scores(model, pixels), scores(tiny, pixels))


def test_tiny_is_deterministic_and_scores_vary(tiny, pixels):
    s = scores(tiny, pixels)
    assert torch.equal(s, scores(load_model("tiny"), pixels))
    assert s.shape == (3,) and s.std() > 1e-4
    assert not torch.equal(s, scores(M.tiny_model(seed=1), pixels))


def test_save_pretrained_folder(tiny, saved, pixels):
    assert_same(load_model(str(saved)), tiny, pixels)


def test_single_safetensors_with_config_beside(tiny, saved, pixels):
    assert_same(load_model(str(saved / "model.safetensors")), tiny, pixels)


def test_bare_safetensors_without_config_means_so400m(tmp_path, saved):
    path = tmp_path / "bare.safetensors"
    path.write_bytes((saved / "model.safetensors").read_bytes())
    with pytest.raises(ModelError) as info:
        load_model(str(path))
    msg = str(info.value)
    assert str(path) in msg and "config.json" in msg and "so400m" in msg
    assert "wrong shape" in msg and "\n" not in msg


def test_pt_state_dict(tiny, saved, tmp_path, pixels):
    folder = with_config(tmp_path / "pt", saved)
    state = {"vision_model." + k: v for k, v in tiny.tower_state_dict().items()}
    state.update({"classifier." + k: v for k, v in tiny.head.state_dict().items()})
    torch.save(state, folder / "weights.pt")
    assert_same(load_model(str(folder / "weights.pt")), tiny, pixels)
    torch.save({"state_dict": state}, folder / "wrapped.pt")  # Lightning-style wrapper
    assert_same(load_model(str(folder / "wrapped.pt")), tiny, pixels)


@pytest.mark.parametrize("prefix,fmt", [("clip_model.", "pt"), ("clip_model.vision_model.", "safetensors")])
def test_original_train_py_layout(tiny, saved, tmp_path, pixels, prefix, fmt):
    folder = with_config(tmp_path / "trainpy", saved)
    state = tower_keys(tiny, prefix)
    state["head.1.weight"] = tiny.head.weight.detach().clone()
    state["head.1.bias"] = tiny.head.bias.detach().clone()
    path = folder / f"model.{fmt}"
    if fmt == "pt":
        torch.save(state, path)
    else:
        save_file(state, str(path))
    assert_same(load_model(str(path)), tiny, pixels)


def test_model_version_folder(tiny, saved, tmp_path, pixels):
    v = tmp_path / "v1"
    v.mkdir()
    (v / "version.json").write_text(json.dumps({"tower_spec": str(saved)}))
    save_file(M.head_state(tiny), str(v / "head.safetensors"))
    loaded = load_model(str(v))
    assert_same(loaded, tiny, pixels)

    # The head really comes from head.safetensors: doubling it doubles the score.
    (v / "version.json").write_text(json.dumps({"tower_spec": "tiny"}))
    save_file({k: t * 2 for k, t in M.head_state(tiny).items()}, str(v / "head.safetensors"))
    torch.testing.assert_close(scores(load_model(str(v)), pixels), 2 * scores(tiny, pixels))


def _broken(tiny, kind):
    state = {"vision_model." + k: v.clone() for k, v in tiny.tower_state_dict().items()}
    state.update({"classifier." + k: v.clone() for k, v in tiny.head.state_dict().items()})
    if kind == "missing":
        del state["vision_model.post_layernorm.weight"]
        del state["vision_model.head.probe"]
    elif kind == "unexpected":
        state["vision_model.extra_layer.weight"] = torch.zeros(2)
    elif kind == "shape":
        state["vision_model.post_layernorm.weight"] = torch.zeros(65)
    return state


@pytest.mark.parametrize(
    "kind,words",
    [
        ("missing", ["missing tower keys", "post_layernorm.weight", "head.probe"]),
        ("unexpected", ["unexpected tower keys", "extra_layer.weight"]),
        ("shape", ["wrong shape", "post_layernorm.weight (65,) (expected (64,))"]),
    ],
)
def test_mismatched_checkpoint_lists_the_keys(tiny, saved, tmp_path, kind, words):
    folder = with_config(tmp_path / kind, saved)
    save_file(_broken(tiny, kind), str(folder / "model.safetensors"))
    for spec in (folder, folder / "model.safetensors"):
        with pytest.raises(ModelError) as info:
            load_model(str(spec))
        msg = str(info.value)
        for w in words:
            assert w in msg, (w, msg)
        assert str(spec) in msg and "\n" not in msg


def test_keys_of_unknown_layout_and_missing_head(tiny, saved, tmp_path):
    folder = with_config(tmp_path / "odd", saved)
    state = {"vision_model." + k: v for k, v in tiny.tower_state_dict().items()}
    save_file({**state, "mystery.weight": torch.zeros(1)}, str(folder / "model.safetensors"))
    with pytest.raises(ModelError, match="no known layout: mystery.weight"):
        load_model(str(folder))
    save_file(state, str(folder / "model.safetensors"))
    with pytest.raises(ModelError, match="no quality head"):
        load_model(str(folder))


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickled_object_is_refused_without_running_it(tmp_path, saved):
    folder = with_config(tmp_path / "evil", saved)
    marker = tmp_path / "pwned"
    torch.save({"vision_model.x": torch.zeros(1), "payload": _Evil(str(marker))}, folder / "model.pt")
    with pytest.raises(ModelError) as info:
        load_model(str(folder / "model.pt"))
    msg = str(info.value)
    assert not marker.exists()
    assert str(folder / "model.pt") in msg and "\n" not in msg
    assert "weights_only` set to `False`" not in msg  # never advise the unsafe load


def test_non_siglip_config_is_refused(tmp_path, saved):
    folder = tmp_path / "clip"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes((saved / "model.safetensors").read_bytes())
    (folder / "config.json").write_text(json.dumps({"model_type": "clip", "vision_config": {}}))
    with pytest.raises(ModelError, match="model_type is 'clip'"):
        load_model(str(folder))


def test_nonexistent_paths(tmp_path):
    for spec in (tmp_path / "nope.safetensors", tmp_path / "nope.pt"):
        with pytest.raises(ModelError, match="file not found"):
            load_model(str(spec))
    with pytest.raises(ModelError, match="no such file or folder"):
        load_model(str(tmp_path / "nope"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelError, match="no config.json"):
        load_model(str(empty))


def test_uncached_repo_offline_is_one_clear_sentence(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    import huggingface_hub.constants as hc

    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    with pytest.raises(ModelError) as info:
        load_model("nobody/no-such-joyquality-model")
    msg = str(info.value)
    assert "nobody/no-such-joyquality-model" in msg and "\n" not in msg
    assert not M.is_downloaded("nobody/no-such-joyquality-model")


def test_save_format_is_transformers_siglip_for_image_classification(tiny, saved):
    from safetensors.torch import load_file
    from transformers import SiglipConfig, SiglipForImageClassification

    config = SiglipConfig.from_pretrained(str(saved))
    assert config.num_labels == 1
    clf = SiglipForImageClassification(config)
    clf.load_state_dict(load_file(str(saved / "model.safetensors")), strict=True)
    assert torch.equal(clf.classifier.weight, tiny.head.weight)


def test_score_uses_map_pooled_output_not_mean_pooling(tiny, saved, pixels):
    from safetensors.torch import load_file
    from transformers import SiglipConfig, SiglipForImageClassification

    with torch.no_grad():
        out = tiny.tower(pixel_values=pixels)
        map_scores = tiny.head(out.pooler_output).squeeze(-1)
        mean_scores = tiny.head(out.last_hidden_state.mean(1)).squeeze(-1)
        clf = SiglipForImageClassification(SiglipConfig.from_pretrained(str(saved))).eval()
        clf.load_state_dict(load_file(str(saved / "model.safetensors")))
        hf_logits = clf(pixel_values=pixels).logits.squeeze(-1)
    ours = scores(tiny, pixels)
    torch.testing.assert_close(ours, map_scores, rtol=0, atol=1e-6)
    torch.testing.assert_close(hf_logits, mean_scores, rtol=0, atol=1e-5)  # transformers mean-pools
    assert (ours - mean_scores).abs().max() > 1e-3


def test_model_id_tracks_tower_and_head(tiny, saved):
    a = M.model_id(tiny)
    assert a == M.model_id(load_model(str(saved)))
    other = M.tiny_model()
    with torch.no_grad():
        other.head.bias.add_(1.0)
    b = M.model_id(other)
    assert b.tower == a.tower and b.head != a.head and b.key != a.key
    assert M.model_id(M.tiny_model(seed=1)).tower != a.tower


def test_pick_device_errors():
    assert M.pick_device("cpu").type == "cpu"
    with pytest.raises(ModelError, match="Unknown device"):
        M.pick_device("quantum")
    if not torch.cuda.is_available():
        with pytest.raises(ModelError, match="no CUDA GPU"):
            M.pick_device("cuda")
