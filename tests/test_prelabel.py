"""prelabel: LLM pre-labelling against a local fake OpenAI-compatible server (127.0.0.1).

The fake (tests/fake_llm_server.py) answers from a planted rule (the brighter image is
better) with a planted error rate and position bias, plus malformed replies, 429, 500 and
slow replies at set rates. Checked: strict parsing, the agreement interval contains the
planted rate, retries recover, the cap stops spending, a cancelled or killed run resumes
without paying twice, the key never reaches the database, outputs or messages.
"""

from __future__ import annotations

import argparse
import base64
import io
import logging
import os
import random
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from joyq_studio import prelabel as pl
from joyq_studio.pairing.fixedk import fixed_k_pairs
from joyq_studio.prelabel import cache
from joyq_studio.prelabel.agreement import wilson_interval
from joyq_studio.prelabel.client import MISSING_OPENAI, encode_image
from joyq_studio.store import Project

sys.path.insert(0, str(Path(__file__).parent))
from fake_llm_server import MALFORMED, FakeLLM

pytest.importorskip("openai")

MODEL = "fake-vision"
SECRET = "sk-test-" + "S3CRET" * 4


# -- fixtures ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """48 small images whose brightness (the planted quality) differs by >= 4 levels."""
    folder = tmp_path_factory.mktemp("prelabel-images")
    rng = np.random.default_rng(0)
    levels = {}
    for i in range(48):
        v = 30 + 4 * i
        arr = np.clip(v + rng.integers(-2, 3, (24, 32, 3)), 0, 255).astype(np.uint8)
        name = f"im{i:02d}.png"
        Image.fromarray(arr).save(folder / name)
        levels[name] = v
    return folder, levels


def labelled_project(images, n_pairs: int, held_out: int = 0, seed: int = 1, embeddings: bool = False) -> Project:
    """A project whose user labelled ``n_pairs`` random pairs by the planted rule."""
    folder, levels = images
    project = Project(folder)
    project.scan()
    hashes = dict(project.file_hashes())
    names = sorted(hashes)
    rng = random.Random(seed)
    seen: set[frozenset] = set()
    rows = []
    while len(rows) < n_pairs:
        a, b = rng.sample(names, 2)
        if frozenset((a, b)) in seen:
            continue
        seen.add(frozenset((a, b)))
        rows.append(
            (
                hashes[a],
                hashes[b],
                1.0 if levels[a] > levels[b] else 0.0,
                "test" if len(rows) < held_out else "train",
                "click",
            )
        )
    project.add_comparisons(rows)
    if embeddings:
        project.save_results(
            "tower", "m", [(hashes[n], np.array([levels[n], 40.0, rng.random()], np.float32), 0.0) for n in names]
        )
    return project


@pytest.fixture
def fakes():
    started: list[FakeLLM] = []

    def make(**kwargs) -> tuple[FakeLLM, str]:
        fake = FakeLLM(model=MODEL, **kwargs)
        started.append(fake)
        return fake, fake.start()

    yield make
    for fake in started:
        fake.stop()


def client_for(url: str, **kwargs) -> pl.LLMClient:
    settings: dict = {"timeout": 5.0, "backoff": 0.01, "max_backoff": 0.05, "concurrency": 4}
    settings.update(kwargs)
    return pl.LLMClient(pl.EndpointConfig(url, MODEL, **settings))


def one_sentence(msg: str) -> bool:
    return "\n" not in msg and msg.endswith(".")


# -- pure parts -------------------------------------------------------------------------------
def test_parse_answer_is_strict():
    assert pl.parse_answer('{"better": "A", "reason": "Sharper."}') == pl.prompt.Answer("A", "Sharper.")
    assert pl.parse_answer('```json\n{"reason": "Equal.", "better": "TIE"}\n```').better == "tie"
    assert pl.parse_answer(' {"better": "b", "reason": " Less noise. "} ') == pl.prompt.Answer("B", "Less noise.")
    for bad in MALFORMED + [
        None,
        '{"better": "A", "reason": ""}',
        '{"better": 1, "reason": "x"}',
        "Sure! " + '{"better": "A", "reason": "x"}',
        '{"better": "A", "reason": "' + "x" * 401 + '"}',
    ]:
        with pytest.raises(pl.MalformedAnswer) as info:
            pl.parse_answer(bad)
        assert one_sentence(str(info.value))


