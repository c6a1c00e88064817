"""`joyq export --xmp`, `joyq import-ratings`, `joyq stars-agreement`: star ratings out and in.

Thin wrappers over :mod:`joyq_studio.export.xmp` and :mod:`joyq_studio.xmp.stars`; the
arguments are declared in :mod:`joyq_studio.cli.main` (docs/xmp.md).
"""

from __future__ import annotations

from ..console import EXIT_FAILED_FILES, EXIT_OK, ProgressLine, UsageError
from ..export.xmp import apply_xmp_export, plan_xmp_export, stars_mapping
from ..ranking import Calibration
from ..store import Project
from .common import open_project, preview_or_apply, print_unreadable, scan_with_progress


def check_xmp_args(args) -> None:
    """The --xmp options make sense only with --xmp."""
    given = [
        o
        for o, v in (("--stars", args.stars), ("--reject-bucket", args.reject_bucket), ("--keyword", args.keyword))
        if v not in (None, False)
    ]
    if args.naming != "auto":
        given.append("--naming")
    if given and not args.xmp:
        raise UsageError(f"{', '.join(given)} {'applies' if len(given) == 1 else 'apply'} to --xmp; add --xmp.")


def stars_text(stars: list[int]) -> str:
    return " ".join(f"{b}:{s}" for b, s in enumerate(stars))


def export_xmp(project: Project, cal: Calibration, args) -> int:
    stars = stars_mapping(cal.k, args.stars, args.reject_bucket)
    plan = plan_xmp_export(
        project, cal, args.naming, stars, args.keyword, progress=ProgressLine("reading sidecars", "file")
    )
    print(f"sidecar naming: {plan.naming} ({plan.why})")
    print(f"stars per bucket (bucket:stars, -1 = rejected): {stars_text(plan.stars)}")
    summary = (
        f"{plan.created} sidecars to create, {plan.modified} to modify, {plan.unchanged} unchanged, "
        f"{len(plan.skipped)} left alone, {plan.not_scored} images not scored yet (skipped)"
    )
    return preview_or_apply(
        project,
        plan.skipped,
        summary,
        args.dry_run,
        [f"{c.action} {c.rel}: {c.stars} stars (bucket {c.bucket})" for c in plan.changes],
        lambda: apply_xmp_export(project, plan, progress=ProgressLine("writing sidecars", "file")),
        "nothing to write: every sidecar already has its rating.",
        f"wrote {len(plan.changes)} sidecars; backups and manifest in",
    )


def cmd_import_ratings(args) -> int:
    from ..export.stars import describe, import_star_ratings

    if not 0.5 <= args.weight <= 1.0:
        raise UsageError(f"--weight {args.weight:g}: give a trust between 0.5 (none) and 1 (as much as a click).")
    with open_project(args.folder) as project:
        scan_with_progress(project)
        before = project.current_model_key()
        report = import_star_ratings(
            project, args.origin, args.weight, args.per_image, progress=ProgressLine("reading ratings", "file")
        )
        r = report.ratings
        per = ", ".join(f"{'rejected' if s == -1 else f'{s} stars'}: {n}" for s, n in r.per_star().items())
        print(f"{len(r.stars)} images have a star rating ({per or 'none'})")
        if r.ours:
            print(f"{r.ours} ratings were written by this project's own export and were ignored")
        if r.conflicts:
            print(f"{len(r.conflicts)} images appear twice with different stars and were skipped")
        if r.skipped_formats:
            print(f"{r.skipped_formats} HEIF/AVIF images were skipped (no maintained reader of their metadata)")
        print_unreadable(r.unreadable)
        print(
            f"made {report.pairs} star pairs for training (weight {args.weight:g}, "
            f"at most {args.per_image} per image), "
            f"replacing {report.replaced} from the earlier import; {report.held_out} rated images are held out"
        )
        label = "current model" if before else "model"
        print(f"agreement of the {label} with the held-out stars: {describe(report.agreement)}")
        return EXIT_FAILED_FILES if r.unreadable else EXIT_OK


def cmd_stars_agreement(args) -> int:
    from ..export.stars import agreement_history, describe, held_out_stars, star_agreement

    with open_project(args.folder) as project:
        if not held_out_stars(project):
            raise UsageError(
                f"{project.folder}: no held-out star ratings; run `joyq import-ratings {args.folder}` first."
            )
        earlier = agreement_history(project)
        ag = star_agreement(project)
        name = project.active_version or project.current_model_key() or "no model"
        print(f"agreement of {name} with the held-out stars: {describe(ag)}")
        for model, h in earlier.items():
            if model != name and isinstance(h, dict) and h.get("count"):
                print(
                    f"  earlier, {model}: {h['value']:.1%} on {h['count']} pairs "
                    f"(95% interval {h['low']:.1%}..{h['high']:.1%})"
                )
    return EXIT_OK
