"""JoyQuality: a SigLIP 2 vision tower (pixels -> pooled embedding) plus a linear head
(embedding -> one latent score). P(A beats B) = sigmoid(score_A - score_B).

One ``--model`` string selects where the weights come from (see :func:`load_model`).
Checkpoints are only ever read as safetensors or with ``torch.load(weights_only=True)``:
no code from a checkpoint is executed.
"""

from __future__ import annotations

import hashlib
import json
import pickle
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import SiglipVisionConfig, SiglipVisionModel

from .errors import JoyqError
from .fsio import shorten
from .resources import DEMO_MODEL_DIR
from .settings import BASE_REPO, DEFAULT_MODEL

# Key prefixes seen in the wild for the tower, longest first: save_pretrained of
# SiglipForImageClassification / SiglipModel, transformers 4 SiglipVisionModel, and the
# original JoyQuality train.py (`clip_model`).
TOWER_PREFIXES = (
    "clip_model.vision_model.",
    "vision_model.vision_model.",
    "model.vision_model.",
    "clip_model.",
    "vision_model.",
)
HEAD_KEYS = {
    "classifier.weight": "weight",
    "classifier.bias": "bias",
    "head.1.weight": "weight",  # original train.py: head = Sequential(Dropout, Linear)
    "head.1.bias": "bias",
}
IGNORED_PREFIXES = ("text_model.", "logit_scale", "logit_bias")


class ModelError(JoyqError):
    """The model cannot be loaded; the message says which and why in one sentence."""


def so400m_config() -> SiglipVisionConfig:
    """SigLIP 2 so400m-patch16-512: 1152 wide, 27 layers, 16 heads, 1024 tokens, MAP head."""
    return SiglipVisionConfig(
        hidden_size=1152,
        intermediate_size=4304,
        num_hidden_layers=27,
        num_attention_heads=16,
        image_size=512,
        patch_size=16,
        vision_use_head=True,
    )


def tiny_config() -> SiglipVisionConfig:
    """A small tower for tests and the no-GPU demo. 224 px input: big enough to see JPEG
    blocking and blur, which a 128 px input hides."""
    return SiglipVisionConfig(
        hidden_size=64,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=4,
        image_size=224,
        patch_size=16,
        vision_use_head=True,
    )


def demo_config() -> SiglipVisionConfig:
    """The shipped demo tower (resources/demo-model, built by `joyq bench learn
    --save-demo-model`): a miniature of so400m, 96 wide and 4 deep at 224 px. Patch 32 (49
    tokens) keeps training and scoring cheap on a CPU while each patch still sees 73 px of
    a 512 px image, enough for JPEG blocks, grain and noise."""
    return SiglipVisionConfig(
        hidden_size=96,
        intermediate_size=384,
        num_hidden_layers=4,
        num_attention_heads=4,
        image_size=224,
        patch_size=32,
        vision_use_head=True,
    )


class JoyQuality(nn.Module):
    """tower: SiglipVisionModel (we use its MAP-pooled ``pooler_output``); head: Linear(D, 1).

    Never use transformers' SiglipForImageClassification.forward: it mean-pools the last
    hidden state and ignores the MAP head the model was trained with.
    """

    def __init__(self, config: SiglipVisionConfig, source: str = ""):
        super().__init__()
        config.vision_use_head = True
        self.config = config
        self.tower = SiglipVisionModel(config)
        self.head = nn.Linear(config.hidden_size, 1)
        self.source = source

    @property
    def image_size(self) -> int:
        size = self.config.image_size  # transformers types it loosely; SigLIP's is one int
        return size if isinstance(size, int) else int(size[0])

    @property
    def embed_dim(self) -> int:
        return int(self.config.hidden_size)

    def embed(self, pixels: torch.Tensor) -> torch.Tensor:
        """Normalised pixels [B, 3, S, S] -> pooled embeddings [B, D]."""
        return self.tower(pixel_values=pixels).pooler_output

    def set_checkpointing(self, enabled: bool) -> None:
        """Activation (gradient) checkpointing of the tower: less memory, ~30% more compute."""
        name = (
            "activation_checkpointing"
            if hasattr(self.tower, "activation_checkpointing_enable")
            else "gradient_checkpointing"
        )
        getattr(self.tower, f"{name}_{'enable' if enabled else 'disable'}")()

    def score_embeddings(self, emb: torch.Tensor) -> torch.Tensor:
        return self.head(emb.to(self.head.weight.dtype)).squeeze(-1)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.score_embeddings(self.embed(pixels))

    # -- canonical (transformers-version independent) state dicts -------------------
    def _tower_prefix(self) -> str:
        first = next(iter(self.tower.state_dict()))
        return "vision_model." if first.startswith("vision_model.") else ""

    def tower_state_dict(self) -> dict[str, torch.Tensor]:
        """Tower weights with keys like ``embeddings.*``, ``encoder.*``, ``head.*`` (MAP)."""
        prefix = self._tower_prefix()
        return {k[len(prefix) :]: v for k, v in self.tower.state_dict().items()}

    def load_tower_state_dict(self, state: dict[str, torch.Tensor], assign: bool = False) -> None:
        prefix = self._tower_prefix()
        expected = {k[len(prefix) :]: v for k, v in self.tower.state_dict().items()}
        _check_keys("tower", state, expected, self.source)
        self.tower.load_state_dict({prefix + k: v.float() for k, v in state.items()}, assign=assign)

    def load_head_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        _check_keys("head", state, self.head.state_dict(), self.source)
        bad = sorted(k for k, v in state.items() if not torch.isfinite(v).all())
        if bad:
            raise ModelError(
                f"{self.source}: the quality head's {' and '.join(bad)} hold NaN or infinite values; "
                "the checkpoint is damaged, choose another model or version."
            )
        self.head.load_state_dict(state)


