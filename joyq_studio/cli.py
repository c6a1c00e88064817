"""`joyq`: headless commands over the same core the desktop app uses.

Exit codes: 0 success, 1 some files failed, 2 usage or configuration error, 130 interrupted.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from pathlib import Path

from . import __version__
from .errors import JoyqError
from .model import DEFAULT_MODEL, describe_device, load_model, pick_device
from .store import Project

EXIT_OK, EXIT_FAILED_FILES, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class CliError(JoyqError):
    """A usage or configuration problem, reported as one line and exit code 2."""


class ProgressLine:
    """A one-line progress bar on stderr: done/total, rate and ETA. Redrawn in place on a
    terminal; in a log, one line every 5 s of a long task (and nothing for a short one)."""

    def __init__(self, label: str, unit: str = "img", stream=None):
        self.label, self.unit, self.stream = label, unit, stream or sys.stderr
        self.tty = self.stream.isatty()
        self.last = 0.0 if self.tty else time.monotonic()
        self.printed = False

    def __call__(self, done: int, total: int, rate: float | None = None) -> None:
        now = time.monotonic()
        final = done >= total and (self.tty or self.printed)
        if not final and now - self.last < (0.2 if self.tty else 5.0):
            return
        self.last, self.printed = now, True
        pct = 100.0 * done / max(total, 1)
        width = 24
        bar = "#" * int(width * done / max(total, 1))
        text = f"{self.label} [{bar:<{width}}] {done}/{total} {pct:5.1f}%"
        if rate:
            eta = (total - done) / rate if rate > 0 else 0
            text += f"  {rate:,.1f} {self.unit}/s  ETA {format_seconds(eta)}"
        self.stream.write(("\r" if self.tty else "") + text + ("" if self.tty and done < total else "\n"))
        self.stream.flush()


def format_seconds(s: float) -> str:
    s = int(round(s))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def open_project(folder: str) -> Project:
    return Project(folder)


def scan_with_progress(project: Project, quiet: bool = False):
    report = project.scan(progress=None if quiet else ProgressLine("hashing", "file"))
    if report.total == 0:
        raise CliError(f"{project.folder}: no images found (looked for .jpg, .png, .webp, ... recursively).")
    if not quiet:
        print(f"{project.folder}: {report.total} image files ({report.new} new, {report.changed} changed, "
              f"{report.removed} removed) in {report.seconds:.1f} s")
    return report


# -- commands --------------------------------------------------------------------------
def cmd_score(args) -> int:
    from .scoring import score_project

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
            write_scores_csv(project, model, Path(args.csv))
        return EXIT_FAILED_FILES if summary.failed else EXIT_OK


def write_scores_csv(project: Project, model, out: Path) -> None:
    from .model import model_id

    scores = project.scores(model_id(model).key)
    rows = [(rel, scores[h]) for h, rel in project.image_paths() if h in scores]
    atomic_write_csv(out, ["path", "score"], ([rel, f"{s:.6f}"] for rel, s in rows))
    print(f"wrote {len(rows)} scores to {out}")


def atomic_write_csv(out: Path, header: list[str], rows) -> None:
    """Write to a temporary file beside ``out`` and rename: a reader never sees half a file."""
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(header)
            writer.writerows(rows)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, out)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise CliError(f"{out}: could not write the CSV ({e.strerror or e}); nothing was written.") from None


def warn_if_cpu(device, model) -> None:
    if device.type == "cpu" and model.embed_dim >= 1024:
        print("warning: no CUDA GPU; the full JoyQuality model scores only a few images per second on a CPU "
              "(use --model tiny or a GPU for large folders).", file=sys.stderr)
    else:
        print(f"device: {describe_device(device)}", file=sys.stderr)


def cmd_demo(args) -> int:
    from .demo import make_demo_folder

    paths = make_demo_folder(Path(args.dir), count=args.count, seed=args.seed)
    print(f"wrote {len(paths)} demo images and pairs.json to {Path(args.dir).resolve()}")
    return EXIT_OK


def cmd_bench(args) -> int:
    from . import bench

    return bench.run(args)


# -- parser ------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="joyq", description="JoyQuality Studio command line: score, train, rank and export image folders.")
    p.add_argument("--version", action="version", version=f"joyq {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def model_args(sp, batch=32):
        sp.add_argument("--model", help=f"model: HF repo id (default {DEFAULT_MODEL}, or the project's active version), "
                        "a folder, a .safetensors/.pt file, 'tiny' or 'demo'")
        sp.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda when present)")
        sp.add_argument("--batch-size", type=positive_int, default=batch, help=f"images per batch (default {batch})")
        sp.add_argument("--workers", type=nonnegative_int, default=min(8, os.cpu_count() or 1),
                        help="decoding worker processes (default: CPU count, at most 8)")

    sp = sub.add_parser("score", help="embed and score every image of a folder not yet scored (resumable)")
    sp.add_argument("folder")
    model_args(sp)
    sp.add_argument("--compile", action="store_true", help="torch.compile the tower (faster on big runs)")
    sp.add_argument("--csv", help="also write path,score to this CSV file")
    sp.set_defaults(func=cmd_score)

    sp = sub.add_parser("demo", help="write a deterministic demo folder of generated images of varied quality")
    sp.add_argument("dir")
    sp.add_argument("--count", type=positive_int, default=200, help="number of images (default 200)")
    sp.add_argument("--seed", type=int, default=0)
    sp.set_defaults(func=cmd_demo)

    bp = sub.add_parser("bench", help="benchmarks (results name the machine)")
    bsub = bp.add_subparsers(dest="bench", metavar="BENCH", required=True)
    sp = bsub.add_parser("score", help="scoring throughput: model-only, end-to-end 1 MP / 12 MP, and the reference-style baseline")
    model_args(sp)
    sp.add_argument("--images", type=positive_int, default=64, help="images per end-to-end run (default 64)")
    sp.add_argument("--repeats", type=positive_int, default=3, help="runs per measurement; the median is reported")
    sp.set_defaults(func=cmd_bench)
    sp = bsub.add_parser("scan", help="time a rescan of an unchanged folder of N files")
    sp.add_argument("--files", type=positive_int, default=100_000)
    sp.add_argument("--dir", help="where to create the files (default: a temporary folder)")
    sp.set_defaults(func=cmd_bench)
    sp = bsub.add_parser("learn", help="train the tiny tower from scratch on generated clean-vs-degraded images "
                         "and record its learning curve (a few minutes of CPU)")
    sp.add_argument("--dir", help="where to write the generated dataset (default: a temporary folder); "
                    "reused when it already holds one made with the same settings")
    sp.add_argument("--out", help="where to write curve.csv/.md/.png (default: DIR/report)")
    sp.add_argument("--model", default="tiny", help="starting model (default tiny: random initialisation)")
    sp.add_argument("--bases", type=positive_int, default=700, help="base images (default 700; x3 images on disk)")
    sp.add_argument("--size", type=positive_int, default=512, help="side of the generated images in px (default 512)")
    sp.add_argument("--kinds", default="jpeg,lowres",
                    help="degradations, comma-separated: jpeg, lowres (the reference recipes), demo-jpeg, "
                         "demo-blur, demo-lowres, demo-noise (default jpeg,lowres)")
    sp.add_argument("--test-bases", type=positive_int, default=200, help="held-out base images (default 200)")
    sp.add_argument("--mosaic-share", type=float, default=0.5, help="share of bases that are 2x2 mosaics (default 0.5)")
    sp.add_argument("--cross-pairs", type=nonnegative_int, default=0,
                    help="per base: pairs 'clean beats another base's degraded copy', which anchor one "
                         "quality scale across contents (default 0)")
    sp.add_argument("--steps", type=positive_int, default=300, help="optimizer steps (default 300)")
    sp.add_argument("--batch-size", type=positive_int, default=32, help="pairs per step (default 32)")
    sp.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (default 1e-3)")
    sp.add_argument("--evals", type=positive_int, default=6, help="evaluations during the run (default 6)")
    sp.add_argument("--no-augment", action="store_true", help="no random flip/rot90 of pairs")
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--save-model", metavar="FOLDER", help="also save the trained model here (save_pretrained form)")
    sp.add_argument("--save-demo-model", metavar="FOLDER",
                    help="instead, run the demo tower's fixed recipe (docs/learning.md; ~15-25 min of CPU) and "
                         "save it here, e.g. resources/demo-model")
    sp.set_defaults(func=cmd_bench)
    sp = bsub.add_parser("train", help="time a quick (head-only) finetune with the reference recipe")
    sp.add_argument("--pairs", type=positive_int, default=6000)
    sp.add_argument("--dim", type=positive_int, default=1152)
    sp.add_argument("--repeats", type=positive_int, default=5)
    sp.set_defaults(func=cmd_bench)
    sp = bsub.add_parser("full", help="full finetune: pairs/s and peak GPU memory per device batch, +- checkpointing")
    sp.add_argument("--model", help="default: so400m-random on CUDA, tiny on CPU")
    sp.add_argument("--device")
    sp.add_argument("--device-batches", type=positive_int, nargs="+", default=[1, 2, 4, 8])
    sp.add_argument("--steps", type=positive_int, default=5)
    sp.set_defaults(func=cmd_bench)
    # `joyq bench pairing ...` is handed whole to bench_pairing.main (see main()); listed for --help.
    bsub.add_parser("pairing", help="simulated raters: pair-selection strategies compared, selector speed at 100k")
    from .cli_train import register as register_train

    register_train(sub)
    from .cli_rank import register as register_rank; register_rank(sub)
    return p


def positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, not {text}")
    return value


def nonnegative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {text}")
    return value


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:2] == ["bench", "pairing"]:
        from .bench_pairing import main as bench_pairing

        return bench_pairing(argv[2:])
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except JoyqError as e:
        print(f"joyq: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("\njoyq: interrupted; everything finished so far is saved, rerun to continue.", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