def test_prompt_is_versioned_by_its_hash(tmp_path):
    p = pl.default_prompt()
    assert len(p.hash) == 12 and p.hash == pl.prompt.prompt_hash(pl.DEFAULT_PROMPT)
    assert "ignore what the images show" in p.text.lower() and "technical and aesthetic" in p.text
    f = tmp_path / "prompt.txt"
    f.write_bytes(("\r\n" + pl.DEFAULT_PROMPT.replace("\n", "\r\n") + "\r\n\r\n").encode())
    assert pl.load_prompt(f).hash == p.hash  # re-saved with CRLF: same version
    f.write_text(pl.DEFAULT_PROMPT + "Prefer film grain.\n", encoding="utf-8")
    assert pl.load_prompt(f).hash != p.hash
    f.write_text("  \n", encoding="utf-8")
    with pytest.raises(pl.prompt.JoyqError, match="empty") as info:
        pl.load_prompt(f)
    assert one_sentence(str(info.value))
    assert pl.source_name("llava:13b", p.hash) == f"llm:llava:13b:{p.hash}"
    assert pl.parse_source(f"llm:llava:13b:{p.hash}") == ("llava:13b", p.hash)
    assert pl.parse_source(None) is None


def test_wilson_interval():
    lo, hi = wilson_interval(8, 10)
    assert lo == pytest.approx(0.4902, abs=1e-4) and hi == pytest.approx(0.9433, abs=1e-4)
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == pytest.approx(1.0)
    assert all(np.isnan(wilson_interval(0, 0)))
    # coverage of the planted rate over many simulated samples is close to 95%
    rng = np.random.default_rng(0)
    k = rng.binomial(60, 0.8, size=4000)
    cover = np.mean([lo <= 0.8 <= hi for lo, hi in (wilson_interval(int(x), 60) for x in k)])
    assert 0.93 <= cover <= 0.97


def test_verdict_and_soft_target():
    c = pl.combine
    assert c("A", "B") == pl.labels.Verdict(1.0, False)  # a chosen in both orders
    assert c("B", "A") == pl.labels.Verdict(0.0, False)
    assert c("A", "A") == pl.labels.Verdict(0.5, True)  # always the first shown: position bias
    assert c("B", "B") == pl.labels.Verdict(0.5, True)
    assert c("tie", "tie").outcome == 0.5 and c("A", "tie").outcome == 1.0 and c("tie", "A").outcome == 0.0
    st = pl.soft_target
    assert st(1.0, 1.0) == 1.0 and st(0.0, 1.0) == 0.0 and st(0.5, 1.0) == 0.5  # a user's click
    assert st(1.0, 0.8) == pytest.approx(0.8) and st(0.0, 0.8) == pytest.approx(0.2)
    assert st(0.5, 0.8) == 0.5 and st(1.0, 0.3) == 0.5 and st(1.0, 7) == 1.0  # clipped to [1/2, 1]


def test_fixed_k_pairs_balance_near_and_random():
    rng = np.random.default_rng(0)
    m = 40
    hashes = [f"h{i:02d}" for i in range(m)]
    emb = rng.standard_normal((m, 16)).astype(np.float32)
    avoid = {frozenset(("h00", "h01"))}
    pairs = fixed_k_pairs(hashes, 60, emb, avoid=avoid, seed=3)
    assert len(pairs) == 60 and avoid == {frozenset(("h00", "h01"))}
    keys = [frozenset((a, b)) for a, b, _ in pairs]
    assert len(set(keys)) == 60 and frozenset(("h00", "h01")) not in keys
    counts = np.bincount([hashes.index(h) for a, b, _ in pairs for h in (a, b)], minlength=m)
    assert set(counts) == {3}  # fixed k = 2 N / M
    kinds = [k for *_, k in pairs]
    assert kinds.count("near") == 30 and kinds.count("random") == 30
    unit = emb - emb.mean(0)
    unit /= np.linalg.norm(unit, axis=1, keepdims=True)
    sim = {
        k: np.mean([unit[hashes.index(a)] @ unit[hashes.index(b)] for a, b, kk in pairs if kk == k])
        for k in ("near", "random")
    }
    assert sim["near"] > sim["random"] + 0.2
    assert {k for *_, k in fixed_k_pairs(hashes, 10, None)} == {"random"}
    # a tiny set runs out of pairs and stops by itself
    assert len(fixed_k_pairs(hashes[:4], 100)) == 6


