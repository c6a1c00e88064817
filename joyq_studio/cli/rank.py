"""`joyq calibrate | labels | export | undo-export | override | import-pairs | export-pairs`: ranking and exports.

Thin wrappers over :mod:`joyq_studio.ranking` and :mod:`joyq_studio.export`; the
arguments are declared in :mod:`joyq_studio.cli.main`.
"""

from __future__ import annotations

import json

from ..console import EXIT_FAILED_FILES, EXIT_OK, ProgressLine, UsageError
from ..export import (
    LinkUndoReport,
    apply_caption_export,
    apply_link_export,
    export_pairs,
    import_pairs,
    plan_caption_export,
    plan_link_export,
    undo_latest_export,
    write_csv,
)
from ..export.xmp import files_word
from ..ranking import (
    DEFAULT_K,
    Calibration,
    LabelError,
    bucket_counts,
    calibrate_project,
    default_labels,
    ensure_calibration,
    folder_labels,
    load_calibration,
    ranked_images,
    reset_folder_labels,
    save_calibration,
    set_bucket_override,
    set_folder_label,
)
from ..store import Project
from .common import open_project, preview_or_apply, print_listed, print_skipped, print_unreadable, scan_with_progress
from .ratings import check_xmp_args, export_xmp


def histogram(cal: Calibration, counts: list[int], width: int = 30) -> list[str]:
    """One line per bucket, best first: ``9 best quality  ██████ 41``."""
    top = max(counts) if counts else 0
    lw = max(len(label) for label in cal.labels)
    nw = len(str(cal.k - 1))
    cw = len(str(top))
    lines = []
    for b in reversed(range(cal.k)):
        n = counts[b]
        bar = "█" * (round(width * n / top) if top else 0)
        if n and not bar:
            bar = "▏"
        lines.append(f"{b:>{nw}} {cal.labels[b]:<{lw}}  {bar:<{width}} {n:>{cw}}")
    return lines


def describe_calibration(cal: Calibration) -> str:
    return cal.describe()


def _require_scores(project: Project) -> None:
    key = project.current_model_key()
    if not key or not project.scores(key):
        raise UsageError(f"{project.folder}: no image is scored yet; run `joyq score {project.folder}` first.")


def _print_notes(notes: list[str]) -> None:
    for note in notes:
        print(f"note: {note}")


def _show(text: str | None, limit: int = 100) -> str:
    """A caption as one quoted line (newlines and CRs escaped), shortened past ``limit``."""
    if text is None:
        return "(none)"
    return json.dumps(text if len(text) <= limit else text[: limit - 3] + "...", ensure_ascii=False)


# -- commands --------------------------------------------------------------------------------
def _list_unreadable(report) -> None:
    """The folder's entries the scan could not use, listed as `joyq score` lists them."""
    if report.unreadable:
        n = len(report.unreadable)
        what = (
            "1 entry of the folder could not be read and is"
            if n == 1
            else f"{n} entries of the folder could not be read and are"
        )
        print(f"{what} left out:")
        print_unreadable(report.unreadable)


def cmd_calibrate(args) -> int:
    labels = None
    if args.labels is not None:
        labels = [s.strip() for s in args.labels.split(",")]
        if any(not s for s in labels):
            raise UsageError(f"--labels {args.labels!r}: every label must be non-empty (comma separated, worst first).")
    k = args.buckets or (len(labels) if labels else 10)
    if labels and len(labels) != k:
        raise UsageError(
            f"--labels gives {len(labels)} labels but --buckets is {k}; give one label per bucket, worst first."
        )
    if args.target_mean is not None:
        if args.method == "a":
            raise UsageError("--target-mean applies to sigmoid ranks (method B or reference), not to method A.")
        if not 0 < args.target_mean < k:
            raise UsageError(f"--target-mean must lie strictly between 0 and {k}, not {args.target_mean:g}.")
    method = args.method or ("b" if args.target_mean is not None else None)
    with open_project(args.folder) as project:
        _list_unreadable(scan_with_progress(project))
        _require_scores(project)
        cal, notes = calibrate_project(project, method, k, args.target_mean, labels)
        save_calibration(project, cal)
        rows = ranked_images(project, cal)
        print(f"calibrated: {describe_calibration(cal)}")
        _print_notes(notes)
        where = f"model version {project.active_version}" if project.active_version else "the current model"
        print(f"saved with {where}; {len(rows)} scored images:")
        print("\n".join(histogram(cal, bucket_counts(rows, cal.k))))
    return EXIT_OK


