"""`joyq bench score`: model-only and end-to-end images/s, and the reference-style baseline."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from ..demo import draw_scene
from ..model import describe_device, load_model, pick_device
from ..pixels import normalize
from ..scoring import embed_paths, prepare_for_inference, worker_context
from .common import machine_name, median_rate


def write_jpegs(folder: Path, count: int, size: tuple[int, int], distinct: int = 4) -> list[Path]:
    """``count`` JPEG files of ``size``; a few distinct scenes, copied, keep generation fast."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    blobs = []
    for k in range(min(distinct, count)):
        path = folder / f"src{k}.jpg"
        draw_scene(rng, size).save(path, "JPEG", quality=92)
        blobs.append(path.read_bytes())
    paths = []
    for i in range(count):
        p = folder / f"img{i:05d}.jpg"
        p.write_bytes(blobs[i % len(blobs)])
        paths.append(p)
    return paths


class _BaselineDataset(Dataset):
    """Mirrors the original score-images.py: PIL resize and float normalisation in the workers."""

    def __init__(self, paths, size):
        self.paths, self.size = paths, size

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        img = Image.open(self.paths[i]).convert("RGB").resize((self.size, self.size), Image.Resampling.BICUBIC)
        x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)
        return (x - 0.5) / 0.5


def baseline_score(model, paths, device, batch_size, workers) -> None:
    """fp32 weights under bf16 autocast (CUDA), float tensors across the process boundary."""
    loader = DataLoader(
        _BaselineDataset([str(p) for p in paths], model.image_size),
        batch_size=batch_size,
        num_workers=workers,
        multiprocessing_context=worker_context() if workers else None,
    )
    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        for x in loader:
            model(x.to(device)).float().cpu()


def bench_score(args) -> int:
    device = pick_device(args.device)
    spec = args.model or ("so400m-random" if device.type == "cuda" else "tiny")
    model = load_model(spec)
    n, bs, workers, reps = args.images, args.batch_size, args.workers, args.repeats
    print(f"machine: {machine_name(device)}")
    print(
        f"model: {spec} ({model.image_size} px, width {model.embed_dim}), device {describe_device(device)}, "
        f"batch {bs}, workers {workers}, {reps} repeats (median)"
    )

    fp32_model = load_model(spec).to(device).eval()  # the baseline keeps fp32 weights
    results: dict[str, float] = {}

    # Model only: uint8 tensors already on the device.

    ours, forward, dtype = prepare_for_inference(model, device)
    synthetic = torch.randint(0, 256, (bs, 3, model.image_size, model.image_size), dtype=torch.uint8, device=device)
    steps = max(2, n // bs)

    def model_only():
        with torch.inference_mode():
            for _ in range(steps):
                forward(normalize(synthetic, dtype)).float().cpu()

    model_only()  # warm-up
    results["model-only"] = median_rate(model_only, steps * bs, reps)

    with tempfile.TemporaryDirectory(prefix="joyq-bench-") as tmp:
        sizes = (("512px", (512, 512), n), ("1MP", (1152, 864), n), ("12MP", (4000, 3000), max(bs, n // 4)))
        for label, size, count in sizes:
            paths = write_jpegs(Path(tmp) / label, count, size)[:count]

            def run_ours(paths=paths):  # bound now: each size times its own files
                for _ in embed_paths(ours, paths, device, bs, workers):
                    pass

            def run_baseline(paths=paths):
                baseline_score(fp32_model, paths, device, bs, workers)

            run_ours()  # warm the page cache and the workers' imports once
            results[f"end-to-end {label}"] = median_rate(run_ours, count, reps)
            results[f"baseline {label}"] = median_rate(run_baseline, count, reps)

    print(f"\n{'measurement':<22} {'images/s':>10}")
    for k, v in results.items():
        print(f"{k:<22} {v:>10.1f}")
    mo = results["model-only"]
    print("\nratios:")
    for label, _, _ in sizes:
        e2e, base = results[f"end-to-end {label}"], results[f"baseline {label}"]
        print(f"  end-to-end {label} / model-only = {e2e / mo:.2f};  ours / baseline at {label} = {e2e / base:.2f}x")
    return 0
