"""`joyq prelabel compare | optimise | prompts` (issue 21): thin wrappers over
:mod:`joyq_studio.prelabel.compare`, :mod:`~joyq_studio.prelabel.optimise` and
:mod:`~joyq_studio.prelabel.prompts`. Nothing is sent before the plan and its cost are shown."""

from __future__ import annotations

import math

from ..console import EXIT_OK, UsageError
from .prelabel import DEFAULT_CAP_MARGIN, _config, _confirm, _open, _pricing, _Progress


def _pct(x: float | None) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.0f}%"


def _interval(a) -> str:
    if not a.count:
        return "n/a (no decisive pair answered)"
    return f"{_pct(a.value)} (95% interval {_pct(a.low)}-{_pct(a.high)}, {a.count} pairs)"


def _model_prices(args) -> dict:
    from ..prelabel import Pricing

    out = {}
    for item in args.price:
        model, _, prices = item.rpartition("=")
        try:
            pin, pout = (float(x) for x in prices.split(","))
        except ValueError:
            raise UsageError(f"--price {item!r}: write it as MODEL=IN,OUT (US dollars per million tokens).") from None
        if not model:
            raise UsageError(f"--price {item!r}: name the model before '='.")
        out[model] = Pricing(pin, pout, args.tokens_per_image)
    return out


def cmd_compare(args) -> int:
    from dataclasses import replace

    from ..prelabel import LLMClient, format_usd, load_prompt
    from ..prelabel.compare import Candidate, plan_compare, run_compare

    prompts = [load_prompt(p) for p in (args.prompt_file or [None])]
    default_pricing, prices = _pricing(args), _model_prices(args)
    models = list(dict.fromkeys(args.model))
    candidates = [Candidate(m, p, prices.get(m, default_pricing)) for m in models for p in prompts]
    base = _config(argparse_namespace(args, model=models[0]))
    with _open(args.folder) as project:
        plan = plan_compare(project, candidates, args.pairs, base.image_side)
        print(f"comparing {len(candidates)} candidates on the same {len(plan.pairs)} of your pairs, both orders:")
        for c, n, est in zip(plan.candidates, plan.calls_needed, plan.estimates, strict=True):
            cost = "free" if c.pricing.free else f"about {format_usd(n * est.cost)}"
            print(f"  {c.name}: {n} calls to send ({cost})")
        cap = _default_cap(args.cap, plan.cost, all(c.pricing.free for c in candidates))
        if cap is not None:
            print(f"cap: stops before spending more than {format_usd(cap)} in all")
        print(f"privacy: the images of these pairs are sent to {base.base_url}.")
        if not _confirm(args, sum(plan.calls_needed), plan.cost, cap):
            return EXIT_OK
        clients: dict = {}

        def client_for(model: str):
            if model not in clients:
                clients[model] = LLMClient(replace(base, model=model))
            return clients[model]

        try:
            report = run_compare(project, client_for, plan, cap=cap, progress=_Progress("asking"))
        finally:
            for c in clients.values():
                c.close()
        print()
        print("| candidate | agreement (95% interval, pairs) | position bias | ties | cost / 1,000 labels |")
        print("|---|---|---|---|---|")
        for c, ev in zip(plan.candidates, report.evaluations, strict=True):
            per = "n/a" if math.isnan(ev.cost_per_1000) else format_usd(ev.cost_per_1000)
            print(
                f"| {c.name} | {_interval(ev.agreement)} | {_pct(ev.position_bias)} of {ev.answered} | "
                f"{_pct(ev.tie_rate)} | {per} |"
            )
        print()
        for t in report.tests:
            print(
                f"{t.first} vs {t.second}: {t.verdict} (McNemar p = {t.p_value:.3f}; on {t.n} pairs both answered, "
                f"{t.first_only} only the first got right, {t.second_only} only the second)"
            )
        best = report.best_supported()
        if best is None:
            print("no candidate is better than every other beyond noise; pick by cost, or compare on more pairs.")
        else:
            print(f"better than every other beyond noise: {plan.candidates[best].name}")
        print(f"spent {format_usd(report.spent)} now" + ("; stopped at the cap" if report.stopped == "cap" else ""))
    return EXIT_OK


def _default_cap(cap: float | None, estimate: float, free: bool) -> float | None:
    """--cap, else (when anything costs money) the estimate + 25%, as `prelabel run`."""
    if cap is not None:
        return cap
    if free or estimate == 0:
        return None
    return math.ceil(estimate * (1 + DEFAULT_CAP_MARGIN) * 100) / 100


def argparse_namespace(args, **changes):
    import argparse

    ns = argparse.Namespace(**vars(args))
    for k, v in changes.items():
        setattr(ns, k, v)
    return ns


