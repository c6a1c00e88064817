"""`joyq versions`: a project's model versions. Reads the project only (no model, no torch)."""

from __future__ import annotations

from ..compare.stats import describe, stored_agreement
from ..console import EXIT_OK
from ..settings import DEFAULT_MODEL
from .common import open_project


def cmd_versions(args) -> int:
    with open_project(args.folder) as project:
        versions = project.versions()
        active = project.active_version
        if not versions:
            print("no trained versions yet; the model in use is", project.active_model_spec(DEFAULT_MODEL))
            return EXIT_OK
        print(
            "held-out agreement (ties left out, a level score counts half) with its count and 95% interval; "
            "change = paired test of after vs before"
        )
        print(
            f"{'':2}{'version':<26}{'mode':<10}{'train':>6}{'test':>6}  {'acc before':<22}{'acc after':<22}"
            f"{'change':<21}path"
        )
        for v in versions:
            mb, ma = v.get("metrics_before", {}), v.get("metrics_after", {})
            mark = "* " if v["id"] == active else "  "
            change = v.get("change")
            verdict = change.get("verdict", "n/a") if isinstance(change, dict) else "n/a"
            print(
                f"{mark}{v['id']:<26}{v.get('mode', '?'):<10}{v['counts']['train']:>6}{v['counts']['test']:>6}  "
                f"{accuracy_of(mb):<22}{accuracy_of(ma):<22}{verdict:<21}{v['path']}"
            )
        if active is None:
            print(f"(* none: the base model {DEFAULT_MODEL} is in use)")
    return EXIT_OK


def accuracy_of(m: dict) -> str:
    """``62.5% of 40 (47-76%)``: the stored held-out agreement (``compare.stats.stored_agreement``,
    which also reads records written before its key existed)."""
    return describe(stored_agreement(m))
