"""`joyq train`, `joyq eval`, `joyq versions`, `joyq adopt`: the finetuning commands."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

from .cli import EXIT_OK, CliError, ProgressLine, open_project, positive_int
from .metrics import format_metrics_table
from .model import DEFAULT_MODEL, load_model, pick_device
from .store import data_dir

TABLE_KEYS = ["n", "accuracy", "nll", "mcfadden_r2", "auc", "brier", "ece", "aurc", "median_margin",
              "share_confident", "weighted_accuracy", "weighted_brier", "weighted_ece",
              "jpeg_accuracy", "lowres_accuracy", "spearman", "kendall_tau"]


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
    from .training import TrainConfig

    return TrainConfig(
        mode=args.mode, total_samples=args.total_samples, batch_size=args.batch_size,
        device_batch_size=args.device_batch_size, lr=args.lr, schedule=args.schedule,
        warmup_samples=args.warmup_samples, weight_decay=args.weight_decay, freeze_layers=args.freeze_layers,
        grad_checkpointing=args.grad_checkpointing, optimizer=args.optimizer, augment=args.augment,
        seed=args.seed, device=args.device)


def cmd_train(args) -> int:
    from .training import adopt, load_pairs_json, run_training, train_project

    if bool(args.folder) == bool(args.pairs):
        raise CliError("give either a FOLDER (train on its comparisons) or --pairs DATASET.json, not both.")
    cfg = config_from_args(args)
    progress = ConsoleProgress()
    if args.pairs:
        data = load_pairs_json(args.pairs)
        for w in data.warnings:
            print(f"warning: {w}", file=sys.stderr)
        out = Path(args.out) if args.out else data_dir() / "versions"
        result = run_training(data, args.model or DEFAULT_MODEL, cfg, out, progress)
    else:
        with open_project(args.folder) as project:
            project.scan()
            result = train_project(project, cfg, progress, start_spec=args.model)
            for w in result.record["warnings"]:
                print(f"warning: {w}", file=sys.stderr)
            if args.adopt:
                adopt(project, result.version_id, device=args.device)
    print_result(result)
    if args.adopt and args.pairs:
        print("note: --adopt applies to a project folder; a --pairs run has no project to adopt into.")
    elif args.adopt:
        print(f"adopted {result.version_id}: it is now the project's active model.")
    else:
        print("not adopted (use --adopt, or `joyq adopt FOLDER VERSION`).")
    return EXIT_OK


def print_result(result) -> None:
    counts = result.record["counts"]
    print(f"\npairs: {counts['train']} train, {counts['validation']} validation (best step "
          f"{result.record['best_step']}), {counts['test']} test; {counts['images']} images")
    print(format_metrics_table({"before": result.before, "after": result.after},
                               keys=[k for k in TABLE_KEYS if k in result.before or k in result.after]))
    print(f"\nnew version: {result.version_id}\npath: {result.path}")


def cmd_eval(args) -> int:
    from .training import evaluate_pairs, load_pairs_json

    data = load_pairs_json(args.pairs)
    model = load_model(args.model or DEFAULT_MODEL)
    device = pick_device(args.device)
    metrics = evaluate_pairs(data, model, device, split=args.split,
                             progress=None if args.json else ConsoleProgress())
    if args.json:
        clean = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in metrics.items()}
        print(json.dumps({"model": args.model or DEFAULT_MODEL, "pairs": str(args.pairs), "split": args.split,
                          "metrics": clean}))
    else:
        print(format_metrics_table({args.model or DEFAULT_MODEL: metrics},
                                   keys=[k for k in TABLE_KEYS if k in metrics]))
    return EXIT_OK


def cmd_versions(args) -> int:
    with open_project(args.folder) as project:
        versions = project.versions()
        active = project.active_version
        if not versions:
            print("no trained versions yet; the model in use is", project.active_model_spec(DEFAULT_MODEL))
            return EXIT_OK
        print(f"{'':2}{'version':<26}{'mode':<7}{'train':>6}{'test':>6}{'acc before':>12}{'acc after':>11}  path")
        for v in versions:
            mb, ma = v.get("metrics_before", {}), v.get("metrics_after", {})
            mark = "* " if v["id"] == active else "  "
            print(f"{mark}{v['id']:<26}{v.get('mode', '?'):<7}{v['counts']['train']:>6}{v['counts']['test']:>6}"
                  f"{_fmt(mb.get('accuracy')):>12}{_fmt(ma.get('accuracy')):>11}  {v['path']}")
        if active is None:
            print(f"(* none: the base model {DEFAULT_MODEL} is in use)")
    return EXIT_OK


def _fmt(x) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"


def cmd_adopt(args) -> int:
    from .training import adopt

    with open_project(args.folder) as project:
        if args.version == "base":
            project.set_active_version(None)
            print(f"rolled back to the base model {DEFAULT_MODEL}; run `joyq score` to rescore.")
            return EXIT_OK
        summary = adopt(project, args.version, device=args.device, progress=ProgressLine("rescoring"))
        print(f"{args.version} is now active; rescored {summary['scored']} images.")
    return EXIT_OK


def register(sub) -> None:
    sp = sub.add_parser("train", help="finetune on a folder's comparisons or a JoyQuality dataset JSON")
    sp.add_argument("folder", nargs="?", help="project folder whose comparisons to train on")
    sp.add_argument("--pairs", help='dataset JSON {"train": [[a, b, label], ...], "test": [...]}')
    sp.add_argument("--model", help="starting model (default: the project's active version, else JoyQuality)")
    sp.add_argument("--mode", choices=["quick", "full"], default="quick",
                    help="quick: head only on cached embeddings (CPU, seconds); full: whole tower (GPU)")
    sp.add_argument("--device", help="cpu, cuda or cuda:N")
    sp.add_argument("--total-samples", type=positive_int, help="pairs seen in total (default: scaled to the data, max 20000)")
    sp.add_argument("--batch-size", type=positive_int, default=256, help="effective batch in pairs (default 256)")
    sp.add_argument("--device-batch-size", type=positive_int, help="pairs per forward pass (gradient accumulation)")
    sp.add_argument("--lr", type=float, help="peak learning rate (default 0.008 quick, 2e-5 full)")
    sp.add_argument("--schedule", choices=["onecycle", "cosine", "linear", "constant"], default="onecycle")
    sp.add_argument("--warmup-samples", type=int, help="default min(1500, 10%% of total)")
    sp.add_argument("--weight-decay", type=float, default=0.01)
    sp.add_argument("--freeze-layers", type=int, default=0, help="full mode: freeze the lowest K tower layers")
    sp.add_argument("--grad-checkpointing", action="store_true", help="full mode: trade compute for memory")
    sp.add_argument("--optimizer", choices=["adamw", "adamw8bit"], default="adamw",
                    help="adamw8bit needs bitsandbytes and CUDA")
    sp.add_argument("--augment", action="store_true", help="full mode: same random flip/rot90 on both images of a pair")
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--out", help="--pairs runs: folder for the new version (default: the user data dir)")
    sp.add_argument("--adopt", action="store_true", help="make the new version the project's active model")
    sp.set_defaults(func=cmd_train)

    sp = sub.add_parser("eval", help="full metric suite (incl. JPEG and low-res robustness) of a model on a pair set")
    sp.add_argument("--pairs", required=True, help="dataset JSON")
    sp.add_argument("--model", help=f"model to evaluate (default {DEFAULT_MODEL})")
    sp.add_argument("--device")
    sp.add_argument("--split", choices=["all", "train", "test"], default="all")
    sp.add_argument("--json", action="store_true", help="print one JSON object")
    sp.set_defaults(func=cmd_eval)

    sp = sub.add_parser("versions", help="list a project's model versions (* = active)")
    sp.add_argument("folder")
    sp.set_defaults(func=cmd_versions)

    sp = sub.add_parser("adopt", help="make a model version active and rescore ('base' = back to the base model)")
    sp.add_argument("folder")
    sp.add_argument("version")
    sp.add_argument("--device")
    sp.set_defaults(func=cmd_adopt)