def _check_keys(part: str, got: dict, expected: dict, source: str) -> None:
    missing = sorted(set(expected) - set(got))
    unexpected = sorted(set(got) - set(expected))
    wrong = sorted(
        f"{k} {tuple(got[k].shape)} (expected {tuple(expected[k].shape)})"
        for k in set(got) & set(expected)
        if tuple(got[k].shape) != tuple(expected[k].shape)
    )
    problems = []
    for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)):
        if keys:
            shown = ", ".join(keys[:8]) + (f" and {len(keys) - 8} more" if len(keys) > 8 else "")
            problems.append(f"{label} {part} keys: {shown}")
    if problems:
        raise ModelError(f"{source}: checkpoint does not match the model ({'; '.join(problems)}).")


def split_state_dict(state: dict[str, torch.Tensor], source: str):
    """Any supported key layout -> (tower state with canonical keys, head state or None)."""
    tower, head, unknown = {}, {}, []
    for key, value in state.items():
        if key in HEAD_KEYS:
            head[HEAD_KEYS[key]] = value
        elif key.startswith(IGNORED_PREFIXES):
            continue
        else:
            prefix = next((p for p in TOWER_PREFIXES if key.startswith(p)), None)
            if prefix is None:
                unknown.append(key)
            else:
                tower[key[len(prefix) :]] = value
    if unknown:
        shown = ", ".join(unknown[:8]) + (f" and {len(unknown) - 8} more" if len(unknown) > 8 else "")
        raise ModelError(f"{source}: checkpoint has keys of no known layout: {shown}.")
    if not tower:
        raise ModelError(f"{source}: checkpoint holds no vision tower weights.")
    return tower, (head or None)


# Integer fields of a vision config we check before building anything: (minimum, maximum).
# The maxima are far above any real SigLIP (so400m: 1152 wide, 27 layers, 512 px) and
# stop a hostile config.json from asking for terabytes.
_CONFIG_LIMITS = {
    "hidden_size": (1, 8192),
    "intermediate_size": (1, 65536),
    "num_hidden_layers": (1, 256),
    "num_attention_heads": (1, 256),
    "num_channels": (1, 16),
    "image_size": (1, 4096),
    "patch_size": (1, 4096),
}