def cmd_optimise(args) -> int:
    from dataclasses import replace

    from ..prelabel import LLMClient, Pricing, format_usd, load_prompt
    from ..prelabel.optimise import EDITOR_INSTRUCTIONS, REASONS_CAP, plan_optimise, run_optimise

    config, pricing, base = _config(args), _pricing(args), load_prompt(args.prompt_file)
    editor_config = replace(
        config,
        base_url=args.editor_endpoint or config.base_url,
        model=args.editor_model,
        key_env=args.editor_key_env or config.key_env,
        json_mode=False,
    ).check()
    editor_pricing = Pricing(args.editor_price_in, args.editor_price_out)
    with _open(args.folder) as project:
        plan = plan_optimise(
            project,
            config.model,
            editor_config.model,
            base,
            pricing,
            editor_pricing,
            rounds=args.rounds,
            per_round=args.pairs_per_round,
            held_out=args.held_out,
            rotate=not args.fixed_set,
            seed=args.seed,
            patience=args.patience,
            image_side=config.image_side,
        )
        sets = "a fresh, disjoint set each round" if plan.rotate else "the same set every round"
        print(
            f"prompt optimisation {plan.run_key}: labeller {plan.labeller}, editor {plan.editor}; {plan.rounds} rounds "
            f"of {plan.per_round} of your pairs ({sets}) + {len(plan.final_set)} held out for one final measurement: "
            f"{plan.needed} of your {plan.available} pairs"
        )
        if pricing.free and editor_pricing.free:
            print("cost: no prices set, so not estimated and no cap applies")
        else:
            print(
                f"cost: at most about {format_usd(plan.cost)}: {plan.labeller_calls} labeller calls at "
                f"{format_usd(plan.labeller_estimate.cost)} ({plan.labeller_estimate.basis}) + {plan.editor_calls} "
                f"editor calls at about {format_usd(plan.editor_call_cost)}; cached answers are free"
            )
        cap = _default_cap(args.cap, plan.cost, pricing.free and editor_pricing.free)
        if cap is not None:
            print(f"cap: stops before spending more than {format_usd(cap)} (labeller and editor together)")
        print(
            f"the editor ({editor_config.base_url}) is sent, each round, these instructions, every earlier prompt "
            f"with its agreement, up to {REASONS_CAP} of the labeller's reasons on pairs it got wrong, and the "
            "current best prompt (no images):"
        )
        for line in EDITOR_INSTRUCTIONS.strip().splitlines():
            print(f"  | {line}")
        print(f"privacy: the images of these pairs are sent to {config.base_url}.")
        if not _confirm(args, plan.labeller_calls + plan.editor_calls, plan.cost, cap):
            return EXIT_OK
        labeller = LLMClient(config)
        editor = LLMClient(editor_config)
        try:
            report = run_optimise(project, labeller, editor, plan, cap=cap, progress=_Progress("asking"), say=print)
        finally:
            labeller.close()
            editor.close()
        why = {
            "rounds": "all rounds done",
            "no improvement": f"no new prompt was better beyond noise for {plan.patience} rounds",
            "cap": "stopped at the cap; rerun with a higher --cap to continue (nothing is paid twice)",
            "cancelled": "cancelled; rerun to continue",
            "editor failed": "the editor call failed; rerun to continue",
        }[report.stopped]
        print(f"stopped: {why}")
        if report.final is not None:
            a = report.final.agreement
            print(
                f"chosen: prompt {report.chosen}; on the {len(plan.final_set)} held-out pairs no round saw: "
                f"{_interval(a)}"
            )
            gap = report.overfitting_gap
            if gap is not None:
                print(f"best round minus held-out (overfitting gap): {100 * gap:+.0f} points")
            print(f"use it: joyq prelabel run {args.folder} --prompt {report.chosen} ...")
        print(
            f"spent {format_usd(report.spent)} now (labeller {format_usd(report.spent_labeller)}, "
            f"editor {format_usd(report.spent_editor)})"
        )
    return EXIT_OK


def cmd_prompts(args) -> int:
    from ..prelabel import format_usd
    from ..prelabel.prompts import version, versions
    from .common import open_project

    with open_project(args.folder) as project:
        if args.show is not None:
            v = version(project, args.show)
            if v is None:
                raise UsageError(f"{project.folder}: has no prompt {args.show}.")
            print(v.text)
            return EXIT_OK
        rows = versions(project)
        if not rows:
            print("no prompt versions yet (`joyq prelabel optimise` makes them).")
        for v in rows:
            score = "not measured"
            if v.n:
                score = (
                    f"{_pct(v.agreement)} (95% interval {_pct(v.low)}-{_pct(v.high)}, {v.n} pairs of round {v.round})"
                )
            first = v.text.strip().splitlines()[0][:60] if v.text.strip() else ""
            print(
                f"{v.id}: {v.hash} parent {v.parent if v.parent is not None else '-'} run {v.run or '-'}; {score}; "
                f"cost {format_usd(v.cost)}" + (f"; {v.note}" if v.note else "") + f" | {first}"
            )
    return EXIT_OK
