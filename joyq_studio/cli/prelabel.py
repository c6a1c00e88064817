"""`joyq prelabel agreement | run | status`: label pairs with a vision LLM, after measuring
how often it agrees with you. Thin wrappers over :mod:`joyq_studio.prelabel`.

This module declares its own arguments (``register``) and stays light: the core is imported
only when a command runs. Nothing is sent to the endpoint before the command has shown
what it will send and what it may cost (and, when it costs money, been confirmed).
"""

from __future__ import annotations

import argparse
import math
import sys

from ..console import (
    EXIT_FAILED_FILES,
    EXIT_OK,
    ProgressLine,
    UsageError,
    positive_float,
    positive_int,
)
from ..errors import JoyqError

HERE = "joyq_studio.cli.prelabel"
#: Without --cap, a paid run stops at the estimate plus this share.
DEFAULT_CAP_MARGIN = 0.25


def _unit_float(text: str) -> float:
    """--trust: checked by the core's one rule (prelabel.run.check_trust)."""
    from ..prelabel.run import check_trust

    try:
        return check_trust(text)  # type: ignore[arg-type]
    except JoyqError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _share(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, not {text}")
    return value


def _price(text: str) -> float:
    value = float(text)
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"must be a price of 0 or more, not {text}")
    return value


def register(subparsers) -> None:
    """Add `prelabel` with its subcommands to the `joyq` parser's subparsers."""
    from ..prelabel.client import DEFAULT_KEY_ENV  # light: no openai, no torch

    p = subparsers.add_parser(
        "prelabel", help="label pairs with a vision LLM, after measuring how often it agrees with you"
    )
    sub = p.add_subparsers(dest="prelabel", metavar="STEP", required=True)

    def endpoint_args(sp) -> None:
        sp.add_argument("folder")
        sp.add_argument(
            "--endpoint",
            required=True,
            metavar="URL",
            help="OpenAI-compatible base URL, e.g. https://api.openai.com/v1 or http://localhost:11434/v1",
        )
        sp.add_argument("--model", required=True, metavar="NAME", help="the endpoint's vision model, e.g. gpt-4o-mini")
        sp.add_argument(
            "--key-env",
            default=DEFAULT_KEY_ENV,
            metavar="VAR",
            help=f"environment variable holding the API key (default {DEFAULT_KEY_ENV}; the OS keyring "
            "is asked when it is unset and the keyring package is installed; a local server needs none)",
        )
        sp.add_argument("--prompt-file", metavar="FILE", help="your own prompt (UTF-8 text; default: the built-in one)")
        sp.add_argument("--concurrency", type=positive_int, default=4, help="requests in flight at once (default 4)")
        sp.add_argument("--timeout", type=positive_float, default=60.0, help="seconds per request (default 60)")
        sp.add_argument("--retries", type=int, default=4, help="retries on 429 / 5xx / timeouts (default 4)")
        sp.add_argument(
            "--image-side",
            type=positive_int,
            default=768,
            help="longest side of the images sent, px (default 768; 512-1024 is usual)",
        )
        sp.add_argument(
            "--no-json-mode",
            action="store_true",
            help="do not ask for response_format json_object (for servers that reject it)",
        )
        sp.add_argument(
            "--price-in",
            type=_price,
            default=0.0,
            metavar="USD",
            help="price per million input tokens (default 0: free, e.g. a local server)",
        )
        sp.add_argument(
            "--price-out", type=_price, default=0.0, metavar="USD", help="price per million output tokens (default 0)"
        )
        sp.add_argument(
            "--tokens-per-image",
            type=positive_int,
            metavar="N",
            help="input tokens one image costs (default: measured on earlier calls, else OpenAI's tile rule)",
        )
        sp.add_argument(
            "--cap",
            type=_price,
            metavar="USD",
            help=f"stop before spending more than this (default with prices: the estimate + "
            f"{round(100 * DEFAULT_CAP_MARGIN)}%%)",
        )
        sp.add_argument(
            "--yes", "-y", action="store_true", help="start without asking (needed off a terminal when it costs money)"
        )
        sp.add_argument("--dry-run", action="store_true", help="show what would be sent and its cost, send nothing")

    sp = sub.add_parser(
        "agreement",
        help="ask the LLM about pairs you labelled (held-out first) and report how often it agrees with you",
    )
    endpoint_args(sp)
    sp.add_argument(
        "--pairs",
        type=positive_int,
        default=100,
        help="how many of your pairs to ask about (default 100; 2 calls each)",
    )
    sp.set_defaults(handler=f"{HERE}:cmd_agreement")

    sp = sub.add_parser(
        "run", help="label new pairs with the LLM (after `prelabel agreement`); resumes an interrupted run"
    )
    endpoint_args(sp)
    sp.add_argument("--pairs", type=positive_int, default=100, help="new pairs to label (default 100; 2 calls each)")
    sp.add_argument(
        "--near-share",
        type=_share,
        default=0.5,
        help="share of pairs between embedding neighbours; the rest random (default 0.5)",
    )
    sp.add_argument(
        "--trust",
        type=_unit_float,
        metavar="Q",
        help="how sure each label counts as, 0.5-1 (default: the measured agreement)",
    )
    sp.add_argument(
        "--restart", action="store_true", help="forget the unfinished pairs of an interrupted run and pick new ones"
    )
    sp.add_argument("--seed", type=int, help="pair-picking seed (default: varies with each run)")
    sp.add_argument(
        "--prompt", type=positive_int, metavar="ID", help="a stored prompt version (`prelabel prompts` lists them)"
    )
    sp.add_argument(
        "--pool", choices=("all", "subset"), default="all", help="pick pairs among every image or the `joyq subset`"
    )
    sp.set_defaults(handler=f"{HERE}:cmd_run")

    sp = sub.add_parser(
        "key",
        help="save the API key in the OS keyring (typed or piped in, never on the command line) or remove it",
    )
    sp.add_argument("action", choices=("save", "remove"))
    sp.add_argument(
        "--key-env",
        default=DEFAULT_KEY_ENV,
        metavar="VAR",
        help=f"the name the key is saved under, as for --key-env elsewhere (default {DEFAULT_KEY_ENV})",
    )
    sp.set_defaults(handler=f"{HERE}:cmd_key")
    # -- issue 21: compare models and prompts, optimise the prompt, list prompt versions ------
    sp = sub.add_parser(
        "compare", help="ask several models (and prompts) about the same pairs you labelled and compare them"
    )
    endpoint_args(sp)
    sp.set_defaults(model=None)
    for action in sp._actions:  # --model and --prompt-file may be given several times here
        if action.dest in ("model", "prompt_file"):
            action.required, action.default = action.dest == "model", None
            action.__class__ = argparse._AppendAction
            action.help = (action.help or "") + " (repeat to compare several)"
    sp.add_argument(
        "--price",
        action="append",
        default=[],
        metavar="MODEL=IN,OUT",
        help="a model's own prices per million tokens (default: --price-in/--price-out)",
    )
    sp.add_argument("--pairs", type=positive_int, default=100, help="your pairs to ask about (default 100)")
    sp.set_defaults(handler=f"{HERE}_recipe:cmd_compare")

    sp = sub.add_parser(
        "optimise",
        help="let an editor LLM improve the prompt, judged on fresh pairs each round and a final held-out set",
    )
    endpoint_args(sp)
    sp.add_argument("--editor-model", required=True, metavar="NAME", help="the LLM that rewrites the prompt")
    sp.add_argument("--editor-endpoint", metavar="URL", help="its base URL (default: --endpoint)")
    sp.add_argument(
        "--editor-key-env", metavar="VAR", help="environment variable holding the editor's key (default: --key-env)"
    )
    sp.add_argument("--editor-price-in", type=_price, default=0.0, metavar="USD", help="editor, per million input")
    sp.add_argument("--editor-price-out", type=_price, default=0.0, metavar="USD", help="editor, per million output")
    sp.add_argument("--rounds", type=positive_int, default=4, help="rounds including the start (default 4)")
    sp.add_argument("--pairs-per-round", type=positive_int, default=40, help="your pairs per round (default 40)")
    sp.add_argument("--held-out", type=positive_int, help="pairs of the final measurement (default: pairs per round)")
    sp.add_argument(
        "--fixed-set", action="store_true", help="reuse one pair set every round (to measure overfitting; not advised)"
    )
    sp.add_argument("--patience", type=positive_int, default=2, help="rounds without a clear gain before stopping")
    sp.add_argument("--seed", type=int, default=0, help="how your pairs are shuffled into sets (default 0)")
    sp.set_defaults(handler=f"{HERE}_recipe:cmd_optimise")

    sp = sub.add_parser("prompts", help="list the prompt versions stored in the folder, with their agreement")
    sp.add_argument("folder")
    sp.add_argument("--show", type=positive_int, metavar="ID", help="print one prompt's full text")
    sp.set_defaults(handler=f"{HERE}_recipe:cmd_prompts")

    sp = sub.add_parser("status", help="LLM labels, spending and whether training uses them")
    sp.add_argument("folder")
    use = sp.add_mutually_exclusive_group()
    use.add_argument("--include", action="store_true", help="let training use the LLM labels (the default)")
    use.add_argument("--exclude", action="store_true", help="leave the LLM labels out of training (they are kept)")
    sp.set_defaults(handler=f"{HERE}:cmd_status")