def config_from_json(path: Path) -> SiglipVisionConfig:
    """config.json of a SiglipModel / SiglipForImageClassification / SiglipVisionModel."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except RecursionError:
        raise ModelError(f"{path}: config.json is nested too deeply to be a model configuration.") from None
    except (OSError, ValueError) as e:
        raise ModelError(f"{path}: unreadable config.json ({shorten(e)}).") from None
    if not isinstance(data, dict):
        raise ModelError(f"{path}: config.json must hold a JSON object, not a JSON {type(data).__name__}.")
    if data.get("model_type") not in ("siglip", "siglip_vision_model"):
        raise ModelError(
            f"{path}: model_type is {shorten(data.get('model_type'))}; "
            "only SigLIP ('siglip') checkpoints are supported."
        )
    vision = data.get("vision_config", data)
    if not isinstance(vision, dict):
        raise ModelError(f"{path}: vision_config must be a JSON object, not a JSON {type(vision).__name__}.")
    for key, (low, high) in _CONFIG_LIMITS.items():
        if key not in vision:
            continue
        v = vision[key]
        if isinstance(v, bool) or not isinstance(v, int):
            raise ModelError(f"{path}: vision_config.{key} must be a whole number, not {shorten(v)}.")
        if not low <= v <= high:
            raise ModelError(f"{path}: vision_config.{key} is {v}, outside the sensible range {low}..{high}.")
    keep = {k: v for k, v in vision.items() if k not in ("model_type", "architectures", "transformers_version")}
    try:
        config = SiglipVisionConfig(**keep)
    except Exception as e:  # noqa: BLE001 - any value transformers refuses is one sentence
        raise ModelError(f"{path}: vision_config is not a valid SigLIP configuration ({shorten(e)}).") from None
    if config.hidden_size % config.num_attention_heads:
        raise ModelError(
            f"{path}: vision_config.hidden_size ({config.hidden_size}) is not a multiple of "
            f"num_attention_heads ({config.num_attention_heads})."
        )
    if int(config.patch_size) > int(config.image_size):  # type: ignore[arg-type]
        raise ModelError(
            f"{path}: vision_config.patch_size ({config.patch_size}) is larger than image_size ({config.image_size})."
        )
    return config


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """safetensors, or a .pt/.bin state dict read with weights_only=True (no unpickled code)."""
    try:
        if path.suffix == ".safetensors":
            return load_file(str(path))
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ModelError(f"{path}: file not found.") from None
    except pickle.UnpicklingError:  # torch's own text advises the unsafe weights_only=False
        raise ModelError(
            f"{path}: holds pickled Python objects, not just tensors; refused because "
            "loading it could run code (save a plain state dict or .safetensors)."
        ) from None
    except Exception as e:  # noqa: BLE001 - any parse failure is one clear sentence
        raise ModelError(f"{path}: not a readable checkpoint ({type(e).__name__}: {e}).") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(f"{path}: does not hold a plain state dict of tensors.")
    return state


def build_model(config: SiglipVisionConfig, state, source: str, fresh_head_ok: bool) -> JoyQuality:
    tower_state, head_state = split_state_dict(state, source)
    # Build on the meta device and adopt the checkpoint's tensors: no 400M random init.
    try:
        with torch.device("meta"):
            model = JoyQuality(config, source)
    except Exception as e:  # noqa: BLE001 - e.g. an unknown hidden_act in config.json
        raise ModelError(f"{source}: its configuration cannot build a SigLIP tower ({shorten(e)}).") from None
    model.load_tower_state_dict(tower_state, assign=True)
    model.head = nn.Linear(config.hidden_size, 1)
    _materialize_position_ids(model)
    if head_state is not None:
        model.load_head_state_dict(head_state)
    elif not fresh_head_ok:
        raise ModelError(f"{source}: checkpoint has no quality head (classifier.weight / head.1.weight missing).")
    else:
        _init_fresh_head(model)
    return model.eval()


def _materialize_position_ids(model: JoyQuality) -> None:
    """The one non-persistent buffer of a SigLIP tower is arange(num_positions)."""
    for _name, module in model.tower.named_modules():
        ids = getattr(module, "position_ids", None)
        if isinstance(ids, torch.Tensor) and ids.is_meta:
            module.register_buffer("position_ids", torch.arange(ids.shape[-1]).expand(ids.shape), persistent=False)
    left = [n for n, t in list(model.named_parameters()) + list(model.named_buffers()) if t.is_meta]
    if left:
        raise ModelError(f"{model.source}: internal error, tensors left uninitialised: {', '.join(left)}.")


def _init_fresh_head(model: JoyQuality) -> None:
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        model.head.weight.copy_(torch.randn(model.head.weight.shape, generator=gen) * 0.01)
        model.head.bias.zero_()


def tiny_model(seed: int = 0) -> JoyQuality:
    """A random tiny model, identical for the same seed on every machine."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = JoyQuality(tiny_config(), source="tiny")
    return model.eval()


def resolve_repo(repo_id: str, local_only: bool = False) -> Path:
    """Path of a complete, verified cached snapshot, downloading what is missing (hub.py)."""
    from . import hub

    try:
        return hub.ensure(repo_id, local_only=local_only)
    except hub.HubError as e:
        raise ModelError(str(e)) from None


