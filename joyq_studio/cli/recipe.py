"""`joyq subset` and `joyq pairs`: the original dataset recipe's first steps (issue 21).

Thin wrappers over :mod:`joyq_studio.subset` and :mod:`joyq_studio.compare.fixedk`.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..console import EXIT_OK, ProgressLine
from ..errors import ExportError
from .common import open_project


def cmd_subset(args) -> int:
    from ..pairing.fixedk import default_tower
    from ..subset import save_subset, select_subset

    with open_project(args.folder) as project:
        tower, progress = default_tower(project), ProgressLine("selecting")
        report = select_subset(
            project,
            tower,
            args.count,
            seed=args.seed,
            dims=args.dims,
            progress=progress,
            announce=lambda line: print(line, flush=True),
        )
        save_subset(project, report)
        space = f"{report.dims} random dimensions" if report.dims else "the full embedding"
        print(
            f"chose {len(report.hashes)} of {report.pool} embedded images by farthest-point selection "
            f"({space} of {report.tower}, seed {report.seed}) in {report.seconds:.1f} s; "
            f"covering radius {report.radius:.3f}"
        )
        if report.took_all:
            print(
                f"note: --count {args.count} is not below the {report.pool} images with an embedding, "
                "so the subset is all of them"
            )
        if report.without_embedding:
            print(f"note: {report.without_embedding} readable images have no embedding and were left out")
        print("saved as the folder's subset: use it with `joyq pairs --pool subset` or `prelabel run --pool subset`")
        paths = dict(project.image_paths())
        if args.list:
            _write_list(Path(args.list), [str(project.folder / paths[h]) for h in report.hashes])
            print(f"wrote the {len(report.hashes)} paths to {args.list}")
        if args.to:
            _link(project, report.hashes, paths, args.to, args.link_mode)
    return EXIT_OK


def _write_list(path: Path, lines: list[str]) -> None:
    from ..fsio import atomic_write, describe_error

    try:
        atomic_write(path, ("\n".join(lines) + "\n").encode("utf-8"))
    except OSError as e:
        raise ExportError(f"{path}: could not write the list ({describe_error(e)}); nothing was written.") from None


def _link(project, hashes: list[str], paths: dict[str, str], dest: str, mode: str) -> None:
    """Put the subset into ``dest`` with the curation export's machinery (manifest, undo)."""
    from ..export.links import LinkItem, LinkPlan, apply_link_export, check_destination

    d = check_destination(project, dest)
    plan = LinkPlan(d, mode, f"diverse subset of {len(hashes)}", selected=len(hashes))
    for h in hashes:
        rel = paths[h]
        source, target = Path(os.path.abspath(project.folder / rel)), d / rel
        if os.path.lexists(target):
            plan.skipped.append((rel, f"{target} already exists; left alone"))
        else:
            plan.items.append(LinkItem(rel, source, target, -1, "subset", float("nan")))
    manifest = apply_link_export(project, plan)
    print(f"put {len(plan.items)} images into {d} as {mode}" + (f" (manifest {manifest})" if manifest else ""))
    for rel, why in plan.skipped[:10]:
        print(f"  skipped {rel}: {why}")
    if len(plan.skipped) > 10:
        print(f"  ... and {len(plan.skipped) - 10} more skipped")
    if manifest:
        print("undo with `joyq undo-export FOLDER`")


def cmd_pairs(args) -> int:
    from ..compare.fixedk import plan_pairs, write_pairs_json

    with open_project(args.folder) as project:
        plan = plan_pairs(project, k=args.k, near_share=args.near_share, seed=args.seed, pool=args.pool)
        out = write_pairs_json(project, plan, args.out)
        near = f"{plan.near} near ({plan.tower})" if plan.tower else "0 near (no embeddings: run `joyq score`)"
        print(
            f"wrote {len(plan.pairs)} fixed-k pairs (k = {plan.k} over {plan.images} images of the {plan.pool} pool; "
            f"{near}, {len(plan.pairs) - plan.near} random) to {out}; labels are null until labelled"
        )
        wanted = plan.k * plan.images // 2
        if len(plan.pairs) < wanted:
            print(f"note: {wanted - len(plan.pairs)} fewer than k * N / 2: every other pair is already judged")
    return EXIT_OK
