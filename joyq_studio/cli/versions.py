"""`joyq versions`: a project's model versions. Reads the project only (no model, no torch)."""

from __future__ import annotations

import math

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
