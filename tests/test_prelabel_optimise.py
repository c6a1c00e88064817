"""Issue 21: comparing models/prompts and optimising the prompt, on the local fake server.

The fake labeller's error rate depends on the prompt (tests/fake_llm_server.py,
``prompt_rates``): a prompt that says to judge by brightness only (the planted taste) is
wrong on 5% of pairs, the built-in prompt on 35%, one that asks for the more interesting
subject on 60%; its reasons on wrong answers name the subject, which the fake editor
reads ("better" mode) to add the brightness rule.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from joyq_studio.prelabel import EndpointConfig, LLMClient, Pricing, default_prompt
from joyq_studio.prelabel import prompts as pv
from joyq_studio.prelabel.compare import Candidate, plan_compare, run_compare
from joyq_studio.prelabel.optimise import (
    OptimiseError,
    own_pairs,
    parse_editor_reply,
    plan_optimise,
    run_optimise,
)
from joyq_studio.prelabel.prompt import Prompt
from joyq_studio.store import Project
from joyq_studio.subset import subset_hashes

sys.path.insert(0, str(Path(__file__).parent))
from fake_llm_server import FakeLLM

pytest.importorskip("openai")

BEST_HINT = "judge by brightness only"
RATES = {BEST_HINT: 0.05, "more interesting subject": 0.6}
BASE_RATE = 0.35
SECRET = "sk-test-" + "0PT1M1SE" * 3


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """60 small images whose brightness (the planted quality) differs by >= 3 levels."""
    folder = tmp_path_factory.mktemp("optimise-images")
    rng = np.random.default_rng(0)
    levels = {}
    for i in range(60):
        v = 20 + 3 * i
        arr = np.clip(v + rng.integers(-1, 2, (16, 16, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(arr).save(folder / f"im{i:02d}.png")
        levels[f"im{i:02d}.png"] = v
    return folder, levels


def labelled(images, n_pairs: int, llm_pairs: int = 0) -> Project:
    folder, levels = images
    project = Project(folder)
    project.scan()
    hashes = dict(project.file_hashes())
    names = sorted(hashes)
    rng = random.Random(3)
    seen: set[frozenset] = set()
    rows = []
    while len(rows) < n_pairs + llm_pairs:
        a, b = rng.sample(names, 2)
        if frozenset((a, b)) in seen:
            continue
        seen.add(frozenset((a, b)))
        rows.append((hashes[a], hashes[b], 1.0 if levels[a] > levels[b] else 0.0, "train", "click"))
    project.add_comparisons(rows[:n_pairs])
    for a, b, o, _split, _ in rows[n_pairs:]:  # LLM labels: never counted as yours
        project.add_comparison(a, b, 1 - o, split="train", kind="llm", source="llm:x:y", weight=0.8)
    return project


@pytest.fixture
def fake():
    f = FakeLLM(
        error_rate=BASE_RATE,
        position_bias=0.0,
        prompt_rates=RATES,
        editor_model="fake-editor",
        editor_plan=("worse", "better", "neutral", "none"),
        key=SECRET,
    )
    url = f.start()
    yield f, url
    f.stop()


def clients(url: str, monkeypatch) -> tuple[LLMClient, LLMClient]:
    monkeypatch.setenv("JOYQ_LLM_API_KEY", SECRET)
    monkeypatch.setenv("EDITOR_KEY", SECRET)
    lab = LLMClient(EndpointConfig(url, "fake-vision", retries=1, backoff=0.01, concurrency=4))
    ed = LLMClient(EndpointConfig(url, "fake-editor", key_env="EDITOR_KEY", json_mode=False, retries=1))
    return lab, ed


def test_parse_editor_reply_takes_one_tagged_prompt_only():
    assert parse_editor_reply("ok\n<prompt>\nJudge.\n</prompt>") == "Judge."
    for bad in ("no prompt here", "<prompt> </prompt>", "<prompt>a</prompt><prompt>b</prompt>", "", None):
        assert parse_editor_reply(bad) is None  # type: ignore[arg-type]
    assert parse_editor_reply("<prompt>{better} $(rm -rf /) {{x}}</prompt>") == "{better} $(rm -rf /) {{x}}"


def test_too_few_own_pairs_is_one_clear_sentence(images):
    with labelled(images, 50, llm_pairs=100) as project:
        assert len(own_pairs(project)) == 50  # LLM labels never count
        with pytest.raises(OptimiseError, match=r"has 50 pairs .* need 220\. Label 170 more"):
            plan_optimise(
                project, "m", "e", default_prompt(), Pricing(), Pricing(), rounds=4, per_round=40, held_out=60
            )


def test_compare_models_and_prompts_on_the_same_pairs(images, fake, monkeypatch):
    f, url = fake
    monkeypatch.setenv("JOYQ_LLM_API_KEY", SECRET)
    good = Prompt(default_prompt().text + "\nPrefer the brighter image: " + BEST_HINT + ".\n")
    with labelled(images, 80) as project:
        cands = [
            Candidate("fake-vision", default_prompt(), Pricing(1.0, 2.0)),
            Candidate("fake-vision", good, Pricing(1.0, 2.0)),
        ]
        plan = plan_compare(project, cands, n_pairs=80)
        assert plan.calls_needed == [160, 160]
        cli = LLMClient(EndpointConfig(url, "fake-vision", retries=1, backoff=0.01))
        try:
            rep = run_compare(project, lambda m: cli, plan)
        finally:
            cli.close()
        base, better = rep.evaluations
        assert base.agreement.count == better.agreement.count == 80
        assert base.agreement.low <= 1 - BASE_RATE <= base.agreement.high
        assert better.agreement.low <= 1 - RATES[BEST_HINT] <= better.agreement.high
        assert base.position_bias == 0 and base.tie_rate == 0
        # measured cost: 2 calls of 700 input + 30 output tokens at $1 / $2 per million, per label
        assert better.cost_per_1000 == pytest.approx(1000 * 2 * (700 * 1.0 + 30 * 2.0) / 1e6)
        (t,) = rep.tests
        assert t.verdict == "second better" and t.p_value < 0.05
        assert rep.best_supported() == 1
        paid = f.paid_calls
        # the cache: asking again costs nothing; a cap of 0 across the comparison sends nothing new
        rep2 = run_compare(project, lambda m: LLMClient(EndpointConfig(url, "fake-vision")), plan, cap=0.0)
        assert f.paid_calls == paid and rep2.spent == 0


def _optimise(project, url, monkeypatch, cap=None, rotate=True, rounds=5, seed=0):
    lab, ed = clients(url, monkeypatch)
    plan = plan_optimise(
        project,
        "fake-vision",
        "fake-editor",
        default_prompt(),
        Pricing(1.0, 2.0),
        Pricing(3.0, 6.0),
        rounds=rounds,
        per_round=40,
        held_out=60,
        rotate=rotate,
        seed=seed,
    )
    try:
        return plan, run_optimise(project, lab, ed, plan, cap=cap)
    finally:
        lab.close()
        ed.close()


def test_the_loop_chooses_the_better_prompt_and_measures_it_once_on_unseen_pairs(images, fake, monkeypatch, capsys):
    f, url = fake
    with labelled(images, 300, llm_pairs=40) as project:
        plan, rep = _optimise(project, url, monkeypatch)
        # rounds: 0 start, 1 worse (not adopted), 2 better (adopted, clearly), 3 a rewording of
        # it (as good: adopted or not by chance), 4 no prompt -> stop (no clear gain twice)
        assert [r.adopted for r in rep.rounds[:3]] == [True, False, True]
        assert rep.rounds[2].test.verdict == "second better"
        assert rep.stopped == "no improvement" and len(rep.rounds) == 5
        chosen = pv.version(project, rep.chosen)
        assert chosen is not None and BEST_HINT in chosen.text and chosen.round in (2, 3)
        # the final figure: the planted rate of the chosen prompt is inside its interval
        a = rep.final.agreement
        assert a.count == 60 and a.low <= 1 - RATES[BEST_HINT] <= a.high
        # no round's pairs are in the final set, and only the chosen prompt ever saw them
        final_keys = {frozenset((p.a, p.b)) for p in plan.final_set}
        for s in plan.round_sets:
            assert not final_keys & {frozenset((p.a, p.b)) for p in s}
        asked = project.db.execute("SELECT DISTINCT first, second, prompt FROM llm_answers").fetchall()
        for first, second, prompt in asked:
            if frozenset((first, second)) in final_keys:
                assert prompt == chosen.hash
        # the editor saw earlier prompts with their scores and wrong-answer reasons; never a key
        assert f.editor_calls == 4
        assert "interesting subject" in f.editor_bodies[1] and "agreed" in f.editor_bodies[1]
        # versions: the reply without a prompt is recorded, unusable
        rows = pv.versions(project, plan.run_key)
        assert [v.usable for v in rows] == [True, True, True, True, False]
        with pytest.raises(Exception, match="held no prompt"):
            pv.load_version(project, rows[-1].id)
        # money: labeller + editor, as the fake billed it
        editor_cost = 4 * (900 * 3.0 + 200 * 6.0) / 1e6
        assert rep.spent_editor == pytest.approx(editor_cost)
        assert rep.spent_labeller == pytest.approx(f.paid_cost(1.0, 2.0))
    _no_secret_anywhere(project, f, capsys)


def _no_secret_anywhere(project, f, capsys):
    db = Path(project.db_path)
    for p in [db, *db.parent.glob(db.name + "*")]:
        if p.is_file():
            assert SECRET.encode() not in p.read_bytes()
    out = capsys.readouterr()
    assert SECRET not in out.out + out.err
    assert all(SECRET not in b for b in f.bodies)  # the key travels in the header only


def test_the_cap_holds_across_labeller_and_editor_and_a_rerun_resumes(images, fake, monkeypatch, capsys):
    f, url = fake
    with labelled(images, 300) as project:
        cap = 0.1  # round 0 costs ~$0.06, each later round ~$0.12 + the editor
        plan, rep = _optimise(project, url, monkeypatch, cap=cap)
        assert rep.stopped == "cap" and rep.final is None
        billed = f.paid_cost(1.0, 2.0) + f.editor_calls * (900 * 3.0 + 200 * 6.0) / 1e6
        assert billed <= cap
        calls_before, editor_before = f.paid_calls, f.editor_calls
        # the same command again without a cap: nothing is paid twice, the stored editor reply is reused
        plan2, rep2 = _optimise(project, url, monkeypatch)
        assert plan2.run_key == plan.run_key
        assert max(f.paid_per_prompt.values()) == 1  # no (prompt, pair, order) paid twice
        assert f.editor_calls == editor_before + (len(rep2.rounds) - 1 - editor_before)
        assert rep2.final is not None and f.paid_calls > calls_before
    _no_secret_anywhere(project, f, capsys)


@pytest.mark.slow
def test_the_overfitting_gap_is_measured_with_rotating_and_fixed_sets(images, fake, monkeypatch):
    """Measured: the gap between the best round and the held-out figure, both modes."""
    f, url = fake
    with labelled(images, 300) as project:
        _, rot = _optimise(project, url, monkeypatch, rotate=True)
        _, fix = _optimise(project, url, monkeypatch, rotate=False, seed=1)
    assert rot.final is not None and fix.final is not None
    assert rot.overfitting_gap is not None and fix.overfitting_gap is not None
    print(f"gap rotating {rot.overfitting_gap:+.3f}, fixed {fix.overfitting_gap:+.3f}")


# -- the recipe end to end, through the CLI ----------------------------------------------------
def test_the_recipe_end_to_end_on_the_fake_server(tmp_path, fake, monkeypatch, capsys):
    """folder -> score -> subset -> fixed-k pairs -> compare -> optimise -> prelabel run with the
    chosen prompt on the subset -> train -> export-pairs (docs/prelabel.md, "The recipe")."""
    import json

    from joyq_studio.cli.main import main

    f, url = fake
    monkeypatch.setenv("JOYQ_LLM_API_KEY", SECRET)
    monkeypatch.setenv("EDITOR_KEY", SECRET)
    folder = tmp_path / "pool"
    assert main(["demo", str(folder), "--count", "40"]) == 0
    assert main(["score", str(folder), "--model", "demo", "--workers", "0"]) == 0
    assert main(["import-pairs", str(folder), str(folder / "pairs.json")]) == 0  # stands in for your clicks
    assert main(["subset", str(folder), "--count", "24", "--seed", "1"]) == 0
    assert main(["pairs", str(folder), "--k", "4", "--pool", "subset", "--out", str(tmp_path / "k4.json")]) == 0
    assert len(json.loads((tmp_path / "k4.json").read_text())["train"]) == 48
    common = ["--endpoint", url, "--retries", "1"]
    assert main(["prelabel", "compare", str(folder), *common, "--model", "fake-vision", "--pairs", "20", "--yes"]) == 0
    assert main(
        [
            "prelabel", "optimise", str(folder), *common, "--model", "fake-vision", "--editor-model", "fake-editor",
            "--editor-key-env", "EDITOR_KEY", "--rounds", "2", "--pairs-per-round", "10", "--held-out", "10",
            "--price-in", "1", "--price-out", "2", "--editor-price-in", "3", "--editor-price-out", "6",
            "--cap", "1", "--yes",
        ]
    ) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "chosen: prompt" in out and "held-out pairs no round saw" in out
    chosen = int(out.split("chosen: prompt ")[1].split(";")[0])
    assert main(["prelabel", "prompts", str(folder)]) == 0
    assert f"{chosen}: " in capsys.readouterr().out
    assert main(
        [
            "prelabel", "run", str(folder), *common, "--model", "fake-vision", "--prompt", str(chosen),
            "--pool", "subset", "--pairs", "20", "--trust", "0.8", "--yes",
        ]
    ) == 0  # fmt: skip
    assert "labelled 20 pairs" in capsys.readouterr().out
    with Project(folder) as project:
        members = set(subset_hashes(project))
        llm = [r for r in project.comparison_records() if r.source]
        assert len(llm) == 20 and all(r.a in members and r.b in members for r in llm)
    assert main(["train", str(folder), "--mode", "quick"]) == 0
    assert main(["export-pairs", str(folder), str(tmp_path / "out.json"), "--llm", "include"]) == 0
    assert "wrote" in capsys.readouterr().out
    with Project(folder) as project:
        _no_secret_anywhere(project, f, capsys)


def test_cli_dry_run_sends_nothing_and_too_few_pairs_exit_2(images, fake, monkeypatch, capsys):
    from joyq_studio.cli.main import main

    f, url = fake
    monkeypatch.setenv("JOYQ_LLM_API_KEY", SECRET)
    with labelled(images, 120) as project:
        folder = str(project.folder)
    common = ["--endpoint", url, "--model", "fake-vision", "--editor-model", "fake-editor"]
    argv = ["prelabel", "optimise", folder, *common, "--rounds", "2", "--pairs-per-round", "40", "--held-out", "40"]
    assert main([*argv, "--price-in", "1", "--editor-price-in", "3", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "cost: at most about" in out and "<prompt> and </prompt>" in out and "dry run" in out
    assert f.hits == 0
    assert main([*argv[:-4], "--rounds", "4", "--pairs-per-round", "40", "--held-out", "40"]) == 2
    assert "Label 80 more" in capsys.readouterr().err
    assert main(["prelabel", "compare", folder, "--endpoint", url, "--model", "a", "--price", "a=oops", "--yes"]) == 2
    assert "MODEL=IN,OUT" in capsys.readouterr().err
    assert f.hits == 0


def test_a_killed_loop_resumes_without_paying_twice(images, fake, monkeypatch, capsys):
    import os
    import signal
    import subprocess
    import textwrap

    f, url = fake
    monkeypatch.setenv("JOYQ_LLM_API_KEY", SECRET)
    monkeypatch.setenv("EDITOR_KEY", SECRET)
    with labelled(images, 300) as project:
        folder, db_path = project.folder, project.db_path
    setup = f"""
        from joyq_studio.prelabel import EndpointConfig, LLMClient, Pricing, default_prompt
        from joyq_studio.prelabel.optimise import plan_optimise, run_optimise
        from joyq_studio.store import Project
        project = Project({str(folder)!r})
        lab = LLMClient(EndpointConfig({url!r}, "fake-vision", retries=1, backoff=0.01, concurrency=2))
        ed = LLMClient(EndpointConfig({url!r}, "fake-editor", key_env="EDITOR_KEY", json_mode=False, retries=1))
        plan = plan_optimise(project, "fake-vision", "fake-editor", default_prompt(), Pricing(1.0, 2.0),
                             Pricing(3.0, 6.0), rounds=5, per_round=40, held_out=60)
    """
    child = textwrap.dedent(setup) + textwrap.dedent("""
        def say(line):
            if line.startswith("round 1: prompt"):
                print("busy", flush=True)
        run_optimise(project, lab, ed, plan, say=say)
        print("finished", flush=True)
    """)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    proc = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE, env=env, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "busy"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    editor_at_kill = f.editor_calls
    assert 1 <= editor_at_kill < 4
    with Project(folder, db_path=db_path) as project:
        _, rep = _optimise(project, url, monkeypatch)
        assert rep.final is not None
        stored = pv.versions(project, rep.plan.run_key)
        # each round's reply asked for once, but for the editor call in flight at the kill
        assert len(stored) - 1 <= f.editor_calls <= len(stored)
        repeated = sum(n - 1 for n in f.paid_per_prompt.values() if n > 1)
        assert repeated <= 2  # at most the calls in flight at the kill
        _no_secret_anywhere(project, f, capsys)
