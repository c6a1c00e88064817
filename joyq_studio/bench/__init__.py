"""`joyq bench ...`: benchmarks whose results name the machine.

This module only declares the subcommands (argparse, no heavy imports, so `--help` is
instant); each runs from its own module, imported when it is chosen.
"""

from __future__ import annotations

import os

from ..console import nonnegative_int, positive_int

# subcommands that parse their own arguments: `joyq bench NAME ...` hands them the rest
OWN_PARSERS = {"pairing": "joyq_studio.bench.pairing", "taste": "joyq_studio.bench.taste"}


def register(sub, model_args) -> None:
    """Add `bench` and its subcommands to the `joyq` subparsers; handlers are "module:function"."""
    bp = sub.add_parser("bench", help="benchmarks (results name the machine)")
    bsub = bp.add_subparsers(dest="bench", metavar="BENCH", required=True)

    from . import click  # issue 19: `joyq bench click` (argparse only; heavy imports run inside)

    click.register(bsub)

    sp = bsub.add_parser(
        "score", help="scoring throughput: model-only, end-to-end 1 MP / 12 MP, and the reference-style baseline"
    )
    model_args(sp)
    sp.add_argument("--images", type=positive_int, default=64, help="images per end-to-end run (default 64)")
    sp.add_argument("--repeats", type=positive_int, default=3, help="runs per measurement; the median is reported")
    sp.set_defaults(handler="joyq_studio.bench.score:bench_score")

    sp = bsub.add_parser(
        "ray",
        help="scoring throughput of `joyq score --ray` against the native path, side by "
        "side on one folder (needs the ray extra)",
    )
    model_args(sp)
    sp.add_argument(
        "--images",
        type=positive_int,
        default=192,
        help="N: runs of N and 2N JPEGs give the marginal rate, free of start-up costs (default 192)",
    )
    sp.add_argument("--size", type=positive_int, default=512, help="their side in px (default 512)")
    sp.add_argument("--repeats", type=positive_int, default=1, help="runs of each path, alternating (median)")
    sp.add_argument("--address", help="a running Ray cluster (default: a local Ray on every core here)")
    sp.set_defaults(handler="joyq_studio.bench.ray:bench_ray")

    sp = bsub.add_parser(
        "decode",
        help="12 MP JPEGs: full decode against Pillow's draft mode (speed, and the "
        "change in pixels and scores on real photographs; needs scikit-image)",
    )
    sp.add_argument("--model", default="demo", help="the model whose scores are compared (default demo)")
    sp.add_argument("--device", help="cpu, cuda or cuda:N (scores only; decoding is timed on one CPU core)")
    sp.add_argument("--repeats", type=positive_int, default=3, help="timed decodes per photo (median)")
    sp.set_defaults(handler="joyq_studio.bench.decode:bench_decode")

    sp = bsub.add_parser("scan", help="time a rescan of an unchanged folder of N files")
    sp.add_argument("--files", type=positive_int, default=100_000)
    sp.add_argument("--dir", help="where to create the files (default: a temporary folder)")
    sp.set_defaults(handler="joyq_studio.bench.scan:bench_scan")

    sp = bsub.add_parser(
        "learn",
        help="train the tiny tower from scratch on generated clean-vs-degraded images "
        "and record its learning curve (a few minutes of CPU)",
    )
    sp.add_argument(
        "--dir",
        help="where to write the generated dataset (default: a temporary folder); "
        "reused when it already holds one made with the same settings",
    )
    sp.add_argument("--out", help="where to write curve.csv/.md/.png (default: DIR/report)")
    sp.add_argument("--model", default="tiny", help="starting model (default tiny: random initialisation)")
    sp.add_argument("--bases", type=positive_int, default=700, help="base images (default 700; x3 images on disk)")
    sp.add_argument("--size", type=positive_int, default=512, help="side of the generated images in px (default 512)")
    sp.add_argument(
        "--kinds",
        default="jpeg,lowres",
        help="degradations, comma-separated: jpeg, lowres (the reference recipes), demo-jpeg, "
        "demo-blur, demo-lowres, demo-noise (default jpeg,lowres)",
    )
    sp.add_argument("--test-bases", type=positive_int, default=200, help="held-out base images (default 200)")
    sp.add_argument("--mosaic-share", type=float, default=0.5, help="share of bases that are 2x2 mosaics (default 0.5)")
    sp.add_argument(
        "--cross-pairs",
        type=nonnegative_int,
        default=0,
        help="per base: pairs 'clean beats another base's degraded copy', which anchor one "
        "quality scale across contents (default 0)",
    )
    sp.add_argument("--steps", type=positive_int, default=300, help="optimizer steps (default 300)")
    sp.add_argument("--batch-size", type=positive_int, default=32, help="pairs per step (default 32)")
    sp.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (default 1e-3)")
    sp.add_argument("--evals", type=positive_int, default=6, help="evaluations during the run (default 6)")
    sp.add_argument("--no-augment", action="store_true", help="no random flip/rot90 of pairs")
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--save-model", metavar="FOLDER", help="also save the trained model here (save_pretrained form)")
    sp.add_argument(
        "--save-demo-model",
        metavar="FOLDER",
        help="instead, run the demo tower's fixed recipe (docs/learning.md) and save it here, "
        "e.g. joyq_studio/resources/demo-model",
    )
    sp.set_defaults(handler="joyq_studio.bench.learn:bench_learn")

    sp = bsub.add_parser("train", help="time a quick (head-only) finetune with the reference recipe")
    sp.add_argument("--pairs", type=positive_int, default=6000)
    sp.add_argument("--dim", type=positive_int, default=1152)
    sp.add_argument("--repeats", type=positive_int, default=5)
    sp.set_defaults(handler="joyq_studio.bench.train:bench_train_quick")

    sp = bsub.add_parser("full", help="full finetune: pairs/s and peak GPU memory per device batch, +- checkpointing")
    sp.add_argument("--model", help="default: so400m-random on CUDA, tiny on CPU")
    sp.add_argument("--device")
    sp.add_argument("--device-batches", type=positive_int, nargs="+", default=[1, 2, 4, 8])
    sp.add_argument("--steps", type=positive_int, default=5)
    sp.set_defaults(handler="joyq_studio.bench.train:bench_train_full")

    sp = bsub.add_parser(
        "startup", help="time `joyq --help`, a few commands and the first window, in fresh processes (medians)"
    )
    sp.add_argument("--repeats", type=positive_int, default=5)
    sp.set_defaults(handler="joyq_studio.bench.startup:bench_startup")

    sp = bsub.add_parser(
        "calibration",
        help="bucket spread and held-out log loss of each calibration method on the README "
        "walkthrough (before/after training, per corruption kind) and on planted-temperature folders",
    )
    sp.add_argument("--count", type=positive_int, default=200, help="walkthrough images (default 200)")
    sp.add_argument("--no-walkthrough", action="store_true", help="only the planted-temperature folders")
    sp.add_argument("--images", type=positive_int, default=400, help="planted folder: images (default 400)")
    sp.add_argument("--sd", type=float, default=3.0, help="planted folder: score spread (default 3)")
    sp.add_argument(
        "--planted-tau", type=float, nargs="+", default=[1.0, 3.0], help="planted temperatures (default 1 3)"
    )
    sp.add_argument("--pairs", type=positive_int, default=40, help="held-out pairs to fit on (default 40)")
    sp.add_argument("--seed", type=int, default=0)
    sp.set_defaults(handler="joyq_studio.bench.calibration:bench_calibration")
    # issue 22: XMP star ratings out and in (docs/xmp.md)
    sp = bsub.add_parser(
        "xmp", help="export --xmp and import-ratings per 1,000 files, and the demo model against planted stars"
    )
    sp.add_argument("--files", type=nonnegative_int, default=100_000, help="images for export/import (0: skip)")
    sp.add_argument("--repeats", type=positive_int, default=3, help="runs of each; the median is reported")
    sp.add_argument("--demo", type=nonnegative_int, default=200, help="demo images for the agreement (0: skip)")
    sp.add_argument("--no-train", action="store_true", help="skip the quick training after the first agreement")
    sp.add_argument("--no-undo", action="store_true", help="export without the undo after each run (large N)")
    sp.set_defaults(handler="joyq_studio.bench.xmp:bench_xmp")
    # issue 21: farthest-point subset speed and the effect of a random projection
    sp = bsub.add_parser("subset", help="farthest-point selection: K of N synthetic embeddings, exact and projected")
    sp.add_argument("--n", type=positive_int, default=100_000, help="embeddings in the pool (default 100000)")
    sp.add_argument("--count", type=positive_int, default=5000, help="images to select (default 5000)")
    sp.add_argument("--dim", type=positive_int, default=1152, help="embedding dimensions (default 1152, SigLIP2)")
    sp.add_argument(
        "--dims", type=positive_int, nargs="*", default=[256, 128], help="random projections to time (default 256 128)"
    )
    sp.add_argument(
        "--clusters", type=nonnegative_int, default=1000, help="cluster directions (default 1000; 0: uniform noise)"
    )
    sp.add_argument("--noise", type=float, default=0.1, help="share of unclustered embeddings (default 0.1)")
    sp.add_argument("--repeats", type=positive_int, default=1, help="exact runs (median)")
    sp.add_argument(
        "--exact-count", type=positive_int, help="time the exact run on this many picks and scale (default --count)"
    )
    sp.add_argument("--seed", type=int, default=0)
    sp.set_defaults(handler="joyq_studio.bench.subset:bench_subset")

    sp = bsub.add_parser(
        "photos",
        help="the demo tower on scikit-image's photographs, corrupted here: within- and cross-photo "
        "agreement with counts (needs scikit-image)",
    )
    sp.add_argument("--model", default="demo", help="the model to measure (default demo)")
    sp.set_defaults(handler="joyq_studio.bench.photos:bench_photos")
    # issue 23: CPU scoring variants on the so400m shape, and their score deviation
    sp = bsub.add_parser(
        "cpu",
        help="CPU scoring: fp32 vs int8 / bf16 / torch.compile, threads and batch on the so400m shape, "
        "and each variant's score deviation on real photographs (default run: about 10 minutes)",
    )
    sp.add_argument("--model", default="so400m-random", help="the model timed (default so400m-random: the real shape)")
    sp.add_argument(
        "--variants", default="fp32,int8,bf16,compile", help="comma-separated (default fp32,int8,bf16,compile)"
    )
    sp.add_argument("--threads", type=positive_int, nargs="+", default=[os.cpu_count() or 1], help="thread counts")
    sp.add_argument("--batch-sizes", type=positive_int, nargs="+", default=[1], help="batch sizes (default 1)")
    sp.add_argument("--repeats", type=positive_int, default=1, help="timed runs per cell, median (default 1)")
    sp.add_argument(
        "--check-model",
        nargs="+",
        default=["demo", "tiny"],
        help="models whose score deviation is measured (default demo tiny; pass the real JoyQuality "
        "repo id or folder to check the tolerance on its real weights)",
    )
    sp.add_argument("--photos", type=positive_int, default=48, help="photographs for the deviation (default 48)")
    sp.set_defaults(handler="joyq_studio.bench.cpu:bench_cpu")

    # listed for --help; `joyq bench pairing|taste ...` is handed whole to the module's main()
    bsub.add_parser("pairing", help="simulated raters: pair-selection strategies compared, selector speed at 100k")
    bsub.add_parser("taste", help="closed loop: the Bayesian personal head and pair strategies vs simulated raters")