def is_downloaded(repo_id: str = DEFAULT_MODEL) -> bool:
    from . import hub

    return hub.check(repo_id).ok


def _load_folder(folder: Path, source: str, fresh_head_ok: bool) -> JoyQuality:
    version = folder / "version.json"
    if version.exists() and not (folder / "model.safetensors").exists():
        return _load_head_version(folder)
    config_path = folder / "config.json"
    if not config_path.exists():
        raise ModelError(f"{folder}: no config.json (expected a save_pretrained folder).")
    weights = sorted(folder.glob("*.safetensors"))
    if not weights:
        raise ModelError(f"{folder}: no .safetensors weights in the folder.")
    state = {}
    for w in weights:
        state.update(read_state_dict(w))
    return build_model(config_from_json(config_path), state, source, fresh_head_ok)


MAX_VERSION_CHAIN = 16  # head-only versions built on head-only versions: far more is a loop


def read_version_record(folder: Path) -> dict:
    """version.json of a model version folder, checked: an object whose ``tower_spec`` (when
    present) is a string that does not point back at the folder itself."""
    path = folder / "version.json"
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except RecursionError:
        raise ModelError(f"{path}: nested too deeply to be a model version record.") from None
    except (OSError, ValueError) as e:
        raise ModelError(f"{path}: unreadable model version record ({shorten(e)}).") from None
    if not isinstance(record, dict):
        raise ModelError(f"{path}: a model version record must be a JSON object, not a JSON {type(record).__name__}.")
    spec = record.get("tower_spec")
    if spec is not None and not isinstance(spec, str):
        raise ModelError(f"{path}: tower_spec must be a string naming the tower's model, not {shorten(spec)}.")
    if isinstance(spec, str) and Path(spec).expanduser().resolve() == folder.resolve():
        raise ModelError(f"{path}: tower_spec points at this version itself, so it has no tower to load.")
    return record


def _load_head_version(folder: Path, depth: int = 0) -> JoyQuality:
    """A quick-finetune version: head.safetensors plus the tower it was trained on."""
    record = read_version_record(folder)
    tower_spec = record.get("tower_spec")
    if not tower_spec:
        raise ModelError(f"{folder / 'version.json'}: has no tower_spec, so the tower of this version is unknown.")
    if depth >= MAX_VERSION_CHAIN:
        raise ModelError(
            f"{folder / 'version.json'}: its tower_spec chain is more than {MAX_VERSION_CHAIN} versions "
            "long (versions pointing at each other); point it at a full model."
        )
    tower_path = Path(tower_spec).expanduser()
    head_only = (tower_path / "version.json").exists() and not (tower_path / "model.safetensors").exists()
    if tower_path.is_dir() and head_only:
        model = _load_head_version(tower_path, depth + 1)
    else:
        model = load_model(tower_spec)
    head = read_state_dict(folder / "head.safetensors")
    recorded, weight = record.get("tower"), head.get("weight")
    wrong_width = weight is not None and tuple(weight.shape) != tuple(model.head.weight.shape)
    if wrong_width or (isinstance(recorded, str) and recorded != model_id(model).tower):
        raise ModelError(other_tower_message(folder, str(tower_spec)))
    model.source = str(folder)
    model.load_head_state_dict(head)
    return model


def other_tower_message(version: Path, tower_spec: str) -> str:
    """One sentence: a version's head belongs to another tower than ``tower_spec`` loads now
    (its record keeps the tower's content id, :func:`model_id`), and what to do about it."""
    return (
        f"{version}: this version's head was trained on another tower than the one {tower_spec!r} loads now "
        "(a model made by an older version of the app), so it cannot be used; go back to the folder's base "
        "model with `joyq adopt FOLDER base` and retrain with `joyq train FOLDER`."
    )