def cmd_labels(args) -> int:
    """List the folder's bucket labels (best first), rename one, or reset them (issue 25)."""
    if args.reset and args.bucket is not None:
        raise UsageError("give either BUCKET TEXT or --reset, not both.")
    if args.bucket is not None and not (args.text or "").strip():
        raise UsageError(f"give the new label of bucket {args.bucket} after it, e.g. `joyq labels FOLDER 9 keeper`.")
    with open_project(args.folder) as project:
        cal = load_calibration(project) if project.current_model_key() else None
        k = cal.k if cal is not None else DEFAULT_K
        try:
            if args.reset:
                reset_folder_labels(project)
                print("the folder's bucket labels are the defaults again.")
            elif args.bucket is not None:
                set_folder_label(project, args.bucket, args.text, k)
                print(f"bucket {args.bucket} is now called {folder_labels(project, k)[args.bucket]!r}.")
        except LabelError as e:
            raise UsageError(str(e)) from None
        labels = folder_labels(project, k)
        own = "the folder's own" if labels != default_labels(k) else "the defaults"
        print(f"{k} bucket labels ({own}), 0 = worst .. {k - 1} = best:")
        for b in reversed(range(k)):
            print(f"{b:>{len(str(k - 1))}} {labels[b]}")
    return EXIT_OK


def cmd_export(args) -> int:
    if not args.csv and not args.captions and not args.to and not args.xmp:
        raise UsageError("say what to export: --csv OUT, --captions, --xmp and/or --to DEST.")
    if args.min_bucket is not None and not (args.csv or args.to):
        raise UsageError("--min-bucket filters the CSV and --to; use it with --csv OUT or --to DEST.")
    if args.min_score is not None and not args.to:
        raise UsageError("--min-score chooses the images for --to; use it with --to DEST.")
    if args.min_score is not None and args.min_bucket is not None:
        raise UsageError("choose the images by --min-bucket or by --min-score, not both.")
    if args.dry_run and not (args.captions or args.to or args.xmp):
        raise UsageError("--dry-run previews captions, --xmp and --to; use it with --captions, --xmp or --to DEST.")
    check_xmp_args(args)
    status = EXIT_OK
    with open_project(args.folder) as project:
        _list_unreadable(scan_with_progress(project))
        _require_scores(project)
        cal, notes = ensure_calibration(project)
        _print_notes(notes)
        if args.csv:
            report = write_csv(project, args.csv, cal, args.min_bucket)
            filt = (
                f" (buckets >= {args.min_bucket} of {report.total_scored} scored)"
                if args.min_bucket is not None
                else ""
            )
            print(f"wrote {report.rows} images to {report.path}{filt}:")
            print("\n".join(histogram(cal, report.counts)))
        if args.captions:
            status = _export_captions(project, cal, args)
        if args.xmp:
            status = max(status, export_xmp(project, cal, args))
        if args.to:
            status = max(status, _export_to(project, cal, args))
    return status


def _export_to(project: Project, cal: Calibration, args) -> int:
    plan = plan_link_export(
        project,
        cal,
        args.to,
        args.link_mode,
        min_bucket=args.min_bucket,
        min_score=args.min_score,
        progress=ProgressLine("checking the destination", "file"),
    )
    kind = {"copy": "copies", "hardlink": "hard links", "symlink": "symbolic links"}[plan.mode]
    summary = (
        f"{plan.selected} images chosen ({plan.selection}): {len(plan.items)} {kind} to make in {plan.dest}, "
        f"{len(plan.unchanged)} already there, {len(plan.skipped)} left alone"
    )
    if plan.interrupted:
        summary = summary.replace(
            "already there",
            f"already there ({plan.interrupted} made by an export that was stopped; this one takes them over, "
            "so undo removes them too)",
            1,
        )
    took = f" and took over {plan.interrupted} a stopped export had made" if plan.interrupted else ""
    return preview_or_apply(
        project,
        plan.skipped,
        summary,
        args.dry_run,
        [f"{item.rel}  (bucket {item.bucket}, {item.label})" for item in plan.items],
        lambda: apply_link_export(project, plan, progress=ProgressLine("exporting", "file")),
        f"nothing to do: every chosen image is already in {plan.dest}.",
        f"made {len(plan.items)} {kind} in {plan.dest}{took}; manifest in",
    )


