"""`joyq score` and `joyq demo`."""

from __future__ import annotations

import sys
from pathlib import Path

from ..console import EXIT_FAILED_FILES, EXIT_OK, ProgressLine, UsageError
from ..demo import make_demo_folder
from ..export import write_scores_csv
from ..images import same_content_note
from ..model import describe_device, load_model, model_id, pick_device
from ..scoring import score_project
from ..settings import DEFAULT_MODEL
from .common import open_project, print_unreadable, scan_with_progress
from .model import ensure_downloaded


def cmd_score(args) -> int:
    if getattr(args, "ray", False):  # the Ray Data path (docs/scale.md); ray is imported only there
        from .ray_score import cmd_score_ray

        return cmd_score_ray(args)
    if getattr(args, "more", None):
        raise UsageError(f"{args.more[0]}: only one folder at a time without --ray.")
    with open_project(args.folder) as project:
        if args.follow_links is not None and args.follow_links != project.follow_links:
            project.set_follow_links(args.follow_links)
        device = pick_device(args.device)
        spec = args.model or project.active_model_spec(DEFAULT_MODEL)
        ensure_downloaded(spec)  # says what, how big and where first; byte progress
        model = load_model(spec)
        if args.model and project.active_version is None:
            # train and the app start from what the folder is scored with: say so before the
            # (long) scan, so a `joyq train` started meanwhile uses it too
            project.set_base_model(args.model)
        report = scan_with_progress(project)
        warn_if_cpu(device, model)
        summary = score_project(
            project,
            model,
            device=device,
            batch_size=args.batch_size,
            workers=args.workers,
            compile=args.compile,
            progress=ProgressLine("scoring"),
            sample=getattr(args, "sample", None),
            on_estimate=lambda e: print_estimate(e, device, args.folder),
        )
        # entries the scan could not use (broken links, loops, undecodable names) are failures too
        failed = list(summary.failed)
        named = {path for path, _ in failed}
        failed += [(path, why) for path, why in report.unreadable if path not in named]
        print(
            f"scored {summary.scored}, already done {summary.already_done}, failed {len(failed)} "
            f"({summary.seconds:.1f} s)"
        )
        print_unreadable(failed)
        same = same_content_note(project.file_hashes())
        if same:
            print(f"note: {same}")
        if summary.left_out:
            print(
                f"scored a random sample (spread over the subfolders); {summary.left_out} images are left for "
                f"`joyq score {args.folder}` (you can compare the sample meanwhile)"
            )
        if args.csv:
            rows = write_scores_csv(project, model_id(model).key, Path(args.csv))
            print(f"wrote {rows} scores to {args.csv}")
        return EXIT_FAILED_FILES if failed else EXIT_OK


def cmd_demo(args) -> int:
    paths = make_demo_folder(Path(args.dir), count=args.count, seed=args.seed)
    print(f"wrote {len(paths)} demo images and pairs.json to {Path(args.dir).resolve()}")
    return EXIT_OK


# so400m-512: ~1 TFLOP per image (411 M weights x 1024 tokens x 2, plus attention)
CPU_SECONDS_PER_IMAGE = "18-110 s"  # `joyq score` and `joyq bench cpu` on the 2-core vm (docs/benchmarks.md)
GPU_NOTE = (
    "a GPU is the real answer: about 1 TFLOP per image makes it 1,000 times faster or more "
    "(an estimate from the model's size, not measured here)"
)


def warn_if_cpu(device, model) -> None:
    if device.type == "cpu" and model.embed_dim >= 1024:
        print(
            f"warning: no GPU; on a CPU the full JoyQuality model takes about {CPU_SECONDS_PER_IMAGE} per image "
            "(measured on a 2-core VM; `joyq bench cpu` measures this machine), so a few thousand images take a "
            f"day; {GPU_NOTE}. The time for this folder is estimated after its first 20 images; Ctrl-C keeps what "
            "is scored, --sample N scores a random sample first, --compile is 1.4x faster after ~10 min of "
            "compiling (measured once), --model demo is the small shipped tower.",
            file=sys.stderr,
        )
    else:
        print(f"device: {describe_device(device)}", file=sys.stderr)


def print_estimate(estimate, device, folder: str) -> None:
    text = estimate.sentence()
    if estimate.seconds_left > 3600:
        text += (
            f"; Ctrl-C stops (what is scored is kept, a rerun continues); `joyq score --sample 200 {folder}` "
            "scores a random sample first so you can start comparing"
        )
        if device.type == "cpu":
            text += f"; {GPU_NOTE}"
    print(text, file=sys.stderr, flush=True)
