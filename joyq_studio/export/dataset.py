"""Dataset JSON, the JoyQuality training format: ``{"train": [[a, b, label], ...], "test": [...]}``.

Labels 1 = first won, -1 = second won, 0 = tie. Import adds a file's pairs to a project;
export writes the project's comparisons.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ExportError
from ..fsio import atomic_write, clip, describe_error, shorten
from ..prelabel.cache import parse_source
from ..prelabel.labels import llm_labels_included
from ..store import Project

# -- JoyQuality dataset JSON ---------------------------------------------------------------
SPLITS = ("train", "test")
_LABEL_TO_OUTCOME = {1: 1.0, -1: 0.0, 0: 0.5}


@dataclass
class ImportReport:
    path: Path
    pairs: int = 0  # entries in the file
    added: Counter = field(default_factory=Counter)  # per split
    already_present: int = 0
    ties: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # ("train[3]", reason)

    @property
    def total_added(self) -> int:
        return sum(self.added.values())


def pair_key(a: str, b: str, outcome: float, split: str) -> tuple:
    """Order-free identity of a judgement: (winner, loser) or the sorted tie."""
    if outcome == 0.5:
        return (split, "tie", *sorted((a, b)))
    return (split, "win", a, b) if outcome == 1.0 else (split, "win", b, a)


def _read_dataset(path: Path) -> dict:
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ExportError(f"{path}: cannot be read ({describe_error(e)}).") from None
    try:
        obj = json.loads(data.decode("utf-8-sig"))
    except UnicodeDecodeError:
        raise ExportError(f"{path}: is not UTF-8 text, so it is not a JoyQuality dataset JSON file.") from None
    except json.JSONDecodeError as e:
        raise ExportError(f"{path}: is not valid JSON ({e.msg} at line {e.lineno}, column {e.colno}).") from None
    except RecursionError:
        raise ExportError(f"{path}: is nested too deeply to be a JoyQuality dataset JSON file.") from None
    if not isinstance(obj, dict):
        raise ExportError(
            f"{path}: must hold a JSON object with 'train' and/or 'test' lists of "
            f"[path, path, label], not a JSON {type(obj).__name__}."
        )
    extra = [k for k in obj if k not in SPLITS]
    if extra:
        raise ExportError(
            f"{path}: has the key {shorten(extra[0])}; a JoyQuality dataset holds only 'train' and 'test' lists."
        )
    for split in SPLITS:
        if split in obj and not isinstance(obj[split], list):
            raise ExportError(f"{path}: '{split}' must be a list of [path, path, label].")
    return obj


def _resolve_in_folder(project: Project, base: Path, text: str) -> str | None:
    """The folder-relative path of ``text`` (relative to ``base`` unless absolute), or None if outside."""
    p = Path(text).expanduser()
    if not p.is_absolute():
        p = base / p
    for candidate in (Path(os.path.abspath(p)), p.resolve()):
        try:
            return candidate.relative_to(project.folder).as_posix()
        except ValueError:
            continue
    return None


def import_pairs(project: Project, json_path: str | os.PathLike) -> ImportReport:
    """Add the pairs of a JoyQuality dataset JSON file as comparisons (kind 'import').

    Paths are relative to the JSON file unless absolute and must be scanned images inside the
    folder; others are skipped and reported. A pair already in the project (same winner and
    loser, or tie, in the same split) is not added twice. The file is checked completely
    before anything is added; all pairs are added in one transaction.
    """
    path = Path(json_path)
    obj = _read_dataset(path)
    base = Path(os.path.abspath(path)).parent
    report = ImportReport(path)
    rows: list[tuple[str, str, float, str]] = []
    for split in SPLITS:
        for i, entry in enumerate(obj.get(split, [])):
            where = f"{split}[{i}]"
            if not (
                isinstance(entry, list) and len(entry) == 3 and isinstance(entry[0], str) and isinstance(entry[1], str)
            ):
                raise ExportError(f"{path}: {where} is {shorten(entry, 60, as_json=True)}, not [path, path, label].")
            label = entry[2]
            if isinstance(label, bool) or not isinstance(label, (int, float)) or label not in _LABEL_TO_OUTCOME:
                raise ExportError(
                    f"{path}: {where} has the label {shorten(label, as_json=True)}; "
                    "labels must be 1 (first won), "
                    "-1 (second won) or 0 (tie)."
                )
            report.pairs += 1
            hashes = []
            for p in entry[:2]:
                rel = _resolve_in_folder(project, base, p)
                if rel is None:
                    report.skipped.append((where, f"{clip(p)} is outside the folder {project.folder}"))
                    break
                digest = project.hash_of(rel)
                if digest is None:
                    report.skipped.append((where, f"{clip(p)} is not a scanned image of the folder"))
                    break
                hashes.append(digest)
            else:
                if hashes[0] == hashes[1]:
                    report.skipped.append((where, f"{clip(entry[0])} and {clip(entry[1])} are the same image"))
                    continue
                rows.append((hashes[0], hashes[1], _LABEL_TO_OUTCOME[int(label)], split))
    if report.pairs and not rows:
        raise ExportError(
            f"{path}: none of its {report.pairs} pairs could be matched to images of "
            f"{project.folder} (first problem: {report.skipped[0][0]}: {report.skipped[0][1]})."
        )
    present = Counter(pair_key(a, b, o, s) for _, a, b, o, s, _ in project.comparisons())
    new = []
    for a, b, o, s in rows:
        key = pair_key(a, b, o, s)
        if present[key] > 0:
            present[key] -= 1
            report.already_present += 1
            continue
        new.append((a, b, o, s, "import"))
        report.added[s] += 1
        report.ties += o == 0.5
    if new:
        project.add_comparisons(new)
    return report


@dataclass
class ExportPairsReport:
    path: Path
    written: Counter = field(default_factory=Counter)  # per split
    ties_omitted: int = 0
    missing: int = 0  # comparisons whose image is no longer in the folder
    llm_omitted: int = 0  # LLM labels left out (see ``llm``)


LLM_CHOICES = ("training", "include", "exclude", "only")


def export_pairs(
    project: Project, out: str | os.PathLike, ties: bool = False, llm: str = "training"
) -> ExportPairsReport:
    """Write the project's comparisons as a JoyQuality dataset JSON (atomically).

    Each win is ``[winner, loser, 1]``; a tie is ``[a, b, 0]`` with ``ties``, else omitted.
    LLM labels (``llm``): "training" = only while training includes them, "include",
    "exclude", or "only" them; the format has hard labels, so their trust is not written.
    Splits other than 'test' go to 'train'. Paths are relative to the JSON file when it is
    inside the folder, absolute otherwise.
    """
    out = Path(out)
    report = ExportPairsReport(out)
    paths = dict(project.image_paths(include_errors=True))
    out_dir = Path(os.path.abspath(out)).parent
    inside = out_dir == project.folder or project.folder in out_dir.parents

    def name(digest: str) -> str:
        p = project.folder / paths[digest]
        return Path(os.path.relpath(p, out_dir)).as_posix() if inside else str(p)

    if llm not in LLM_CHOICES:
        raise ExportError(f"LLM labels must be one of {', '.join(LLM_CHOICES)}, not {llm!r}.")
    if llm == "training":
        llm = "include" if llm_labels_included(project) else "exclude"
    data: dict[str, list] = {"train": [], "test": []}
    for r in project.comparison_records():
        a, b, outcome, split = r.a, r.b, r.outcome, r.split
        from_llm = parse_source(r.source) is not None
        if (llm == "exclude" and from_llm) or (llm == "only" and not from_llm):
            report.llm_omitted += from_llm
            continue
        if a not in paths or b not in paths:
            report.missing += 1
            continue
        key = "test" if split == "test" else "train"
        if outcome == 0.5:
            if not ties:
                report.ties_omitted += 1
                continue
            data[key].append([name(a), name(b), 0])
        elif outcome == 1.0:
            data[key].append([name(a), name(b), 1])
        else:
            data[key].append([name(b), name(a), 1])
        report.written[key] += 1
    try:
        atomic_write(out, (json.dumps(data, indent=1, ensure_ascii=False) + "\n").encode("utf-8"))
    except OSError as e:
        raise ExportError(f"{out}: could not write the dataset ({describe_error(e)}); nothing was written.") from None
    return report
