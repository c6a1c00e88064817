"""The user's library of tastes: named personal heads (head-only versions) that another
folder can start from. Save, list; "start from" is making one the folder's base model.

A taste is a folder ``tastes_dir() / SLUG`` holding ``head.safetensors`` and ``version.json``
(the version's record plus ``taste_name``, ``saved_from``, ``created``).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from .store import data_dir


def tastes_dir() -> Path:
    """Where the user's named heads live (one head-only version folder each)."""
    return data_dir() / "tastes"


def list_tastes() -> list[dict]:
    """Saved tastes, by name: {"name", "path", "tower", "saved_from", "created"}; unreadable ones skipped."""
    root = tastes_dir()
    out = []
    for d in sorted(root.iterdir()) if root.is_dir() else []:
        try:
            rec = json.loads((d / "version.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(rec, dict) and (d / "head.safetensors").is_file():
            out.append(
                {
                    "name": str(rec.get("taste_name") or d.name),
                    "path": d,
                    "tower": rec.get("tower"),
                    "saved_from": rec.get("saved_from"),
                    "created": rec.get("created"),
                }
            )
    return out


def save_taste(version: Path, name: str, source: str = "") -> Path:
    """Copy a head-only version folder into the library as ``name`` (replacing a taste of
    that name); written to a temporary folder and renamed, never half a taste."""
    import re
    import shutil

    name = " ".join(name.split())
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.")[:80]
    if not slug:
        raise ValueError(f"{name!r} cannot name a taste; use letters or digits.")
    if not (version / "head.safetensors").is_file():
        raise ValueError(
            f"{version}: only a head-only version (quick training or the live model) can be saved as a "
            "taste; a full finetune carries its own tower."
        )
    record = json.loads((version / "version.json").read_text(encoding="utf-8"))
    record.update(taste_name=name, saved_from=source, version=version.name, created=time.time())
    root = tastes_dir()
    root.mkdir(parents=True, exist_ok=True)
    final, tmp = root / slug, root / f".{slug}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    shutil.copy2(version / "head.safetensors", tmp / "head.safetensors")
    (tmp / "version.json").write_text(json.dumps(record, indent=2), encoding="utf-8")
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    return final
