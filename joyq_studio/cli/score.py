"""`joyq score` and `joyq demo`."""

from __future__ import annotations

import sys
from pathlib import Path

from ..console import EXIT_FAILED_FILES, EXIT_OK, ProgressLine
from ..demo import make_demo_folder
from ..export import write_scores_csv
from ..model import describe_device, load_model, model_id, pick_device
from ..scoring import score_project
from ..settings import DEFAULT_MODEL
from .common import open_project, scan_with_progress


def cmd_score(args) -> int:
    with open_project(args.folder) as project:
        scan_with_progress(project)
        device = pick_device(args.device)
        model = load_model(args.model or project.active_model_spec(DEFAULT_MODEL))
        warn_if_cpu(device, model)
        summary = score_project(project, model, device=device, batch_size=args.batch_size,
                                workers=args.workers, compile=args.compile,
                                progress=ProgressLine("scoring"))
        print(f"scored {summary.scored}, already done {summary.already_done}, failed {len(summary.failed)} "
              f"({summary.seconds:.1f} s)")
        for path, reason in summary.failed[:50]:
            print(f"  could not read: {reason}" if path in reason else f"  could not read {path}: {reason}")
        if len(summary.failed) > 50:
            print(f"  ... and {len(summary.failed) - 50} more")
        if args.csv:
            rows = write_scores_csv(project, model_id(model).key, Path(args.csv))
            print(f"wrote {rows} scores to {args.csv}")
        return EXIT_FAILED_FILES if summary.failed else EXIT_OK


def cmd_demo(args) -> int:
    paths = make_demo_folder(Path(args.dir), count=args.count, seed=args.seed)
    print(f"wrote {len(paths)} demo images and pairs.json to {Path(args.dir).resolve()}")
    return EXIT_OK


def warn_if_cpu(device, model) -> None:
    if device.type == "cpu" and model.embed_dim >= 1024:
        print("warning: no CUDA GPU; the full JoyQuality model scores only a few images per second on a CPU "
              "(use --model tiny or a GPU for large folders).", file=sys.stderr)
    else:
        print(f"device: {describe_device(device)}", file=sys.stderr)
