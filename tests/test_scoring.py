"""scoring.py: batched embedding in input order, per-file errors, resumable and cancellable
project scoring, head-only rescoring from cached embeddings, a read-only image folder."""

from __future__ import annotations

import os
import shutil
import stat

import numpy as np
import pytest
import torch

from joyq_studio import scoring
from joyq_studio.model import model_id, tiny_model
from joyq_studio.scoring import embed_paths, score_project
from joyq_studio.store import Project


@pytest.fixture(scope="module")
def tiny():
    return tiny_model()


@pytest.fixture
def images(demo_folder, tmp_path):
    """12 demo images copied into a private folder (the tests move and delete files)."""
    folder = tmp_path / "imgs"
    folder.mkdir()
    for src in sorted(demo_folder.glob("scene000[0-2]_*"))[:12]:
        shutil.copy(src, folder / src.name)
    assert len(list(folder.iterdir())) == 12
    return folder


def count_decodes(monkeypatch) -> list[str]:
    calls: list[str] = []
    real = scoring.load_uint8
    monkeypatch.setattr(scoring, "load_uint8", lambda path, size: calls.append(path) or real(path, size))
    return calls


def test_embed_paths_order_errors_and_progress(images, tiny, tmp_path):
    paths = sorted(str(p) for p in images.iterdir())[:5]
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8 not really")
    mixed = paths[:2] + [str(bad)] + paths[2:]
    seen = []
    batches = list(embed_paths(tiny, mixed, batch_size=4, workers=0, progress=lambda d, t, r: seen.append((d, t))))
    assert [b.start for b in batches] == [0, 4] and seen == [(4, 6), (6, 6)]
    scores = np.concatenate([b.scores for b in batches])
    emb = np.concatenate([b.embeddings for b in batches])
    errors = [e for b in batches for e in b.errors]
    assert errors[2] is not None and str(bad) in errors[2]
    assert [e is None for e in errors] == [True, True, False, True, True, True]
    assert np.isnan(scores[2]) and not emb[2].any() and emb.shape == (6, tiny.embed_dim)

    alone = np.concatenate([b.scores for b in embed_paths(tiny, paths, batch_size=2, workers=0)])
    np.testing.assert_allclose(np.delete(scores, 2), alone, atol=1e-5, rtol=0)
    assert len(set(np.round(alone, 5))) == 5
    assert list(embed_paths(tiny, [], workers=0)) == []


def test_score_project_scores_everything_once(images, tiny):
    with Project(images) as p:
        p.scan()
        summary = score_project(p, tiny, batch_size=5, workers=0)
        assert (summary.scored, summary.already_done, summary.failed, summary.cancelled) == (12, 0, [], False)
        key = model_id(tiny).key
        saved = p.scores(key)
        assert len(saved) == 12
        ordered = [str(images.resolve() / rel) for _, rel in p.image_paths()]
        direct = np.concatenate([b.scores for b in embed_paths(tiny, ordered, workers=0)])
        np.testing.assert_allclose([saved[h] for h, _ in p.image_paths()], direct, atol=1e-5, rtol=0)
        assert len(p.embedded_hashes(model_id(tiny).tower)) == 12

        again = score_project(p, tiny, workers=0)
        assert (again.scored, again.already_done) == (0, 12)


def test_cancel_after_first_batch_keeps_it_and_rerun_finishes(images, tiny, monkeypatch):
    decodes = count_decodes(monkeypatch)
    with Project(images) as p:
        p.scan()
        stop = []
        summary = score_project(
            p,
            tiny,
            batch_size=4,
            workers=0,
            progress=lambda done, total, rate: stop.append(done),
            cancel=lambda: bool(stop),
        )
        assert summary.cancelled and summary.scored == 4 and stop == [4]
        key = model_id(tiny).key
        first = p.scores(key)
        assert len(first) == 4
        saved_paths = {str(p.path_of(h)) for h in first}
        decodes.clear()

        rest = score_project(p, tiny, batch_size=4, workers=0)
        assert (rest.scored, rest.already_done, rest.cancelled) == (8, 4, False)
        assert len(decodes) == 8 and not saved_paths & set(decodes)  # nothing committed is redone
        final = p.scores(key)
        assert len(final) == 12 and all(final[h] == s for h, s in first.items())


def test_interrupt_mid_run_keeps_committed_batches(images, tiny):
    def interrupt(done, total, rate):
        if done >= 8:
            raise KeyboardInterrupt

    with Project(images) as p:
        p.scan()
        with pytest.raises(KeyboardInterrupt):
            score_project(p, tiny, batch_size=4, workers=0, progress=interrupt)
        assert len(p.scores(model_id(tiny).key)) == 8
        assert not p.db.in_transaction
        assert score_project(p, tiny, batch_size=4, workers=0).scored == 4


def test_file_deleted_between_scan_and_scoring_is_reported(images, tiny, tmp_path):
    with Project(images) as p:
        p.scan()
        victim = sorted(images.iterdir())[3]
        shutil.copy2(victim, tmp_path / "backup")
        victim.unlink()
        summary = score_project(p, tiny, batch_size=5, workers=0)
        assert summary.scored == 11
        assert len(summary.failed) == 1
        path, reason = summary.failed[0]
        assert path == str(images.resolve() / victim.name)
        assert victim.name in reason and "no longer exists" in reason

        # It comes back unchanged (same size and mtime, so a rescan does not rehash it):
        # a vanished file was not marked unreadable for good, so it is scored now.
        shutil.copy2(tmp_path / "backup", victim)
        assert p.scan().changed == 0
        again = score_project(p, tiny, workers=0)
        assert (again.scored, again.already_done, again.failed) == (1, 11, [])


def test_new_head_rescores_from_cached_embeddings(images, tiny, monkeypatch):
    with Project(images) as p:
        p.scan()
        score_project(p, tiny, workers=0)
        retrained = tiny_model()
        with torch.no_grad():
            retrained.head.weight.mul_(-3.0)
            retrained.head.bias.add_(0.5)
        mid_old, mid_new = model_id(tiny), model_id(retrained)
        assert mid_new.tower == mid_old.tower and mid_new.key != mid_old.key
        decodes = count_decodes(monkeypatch)
        summary = score_project(p, retrained, workers=0)
        assert decodes == [] and summary.scored == 12
        old, new = p.scores(mid_old.key), p.scores(mid_new.key)
        b = float(tiny.head.bias.detach())
        for h in old:  # new = -3 (old - b) + b + 0.5, up to float16 embedding storage
            assert new[h] == pytest.approx(-3.0 * (old[h] - b) + b + 0.5, abs=2e-3)


def _snapshot(folder):
    st = os.stat(folder)
    out = {str(folder): (st.st_mode, st.st_mtime_ns)}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = os.path.join(root, name)
            st = os.lstat(path)
            out[path] = (st.st_mode, st.st_size, st.st_mtime_ns)
    return out


def test_image_folder_is_never_written(images, tiny):
    # Read-only for the app; (for root, who may write anyway, the snapshot below still checks).
    paths = [images, *images.iterdir()]
    for path in paths:
        os.chmod(path, os.stat(path).st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    try:
        before = _snapshot(images)
        with Project(images) as p:
            p.scan()
            summary = score_project(p, tiny, workers=0)
            assert summary.scored == 12 and not summary.failed
            assert not str(p.db_path).startswith(str(images.resolve()))
        assert _snapshot(images) == before
    finally:
        for path in paths:
            os.chmod(path, os.stat(path).st_mode | stat.S_IWUSR)