# -- shared ---------------------------------------------------------------------------------
def _config(args):
    from ..prelabel import EndpointConfig

    return EndpointConfig(
        base_url=args.endpoint,
        model=args.model,
        key_env=args.key_env,
        timeout=args.timeout,
        retries=args.retries,
        concurrency=args.concurrency,
        image_side=args.image_side,
        json_mode=not args.no_json_mode,
    ).check()


def _pricing(args):
    from ..prelabel import Pricing

    return Pricing(args.price_in, args.price_out, args.tokens_per_image)


def _open(folder: str):
    from .common import open_project, scan_with_progress

    project = open_project(folder)
    try:
        scan_with_progress(project)
    except BaseException:
        project.close()
        raise
    return project


def _pct(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{100 * x:.0f}%"


def _cap(args, estimate: float, pricing) -> float | None:
    if args.cap is not None:
        return args.cap
    if pricing.free or estimate == 0:
        return None
    return math.ceil(estimate * (1 + DEFAULT_CAP_MARGIN) * 100) / 100


def _describe_cost(calls: int, cached: int, est, pricing, cap: float | None, args) -> list[str]:
    from ..prelabel import format_usd

    lines = [f"calls: {calls} to send" + (f" ({cached} already answered, free)" if cached else "")]
    if pricing.free:
        lines.append(
            "cost: no price set (--price-in/--price-out), so it is not estimated and no cap "
            "applies; a local server costs nothing"
        )
    else:
        lines.append(
            f"cost: about {format_usd(calls * est.cost)} ({format_usd(est.cost)} a call: "
            f"{est.input_tokens} input + {est.output_tokens} output tokens, {est.basis})"
        )
    if cap is not None:
        lines.append(
            f"cap: stops before spending more than {format_usd(cap)}"
            + (" (the estimate + 25%; set --cap)" if args.cap is None else "")
        )
    return lines


def _confirm(args, calls: int, cost: float, cap: float | None) -> bool:
    """True to go on. Paid runs need --yes off a terminal, or a 'y' on one."""
    from ..prelabel import format_usd

    if args.dry_run:
        print("dry run: nothing was sent.")
        return False
    if calls == 0 or cost == 0 or args.yes:
        return True
    limit = format_usd(cap if cap is not None else cost)
    if not sys.stdin.isatty():
        raise UsageError(
            f"This would spend about {format_usd(cost)} (at most {limit}); add --yes to start without a question."
        )
    answer = input(f"Send {calls} calls for about {format_usd(cost)} (at most {limit})? [y/N] ")
    if answer.strip().lower() not in ("y", "yes"):
        print("nothing was sent.")
        return False
    return True


class _Progress:
    """AskProgress -> the shared progress line, with the money spent in its label."""

    def __init__(self, label: str):
        self.line = ProgressLine(label, "call")
        self.label = label

    def __call__(self, p) -> None:
        from ..prelabel import format_usd

        if p.calls_total:
            self.line.label = f"{self.label} ({format_usd(p.spent)})" if p.spent else self.label
            self.line(p.calls_done, p.calls_total, p.rate)


def _ask_summary(ask) -> str:
    from ..prelabel import format_usd

    parts = [f"{ask.calls_paid} answered now", f"{ask.calls_cached} from the cache"]
    if ask.malformed:
        parts.append(f"{ask.malformed} malformed")
    if ask.failed:
        parts.append(f"{ask.failed} failed")
    if ask.retries:
        parts.append(f"{ask.retries} retries")
    return f"calls: {', '.join(parts)}; spent {format_usd(ask.spent)} now"


def _stop_note(ask, folder: str) -> list[str]:
    lines = []
    if ask.stopped == "cap":
        lines.append("stopped at the spending cap; rerun with a higher --cap to continue (answers so far are kept).")
    elif ask.stopped == "failures":
        lines.append("stopped: the endpoint failed too many calls in a row; rerun later to continue.")
    elif ask.stopped == "cancelled":
        lines.append("cancelled; rerun to continue where it stopped.")
    if ask.missing_images:
        lines.append(f"{ask.missing_images} pairs skipped: an image is no longer in {folder}.")
    lines += [f"  {e}" for e in ask.errors[:3]]
    return lines


# -- commands -------------------------------------------------------------------------------
def cmd_agreement(args) -> int:
    from ..prelabel import LLMClient, load_prompt, measure_agreement, plan_agreement

    config, pricing, prompt = _config(args), _pricing(args), load_prompt(args.prompt_file)
    with _open(args.folder) as project:
        plan = plan_agreement(project, config.model, prompt, pricing, config.image_side, args.pairs)
        cap = _cap(args, plan.cost, pricing)
        total_calls = 2 * len(plan.pairs)
        print(
            f"agreement check: {len(plan.pairs)} of your pairs ({plan.held_out} held out), both orders, "
            f"model {config.model}, prompt {prompt.hash}"
        )
        for line in _describe_cost(
            plan.calls_needed, total_calls - plan.calls_needed, plan.estimate, pricing, cap, args
        ):
            print(line)
        print(f"privacy: the images of these pairs are sent to {config.base_url}.")
        if not _confirm(args, plan.calls_needed, plan.cost, cap):
            return EXIT_OK
        client = LLMClient(config)
        try:
            report, ask = measure_agreement(project, client, plan, cap=cap, progress=_Progress("asking"))
        finally:
            client.close()
        for line in format_agreement(report, project):
            print(line)
        print(_ask_summary(ask))
        for line in _stop_note(ask, str(project.folder)):
            print(line)
    return EXIT_FAILED_FILES if ask.failed else EXIT_OK


def format_agreement(report, project=None) -> list[str]:
    """The agreement report as lines of text (shared wording for the CLI)."""
    from ..prelabel.agreement import MIN_PAIRS_FOR_TRUST

    def name(h: str) -> str:
        p = project.path_of(h) if project is not None else None
        return p.relative_to(project.folder).as_posix() if p is not None else h[:12]

    lines = []
    if report.n == 0:
        lines.append(
            f"agreement: not measured (no pair got a side chosen by both {report.model} and you; "
            f"{report.failed} of {report.pairs} pairs failed)."
        )
        return lines
    lo, hi = report.interval
    lines.append(
        f"agreement: {report.model} chose as you did on {_pct(report.agreement)} of pairs "
        f"(95% interval {_pct(lo)}-{_pct(hi)}, {report.agree} of {report.n} pairs where both chose a side, "
        f"{report.held_out} of them held out)"
    )
    lines.append(
        f"position bias: {_pct(report.inconsistent_rate)} of {report.answered} answered pairs flipped with "
        f"the order (counted as ties); ties in all: {_pct(report.tie_rate)}"
    )
    if report.failed:
        lines.append(f"no verdict: {report.failed} pairs (a malformed or missing answer)")
    if report.disagreements:
        lines.append("where it disagreed with you:")
        for d in report.disagreements:
            yours = name(d.a) if d.user_outcome == 1.0 else name(d.b)
            other = name(d.b) if d.user_outcome == 1.0 else name(d.a)
            reason = d.reasons[0] if d.llm_outcome == 1.0 else d.reasons[1]
            lines.append(f"  you chose {yours} over {other}; it said: {reason}")
    if report.n < MIN_PAIRS_FOR_TRUST:
        lines.append(
            f"verdict: {report.n} pairs are too few to tell (at least {MIN_PAIRS_FOR_TRUST} are needed to "
            "weight labels by it); ask about more pairs."
        )
    elif not report.better_than_chance:
        lines.append("verdict: its agreement cannot be told apart from chance; its labels would be noise.")
    else:
        lines.append(
            f"verdict: its labels would count as {_pct(report.trust())} sure "
            "(`joyq prelabel run` uses this agreement as their weight)."
        )
    return lines


def cmd_run(args) -> int:
    from ..prelabel import (
        LLMClient,
        execute_run,
        format_usd,
        llm_labels_included,
        load_prompt,
        plan_run,
    )

    config, pricing, prompt = _config(args), _pricing(args), load_prompt(args.prompt_file)
    with _open(args.folder) as project:
        if getattr(args, "prompt", None) is not None:
            if args.prompt_file:
                raise UsageError("Give either --prompt or --prompt-file, not both.")
            from ..prelabel.prompts import load_version

            prompt = load_version(project, args.prompt)
        plan = plan_run(
            project,
            config.model,
            prompt,
            pricing,
            args.pairs,
            config.image_side,
            trust=args.trust,
            near_share=args.near_share,
            seed=args.seed,
            resume=not args.restart,
            pool=getattr(args, "pool", "all"),
        )
        if plan.resumed:
            print(
                f"resuming an interrupted run: {len(plan.resumed)} pairs left (--pairs applies to the next "
                "new run; --restart drops them)"
            )
        else:
            kinds = {k: sum(1 for *_, kind in plan.new if kind == k) for k in ("near", "random", "model")}
            made = ", ".join(f"{n} {k}" for k, n in kinds.items() if n)
            note = (
                f"embeddings of {plan.tower}"
                if plan.tower
                else "no cached embeddings, so no near pairs (run `joyq score` first)"
            )
            print(f"plan: {len(plan.new)} new pairs ({made}; {note})")
            if plan.dropped:
                print(f"dropping {plan.dropped} unfinished pairs of an interrupted run")
        print(f"trust: each label counts as {_pct(plan.trust)} sure toward the LLM's choice ({plan.trust_basis})")
        cap = _cap(args, plan.cost, pricing)
        for line in _describe_cost(plan.calls_needed, 0, plan.estimate, pricing, cap, args):
            print(line)
        print(f"privacy: the images of these pairs are sent to {config.base_url}.")
        if not _confirm(args, plan.calls_needed, plan.cost, cap):
            return EXIT_OK
        client = LLMClient(config)
        try:
            report = execute_run(project, client, plan, cap=cap, progress=_Progress("labelling"))
        finally:
            client.close()
        ask = report.ask
        print(
            f"labelled {report.labelled} pairs as {report.source} (weight {report.trust:.3f}; {report.ties} ties, "
            f"{report.inconsistent} of them order-inconsistent)"
            + (f"; {report.failed_pairs} pairs got no label (malformed answer)" if report.failed_pairs else "")
        )
        print(_ask_summary(ask))
        if report.pending:
            print(f"{report.pending} planned pairs are still unanswered; rerun the same command to finish them.")
        for line in _stop_note(ask, str(project.folder)):
            print(line)
        used = "included in" if llm_labels_included(project) else "excluded from"
        print(
            f"LLM labels are {used} training (`joyq prelabel status {args.folder} --include/--exclude`); "
            f"total spent with {config.model}: {format_usd(_spent(project, config.model))}."
        )
    return EXIT_FAILED_FILES if ask.failed else EXIT_OK


def _spent(project, model: str) -> float:
    from ..prelabel.cache import total_spent

    return total_spent(project, model)[0]


def cmd_status(args) -> int:
    from ..prelabel import (
        format_usd,
        llm_label_counts,
        llm_labels_included,
        set_llm_labels_included,
    )
    from ..prelabel.cache import ensure_tables, total_spent
    from .common import open_project

    with open_project(args.folder) as project:
        ensure_tables(project)
        if args.include or args.exclude:
            set_llm_labels_included(project, bool(args.include))
        counts = llm_label_counts(project)
        spent, calls = total_spent(project)
        if not counts:
            print("no LLM labels yet.")
        for source, n in counts.items():
            print(f"{source}: {n} labels")
        print(f"LLM calls paid in this project: {calls}, {format_usd(spent)} at the prices given")
        print(f"training {'uses' if llm_labels_included(project) else 'leaves out'} the LLM labels.")
    return EXIT_OK


def cmd_key(args) -> int:
    """`joyq prelabel key save|remove`: the OS keyring only; the key never touches a file of ours."""
    from ..prelabel.client import remove_api_key, save_api_key

    if args.action == "remove":
        removed = remove_api_key(args.key_env)
        print(
            f"removed the API key saved as {args.key_env} from the OS keyring."
            if removed
            else f"no API key was saved as {args.key_env} in the OS keyring; nothing to remove."
        )
        return EXIT_OK
    if sys.stdin.isatty():
        import getpass

        key = getpass.getpass(f"API key to save as {args.key_env} (not shown): ")
    else:
        key = sys.stdin.readline()
    save_api_key(key, args.key_env)
    print(
        f"saved the API key as {args.key_env} in the OS keyring; `joyq prelabel` finds it when "
        f"the environment variable {args.key_env} is unset."
    )
    return EXIT_OK