def test_encode_image_downscales_through_the_decoder(tmp_path):
    big = tmp_path / "big.png"
    Image.new("RGBA", (2000, 1000), (200, 10, 10, 0)).save(big)  # transparent: composited on grey
    img = Image.open(io.BytesIO(base64.b64decode(encode_image(big, 768).split(",", 1)[1])))
    assert img.format == "JPEG" and img.size == (768, 384)
    assert abs(np.asarray(img).mean() - 128) < 3
    small = tmp_path / "small.png"
    Image.new("RGB", (40, 30), (1, 2, 3)).save(small)
    url = encode_image(small, 768)
    assert url.startswith("data:image/jpeg;base64,")
    assert Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).size == (40, 30)  # never enlarged


def test_missing_openai_is_one_sentence(monkeypatch):
    monkeypatch.setitem(sys.modules, "openai", None)
    with pytest.raises(pl.LLMError) as info:
        pl.LLMClient(pl.EndpointConfig("http://127.0.0.1:9/v1", MODEL))
    assert str(info.value) == MISSING_OPENAI and one_sentence(MISSING_OPENAI)


def test_bad_settings_are_one_sentence_and_never_echo_a_pasted_key():
    with pytest.raises(pl.LLMError) as info:
        pl.EndpointConfig("http://127.0.0.1:9/v1", MODEL, key_env=SECRET + "-x").check()
    assert SECRET not in str(info.value) and one_sentence(str(info.value))
    for bad in ({"base_url": "ftp://x"}, {"model": " "}, {"image_side": 5000}, {"concurrency": 0}):
        settings = {"base_url": "http://127.0.0.1:9/v1", "model": MODEL, **bad}
        with pytest.raises(pl.LLMError) as info:
            pl.EndpointConfig(**settings).check()
        assert one_sentence(str(info.value))


# -- against the fake server ----------------------------------------------------------------
def test_agreement_interval_contains_planted_rate_despite_faults(images, fakes):
    fake, url = fakes(
        error_rate=0.2, position_bias=0.15, malformed=0.03, rate_429=0.05, rate_500=0.05, slow=0.02, slow_s=0.6, seed=0
    )
    with labelled_project(images, 150, held_out=40) as project:
        client = client_for(url, timeout=0.3)
        plan = pl.plan_agreement(project, MODEL, pl.default_prompt(), pl.Pricing(0.15, 0.6), n_pairs=150)
        assert plan.calls_needed == 300 and plan.held_out == 40 and plan.cost > 0
        assert [p.split for p in plan.pairs[:40]] == ["test"] * 40  # held-out pairs first
        assert fake.hits == 0  # planning sends nothing
        report, ask = pl.measure_agreement(project, client, plan)
        lo, hi = report.interval
        assert lo <= 0.8 <= hi, (report.agreement, report.interval, report.n)
        print(
            f"planted 0.80, measured {report.agreement:.3f} [{lo:.3f}, {hi:.3f}] n={report.n} "
            f"inconsistent {report.inconsistent_rate:.3f} retries {ask.retries} malformed {ask.malformed}"
        )
        assert report.n >= 100 and report.held_out > 0 and report.better_than_chance
        assert 0.05 < report.inconsistent_rate < 0.4 and report.tie_rate == report.inconsistent_rate
        assert report.disagreements and all(d.reasons[0] for d in report.disagreements)
        # the faults happened and were survived: every call got a reply
        assert fake.status[429] and fake.status[500] and fake.late and ask.retries > 0
        assert ask.failed == 0 and ask.calls_paid == 300 and ask.malformed > 0
        assert report.failed == len({frozenset(k) for k in _malformed_keys(project)})
        # asking again pays nothing: every answer, malformed ones included, is cached
        hits = fake.hits
        again, ask2 = pl.measure_agreement(project, client, plan)
        assert fake.hits == hits and ask2.calls_cached == 300 and again.agree == report.agree
        assert pl.agreement_from_cache(project, MODEL, plan.prompt.hash).n == report.n
        client.close()


