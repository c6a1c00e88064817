"""`joyq`: headless commands over the same core the desktop app uses.

The whole command surface is declared here (argparse only, so `joyq --help` and every
subcommand's `--help` start instantly). Each command runs from its group's module, named
as ``handler="module:function"`` and imported only when that command runs: the one place
where the CLI imports lazily, because the model commands bring torch and transformers.

Exit codes: 0 success, 1 some files failed, 2 usage or configuration error, 130 interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from .. import __version__, bench
from ..console import (
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    nonnegative_int,
    positive_float,
    positive_int,
)
from ..errors import JoyqError
from ..export.captions import CAPTION_MODES
from ..export.dataset import LLM_CHOICES
from ..export.links import LINK_MODES
from ..redact import scrub
from ..settings import DEFAULT_MODEL

SCHEDULES = ("onecycle", "cosine", "linear", "constant")  # = training.config.SCHEDULES (test-checked)


def model_args(sp, batch: int = 32) -> None:
    sp.add_argument(
        "--model",
        help=f"model: HF repo id (default {DEFAULT_MODEL}, or the project's active version), "
        "a folder, a .safetensors/.pt file, 'demo' (the small shipped demo tower) or 'tiny' (random)",
    )
    sp.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda when present)")
    sp.add_argument("--batch-size", type=positive_int, default=batch, help=f"images per batch (default {batch})")
    sp.add_argument(
        "--workers",
        type=nonnegative_int,
        default=min(8, os.cpu_count() or 1),
        help="decoding worker processes (default: CPU count, at most 8)",
    )


def _bucket(text: str) -> int:
    try:
        return nonnegative_int(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"must be a bucket number (0 = the worst), not {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="joyq", description="JoyQuality Studio command line: score, train, rank and export image folders."
    )
    p.add_argument("--version", action="version", version=f"joyq {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    # -- scoring ------------------------------------------------------------------------
    sp = sub.add_parser("score", help="embed and score every image of a folder not yet scored (resumable)")
    sp.add_argument(
        "folder", metavar="SOURCE", help="the folder to score (with --ray also a .txt or .parquet list of paths)"
    )
    sp.add_argument(
        "more", nargs="*", metavar="SOURCE", help="with --ray: more folders or lists (a result set outside any project)"
    )
    model_args(sp)
    sp.add_argument("--compile", action="store_true", help="torch.compile the tower (faster on big runs)")
    sp.add_argument(
        "--sample",
        type=positive_int,
        metavar="N",
        help="score only a random sample of N images, spread over the subfolders, so you can start "
        "comparing while the rest waits for a later run (without --sample)",
    )
    sp.add_argument(
        "--ray",
        action="store_true",
        help="score on a Ray cluster: decoding on every CPU, one model "
        "per GPU, resumable Parquet shards (pip install 'joyq-studio[ray]'; docs/scale.md)",
    )
    sp.add_argument(
        "--address",
        help="with --ray: the cluster to join ('auto' = the one `ray start` began here; "
        "default: a local Ray on this machine)",
    )
    sp.add_argument(
        "--gpus",
        type=nonnegative_int,
        help="with --ray: model actors, one per GPU (default: every GPU of the cluster; 0 = one CPU actor)",
    )
    sp.add_argument(
        "--out",
        help="with --ray: where the Parquet result shards go (default: the project's data "
        "folder, or the user data dir for lists and several folders)",
    )
    sp.add_argument(
        "--no-embeddings",
        action="store_true",
        help="with --ray: keep scores only, not the fp16 "
        "embeddings (training and the rank view need them for a project)",
    )
    sp.add_argument(
        "--csv",
        help="also write path,score to this CSV file (cells that a spreadsheet would run "
        "as a formula are prefixed with ')",
    )
    sp.add_argument(
        "--follow-links",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="scan into symbolically linked folders (remembered for the folder; default: not followed, "
        "and caption exports never write outside the folder's real path either way)",
    )
    sp.set_defaults(handler="joyq_studio.cli.score:cmd_score")

    sp = sub.add_parser("demo", help="write a deterministic demo folder of generated images of varied quality")
    sp.add_argument("dir")
    sp.add_argument("--count", type=positive_int, default=200, help="number of images (default 200)")
    sp.add_argument("--seed", type=int, default=0)
    sp.set_defaults(handler="joyq_studio.cli.score:cmd_demo")

    # -- training -----------------------------------------------------------------------
    sp = sub.add_parser("train", help="finetune on a folder's comparisons or a JoyQuality dataset JSON")
    sp.add_argument("folder", nargs="?", help="project folder whose comparisons to train on")
    sp.add_argument("--pairs", help='dataset JSON {"train": [[a, b, label], ...], "test": [...]}')
    sp.add_argument(
        "--model",
        help="starting model (default: the project's active version, else the model the "
        "folder was scored with, else JoyQuality)",
    )
    sp.add_argument(
        "--mode",
        choices=["quick", "reference", "full"],
        default="quick",
        help="quick: the Bayesian personal head on cached embeddings (CPU, seconds); reference: the "
        "original script's SGD head recipe; full: the whole tower (GPU)",
    )
    sp.add_argument("--device", help="cpu, cuda or cuda:N")
    sp.add_argument(
        "--total-samples", type=positive_int, help="pairs seen in total (default: scaled to the data, max 20000)"
    )
    sp.add_argument("--batch-size", type=positive_int, default=256, help="effective batch in pairs (default 256)")
    sp.add_argument("--device-batch-size", type=positive_int, help="pairs per forward pass (gradient accumulation)")
    sp.add_argument("--lr", type=float, help="peak learning rate (default 0.008 quick, 2e-5 full)")
    sp.add_argument("--schedule", choices=SCHEDULES, default="onecycle")
    sp.add_argument("--warmup-samples", type=int, help="default min(1500, 10%% of total)")
    sp.add_argument("--weight-decay", type=float, default=0.01)
    sp.add_argument("--freeze-layers", type=int, default=0, help="full mode: freeze the lowest K tower layers")
    sp.add_argument("--grad-checkpointing", action="store_true", help="full mode: trade compute for memory")
    sp.add_argument(
        "--optimizer", choices=["adamw", "adamw8bit"], default="adamw", help="adamw8bit needs bitsandbytes and CUDA"
    )
    sp.add_argument("--augment", action="store_true", help="full mode: same random flip/rot90 on both images of a pair")
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--out", help="--pairs runs: folder for the new version (default: the user data dir)")
    sp.add_argument("--adopt", action="store_true", help="make the new version the project's active model")
    sp.add_argument(
        "--pool",
        nargs="+",
        metavar="OTHER_FOLDER",
        default=[],
        help="also learn from the comparisons of these folders (your taste across folders)",
    )
    sp.set_defaults(handler="joyq_studio.cli.train:cmd_train")

    sp = sub.add_parser("eval", help="full metric suite (incl. JPEG and low-res robustness) of a model on a pair set")
    sp.add_argument("--pairs", required=True, help="dataset JSON")
    sp.add_argument("--model", help=f"model to evaluate (default {DEFAULT_MODEL})")
    sp.add_argument("--device")
    sp.add_argument("--split", choices=["all", "train", "test"], default="all")
    sp.add_argument("--json", action="store_true", help="print one JSON object")
    sp.set_defaults(handler="joyq_studio.cli.train:cmd_eval")

    sp = sub.add_parser("versions", help="list a project's model versions (* = active)")
    sp.add_argument("folder")
    sp.set_defaults(handler="joyq_studio.cli.versions:cmd_versions")

    sp = sub.add_parser("adopt", help="make a model version active and rescore ('base' = back to the base model)")
    sp.add_argument("folder")
    sp.add_argument("version")
    sp.add_argument("--device")
    sp.set_defaults(handler="joyq_studio.cli.train:cmd_adopt")

    # -- ranking and exports ------------------------------------------------------------
    sp = sub.add_parser("calibrate", help="fit and save the calibrated K-bucket ranking of a scored folder")
    sp.add_argument("folder")
    sp.add_argument(
        "--method",
        choices=["q", "a", "b", "reference"],
        help="q (default): quantile buckets, about 1/K of the folder in each; a: equal-width score "
        "ranges; b: sigmoid ranks, tau fitted with a prior on at least 10 held-out comparisons (else a); "
        "reference: the original recipe's sigmoid ranks (mean rank 5.56 of 10), for its old buckets",
    )
    sp.add_argument("--buckets", type=positive_int, help="number of buckets K (default 10, or the number of --labels)")
    sp.add_argument(
        "--target-mean",
        type=positive_float,
        help="methods B and reference: mean rank of the folder (default K/2); without --method, method B",
    )
    sp.add_argument(
        "--labels", help='comma-separated bucket labels, worst first, e.g. "bad,ok,good" (kept as the folder\'s own)'
    )
    sp.set_defaults(handler="joyq_studio.cli.rank:cmd_calibrate")

    # issue 25: a folder's own bucket labels, kept through recalibration and retraining
    sp = sub.add_parser(
        "labels",
        help="list the folder's bucket labels, rename one (BUCKET TEXT) or go back to the defaults (--reset)",
    )
    sp.add_argument("folder")
    sp.add_argument("bucket", nargs="?", type=int, help="the bucket to rename, 0 = worst .. K - 1 = best")
    sp.add_argument("text", nargs="?", help="its new label")
    sp.add_argument("--reset", action="store_true", help="forget the folder's own labels: the defaults again")
    sp.set_defaults(handler="joyq_studio.cli.rank:cmd_labels")

    sp = sub.add_parser(
        "export",
        help="write the ranking as a CSV, quality tags into .txt caption sidecars, "
        "and/or the chosen images into a destination folder (copies or links)",
    )
    sp.add_argument("folder")
    sp.add_argument(
        "--csv",
        metavar="OUT",
        help="write path,hash,score,rank,bucket_0_to_9,label,model_version,"
        "overridden to OUT (buckets 0 = worst .. 9 = best)",
    )
    sp.add_argument(
        "--to",
        metavar="DEST",
        help="put the chosen images into the folder DEST (outside the image "
        "folder), at their paths relative to it; originals are never moved or changed",
    )
    sp.add_argument(
        "--min-bucket", type=_bucket, metavar="B", help="CSV and --to: only images in bucket B or better (0 = worst)"
    )
    sp.add_argument("--min-score", type=float, metavar="S", help="--to: only images scoring S or more")
    sp.add_argument(
        "--as",
        dest="link_mode",
        choices=LINK_MODES,
        default="copy",
        help="--to: copies (default), hard links (same file system) or symbolic links",
    )
    sp.add_argument("--captions", action="store_true", help="write the bucket label into each image's .txt caption")
    sp.add_argument(
        "--mode",
        choices=CAPTION_MODES,
        default="prepend",
        help="prepend/append the tag, replace only an existing tag, or only create new caption files (default prepend)",
    )
    sp.add_argument("--separator", default=", ", help='between the tag and the caption (default ", "; "\\n" allowed)')
    sp.add_argument(
        "--dry-run", action="store_true", help="captions, --xmp and --to: list exactly what would change, write nothing"
    )
    # issue 22: star ratings into XMP sidecars (docs/xmp.md)
    sp.add_argument(
        "--xmp",
        action="store_true",
        help="write each image's stars into its XMP sidecar (only the rating changes; docs/xmp.md)",
    )
    sp.add_argument(
        "--stars",
        metavar="MAPPING",
        help="--xmp: stars per bucket, worst first ('1,1,2,2,3,3,4,4,5,5') or bucket:stars pairs ('0:-1,9:5'); "
        "default spreads the buckets evenly over 1..5",
    )
    sp.add_argument(
        "--naming",
        choices=("darktable", "adobe", "auto"),
        default="auto",
        help="--xmp: IMG_1.JPG.xmp (darktable, digiKam), IMG_1.xmp (Lightroom, Bridge, Capture One), or "
        "auto: follow the sidecars already in the folder (default)",
    )
    sp.add_argument("--reject-bucket", type=_bucket, metavar="B", help="--xmp: buckets 0..B are marked rejected (-1)")
    sp.add_argument(
        "--keyword", action="store_true", help="--xmp: also write the keyword joyq|quality|BUCKET (dc:subject)"
    )
    sp.set_defaults(handler="joyq_studio.cli.rank:cmd_export")

    sp = sub.add_parser(
        "undo-export",
        help="undo the newest export, captions or --to (restore modified captions, delete the files it created)",
    )
    sp.add_argument("folder")
    sp.set_defaults(handler="joyq_studio.cli.rank:cmd_undo_export")

    sp = sub.add_parser(
        "override",
        help="put one image in a bucket by hand (kept across recalibration and retraining, used by every export)",
    )
    sp.add_argument("folder")
    sp.add_argument("path", help="the image, relative to FOLDER (or an absolute path inside it)")
    sp.add_argument("bucket", nargs="?", type=_bucket, help="0 (worst) .. K-1 (best)")
    sp.add_argument("--clear", action="store_true", help="remove the image's override: the calibrated bucket again")
    sp.set_defaults(handler="joyq_studio.cli.rank:cmd_override")

    # issue 22: existing star ratings in as labels, and the ranking's agreement with them
    sp = sub.add_parser(
        "import-ratings",
        help="turn the star ratings already given (XMP sidecars, embedded XMP, EXIF Rating) into comparisons",
    )
    sp.add_argument("folder")
    sp.add_argument(
        "--from",
        dest="origin",
        choices=("xmp", "embedded", "both"),
        default="both",
        help="sidecars of either naming, ratings inside the image files, or both (default; a sidecar wins)",
    )
    sp.add_argument(
        "--weight",
        type=positive_float,
        default=1.0,
        help="how much training trusts a star pair, 0.5 (not at all) .. 1 (as a click, the default)",
    )
    sp.add_argument(
        "--per-image", type=positive_int, default=8, help="star pairs each rated image appears in, at most (default 8)"
    )
    sp.set_defaults(handler="joyq_studio.cli.ratings:cmd_import_ratings")

    sp = sub.add_parser("stars-agreement", help="how well the current ranking agrees with the held-out star ratings")
    sp.add_argument("folder")
    sp.set_defaults(handler="joyq_studio.cli.ratings:cmd_stars_agreement")

    sp = sub.add_parser("import-pairs", help="add the pairs of a JoyQuality dataset JSON as comparisons")
    sp.add_argument("folder")
    sp.add_argument("dataset", help="JSON with 'train'/'test' lists of [path, path, label]")
    sp.set_defaults(handler="joyq_studio.cli.rank:cmd_import_pairs")

    sp = sub.add_parser("export-pairs", help="write the comparisons as a JoyQuality dataset JSON")
    sp.add_argument("folder")
    sp.add_argument("out")
    sp.add_argument("--ties", action="store_true", help="include ties as [a, b, 0] (default: omitted)")
    sp.add_argument(
        "--llm",
        choices=LLM_CHOICES,
        default="training",
        help="LLM pre-labels: written while training uses them (default), always (include), never "
        "(exclude), or only them",
    )
    sp.set_defaults(handler="joyq_studio.cli.rank:cmd_export_pairs")

    # -- the dataset recipe (issue 21) ------------------------------------------------------
    sp = sub.add_parser(
        "subset", help="choose a diverse subset of a scored folder (farthest-point selection on its embeddings)"
    )
    sp.add_argument("folder")
    sp.add_argument("--count", type=positive_int, required=True, help="images to choose (all of them when more)")
    sp.add_argument("--seed", type=int, default=0, help="picks the random first image (default 0)")
    sp.add_argument(
        "--dims",
        type=positive_int,
        help="select in this many random-projection dimensions (faster, slightly less spread; "
        "see `joyq bench subset`; default: the full embedding, exact; the projected time is printed first)",
    )
    sp.add_argument("--list", metavar="FILE", help="also write the chosen images' paths to FILE, one a line")
    sp.add_argument("--to", metavar="DEST", help="also put the chosen images into DEST (outside the folder; undoable)")
    sp.add_argument(
        "--as", dest="link_mode", choices=LINK_MODES, default="copy", help="--to: copies, hard or symbolic links"
    )
    sp.set_defaults(handler="joyq_studio.cli.recipe:cmd_subset")

    sp = sub.add_parser(
        "pairs", help="write fixed-k pairs (each image in k pairs) as a dataset JSON to label elsewhere"
    )
    sp.add_argument("folder")
    sp.add_argument("--k", type=positive_int, default=4, help="pairs per image (default 4: k * N / 2 pairs)")
    sp.add_argument(
        "--near-share",
        type=float,
        default=0.5,
        help="share of pairs between embedding neighbours (default 0.5; the original recipe used 0.7)",
    )
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument(
        "--pool", choices=("all", "subset"), default="all", help="every image, or the folder's `joyq subset`"
    )
    sp.add_argument("--out", required=True, help='the JSON to write: {"train": [[a, b, null], ...], "test": []}')
    sp.set_defaults(handler="joyq_studio.cli.recipe:cmd_pairs")

    # -- benchmarks and optional groups ---------------------------------------------------
    bench.register(sub, model_args)
    for name in OPTIONAL_GROUPS:
        try:
            module = importlib.import_module(name)
        except ImportError:  # a group whose module is not part of this installation
            continue
        module.register(sub)
    return p


# groups that declare their own subcommands with register(sub); each keeps its module light
OPTIONAL_GROUPS = ("joyq_studio.cli.prelabel", "joyq_studio.cli.model")


def run_handler(handler: str, args) -> int:
    module, _, function = handler.partition(":")
    return getattr(importlib.import_module(module), function)(args)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        if argv[:1] == ["bench"] and len(argv) > 1 and argv[1] in bench.OWN_PARSERS:
            return importlib.import_module(bench.OWN_PARSERS[argv[1]]).main(argv[2:])
        args = build_parser().parse_args(argv)
        return run_handler(args.handler, args)
    except JoyqError as e:
        print(f"joyq: error: {scrub(str(e))}", file=sys.stderr)  # a server's text may repeat a key
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("\njoyq: interrupted; everything finished so far is saved, rerun to continue.", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # e.g. `joyq export --dry-run | head`: the reader left; not an error of ours
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
