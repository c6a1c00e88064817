"""Pre-label pairs with a vision LLM: endpoint settings, the agreement check with its
interval, the cost estimate, then a labelling run with progress and cancel.

Every step runs the core (:mod:`joyq_studio.prelabel`) on a worker thread, each opening
its own connection to the project. Nothing is sent to the endpoint until the user presses
a button *and* confirms the estimate; the settings (never the key) are remembered.
"""

from __future__ import annotations

import html
import math
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ...prelabel import (
    DEFAULT_KEY_ENV,
    AskProgress,
    EndpointConfig,
    LLMClient,
    Pricing,
    execute_run,
    format_usd,
    load_prompt,
    measure_agreement,
    plan_agreement,
    plan_run,
    resolve_api_key,
)
from ...prelabel.agreement import AgreementReport
from ...store import Project
from ..util import settings
from ..workers import Task, TaskRunner

PRIVACY = (
    "Pre-labelling sends the images of the pairs it asks about to the endpoint below (downscaled "
    "to the image size set here). Nothing is sent until you start a check or a run and confirm "
    "its estimate."
)
SETTINGS_GROUP = "prelabel"
CAP_MARGIN = 0.25


def _pct(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{100 * x:.0f}%"


def agreement_html(rep: AgreementReport, names=lambda h: h[:12]) -> str:
    """The agreement result for the dialog: value, interval, count, bias, ties, disagreements."""
    if rep.n == 0:
        return (
            f"<b>Not measured</b>: no pair got a side chosen by both {html.escape(rep.model)} and you "
            f"({rep.failed} of {rep.pairs} pairs had no valid answer)."
        )
    lo, hi = rep.interval
    parts = [
        (
            f"<b>Agreement {_pct(rep.agreement)}</b> (95% interval {_pct(lo)}&ndash;{_pct(hi)}; "
            f"{rep.agree} of {rep.n} pairs where both of you chose a side, {rep.held_out} held out)"
        ),
        (
            f"Position bias: {_pct(rep.inconsistent_rate)} of {rep.answered} answered pairs flipped with the "
            f"order (counted as ties); ties in all {_pct(rep.tie_rate)}."
        ),
    ]
    if rep.failed:
        parts.append(f"{rep.failed} pairs got no valid answer.")
    trust = rep.trust()
    if trust is None:
        parts.append(
            "<b>Too few pairs or too close to chance</b> to weight its labels by; ask about more "
            "pairs, try another model or prompt, or set the trust yourself."
        )
    else:
        parts.append(f"Its labels will count as {_pct(trust)} sure toward its choice.")
    if rep.disagreements:
        items = "".join(
            f"<li>you chose {html.escape(names(d.a if d.user_outcome == 1.0 else d.b))}; it said: "
            f"{html.escape(d.reasons[0] if d.llm_outcome == 1.0 else d.reasons[1])}</li>"
            for d in rep.disagreements[:3]
        )
        parts.append(f"Where it disagreed with you:<ul>{items}</ul>")
    return "<br>".join(parts)


class PrelabelDialog(QDialog):
    """Opened on a project folder; ``labels_added(n)`` fires after a run stored labels, so
    the window can refresh its counts."""

    labels_added = Signal(int)

    def __init__(self, folder: str | Path, runner: TaskRunner | None = None, parent: QWidget | None = None):
        super().__init__(parent)
        self.folder = Path(folder)
        self.runner = runner or TaskRunner()
        self._own_runner = runner is None
        self.task: Task | None = None
        self.setWindowTitle("Pre-label with a vision LLM - JoyQuality Studio")
        # a hook for tests; returns True to go on
        self.confirm = self._ask_user

        privacy = QLabel(PRIVACY, self)
        privacy.setWordWrap(True)
        privacy.setObjectName("privacy")

        ep = QGroupBox("Endpoint (any OpenAI-compatible server)", self)
        self.url = QLineEdit(self)
        self.url.setPlaceholderText("https://api.openai.com/v1  or  http://localhost:11434/v1")
        self.model = QLineEdit(self)
        self.model.setPlaceholderText("a vision model, e.g. gpt-4o-mini")
        self.key_env = QLineEdit(DEFAULT_KEY_ENV, self)
        self.key_env.setToolTip(
            "The name of the environment variable holding the API key (the OS keyring is "
            "asked when it is unset and the keyring package is installed). The key itself "
            "is never shown or saved."
        )
        self.key_state = QLabel(self)
        self.key_env.textChanged.connect(self._update_key_state)
        self.prompt_file = QLineEdit(self)
        self.prompt_file.setPlaceholderText("(built-in prompt)")
        self.price_in, self.price_out = self._money(0.0, 1000.0, 4), self._money(0.0, 1000.0, 4)
        self.price_in.setToolTip("US dollars per million input tokens (0 for a local server)")
        self.price_out.setToolTip("US dollars per million output tokens")
        self.image_side = QSpinBox(self)
        self.image_side.setRange(256, 2048)
        self.image_side.setSingleStep(64)
        self.image_side.setValue(768)
        self.image_side.setSuffix(" px")
        self.concurrency = QSpinBox(self)
        self.concurrency.setRange(1, 64)
        self.concurrency.setValue(4)
        self.timeout = QDoubleSpinBox(self)
        self.timeout.setRange(1, 600)
        self.timeout.setValue(60)
        self.timeout.setSuffix(" s")
        form = QFormLayout(ep)
        form.addRow("URL", self.url)
        form.addRow("Model", self.model)
        key_row = QHBoxLayout()
        key_row.addWidget(self.key_env, 1)
        key_row.addWidget(self.key_state, 1)
        form.addRow("API key variable", key_row)
        form.addRow("Prompt file", self.prompt_file)
        prices = QHBoxLayout()
        prices.addWidget(QLabel("input $", self))
        prices.addWidget(self.price_in)
        prices.addWidget(QLabel("output $", self))
        prices.addWidget(self.price_out)
        prices.addWidget(QLabel("per million tokens", self))
        form.addRow("Price", prices)
        tech = QHBoxLayout()
        tech.addWidget(self.image_side)
        tech.addWidget(QLabel("requests at once", self))
        tech.addWidget(self.concurrency)
        tech.addWidget(QLabel("timeout", self))
        tech.addWidget(self.timeout)
        form.addRow("Image size", tech)

        ag = QGroupBox("1. How often does it agree with you?", self)
        self.agree_pairs = QSpinBox(self)
        self.agree_pairs.setRange(5, 100_000)
        self.agree_pairs.setValue(100)
        self.agree_pairs.setSuffix(" of your pairs")
        self.check_button = QPushButton("Check agreement...", self)
        self.check_button.clicked.connect(self.start_agreement)
        self.agreement_label = QLabel(
            "Not measured yet: asks the LLM about pairs you labelled (held-out ones first), in both orders.", self
        )
        self.agreement_label.setWordWrap(True)
        self.agreement_label.setTextFormat(Qt.TextFormat.RichText)
        self.agreement_label.setObjectName("agreement")
        lay = QVBoxLayout(ag)
        row = QHBoxLayout()
        row.addWidget(self.agree_pairs)
        row.addStretch(1)
        row.addWidget(self.check_button)
        lay.addLayout(row)
        lay.addWidget(self.agreement_label)

        lb = QGroupBox("2. Label new pairs", self)
        self.run_pairs = QSpinBox(self)
        self.run_pairs.setRange(1, 1_000_000)
        self.run_pairs.setValue(500)
        self.run_pairs.setSuffix(" pairs")
        self.run_pairs.setToolTip(
            "Half between similar images (needs scores), half random; an interrupted run is resumed first"
        )
        self.own_trust = QCheckBox("Set the trust myself:", self)
        self.trust = QDoubleSpinBox(self)
        self.trust.setRange(0.5, 1.0)
        self.trust.setSingleStep(0.05)
        self.trust.setValue(0.75)
        self.trust.setEnabled(False)
        self.own_trust.toggled.connect(self.trust.setEnabled)
        self.own_trust.setToolTip("Default: each label counts as sure as the measured agreement")
        self.cap = self._money(0.0, 100_000.0, 2)
        self.cap.setToolTip("Stop before spending more than this (0: the estimate + 25%)")
        self.run_button = QPushButton("Label pairs...", self)
        self.run_button.clicked.connect(self.start_run)
        self.run_label = QLabel(self)
        self.run_label.setWordWrap(True)
        self.run_label.setObjectName("run")
        lay = QVBoxLayout(lb)
        row = QHBoxLayout()
        row.addWidget(self.run_pairs)
        row.addWidget(self.own_trust)
        row.addWidget(self.trust)
        row.addWidget(QLabel("cap $", self))
        row.addWidget(self.cap)
        row.addStretch(1)
        row.addWidget(self.run_button)
        lay.addLayout(row)
        lay.addWidget(self.run_label)

        self.progress = QProgressBar(self)
        self.progress.setVisible(False)
        self.status = QLabel(self)
        self.status.setWordWrap(True)
        self.status.setObjectName("status")
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.cancel_button = QPushButton("Cancel", self)
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        self.close_button = QPushButton("Close", self)
        self.close_button.clicked.connect(self.reject)

        outer = QVBoxLayout(self)
        for w in (privacy, ep, ag, lb, self.progress, self.status):
            outer.addWidget(w)
        row = QHBoxLayout()
        row.addStretch(1)
        row.addWidget(self.cancel_button)
        row.addWidget(self.close_button)
        outer.addLayout(row)
        self.resize(720, 0)
        self._load_settings()
        self._update_key_state()

    # -- settings ------------------------------------------------------------------------
    def _money(self, lo: float, hi: float, decimals: int) -> QDoubleSpinBox:
        box = QDoubleSpinBox(self)
        box.setRange(lo, hi)
        box.setDecimals(decimals)
        return box

    def _load_settings(self) -> None:
        s = settings()
        s.beginGroup(SETTINGS_GROUP)
        self.url.setText(str(s.value("url", "")))
        self.model.setText(str(s.value("model", "")))
        self.key_env.setText(str(s.value("key_env", DEFAULT_KEY_ENV)))
        self.prompt_file.setText(str(s.value("prompt_file", "")))
        for box, key in ((self.price_in, "price_in"), (self.price_out, "price_out")):
            try:
                box.setValue(float(str(s.value(key, 0.0))))
            except (TypeError, ValueError):
                pass
        s.endGroup()

    def _save_settings(self) -> None:
        s = settings()
        s.beginGroup(SETTINGS_GROUP)
        s.setValue("url", self.url.text().strip())
        s.setValue("model", self.model.text().strip())
        s.setValue("key_env", self.key_env.text().strip())  # the variable's name, never the key
        s.setValue("prompt_file", self.prompt_file.text().strip())
        s.setValue("price_in", self.price_in.value())
        s.setValue("price_out", self.price_out.value())
        s.endGroup()
        s.sync()

    def _update_key_state(self) -> None:
        name = self.key_env.text().strip()
        try:
            found = bool(name) and resolve_api_key(name) is not None
        except Exception:  # noqa: BLE001 - a broken keyring: same as no key
            found = False
        self.key_state.setText("key found" if found else "not set (fine for a local server)")

    def config(self) -> EndpointConfig:
        return EndpointConfig(
            base_url=self.url.text().strip(),
            model=self.model.text().strip(),
            key_env=self.key_env.text().strip(),
            timeout=self.timeout.value(),
            concurrency=self.concurrency.value(),
            image_side=self.image_side.value(),
        ).check()

    def pricing(self) -> Pricing:
        return Pricing(self.price_in.value(), self.price_out.value())

    # -- the two steps ---------------------------------------------------------------------
    def start_agreement(self) -> None:
        """Plan (no network) on a worker, show the estimate, ask, then measure."""
        if self.task is not None:
            return
        try:
            prompt_file = self.prompt_file.text().strip() or None
            config, pricing, prompt = self.config(), self.pricing(), load_prompt(prompt_file)
        except Exception as e:  # noqa: BLE001 - JoyqError sentences for bad settings
            self.status.setText(str(e))
            return
        self._save_settings()
        folder, n = self.folder, self.agree_pairs.value()

        def plan_job(report, cancelled):
            with Project(folder) as p:
                return plan_agreement(p, config.model, prompt, pricing, config.image_side, n)

        def planned(plan) -> None:
            text = (
                f"Ask about {len(plan.pairs)} of your pairs ({plan.held_out} held out), both orders: "
                f"{plan.calls_needed} calls to send{self._cost_text(plan.calls_needed, plan.cost, pricing)}"
            )
            cap = self._cap(plan.cost, pricing)
            if plan.calls_needed and not self.confirm(
                f"{text}.\n\nThe images of these pairs are sent to {config.base_url}. Start?"
            ):
                self.status.setText("Nothing was sent.")
                return

            def job(report, cancelled):
                client = LLMClient(config)
                try:
                    with Project(folder) as p:
                        return measure_agreement(p, client, plan, cap=cap, progress=report, cancel=cancelled)
                finally:
                    client.close()

            self._run("prelabel-agreement", job, self._agreement_done, "Asking...")

        self._run("prelabel-plan", plan_job, planned, "Choosing pairs...")

    def _agreement_done(self, result) -> None:
        report, ask = result
        with Project(self.folder) as p:

            def name(h: str) -> str:
                path = p.path_of(h)
                return path.name if path else h[:12]

            self.agreement_label.setText(agreement_html(report, name))
        self.status.setText(self._ask_text(ask))

    def start_run(self) -> None:
        if self.task is not None:
            return
        try:
            prompt_file = self.prompt_file.text().strip() or None
            config, pricing, prompt = self.config(), self.pricing(), load_prompt(prompt_file)
        except Exception as e:  # noqa: BLE001
            self.status.setText(str(e))
            return
        self._save_settings()
        folder, n = self.folder, self.run_pairs.value()
        trust = self.trust.value() if self.own_trust.isChecked() else None

        def plan_job(report, cancelled):
            with Project(folder) as p:
                return plan_run(p, config.model, prompt, pricing, n, config.image_side, trust=trust)

        def planned(plan) -> None:
            what = (
                f"Resume {len(plan.resumed)} pairs of an interrupted run"
                if plan.resumed
                else f"Label {len(plan.new)} new pairs"
            )
            cap = self._cap(plan.cost, pricing)
            text = (
                f"{what}, each counting as {_pct(plan.trust)} sure ({plan.trust_basis}): {plan.calls_needed} "
                f"calls to send{self._cost_text(plan.calls_needed, plan.cost, pricing)}"
                + (f", stopping before {format_usd(cap)}" if cap is not None else "")
            )
            self.run_label.setText(text + ".")
            if not self.confirm(f"{text}.\n\nThe images of these pairs are sent to {config.base_url}. Start?"):
                self.status.setText("Nothing was sent.")
                return

            def job(report, cancelled):
                client = LLMClient(config)
                try:
                    with Project(folder) as p:
                        return execute_run(p, client, plan, cap=cap, progress=report, cancel=cancelled)
                finally:
                    client.close()

            self._run("prelabel-run", job, self._run_done, "Labelling...")

        self._run("prelabel-plan", plan_job, planned, "Choosing pairs...")

    def _run_done(self, report) -> None:
        self.run_label.setText(
            f"Labelled {report.labelled} pairs ({report.ties} ties, {report.inconsistent} "
            f"order-inconsistent)"
            + (f"; {report.pending} still to do - label again to finish them" if report.pending else "")
            + "."
        )
        self.status.setText(self._ask_text(report.ask))
        if report.labelled:
            self.labels_added.emit(report.labelled)

    # -- plumbing ------------------------------------------------------------------------------
    def _cap(self, estimate: float, pricing: Pricing) -> float | None:
        if self.cap.value() > 0:
            return self.cap.value()
        if pricing.free or estimate == 0:
            return None
        return math.ceil(estimate * (1 + CAP_MARGIN) * 100) / 100

    @staticmethod
    def _cost_text(calls: int, cost: float, pricing: Pricing) -> str:
        if not calls:
            return " (all answered already: free)"
        if pricing.free:
            return " (no price set, so the cost is not estimated)"
        return f", about {format_usd(cost)}"

    @staticmethod
    def _ask_text(ask) -> str:
        parts = [f"{ask.calls_paid} calls answered now, {ask.calls_cached} from the cache"]
        if ask.malformed:
            parts.append(f"{ask.malformed} malformed")
        if ask.failed:
            parts.append(f"{ask.failed} failed")
        text = ", ".join(parts) + f"; spent {format_usd(ask.spent)}."
        if ask.stopped == "cap":
            text += " Stopped at the cap; raise it and start again to continue."
        elif ask.stopped == "failures":
            text += " Stopped: the endpoint failed too many calls in a row; try again later."
        if ask.errors:
            text += " " + ask.errors[0]
        return text

    def _ask_user(self, text: str) -> bool:
        answer = QMessageBox.question(
            self,
            "Send to the endpoint?",
            text,
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
            QMessageBox.StandardButton.No,
        )
        return answer == QMessageBox.StandardButton.Yes

    def _run(self, name: str, job, on_success, text: str) -> None:
        task = Task(name, job, self, 0.1)
        task.progress.connect(self._on_progress)
        task.succeeded.connect(on_success)
        task.failed.connect(self.status.setText)
        task.cancelled_.connect(
            lambda: self.status.setText(
                "Cancelled; every answer received is kept, and starting again continues where it stopped."
            )
        )
        task.done.connect(lambda t=task: self._on_done(t))
        self.task = task
        self.status.setText(text)
        self.progress.setVisible(True)
        self.progress.setRange(0, 0)
        self.cancel_button.setEnabled(True)
        for b in (self.check_button, self.run_button):
            b.setEnabled(False)
        self.runner.start(task)

    def _on_progress(self, p) -> None:
        if isinstance(p, AskProgress) and p.calls_total:
            self.progress.setRange(0, p.calls_total)
            self.progress.setValue(p.calls_done)
            self.status.setText(
                f"{p.calls_done} of {p.calls_total} calls, {p.pairs_done} of {p.pairs_total} "
                f"pairs, spent {format_usd(p.spent)}" + (f", {p.failed} failed" if p.failed else "")
            )

    def _on_done(self, task: Task) -> None:
        if self.task is task:
            self.task = None
        if self.task is None:  # a plan's success may have started the next task already
            self.progress.setVisible(False)
            self.cancel_button.setEnabled(False)
            for b in (self.check_button, self.run_button):
                b.setEnabled(True)

    def cancel(self) -> None:
        if self.task is not None:
            self.task.cancel()
            self.status.setText("Cancelling: waiting for the calls in flight (they are paid, so they are kept)...")

    def reject(self) -> None:
        if self.task is not None:
            self.cancel()
            self.task.wait(60_000)
        if self._own_runner:
            self.runner.cancel_all(stale=False)
        super().reject()