def load_model(spec: str = DEFAULT_MODEL) -> JoyQuality:
    """Load JoyQuality on the CPU (fp32) from one string:

    - ``tiny``: random tiny SigLIP, fixed seed (tests, no-GPU demo);
    - ``demo``: the small demo tower shipped in joyq_studio/resources/ (trained to see quality);
    - ``so400m-random``: the full architecture with random weights (benchmarks);
    - a local folder in save_pretrained form, or a model-version folder made by training;
    - a ``.safetensors`` / ``.pt`` state dict (save_pretrained or original train.py keys);
      a bare state dict is so400m-512 unless a config.json sits beside it;
    - ``google/siglip2-so400m-patch16-512``: base tower with a fresh head;
    - any other Hugging Face repo id (default: JoyQuality), cached after the first download.
    """
    if spec == "tiny":
        return tiny_model()
    if spec == "so400m-random":  # full-size architecture, random weights: for speed benchmarks
        with torch.random.fork_rng():
            torch.manual_seed(0)
            return JoyQuality(so400m_config(), source=spec).eval()
    if spec == "demo":
        if not DEMO_MODEL_DIR.exists():
            raise ModelError(f"{DEMO_MODEL_DIR}: the demo model is missing from this installation.")
        return _load_folder(DEMO_MODEL_DIR, "demo", fresh_head_ok=False)
    path = Path(spec).expanduser()
    if path.is_dir():
        return _load_folder(path, spec, fresh_head_ok=False)
    if path.suffix in (".safetensors", ".pt", ".pth", ".bin"):
        if not path.exists():
            raise ModelError(f"{spec}: file not found.")
        config_path = path.parent / "config.json"
        state = read_state_dict(path)
        if config_path.exists():
            return build_model(config_from_json(config_path), state, spec, fresh_head_ok=False)
        try:
            return build_model(so400m_config(), state, spec, fresh_head_ok=False)
        except ModelError as e:
            raise ModelError(f"{str(e).rstrip('.')}; no config.json beside it, so so400m-512 was assumed.") from None
    looks_like_repo_id = spec.count("/") == 1 and not spec.startswith((".", "/", "~"))
    if not looks_like_repo_id:
        raise ModelError(f"{spec}: no such file or folder, and not a Hugging Face repo id.")
    folder = resolve_repo(spec)
    return _load_folder(folder, spec, fresh_head_ok=(spec == BASE_REPO))


def save_model(model: JoyQuality, folder: Path) -> None:
    """save_pretrained form: config.json (SigLIP) + model.safetensors with
    ``vision_model.*`` and ``classifier.*`` keys (what SiglipForImageClassification writes)."""
    folder.mkdir(parents=True, exist_ok=True)
    state = {f"vision_model.{k}": v for k, v in model.tower_state_dict().items()}
    state.update({f"classifier.{k}": v for k, v in model.head.state_dict().items()})
    save_file(
        {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in state.items()},
        str(folder / "model.safetensors"),
    )
    vision = model.config.to_dict()
    vision.pop("transformers_version", None)
    config = {
        "model_type": "siglip",
        "architectures": ["SiglipForImageClassification"],
        "num_labels": 1,
        "vision_config": vision,
    }
    (folder / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")


def head_state(model: JoyQuality) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in model.head.state_dict().items()}


def _digest(tensors, extra: str = "") -> str:
    h = hashlib.blake2b(extra.encode(), digest_size=8)
    for t in tensors:
        flat = t.detach().reshape(-1)
        step = max(1, flat.numel() // 4096)  # a strided sample: any finetune changes it
        h.update(flat[::step].to("cpu", torch.float32).numpy().tobytes())
    return h.hexdigest()


@dataclass(frozen=True)
class ModelId:
    """Content identity: embeddings are cached per tower, scores per tower+head."""

    tower: str
    head: str

    @property
    def key(self) -> str:
        return f"{self.tower}-{self.head}"


def model_id(model: JoyQuality) -> ModelId:
    tower_sd = model.tower_state_dict()
    tower = _digest(
        (tower_sd[k] for k in sorted(tower_sd)), json.dumps(model.config.to_dict(), sort_keys=True, default=str)
    )
    head = _digest((model.head.weight, model.head.bias))
    return ModelId(tower, head)


def pick_device(requested: str | None = None) -> torch.device:
    if requested:
        try:
            device = torch.device(requested)
        except RuntimeError:
            raise ModelError(f"Unknown device {requested!r}; use cpu, cuda, cuda:N or mps.") from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ModelError(f"Device {requested} was requested but no CUDA GPU is available.")
        if device.type == "mps" and not mps_available():
            raise ModelError(f"Device {requested} was requested but Apple's Metal (mps) is not available.")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("mps" if mps_available() else "cpu")


def mps_available() -> bool:
    """Apple silicon GPU (Metal). Untested here: no Mac was at hand (docs/scale.md)."""
    backend = getattr(torch.backends, "mps", None)
    return bool(backend and backend.is_available())


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        return f"{props.name} ({props.total_memory / 2**30:.0f} GiB)"
    if device.type == "mps":
        return "Apple GPU (mps, untested)"
    return "CPU"