def _export_captions(project: Project, cal: Calibration, args) -> int:
    sep = args.separator.replace("\\n", "\n").replace("\\t", "\t")  # let the shell pass "\n"
    plan = plan_caption_export(project, cal, args.mode, sep, progress=ProgressLine("reading captions", "file"))
    summary = (
        f"{plan.created} captions to create, {plan.modified} to modify, {plan.unchanged} unchanged, "
        f"{len(plan.skipped)} left alone (mode {plan.mode}, separator {sep!r})"
    )
    return preview_or_apply(
        project,
        plan.skipped,
        summary,
        args.dry_run,
        [
            f"create {c.rel}: {_show(c.new_text)}"
            if c.old_text is None
            else f"modify {c.rel}: {_show(c.old_text)} -> {_show(c.new_text)}"
            for c in plan.changes
        ],
        lambda: apply_caption_export(project, plan, progress=ProgressLine("writing captions", "file")),
        "nothing to write: every caption is already up to date.",
        f"wrote {len(plan.changes)} caption files; backups and manifest in",
    )


def cmd_undo_export(args) -> int:
    with open_project(args.folder) as project:
        report = undo_latest_export(project)
        if isinstance(report, LinkUndoReport):
            print(
                f"undid the export {report.export_dir.name} to {report.dest}: removed {report.removed} files it "
                f"had made, {report.already_gone} already gone"
                + (
                    f", {report.temp_removed} temporary files of a stopped export removed"
                    if report.temp_removed
                    else ""
                )
                + "; the originals were not touched"
            )
            if report.changed_since:
                print(
                    f"{len(report.changed_since)} files were replaced or changed after the export and were left alone:"
                )
                print_listed(report.changed_since)
                return EXIT_FAILED_FILES
            return EXIT_OK
        print(
            f"undid the export {report.export_dir.name}: restored {report.restored} {files_word(report)}, "
            f"deleted {report.deleted} it had created, {report.already_original} already as before"
        )
        if report.changed_since:
            print(
                f"{len(report.changed_since)} {files_word(report)} were edited after the export and were left alone "
                f"(their originals are in {report.export_dir / 'backup'}):"
            )
            print_listed(report.changed_since)
            return EXIT_FAILED_FILES
    return EXIT_OK


def cmd_override(args) -> int:
    if args.clear == (args.bucket is not None):
        raise UsageError("give a BUCKET to put the image in, or --clear to remove its override (not both).")
    with open_project(args.folder) as project:
        cal = load_calibration(project)
        k = cal.k if cal is not None else DEFAULT_K
        set_bucket_override(project, args.path, None if args.clear else args.bucket, k)
        if args.clear:
            print(f"{args.path}: override removed; its bucket comes from the calibration again.")
        else:
            label = cal.labels[args.bucket] if cal is not None else default_labels(k)[args.bucket]
            print(
                f"{args.path}: in bucket {args.bucket} ({label}) by hand, whatever the model or calibration; "
                f"`joyq override {project.folder} {args.path} --clear` removes it."
            )
    return EXIT_OK


def cmd_import_pairs(args) -> int:
    with open_project(args.folder) as project:
        _list_unreadable(scan_with_progress(project))
        report = import_pairs(project, args.dataset)
        added = ", ".join(f"{n} {s}" for s, n in sorted(report.added.items())) or "none"
        print(
            f"imported {report.total_added} of {report.pairs} pairs from {report.path} ({added}; "
            f"{report.ties} ties), {report.already_present} already in the project, "
            f"{len(report.skipped)} skipped"
        )
        print_skipped(report.skipped, "skipped")
        return EXIT_FAILED_FILES if report.skipped else EXIT_OK


def cmd_export_pairs(args) -> int:
    with open_project(args.folder) as project:
        report = export_pairs(project, args.out, ties=args.ties, llm=args.llm)
        parts = ", ".join(f"{report.written[s]} {s}" for s in ("train", "test"))
        extra = []
        if report.ties_omitted:
            extra.append(f"{report.ties_omitted} ties omitted (use --ties to include them as label 0)")
        if report.missing:
            extra.append(f"{report.missing} skipped: an image is no longer in the folder")
        if report.llm_omitted:
            extra.append(f"{report.llm_omitted} LLM labels omitted (--llm include to write them)")
        print(
            f"wrote {sum(report.written.values())} pairs ({parts}) to {report.path}"
            + ("; " + "; ".join(extra) if extra else "")
        )
    return EXIT_OK