def _malformed_keys(project):
    return [(f, s) for f, s in project.db.execute("SELECT first, second FROM llm_answers WHERE status = 'malformed'")]


def test_run_needs_a_measured_agreement(images, fakes):
    with labelled_project(images, 30) as project:
        prompt = pl.default_prompt()
        with pytest.raises(pl.PrelabelError, match="not been measured") as info:
            pl.plan_run(project, MODEL, prompt, pl.Pricing(), 10)
        assert one_sentence(str(info.value))
        _fake, url = fakes(error_rate=0.5, position_bias=0.0, seed=4)  # a coin flip
        pl.measure_agreement(
            project, client_for(url), pl.plan_agreement(project, MODEL, prompt, pl.Pricing(), n_pairs=30)
        )
        with pytest.raises(pl.PrelabelError, match="chance") as info:
            pl.plan_run(project, MODEL, prompt, pl.Pricing(), 10)
        assert one_sentence(str(info.value))
        assert pl.plan_run(project, MODEL, prompt, pl.Pricing(), 10, trust=0.6).trust == 0.6
        with pytest.raises(pl.PrelabelError, match="trust"):
            pl.plan_run(project, MODEL, prompt, pl.Pricing(), 10, trust=0.4)


def test_agreement_needs_your_own_labels(tmp_path):
    for i in range(3):
        Image.new("RGB", (8, 8), (i * 50, 0, 0)).save(tmp_path / f"{i}.png")
    with Project(tmp_path) as project:
        project.scan()
        (a, _), (b, _) = project.image_paths()[:2]
        project.add_comparison(a, b, 1.0, kind="llm", source="llm:m:123456789abc", weight=0.9)
        with pytest.raises(pl.PrelabelError, match="no pairs you labelled") as info:
            pl.plan_agreement(project, MODEL, pl.default_prompt(), pl.Pricing())
        assert one_sentence(str(info.value))


def test_cancelled_run_resumes_without_paying_twice(images, fakes):
    fake, url = fakes(error_rate=0.1, position_bias=0.1, malformed=0.05, seed=2)
    with labelled_project(images, 20, embeddings=True) as project:
        prompt = pl.default_prompt()
        client = client_for(url)
        plan = pl.plan_run(project, MODEL, prompt, pl.Pricing(), 30, trust=0.85)
        assert plan.calls_needed == 60 and plan.tower == "tower"
        assert sorted({k for *_, k in plan.new}) == ["near", "random"]
        done = {"calls": 0}
        first = pl.execute_run(
            project,
            client,
            plan,
            progress=lambda p: done.update(calls=p.calls_done),
            cancel=lambda: done["calls"] >= 15,
        )
        assert first.ask.stopped == "cancelled" and first.pending > 0 and 15 <= fake.paid_calls < 60
        labels_before = len([r for r in project.comparison_records() if r.source])

        again = pl.plan_run(project, MODEL, prompt, pl.Pricing(), 30, trust=0.85)
        assert len(again.resumed) == first.pending and not again.new
        second = pl.execute_run(project, client, again)
        assert second.ask.stopped is None and second.pending == 0
        assert max(fake.paid.values()) == 1 and fake.paid_calls == 60  # every (pair, order) paid once
        records = [r for r in project.comparison_records() if r.source]
        assert len(records) == labels_before + second.labelled == 30 - first.failed_pairs - second.failed_pairs
        assert {(r.split, r.kind, r.source, r.weight) for r in records} == {
            ("train", "llm", pl.source_name(MODEL, prompt.hash), 0.85)
        }
        assert {r.outcome for r in records} <= {0.0, 0.5, 1.0}
        counts = cache.plan_counts(project, plan.source)
        assert counts.get("pending", 0) == 0 and sum(counts.values()) == 30
        # the next run picks new pairs, never one already judged
        nxt = pl.plan_run(project, MODEL, prompt, pl.Pricing(), 5, trust=0.85)
        judged = {frozenset((r.a, r.b)) for r in project.comparison_records()} | {
            frozenset((p.a, p.b)) for p in plan.resumed
        }
        assert len(nxt.new) == 5 and not judged & {frozenset((a, b)) for a, b, _ in nxt.new}
        client.close()


