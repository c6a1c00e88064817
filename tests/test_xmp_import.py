"""`joyq import-ratings` / `joyq stars-agreement`: existing star ratings in as comparisons,
and the ranking's agreement with the held-out stars."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from joyq_studio import xmp
from joyq_studio.cli.main import main
from joyq_studio.export.stars import (
    STARS_KIND,
    held_out,
    import_star_ratings,
    read_star_ratings,
    star_pairs,
)
from joyq_studio.export.xmp import apply_xmp_export, plan_xmp_export
from joyq_studio.ranking import Calibration
from joyq_studio.store import Project

N = 60


def stars_of(i: int) -> int:
    return [-1, 1, 2, 3, 4, 5][i % 6]


@pytest.fixture
def folder(tmp_path) -> Path:
    """N images; image i has stars_of(i) in a sidecar (alternating namings), scored by its stars."""
    f = tmp_path / "rated"
    f.mkdir()
    rng = np.random.default_rng(0)
    for i in range(N):
        img = f / f"img{i:02d}.jpg"
        Image.fromarray(rng.integers(0, 256, (10, 10, 3), dtype=np.uint8)).save(img)
        side = img.with_name(img.name + ".xmp") if i % 2 else img.with_suffix(".xmp")
        side.write_bytes(xmp.set_rating(None, stars_of(i)))
    return f


def scored(folder: Path) -> Project:
    p = Project(folder)
    p.scan()
    p.save_scores("m", [(p.hash_of(f"img{i:02d}.jpg"), float(stars_of(i)) + 0.01 * i) for i in range(N)])
    p.set_current_model_key("m")
    return p


def test_reads_both_namings_embedded_and_exif(folder):
    rng = np.random.default_rng(1)
    im = Image.fromarray(rng.integers(0, 256, (10, 10, 3), dtype=np.uint8))
    im.save(folder / "emb.jpg", xmp=xmp.set_rating(None, 4))
    exif = Image.Exif()
    exif[0x4746] = 2
    im.rotate(90).save(folder / "exif.jpg", exif=exif)
    im.rotate(180).save(folder / "none.jpg")
    (folder / "bad.jpg").write_bytes((folder / "none.jpg").read_bytes()[:-1] + b"\x01")
    (folder / "bad.jpg.xmp").write_bytes(b"<x:xmpmeta>oops")
    with Project(folder) as p:
        p.scan()
        r = read_star_ratings(p, "both")
        got = {p.path_of(h).name: s for h, s in r.stars.items()}
        assert got["emb.jpg"] == (4, "embedded") and got["exif.jpg"] == (2, "exif")
        assert "none.jpg" not in got and len(got) == N + 2
        assert got["img00.jpg"] == (-1, "sidecar") and got["img01.jpg"] == (1, "sidecar")
        assert [w for w, _ in r.unreadable] == ["bad.jpg"] and "well-formed" in r.unreadable[0][1]
        assert r.per_star()[-1] == N // 6
        only_xmp = read_star_ratings(p, "xmp")
        assert len(only_xmp.stars) == N
        only_emb = read_star_ratings(p, "embedded")
        assert {p.path_of(h).name for h in only_emb.stars} == {"emb.jpg", "exif.jpg"}


def test_star_pairs_are_bounded_across_levels_and_oriented():
    levels = {f"h{i}": stars_of(i) for i in range(300)}
    pairs = star_pairs(levels, per_image=5)
    count = Counter(h for a, b, _ in pairs for h in (a, b))
    assert max(count.values()) <= 5 and len(pairs) > 300 * 5 / 2 * 0.8
    assert all(levels[a] != levels[b] for a, b, _ in pairs)
    assert all(y == (1.0 if levels[a] > levels[b] else 0.0) for a, b, y in pairs)
    assert len({frozenset((a, b)) for a, b, _ in pairs}) == len(pairs)


def test_import_makes_train_pairs_holds_out_and_replaces_on_reimport(folder):
    with scored(folder) as p:
        p.add_comparison(p.hash_of("img00.jpg"), p.hash_of("img01.jpg"), 0.0, "test")  # a user's held-out click
        rep = import_star_ratings(p, weight=0.8, per_image=6)
        recs = [c for c in p.comparison_records() if c.kind == STARS_KIND]
        assert rep.pairs == len(recs) > 0 and rep.replaced == 0
        assert all(c.split == "train" and c.source == "stars" and c.weight == 0.8 for c in recs)
        heldout = {h for h in rep.ratings.stars if held_out(h)}
        assert rep.held_out == len(heldout) > 0
        assert not heldout & {h for c in recs for h in (c.a, c.b)}  # the free test set stays out of training
        assert max(Counter(h for c in recs for h in (c.a, c.b)).values()) <= 6
        # the model scores by stars, so it agrees with every held-out pair
        assert rep.agreement is not None and rep.agreement.value == 1.0 and rep.agreement.count > 0
        assert rep.agreement.low < 1.0
        # the user changes a rating: re-import replaces the star pairs, never duplicates them
        (folder / "img01.jpg.xmp").write_bytes(xmp.set_rating((folder / "img01.jpg.xmp").read_bytes(), 5))
        rep2 = import_star_ratings(p, weight=0.8, per_image=6)
        recs2 = [c for c in p.comparison_records() if c.kind == STARS_KIND]
        assert rep2.replaced == len(recs) and len(recs2) == rep2.pairs
        assert len(p.comparison_records(split="test")) == 1  # the user's own labels untouched


def test_ratings_this_project_wrote_are_ignored(folder):
    for side in folder.glob("*.xmp"):
        side.unlink()
    with scored(folder) as p:
        cal = Calibration(method="a", k=5, score_min=-1.0, score_max=6.0, labels=[])
        apply_xmp_export(p, plan_xmp_export(p, cal, "darktable"))  # no keyword: known by the journal
        r = read_star_ratings(p)
        assert r.ours == N and not r.stars
        # a sidecar the user re-rated after our export is theirs again
        side = folder / "img03.jpg.xmp"
        side.write_bytes(xmp.set_rating(side.read_bytes(), 1))
        r = read_star_ratings(p)
        assert r.ours == N - 1 and [s for s, _ in r.stars.values()] == [1]
        # our keyword marks our ratings even without the journal (e.g. exported on another machine)
        Image.new("RGB", (7, 7), "green").save(folder / "new.jpg")
        (folder / "new.jpg.xmp").write_bytes(xmp.set_rating(None, 2, keyword="joyq|quality|1"))
        p.scan()
        r = read_star_ratings(p)
        assert p.hash_of("new.jpg") not in r.stars and r.ours == N


def test_cli_import_ratings_and_stars_agreement(folder, capsys):
    scored(folder).close()
    assert main(["import-ratings", str(folder), "--weight", "0.7"]) == 0
    out = capsys.readouterr().out
    assert f"{N} images have a star rating (rejected: 10, 1 stars: 10" in out
    assert "star pairs for training (weight 0.7" in out
    assert "agreement of the current model with the held-out stars: 100.0% on" in out
    assert main(["stars-agreement", str(folder)]) == 0
    assert "agreement of m with the held-out stars: 100.0% on" in capsys.readouterr().out
    assert main(["import-ratings", str(folder), "--weight", "2"]) == 2
