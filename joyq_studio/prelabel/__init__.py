"""Pre-label pairs with a vision LLM, after measuring how often it agrees with the user.

The loop (issue #15; user guide: docs/prelabel.md):

1. :func:`plan_agreement` / :func:`measure_agreement`: ask an OpenAI-compatible endpoint
   about pairs the user labelled (held-out first), both orders, and report agreement with
   a Wilson 95% interval, the order-inconsistent share and the tie rate.
2. :func:`plan_run` / :func:`execute_run`: pick new pairs (fixed-k, half embedding-near,
   or a caller's chooser), show the estimated cost, and store the LLM's verdicts as
   comparisons (split 'train', kind 'llm', source 'llm:MODEL:PROMPTHASH', weight = trust),
   stopping at a spending cap.
3. Training reads them through :func:`training_records` and :func:`soft_target`.

Modules: ``prompt`` (the question and the strict answer parser), ``client`` (the HTTP
client, retries, image encoding), ``cost``, ``cache`` (the project's LLM tables),
``engine`` (the concurrent, resumable ask loop), ``agreement``, ``labels``
(verdicts, soft targets, include/exclude), ``run``; pairs come from ``pairing.fixedk``.
Importing this package imports neither ``openai`` nor torch; a client does, when it is made.
"""

from .agreement import AgreementReport, wilson_interval  # wilson_interval lives in metrics
from .cache import parse_source, source_name
from .client import (
    DEFAULT_KEY_ENV,
    CallFailed,
    EndpointConfig,
    LLMClient,
    LLMError,
    resolve_api_key,
)
from .cost import Pricing, estimate_call, format_usd
from .engine import AskProgress, AskReport
from .labels import (
    combine,
    llm_label_counts,
    llm_labels_included,
    set_llm_labels_included,
    set_trust,
    soft_target,
    training_records,
)
from .prompt import (
    DEFAULT_PROMPT,
    MalformedAnswer,
    Prompt,
    default_prompt,
    load_prompt,
    parse_answer,
)
from .run import (
    AgreementPlan,
    PrelabelError,
    RunPlan,
    RunReport,
    agreement_from_cache,
    execute_run,
    measure_agreement,
    plan_agreement,
    plan_run,
)

__all__ = [
    "DEFAULT_KEY_ENV",
    "DEFAULT_PROMPT",
    "AgreementPlan",
    "AgreementReport",
    "AskProgress",
    "AskReport",
    "CallFailed",
    "EndpointConfig",
    "LLMClient",
    "LLMError",
    "MalformedAnswer",
    "PrelabelError",
    "Pricing",
    "Prompt",
    "RunPlan",
    "RunReport",
    "agreement_from_cache",
    "combine",
    "default_prompt",
    "estimate_call",
    "execute_run",
    "format_usd",
    "llm_label_counts",
    "llm_labels_included",
    "load_prompt",
    "measure_agreement",
    "parse_answer",
    "parse_source",
    "plan_agreement",
    "plan_run",
    "resolve_api_key",
    "set_llm_labels_included",
    "set_trust",
    "soft_target",
    "source_name",
    "training_records",
    "wilson_interval",
]