def test_run_takes_pairs_from_a_chooser(images):
    with labelled_project(images, 10) as project:
        hashes = [h for h, _ in project.image_paths()]
        judged = next(iter(project.comparison_records()))
        seen: list[set] = []

        def chooser(n, avoid):  # e.g. the live model's choice
            seen.append(avoid)
            return [
                (hashes[0], hashes[1]),
                (hashes[0], hashes[0]),
                (judged.b, judged.a),
                (hashes[1], hashes[0]),
                ("not-an-image", hashes[2]),
                (hashes[2], hashes[3]),
            ]

        plan = pl.plan_run(project, MODEL, pl.default_prompt(), pl.Pricing(), 5, trust=0.7, chooser=chooser)
        assert frozenset((judged.a, judged.b)) in seen[0]
        assert plan.new == [(hashes[0], hashes[1], "model"), (hashes[2], hashes[3], "model")]
        assert plan.calls_needed == 4


def test_cap_stops_spending_and_a_higher_cap_continues(images, fakes):
    fake, url = fakes(error_rate=0.1, position_bias=0.0, seed=3, input_tokens=700, output_tokens=30)
    price = pl.Pricing(100.0, 400.0, tokens_per_image=300)  # ~$0.08 a call: est. 2*300 + prompt tokens
    with labelled_project(images, 10) as project:
        prompt = pl.default_prompt()
        client = client_for(url)
        plan = pl.plan_run(project, MODEL, prompt, price, 20, trust=0.8)
        per_call = plan.estimate.cost
        assert per_call == pytest.approx(price.cost(plan.estimate.input_tokens, 60))
        cap = 10 * per_call + per_call / 2
        rep = pl.execute_run(project, client, plan, cap=cap)
        assert rep.ask.stopped == "cap" and rep.ask.spent <= cap
        assert 0 < fake.paid_calls < 40 and fake.paid_cost(100.0, 400.0) <= cap
        assert cap - rep.ask.spent < per_call  # stopped: one more estimated call would pass it
        assert rep.ask.spent == pytest.approx(fake.paid_cost(100.0, 400.0))
        # measured usage now drives the estimate; a bigger cap finishes the same pairs
        again = pl.plan_run(project, MODEL, prompt, pl.Pricing(100.0, 400.0), 20, trust=0.8)
        assert again.estimate.input_tokens == 700 and "measured" in again.estimate.basis
        assert again.calls_needed == 40 - fake.paid_calls
        rep2 = pl.execute_run(project, client, again, cap=100.0)
        assert rep2.ask.stopped is None and max(fake.paid.values()) == 1 and fake.paid_calls == 40
        client.close()


