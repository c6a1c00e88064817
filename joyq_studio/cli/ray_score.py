"""`joyq score SOURCE... --ray`: the Ray Data path (docs/scale.md).

One folder is merged into its project (training and the rank view use the scores and
embeddings); several folders or .txt/.parquet lists of paths give a standalone result set
of Parquet shards. Output, messages and exit codes are the native `joyq score`'s.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

from ..console import EXIT_FAILED_FILES, EXIT_OK, ProgressLine
from ..model import load_model, model_id
from ..settings import DEFAULT_MODEL
from ..store import data_dir
from .common import open_project, print_unreadable


def cmd_score_ray(args) -> int:
    from ..cluster.pipeline import connect, score_with_ray  # ImportError -> one sentence (cluster.import_ray)
    from ..cluster.results import read_shards
    from ..cluster.sources import check_sources

    sources = check_sources([args.folder, *args.more])
    project = open_project(str(sources[0])) if len(sources) == 1 and sources[0].is_dir() else None
    try:
        if project is not None:
            spec = args.model or project.active_model_spec(DEFAULT_MODEL)
            if args.follow_links is not None and args.follow_links != project.follow_links:
                project.set_follow_links(args.follow_links)
            follow = project.follow_links
        else:
            spec, follow = args.model or DEFAULT_MODEL, bool(args.follow_links)
        model = load_model(spec)
        if project is not None and args.model and project.active_version is None:
            project.set_base_model(args.model)
        key = model_id(model).key
        if args.out:
            base = Path(args.out).expanduser().resolve()
        elif project is not None:
            base = project.dir / "ray"
        else:
            digest = hashlib.blake2b(
                "\0".join(map(str, sources)).encode("utf-8", "surrogateescape"), digest_size=6
            ).hexdigest()
            base = data_dir() / "ray-results" / digest
        out = base / key
        connect(args.address)
        summary = score_with_ray(
            sources,
            model,
            spec,
            out,
            project=project,
            gpus=args.gpus,
            device=args.device,
            batch_size=args.batch_size,
            embeddings=not args.no_embeddings,
            follow_links=follow,
            progress=ProgressLine("scoring"),
        )
        print(
            f"ray: {summary.actors} model actor{'s' if summary.actors != 1 else ''} on "
            f"{'GPU' if summary.device == 'cuda' else 'CPU'}, {summary.rows_per_second:.1f} files/s",
            file=sys.stderr,
        )
        print(
            f"scored {summary.scored}, already done {summary.already_done}, failed {len(summary.failed)} "
            f"({summary.seconds:.1f} s)"
        )
        print_unreadable(summary.failed)
        print(f"results: {out / 'shards'}" + (f" (merged into the project of {project.folder})" if project else ""))
        if args.csv:
            if project is not None:
                from ..export import write_scores_csv

                rows = write_scores_csv(project, key, Path(args.csv))
            else:
                from ..export import write_rows

                table = read_shards(out / "shards", ["path", "score"])
                rows = write_rows(
                    Path(args.csv),
                    ["path", "score"],
                    (
                        [p, round(s, 6)]
                        for p, s in zip(table.column("path").to_pylist(), table.column("score").to_pylist())
                        if s is not None
                    ),
                )
            print(f"wrote {rows} scores to {args.csv}")
        return EXIT_FAILED_FILES if summary.failed else EXIT_OK
    finally:
        if project is not None:
            project.close()
