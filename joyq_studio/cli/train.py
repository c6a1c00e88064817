"""`joyq train`, `joyq eval`, `joyq versions`, `joyq adopt`: the finetuning commands."""

from __future__ import annotations

import contextlib
import json
import math
import sys
from pathlib import Path

from ..compare.stats import Schedule, more_clicks_sentence
from ..console import EXIT_OK, ProgressLine, UsageError
from ..metrics import format_metrics_table, held_out_sentences
from ..model import load_model, pick_device
from ..settings import DEFAULT_MODEL
from ..store import data_dir
from ..training import (
    TrainConfig,
    adopt,
    evaluate_pairs,
    load_pairs_json,
    run_training,
    train_project,
)
from ..training.evaluation import ROBUSTNESS_NAMES, robustness_sentences, robustness_text
from ..training.versions import adoption_warning
from .common import open_project
from .model import ensure_downloaded

TABLE_KEYS = [
    "n",
    "accuracy",
    "nll",
    "mcfadden_r2",
    "auc",
    "brier",
    "ece",
    "ece_fine",
    "aurc",
    "median_margin",
    "share_confident",
    "weighted_accuracy",
    "weighted_brier",
    "weighted_ece",
    "spearman",
    "kendall_tau",
]


class ConsoleProgress:
    """TrainProgress -> a progress line per phase, messages on their own line."""

    def __init__(self):
        self.bars = {"embedding": ProgressLine("embedding"), "training": ProgressLine("training", "step")}

    def __call__(self, p) -> None:
        if p.phase == "message":
            print(p.message, file=sys.stderr)
            return
        rate = None
        if p.eta_s and p.total_steps > p.step:
            rate = (p.total_steps - p.step) / p.eta_s
        self.bars[p.phase](p.step, p.total_steps, rate)


def config_from_args(args):
    return TrainConfig(
        mode=args.mode,
        total_samples=args.total_samples,
        batch_size=args.batch_size,
        device_batch_size=args.device_batch_size,
        lr=args.lr,
        schedule=args.schedule,
        warmup_samples=args.warmup_samples,
        weight_decay=args.weight_decay,
        freeze_layers=args.freeze_layers,
        grad_checkpointing=args.grad_checkpointing,
        optimizer=args.optimizer,
        augment=args.augment,
        seed=args.seed,
        device=args.device,
    )


def cmd_train(args) -> int:
    if bool(args.folder) == bool(args.pairs):
        raise UsageError("give either a FOLDER (train on its comparisons) or --pairs DATASET.json, not both.")
    cfg = config_from_args(args)
    progress = ConsoleProgress()
    schedule = Schedule()  # where the folder's clicks stand in the held-out schedule
    if args.pairs:
        data = load_pairs_json(args.pairs)
        for w in data.warnings:
            print(f"warning: {w}", file=sys.stderr)
        out = Path(args.out) if args.out else data_dir() / "versions"
        ensure_downloaded(args.model or DEFAULT_MODEL)  # what, how big and where first; byte progress
        result = run_training(data, args.model or DEFAULT_MODEL, cfg, out, progress)
    else:
        with open_project(args.folder) as project, contextlib.ExitStack() as stack:
            project.scan()
            pool = [stack.enter_context(open_project(other)) for other in args.pool]
            for other in pool:
                other.scan()
            ensure_downloaded(args.model or project.active_model_spec(DEFAULT_MODEL))
            result = train_project(project, cfg, progress, start_spec=args.model, pool=pool)
            schedule = Schedule.of_project(project)
            for w in result.record["warnings"]:
                print(f"warning: {w}", file=sys.stderr)
            if args.adopt:
                adopt(project, result.version_id, device=args.device)
    print_result(result, schedule)
    if args.adopt and args.pairs:
        print("note: --adopt applies to a project folder; a --pairs run has no project to adopt into.")
    elif args.adopt:
        print(f"adopted {result.version_id}: it is now the project's active model.")
    else:
        print("not adopted (use --adopt, or `joyq adopt FOLDER VERSION`).")
    return EXIT_OK


def print_result(result, schedule: Schedule | None = None) -> None:
    counts = result.record["counts"]
    print(
        f"\npairs: {counts['train']} train, {counts['validation']} validation (best step "
        f"{result.record['best_step']}), {counts['test']} test; {counts['images']} images"
    )
    print(
        format_metrics_table(
            {"before": result.before, "after": result.after},
            keys=[k for k in TABLE_KEYS if k in result.before or k in result.after],
        )
    )
    for line in held_out_lines(result.before, result.after, result.record.get("change"), schedule or Schedule()):
        print(line)
    for line in robustness_sentences(result.before, result.after):  # with their counts (issue 25)
        print(line)
    print(f"\nnew version: {result.version_id}\npath: {result.path}")


def held_out_lines(before: dict, after: dict, change: dict | None, schedule: Schedule) -> list[str]:
    """:func:`joyq_studio.metrics.held_out_sentences`, after a blank line, and what the
    held-out pairs still needed mean in clicks (the compare loop's one rule, as the app says)."""
    lines = ["", *held_out_sentences(before, after, change)]
    more = after.get("more_pairs_needed")
    if isinstance(more, int) and more > 0:
        lines.append(f"that is {more_clicks_sentence(more, schedule, 'of comparing in the app')}.")
    return lines


def cmd_eval(args) -> int:
    data = load_pairs_json(args.pairs)
    ensure_downloaded(args.model or DEFAULT_MODEL)
    model = load_model(args.model or DEFAULT_MODEL)
    device = pick_device(args.device)
    metrics = evaluate_pairs(data, model, device, split=args.split, progress=None if args.json else ConsoleProgress())
    if args.json:
        clean = {
            k: (None if isinstance(v, float) and math.isnan(v) else v)
            for k, v in metrics.items()
            if not k.startswith("_")
        }
        print(
            json.dumps(
                {"model": args.model or DEFAULT_MODEL, "pairs": str(args.pairs), "split": args.split, "metrics": clean}
            )
        )
    else:
        print(
            format_metrics_table({args.model or DEFAULT_MODEL: metrics}, keys=[k for k in TABLE_KEYS if k in metrics])
        )
        for task, name in ROBUSTNESS_NAMES.items():
            if f"{task}_accuracy" in metrics:
                print(f"{name} (clean above its corrupted copy, 95% interval): {robustness_text(metrics, task)}")
    return EXIT_OK


def cmd_adopt(args) -> int:
    with open_project(args.folder) as project:
        if args.version == "base":
            project.set_active_version(None)
            print(f"rolled back to the base model {project.base_model or DEFAULT_MODEL}; run `joyq score` to rescore.")
            return EXIT_OK
        version = project.version(args.version)
        warning = adoption_warning(version) if version else None
        if warning:
            print(f"warning: {warning}", file=sys.stderr)
        summary = adopt(project, args.version, device=args.device, progress=ProgressLine("rescoring"))
        print(f"{args.version} is now active; rescored {summary['scored']} images.")
    return EXIT_OK