def test_killed_process_loses_nothing_and_resumes(images, fakes, tmp_path):
    fake, url = fakes(error_rate=0.1, position_bias=0.1, seed=5)
    folder, _ = images
    with labelled_project(images, 10) as project:
        db_path = project.db_path
    child = textwrap.dedent(f"""
        import sys
        from joyq_studio import prelabel as pl
        from joyq_studio.store import Project
        project = Project({str(folder)!r})
        client = pl.LLMClient(pl.EndpointConfig({url!r}, {MODEL!r}, concurrency=2, backoff=0.01))
        plan = pl.plan_run(project, {MODEL!r}, pl.default_prompt(), pl.Pricing(), 40, trust=0.8)
        def progress(p):
            if p.calls_done >= 10:
                print("busy", flush=True)
        pl.execute_run(project, client, plan, progress=progress)
        print("finished", flush=True)
    """)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    proc = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE, env=env, text=True)
    try:
        assert proc.stdout.readline().strip() == "busy"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    paid_at_kill = fake.paid_calls
    assert 10 <= paid_at_kill < 80
    with Project(folder, db_path=db_path) as project:
        stored = project.db.execute("SELECT COUNT(*) FROM llm_answers").fetchone()[0]
        assert stored >= paid_at_kill - 2  # at most the calls in flight were lost
        plan = pl.plan_run(project, MODEL, pl.default_prompt(), pl.Pricing(), 40, trust=0.8)
        assert len(plan.resumed) == 40 - len([r for r in project.comparison_records() if r.source])
        rep = pl.execute_run(project, client_for(url), plan)
        assert rep.pending == 0 and rep.ask.calls_cached == stored - 2 * (40 - len(plan.resumed))
    repeated = sum(n - 1 for n in fake.paid.values() if n > 1)
    assert repeated <= 2 and fake.paid_calls == 80 + repeated


def test_fatal_errors_stop_the_run_in_one_sentence(images, fakes, monkeypatch):
    fake, url = fakes(key=SECRET, seed=6)
    with labelled_project(images, 5) as project:
        plan = pl.plan_agreement(project, MODEL, pl.default_prompt(), pl.Pricing())
        monkeypatch.setenv("JOYQ_LLM_API_KEY", "sk-wrong-key-123456")
        with pytest.raises(pl.LLMError, match="refused the API key") as info:
            pl.measure_agreement(project, client_for(url), plan)
        assert one_sentence(str(info.value)) and "sk-wrong" not in str(info.value)
        assert fake.hits <= 4  # stopped at once, not retried 5 times each
        monkeypatch.setenv("JOYQ_LLM_API_KEY", SECRET)
        other = pl.LLMClient(pl.EndpointConfig(url, "no-such-model", backoff=0.01))
        with pytest.raises(pl.LLMError, match="not found") as info:
            pl.measure_agreement(project, other, plan)
        assert one_sentence(str(info.value))
        # an endpoint that is down: transient failures, retried, then the run stops by itself
        down = pl.LLMClient(pl.EndpointConfig("http://127.0.0.1:9/v1", MODEL, retries=1, backoff=0.01))
        _, ask = pl.measure_agreement(project, down, plan)
        assert ask.failed == 10 and ask.calls_paid == 0 and "connection failed" in ask.errors[0]


def test_labels_for_training_include_exclude_and_trust(images):
    with labelled_project(images, 6) as project:
        (a, _), (b, _), (c, _) = project.image_paths()[:3]
        src = pl.source_name(MODEL, "abc123abc123")
        project.add_comparison(a, b, 1.0, kind="llm", source=src, weight=0.8)
        project.add_comparison(b, c, 0.5, kind="llm", source=src, weight=0.8)
        assert pl.llm_labels_included(project)
        rows = pl.training_records(project)
        assert len(rows) == 8 and {r.source for r in rows} == {None, src}
        assert [pl.soft_target(r.outcome, r.weight) for r in rows if r.source] == [pytest.approx(0.8), 0.5]
        pl.set_llm_labels_included(project, False)
        assert len(pl.training_records(project)) == 6 and len(pl.training_records(project, include_llm=True)) == 8
        assert pl.set_trust(project, src, 0.7) == 2
        assert {r.weight for r in project.comparison_records() if r.source} == {0.7}
        assert pl.llm_label_counts(project) == {src: 2}


# -- the key stays secret; the command line --------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    from joyq_studio.cli.prelabel import register

    p = argparse.ArgumentParser(prog="joyq")
    register(p.add_subparsers(dest="command", required=True))
    return p


def test_cli_help_of_every_step(capsys):
    for step in ("agreement", "run", "status"):
        with pytest.raises(SystemExit) as info:
            _parser().parse_args(["prelabel", step, "--help"])
        assert info.value.code == 0
    out = capsys.readouterr().out
    assert "--endpoint" in out and "--cap" in out and "25%" in out and "--exclude" in out


