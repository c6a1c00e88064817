"""One agreement: the same held-out pairs through every place that shows or stores one give
the same number, count and interval (metrics.agreement: ties left out, a level score counts
half, Wilson 95%)."""

from __future__ import annotations

import numpy as np

from joyq_studio.bench.click import synthetic_project
from joyq_studio.cli.versions import accuracy_of
from joyq_studio.compare import CompareSession
from joyq_studio.compare.stats import describe, stored_agreement
from joyq_studio.metrics import AGREEMENT_KEY, agreement, held_out_summary
from joyq_studio.prelabel.agreement import UserPair, summarize
from joyq_studio.prelabel.cache import CachedAnswer


def _pairs(n_images=50, n_pairs=60, seed=3):
    rng = np.random.default_rng(seed)
    scores = rng.normal(size=n_images).round(1)  # rounded: some pairs score level
    a = rng.integers(0, n_images, n_pairs)
    b = (a + 1 + rng.integers(0, n_images - 1, n_pairs)) % n_images
    y = rng.choice([1.0, 0.0, 0.5], size=n_pairs, p=[0.45, 0.45, 0.1])
    return scores, a, b, y


def test_the_same_heldout_pairs_give_the_same_agreement_everywhere(tmp_path):
    scores, a, b, y = _pairs()
    d = scores[a] - scores[b]
    ref = agreement(d, y)
    assert ref.ties > 0 and np.any(d[y != 0.5] == 0)  # the test covers ties and level scores

    # the compare session (the model in use on the stored held-out pairs)
    project = synthetic_project(tmp_path / "p", len(scores))
    hashes = [h for h, _ in project.image_paths()]
    project.add_comparisons((hashes[i], hashes[j], o, "test", "heldout") for i, j, o in zip(a, b, y, strict=True))
    cs = CompareSession(project, scores=dict(zip(hashes, scores.tolist(), strict=True)))
    assert cs.source_name == "openskill"
    assert cs.stats().heldout_base == ref
    cs.close()

    # training's evaluation and the version record (what `joyq train`, `joyq eval`, the train
    # view's before/after and the versions table read)
    from joyq_studio.training.evaluation import EvalSet, metrics_from_scores

    m = metrics_from_scores(scores, EvalSet(a, b, y, np.arange(len(scores))), {})
    assert m[AGREEMENT_KEY] == ref.value == m["accuracy"]
    summary = held_out_summary(m["_pair_p"], y)
    record = {AGREEMENT_KEY: m[AGREEMENT_KEY], **summary}
    got = stored_agreement(record)
    assert (got.value, got.count, got.low, got.high) == (ref.value, ref.count, ref.low, ref.high)
    # a record written before the key existed: the same figure under "accuracy"
    old = {"accuracy": m["accuracy"], "n_decisive": summary["n_decisive"], **summary}
    got = stored_agreement(old)
    assert (got.value, got.count, got.low, got.high) == (ref.value, ref.count, ref.low, ref.high)
    assert accuracy_of(record) == accuracy_of(old) == describe(ref)

    # pre-label agreement: an LLM that answers as these scores do (both orders)
    pairs = [UserPair(hashes[i], hashes[j], o, "test") for i, j, o in zip(a, b, y, strict=True) if o != 0.5]
    answers = {}
    for p in pairs:
        sa, sb = scores[hashes.index(p.a)], scores[hashes.index(p.b)]
        better_ab = "A" if sa > sb else "B" if sa < sb else "tie"
        better_ba = {"A": "B", "B": "A", "tie": "tie"}[better_ab]
        for first, second, better in ((p.a, p.b, better_ab), (p.b, p.a, better_ba)):
            answers[(first, second)] = CachedAnswer(first, second, "ok", better, None, None, None, 0.0)
    rep = summarize("m", "h", pairs, answers)
    decisive_llm = d[(y != 0.5) & (d != 0)], y[(y != 0.5) & (d != 0)]
    assert rep.figure == agreement(*decisive_llm)  # the LLM's ties are its tie rate, not votes
    assert rep.ties == int(np.sum((y != 0.5) & (d == 0)))