def _run_cli(argv: list[str]) -> int:
    import importlib

    args = _parser().parse_args(argv)
    module, _, fn = args.handler.partition(":")
    return getattr(importlib.import_module(module), fn)(args)


def test_cli_and_the_key_never_written(images, fakes, monkeypatch, capsys, caplog, tmp_path):
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("JOYQ_LLM_API_KEY", SECRET)
    fake, url = fakes(key=SECRET, error_rate=0.15, position_bias=0.1, malformed=0.02, rate_429=0.05, seed=7)
    folder, _ = images
    with labelled_project(images, 40, held_out=10, embeddings=True) as project:
        db = project.db_path
    common = [str(folder), "--endpoint", url, "--model", MODEL, "--price-in", "0.15", "--price-out", "0.6"]
    # priced, off a terminal, without --yes: refused before anything is sent
    from joyq_studio.console import UsageError

    with pytest.raises(UsageError, match="--yes"):
        _run_cli(["prelabel", "agreement", *common, "--pairs", "40"])
    assert fake.hits == 0
    assert _run_cli(["prelabel", "agreement", *common, "--pairs", "40", "--dry-run"]) == 0 and fake.hits == 0
    assert _run_cli(["prelabel", "agreement", *common, "--pairs", "40", "--yes"]) == 0
    out = capsys.readouterr().out
    assert "95% interval" in out and "held out" in out and "position bias" in out and "privacy" in out
    assert _run_cli(["prelabel", "run", *common, "--pairs", "12", "--yes", "--trust", "0.75"]) == 0
    out = capsys.readouterr().out
    assert "labelled" in out and "cost: about $" in out and "cap: stops before" in out
    assert _run_cli(["prelabel", "status", str(folder), "--exclude"]) == 0
    assert "leaves out" in capsys.readouterr().out
    monkeypatch.setenv("JOYQ_LLM_API_KEY", "sk-wrong-" + SECRET[::-1])
    with pytest.raises(pl.LLMError) as info:
        _run_cli(["prelabel", "run", *common, "--pairs", "3", "--yes", "--trust", "0.75"])
    captured = capsys.readouterr()
    # the dataset export (the JoyQuality JSON) holds paths and labels only
    exported = tmp_path / "pairs.json"
    try:
        from joyq_studio.export import export_pairs

        with Project(folder, db_path=db) as project:
            export_pairs(project, exported, ties=True)
    except ImportError:  # the export package is being moved
        exported.write_text("{}")
    with Project(folder, db_path=db) as project:
        assert len([r for r in project.comparison_records() if r.source]) >= 8
    texts = [str(info.value), captured.out, captured.err, caplog.text, exported.read_text()]
    for secret in (SECRET, SECRET[::-1]):
        assert all(secret not in t for t in texts)
        for f in db.parent.glob(db.name + "*"):  # the database, its WAL and shm
            assert secret.encode() not in f.read_bytes()
    assert any(f"Bearer {SECRET}" in h for h in fake.headers_seen)  # it was sent, to the endpoint only
    assert all(SECRET not in body for body in fake.bodies)


def test_training_uses_llm_labels_as_soft_targets_only_while_included(tmp_path):
    """An LLM label trained as its trust toward its choice; excluded, it is not trained at all."""
    from PIL import Image

    from joyq_studio.prelabel import set_llm_labels_included
    from joyq_studio.store import Project
    from joyq_studio.training import pairs_from_project

    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(3):
        Image.new("RGB", (8, 8), (40 * i, 0, 0)).save(folder / f"{i}.png")
    with Project(folder) as p:
        p.scan()
        h = [p.hash_of(f"{i}.png") for i in range(3)]
        p.add_comparison(h[0], h[1], 1.0)  # the user's click
        p.add_comparison(h[1], h[2], 0.0, kind="llm", source="llm:m:abc123", weight=0.8)
        data = pairs_from_project(p)
        assert sorted(data.y.tolist()) == pytest.approx([0.2, 1.0])  # 0.8 trust toward image 2
        set_llm_labels_included(p, False)
        assert pairs_from_project(p).y.tolist() == [1.0]
