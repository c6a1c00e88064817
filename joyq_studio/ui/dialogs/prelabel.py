"""Pre-label pairs with a vision LLM: endpoint settings, the agreement check with its
interval, the cost estimate, then a labelling run with progress and cancel; next to them
(issue 21) a side-by-side comparison of several models and prompts on the same pairs you
labelled, and the folder's prompt history, where a stored prompt version can be chosen for
the check and the run (as `joyq prelabel run --prompt ID`).

Every step runs the core (:mod:`joyq_studio.prelabel`) on a worker thread, each opening
its own connection to the project. Nothing is sent to the endpoint until the user presses
a button *and* confirms the estimate; the settings (never the key) are remembered, the
prompt version and the pool per folder.
"""

from __future__ import annotations

import html
import json
import math
from dataclasses import replace
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMessageBox,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from ...metrics import MIN_PAIRS_TO_TELL, Agreement
from ...prelabel import (
    DEFAULT_KEY_ENV,
    AskProgress,
    EndpointConfig,
    LLMClient,
    Pricing,
    Prompt,
    execute_run,
    format_usd,
    load_prompt,
    measure_agreement,
    plan_agreement,
    plan_run,
    resolve_api_key,
)
from ...prelabel.agreement import AgreementReport
from ...prelabel.compare import Candidate, CompareReport, PairedTest, plan_compare, run_compare
from ...prelabel.prompts import PromptVersion, load_version, versions
from ...store import Project
from ...subset import subset_hashes
from ..util import settings
from ..workers import Task, TaskRunner
from .export import _fill, _table
from .folder_task import FolderTaskDialog

PRIVACY = (
    "Pre-labelling sends the images of the pairs it asks about to the endpoint below (downscaled "
    "to the image size set here). Nothing is sent until you start a check or a run and confirm "
    "its estimate."
)
SETTINGS_GROUP = "prelabel"
CAP_MARGIN = 0.25


def _pct(x: float | None) -> str:
    return "n/a" if x is None or math.isnan(x) else f"{100 * x:.0f}%"


def interval_text(a: Agreement) -> str:
    """An agreement with its interval and count, as every number in the app carries them
    (under a heading that names the 95% interval)."""
    if not a.count:
        return "n/a (no decisive pair answered)"
    return f"{_pct(a.value)} ({_pct(a.low)}-{_pct(a.high)}, {a.count} pairs)"


def version_score(v: PromptVersion) -> str:
    """A stored prompt's agreement with its interval and count, or why there is none."""
    if not v.usable:
        return "no prompt in the editor's reply"
    if not v.n:
        return "not measured"
    return f"{_pct(v.agreement)} (95% interval {_pct(v.low)}-{_pct(v.high)}, {v.n} pairs)"


def paired_text(t: PairedTest, first: str, second: str) -> str:
    """One paired test in words: one candidate is named better only when the test says so."""
    detail = f"McNemar p = {t.p_value:.3f}; {t.first_only} pairs only {first} got right, {t.second_only} only {second}"
    if t.verdict == "first better":
        return f"{first} is better than {second} on {t.n} pairs both answered ({detail})"
    if t.verdict == "second better":
        return f"{second} is better than {first} on {t.n} pairs both answered ({detail})"
    if t.verdict == "too few to tell":
        return (
            f"{first} vs {second}: too few pairs to tell ({t.n} both answered; at least {MIN_PAIRS_TO_TELL} are needed)"
        )
    return f"{first} vs {second}: no difference shown on {t.n} pairs ({detail})"


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


class PrelabelDialog(FolderTaskDialog):
    """Opened on a project folder; ``labels_added(n)`` fires after a run stored labels, so
    the window can refresh its counts."""

    labels_added = Signal(int)
    cancelling_text = "Cancelling: waiting for the calls in flight (they are paid, so they are kept)..."

    def __init__(self, folder: str | Path, runner: TaskRunner | None = None, parent: QWidget | None = None):
        super().__init__(folder, runner, parent)
        self.setWindowTitle("Pre-label with a vision LLM - JoyQuality Studio")
        # a hook for tests; returns True to go on
        self.confirm = self._ask_user
        # the stored prompt version the check and the run use (None: the file or built-in one)
        self.prompt_version: PromptVersion | None = None
        self._versions: list[PromptVersion] = []
        self.compare_report: CompareReport | None = None

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
        self.prompt_state = QLabel(self)
        self.prompt_state.setObjectName("prompt_state")
        self.prompt_state.setToolTip("Chosen in Prompt history; the prompt file is not used meanwhile")
        self.prompt_clear = QPushButton("Use the file or built-in prompt", self)
        self.prompt_clear.setToolTip("Stop using the stored prompt version chosen in Prompt history")
        self.prompt_clear.clicked.connect(lambda: self.use_version(None))
        self.price_in, self.price_out = self._money(0.0, 1000.0, 4), self._money(0.0, 1000.0, 4)
        self.price_in.setToolTip("US dollars per million input tokens (0 for a local server)")
        self.price_out.setToolTip("US dollars per million output tokens")
        self.cap = self._money(0.0, 100_000.0, 2)
        self.cap.setToolTip("Stop a check, run or comparison before spending more than this (0: the estimate + 25%)")
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
        prompt_row = QHBoxLayout()  # the file, or the stored version chosen in Prompt history
        prompt_row.addWidget(self.prompt_file, 1)
        prompt_row.addWidget(self.prompt_state, 1)
        prompt_row.addWidget(self.prompt_clear)
        form.addRow("Prompt", prompt_row)
        prices = QHBoxLayout()
        prices.addWidget(QLabel("input $", self))
        prices.addWidget(self.price_in)
        prices.addWidget(QLabel("output $", self))
        prices.addWidget(self.price_out)
        prices.addWidget(QLabel("per million tokens;  cap $", self))
        prices.addWidget(self.cap)
        prices.addStretch(1)
        form.addRow("Price", prices)
        tech = QHBoxLayout()
        tech.addWidget(self.image_side)
        tech.addWidget(QLabel("requests at once", self))
        tech.addWidget(self.concurrency)
        tech.addWidget(QLabel("timeout", self))
        tech.addWidget(self.timeout)
        tech.addStretch(1)
        form.addRow("Image size", tech)

        self.tabs = QTabWidget(self)
        self.tabs.addTab(self._build_label_tab(), "Check && label")
        self.tabs.addTab(self._build_compare_tab(), "Compare models")
        self.tabs.addTab(self._build_prompts_tab(), "Prompt history")

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
        outer.addWidget(privacy)
        outer.addWidget(ep)
        outer.addWidget(self.tabs, 1)
        outer.addWidget(self.progress)
        outer.addWidget(self.status)
        row = QHBoxLayout()
        row.addStretch(1)
        row.addWidget(self.cancel_button)
        row.addWidget(self.close_button)
        outer.addLayout(row)
        self.resize(960, 880)
        self._load_settings()
        self._update_key_state()
        self.refresh_prompts()
        self.refresh_pool()

    # -- the tabs ---------------------------------------------------------------------------
    def _build_label_tab(self) -> QWidget:
        page = QWidget(self)
        ag = QGroupBox("1. How often does it agree with you?", page)
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

        lb = QGroupBox("2. Label new pairs", page)
        self.run_pairs = QSpinBox(self)
        self.run_pairs.setRange(1, 1_000_000)
        self.run_pairs.setValue(500)
        self.run_pairs.setSuffix(" pairs")
        self.run_pairs.setToolTip(
            "Half between similar images (needs scores), half random; an interrupted run is resumed first"
        )
        self.pool = QComboBox(self)
        self.pool.setToolTip(
            "Pick the new pairs among every image, or only among the folder's diverse subset "
            "(Model > Choose a Diverse Subset...)"
        )
        self.pool.currentIndexChanged.connect(lambda _i: self._save_folder_state(pool=self.pool.currentData()))
        self.own_trust = QCheckBox("Set the trust myself:", self)
        self.trust = QDoubleSpinBox(self)
        self.trust.setRange(0.5, 1.0)
        self.trust.setSingleStep(0.05)
        self.trust.setValue(0.75)
        self.trust.setEnabled(False)
        self.own_trust.toggled.connect(self.trust.setEnabled)
        self.own_trust.setToolTip("Default: each label counts as sure as the measured agreement")
        self.run_button = QPushButton("Label pairs...", self)
        self.run_button.clicked.connect(self.start_run)
        self.run_label = QLabel(self)
        self.run_label.setWordWrap(True)
        self.run_label.setObjectName("run")
        lay = QVBoxLayout(lb)
        row = QHBoxLayout()
        row.addWidget(self.run_pairs)
        row.addWidget(QLabel("from", self))
        row.addWidget(self.pool)
        row.addWidget(self.own_trust)
        row.addWidget(self.trust)
        row.addStretch(1)
        row.addWidget(self.run_button)
        lay.addLayout(row)
        lay.addWidget(self.run_label)

        outer = QVBoxLayout(page)
        outer.addWidget(ag)
        outer.addWidget(lb)
        outer.addStretch(1)
        return page

    def _build_compare_tab(self) -> QWidget:
        page = QWidget(self)
        intro = QLabel(
            "Ask several models (and prompts) about the same pairs you labelled, both orders, and "
            "compare them side by side. A candidate is called better only when a paired test on "
            "those pairs says so. Answers already received are free.",
            page,
        )
        intro.setWordWrap(True)
        self.candidates = QTableWidget(0, 3, page)
        self.candidates.setHorizontalHeaderLabels(["Model", "Input $ / M tokens", "Output $ / M tokens"])
        self.candidates.verticalHeader().setVisible(False)
        self.candidates.horizontalHeader().setStretchLastSection(False)
        self.candidates.setColumnWidth(0, 190)
        self.candidates.setColumnWidth(1, 125)
        self.candidates.setColumnWidth(2, 125)
        self.candidates.setHorizontalHeaderLabels(["Model", "Input $/M tokens", "Output $/M tokens"])
        self.candidates.setToolTip("One model a row; empty prices: the prices above")
        self.candidates.verticalHeader().setDefaultSectionSize(self.fontMetrics().height() + 8)
        self.candidates.setMinimumWidth(190 + 2 * 125 + 24)
        self.candidates.setFixedHeight(4 * (self.fontMetrics().height() + 8) + 6)
        add = QPushButton("Add model", page)
        add.clicked.connect(lambda: self.add_candidate(self.model.text().strip()))
        remove = QPushButton("Remove", page)
        remove.clicked.connect(self._remove_candidate)
        self.compare_prompts = QListWidget(page)
        self.compare_prompts.setFixedHeight(self.candidates.height())
        self.compare_prompts.setToolTip("Each model is asked with each ticked prompt")
        self.compare_pairs = QSpinBox(page)
        self.compare_pairs.setRange(5, 100_000)
        self.compare_pairs.setValue(100)
        self.compare_pairs.setSuffix(" of your pairs")
        self.compare_button = QPushButton("Compare...", page)
        self.compare_button.clicked.connect(self.start_compare)
        self.compare_table = _table(
            [
                "Candidate",
                "Agreement (95% interval, pairs)",
                "Position bias",
                "Ties",
                "Cost / 1,000 labels",
                "Paired test",
            ],
            page,
        )
        self.compare_table.setWordWrap(False)
        self.compare_table.resizeColumnsToContents()  # the headings readable before any row
        self.compare_verdict = QLabel("Not compared yet.", page)
        self.compare_verdict.setObjectName("compare_verdict")
        self.compare_verdict.setWordWrap(True)
        self.compare_verdict.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        lay = QVBoxLayout(page)
        lay.addWidget(intro)
        row = QHBoxLayout()
        left = QVBoxLayout()
        left.addWidget(QLabel("Models (empty prices: the prices above):", page))
        left.addWidget(self.candidates)
        buttons = QHBoxLayout()
        buttons.addWidget(add)
        buttons.addWidget(remove)
        buttons.addStretch(1)
        left.addLayout(buttons)
        right = QVBoxLayout()
        right.addWidget(QLabel("Ask each model with the prompts ticked:", page))
        right.addWidget(self.compare_prompts)
        right.addStretch(1)
        row.addLayout(left, 0)
        row.addLayout(right, 1)
        lay.addLayout(row)
        row = QHBoxLayout()
        row.addWidget(self.compare_pairs)
        row.addStretch(1)
        row.addWidget(self.compare_button)
        lay.addLayout(row)
        lay.addWidget(self.compare_table, 1)
        lay.addWidget(self.compare_verdict)
        return page

    def _build_prompts_tab(self) -> QWidget:
        page = QWidget(self)
        intro = QLabel(
            "The prompt versions stored in this folder (`joyq prelabel optimise` makes them), with the "
            "agreement each had on the pairs it was measured on.",
            page,
        )
        intro.setWordWrap(True)
        self.prompt_table = _table(
            ["ID", "Round", "Parent", "Agreement (95% interval, pairs)", "Cost", "Hash", "Model", "Note"], page
        )
        self.prompt_table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.prompt_table.itemSelectionChanged.connect(self._show_selected_prompt)
        self.prompt_text = QPlainTextEdit(page)
        self.prompt_text.setReadOnly(True)
        self.prompt_text.setPlaceholderText("Select a version to read its text.")
        self.use_prompt_button = QPushButton("Use this prompt", page)
        self.use_prompt_button.setToolTip(
            "The agreement check and the labelling run use this version (as `joyq prelabel run --prompt ID`)"
        )
        self.use_prompt_button.setEnabled(False)
        self.use_prompt_button.clicked.connect(self._use_selected)
        refresh = QPushButton("Refresh", page)
        refresh.clicked.connect(self.refresh_prompts)
        lay = QVBoxLayout(page)
        lay.addWidget(intro)
        lay.addWidget(self.prompt_table, 2)
        lay.addWidget(self.prompt_text, 1)
        row = QHBoxLayout()
        row.addWidget(refresh)
        row.addStretch(1)
        row.addWidget(self.use_prompt_button)
        lay.addLayout(row)
        return page

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
        try:
            rows = json.loads(str(s.value("compare_models", "[]")))
        except ValueError:
            rows = []
        s.endGroup()
        for row in rows if isinstance(rows, list) else []:
            if isinstance(row, list) and len(row) == 3:
                self.add_candidate(*(str(x) for x in row))

    def _save_settings(self) -> None:
        s = settings()
        s.beginGroup(SETTINGS_GROUP)
        s.setValue("url", self.url.text().strip())
        s.setValue("model", self.model.text().strip())
        s.setValue("key_env", self.key_env.text().strip())  # the variable's name, never the key
        s.setValue("prompt_file", self.prompt_file.text().strip())
        s.setValue("price_in", self.price_in.value())
        s.setValue("price_out", self.price_out.value())
        s.setValue("compare_models", json.dumps(self._candidate_rows()))
        s.endGroup()
        s.sync()

    def _folder_states(self) -> dict:
        """Per-folder choices (the prompt version, the pool): ids only mean something in their folder."""
        try:
            states = json.loads(str(settings().value(f"{SETTINGS_GROUP}/folders", "{}")))
        except ValueError:
            return {}
        return states if isinstance(states, dict) else {}

    def _folder_state(self) -> dict:
        state = self._folder_states().get(str(self.folder.resolve()), {})
        return state if isinstance(state, dict) else {}

    def _save_folder_state(self, **changes) -> None:
        states = self._folder_states()
        key = str(self.folder.resolve())
        state = states.get(key)
        if not isinstance(state, dict):
            state = {}
        state.update(changes)
        states[key] = state
        s = settings()
        s.setValue(f"{SETTINGS_GROUP}/folders", json.dumps(states))
        s.sync()

    def _update_key_state(self) -> None:
        name = self.key_env.text().strip()
        try:
            found = bool(name) and resolve_api_key(name) is not None
        except Exception:  # noqa: BLE001 - a broken keyring: same as no key
            found = False
        self.key_state.setText("key found" if found else "not set (fine for a local server)")

    def config(self, model: str | None = None) -> EndpointConfig:
        return EndpointConfig(
            base_url=self.url.text().strip(),
            model=(model if model is not None else self.model.text()).strip(),
            key_env=self.key_env.text().strip(),
            timeout=self.timeout.value(),
            concurrency=self.concurrency.value(),
            image_side=self.image_side.value(),
        ).check()

    def pricing(self) -> Pricing:
        return Pricing(self.price_in.value(), self.price_out.value())

    # -- the prompt in use and the pool ------------------------------------------------------
    def refresh_prompts(self) -> None:
        """Re-read the folder's prompt versions (history table, compare list, the one in use)."""
        with Project(self.folder) as p:
            self._versions = versions(p)
        _fill(
            self.prompt_table,
            [
                [
                    str(v.id),
                    "-" if v.round is None else str(v.round),
                    "-" if v.parent is None else str(v.parent),
                    version_score(v),
                    format_usd(v.cost),
                    v.hash,
                    v.model or "-",
                    v.note or "",
                ]
                for v in self._versions
            ],
        )
        if not self._versions:
            self.prompt_text.setPlaceholderText(
                "No prompt versions in this folder yet: `joyq prelabel optimise` makes them."
            )
        # the compare list: the prompt set above, then every usable stored version
        ticked = {
            self.compare_prompts.item(i).data(Qt.ItemDataRole.UserRole)
            for i in range(self.compare_prompts.count())
            if self.compare_prompts.item(i).checkState() == Qt.CheckState.Checked
        } or {None}
        self.compare_prompts.clear()
        for v in [None, *(v for v in self._versions if v.usable)]:
            key = None if v is None else v.id
            text = (
                "The prompt set above (file or built-in)"
                if v is None
                else f"Version {v.id} ({v.hash}; {version_score(v)})"
            )
            item = QListWidgetItem(text, self.compare_prompts)
            item.setData(Qt.ItemDataRole.UserRole, key)
            item.setCheckState(Qt.CheckState.Checked if key in ticked else Qt.CheckState.Unchecked)
        # the version chosen for this folder, if it is still there with the same text
        state = self._folder_state()
        chosen = next(
            (v for v in self._versions if v.id == state.get("prompt_version") and v.hash == state.get("prompt_hash")),
            None,
        )
        self._set_version(chosen if chosen is not None and chosen.usable else None)

    def _show_selected_prompt(self) -> None:
        v = self._selected_version()
        self.prompt_text.setPlainText(v.text if v is not None else "")
        self.use_prompt_button.setEnabled(v is not None and v.usable)

    def _selected_version(self) -> PromptVersion | None:
        rows = self.prompt_table.selectionModel().selectedRows()
        return self._versions[rows[0].row()] if rows else None

    def select_version(self, version_id: int) -> None:
        """Select the row of ``version_id`` in the history (as a click does)."""
        for i, v in enumerate(self._versions):
            if v.id == version_id:
                self.prompt_table.selectRow(i)

    def _use_selected(self) -> None:
        v = self._selected_version()
        if v is not None and v.usable:
            self.use_version(v)

    def use_version(self, v: PromptVersion | None) -> None:
        """The check and the run use ``v`` from now on (None: the file or built-in prompt);
        remembered for this folder."""
        self._set_version(v)
        self._save_folder_state(prompt_version=None if v is None else v.id, prompt_hash=None if v is None else v.hash)
        self.status.setText(
            f"The agreement check and labelling now use prompt version {v.id} ({v.hash})."
            if v is not None
            else "The agreement check and labelling now use the prompt file, or the built-in prompt."
        )

    def _set_version(self, v: PromptVersion | None) -> None:
        self.prompt_version = v
        self.prompt_file.setEnabled(v is None)
        self.prompt_file.setVisible(v is None)
        self.prompt_state.setVisible(v is not None)
        self.prompt_clear.setVisible(v is not None)
        self.prompt_state.setText(
            "" if v is None else f"<b>Stored version {v.id}</b> ({v.hash}; agreement {html.escape(version_score(v))})"
        )

    def refresh_pool(self) -> None:
        """The pool choice: the whole folder, or its diverse subset when one was made."""
        with Project(self.folder) as p:
            images = len(p.image_paths())
            subset = len(subset_hashes(p))
        want = self._folder_state().get("pool", "all")
        self.pool.blockSignals(True)
        self.pool.clear()
        self.pool.addItem(f"the whole folder ({images} images)", "all")
        if subset:
            self.pool.addItem(f"the diverse subset ({subset} images)", "subset")
        else:
            self.pool.addItem("the diverse subset (none made yet: Model > Choose a Diverse Subset...)", "subset")
            item = self.pool.model().item(1)  # type: ignore[attr-defined]
            item.setEnabled(False)
        self.pool.setCurrentIndex(1 if want == "subset" and subset else 0)
        self.pool.blockSignals(False)

    def _prompt_choice(self) -> tuple[int | None, Prompt]:
        """(stored version id or None, the file or built-in prompt); raises for a bad file."""
        if self.prompt_version is not None:
            return self.prompt_version.id, load_prompt(None)
        return None, load_prompt(self.prompt_file.text().strip() or None)

    @staticmethod
    def _resolve(project: Project, version_id: int | None, prompt: Prompt) -> Prompt:
        """The prompt a step sends: the stored version (the core's load_version) or ``prompt``."""
        return load_version(project, version_id) if version_id is not None else prompt

    # -- the two steps ---------------------------------------------------------------------
    def start_agreement(self) -> None:
        """Plan (no network) on a worker, show the estimate, ask, then measure."""
        if self.task is not None:
            return
        try:
            config, pricing = self.config(), self.pricing()
            version_id, prompt = self._prompt_choice()
        except Exception as e:  # noqa: BLE001 - JoyqError sentences for bad settings
            self.status.setText(str(e))
            return
        self._save_settings()
        folder, n = self.folder, self.agree_pairs.value()

        def plan_job(report, cancelled):
            with Project(folder) as p:
                chosen = self._resolve(p, version_id, prompt)
                return plan_agreement(p, config.model, chosen, pricing, config.image_side, n)

        def planned(plan) -> None:
            text = (
                f"Ask about {len(plan.pairs)} of your pairs ({plan.held_out} held out), both orders, "
                f"prompt {plan.prompt.hash}: {plan.calls_needed} calls to send"
                f"{self._cost_text(plan.calls_needed, plan.cost, pricing)}"
            )
            cap = self._cap(plan.cost, pricing.free)
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
            config, pricing = self.config(), self.pricing()
            version_id, prompt = self._prompt_choice()
        except Exception as e:  # noqa: BLE001
            self.status.setText(str(e))
            return
        self._save_settings()
        folder, n = self.folder, self.run_pairs.value()
        trust = self.trust.value() if self.own_trust.isChecked() else None
        pool = str(self.pool.currentData() or "all")

        def plan_job(report, cancelled):
            with Project(folder) as p:
                chosen = self._resolve(p, version_id, prompt)
                return plan_run(p, config.model, chosen, pricing, n, config.image_side, trust=trust, pool=pool)

        def planned(plan) -> None:
            what = (
                f"Resume {len(plan.resumed)} pairs of an interrupted run"
                if plan.resumed
                else f"Label {len(plan.new)} new pairs" + (" of the diverse subset" if pool == "subset" else "")
            )
            cap = self._cap(plan.cost, pricing.free)
            text = (
                f"{what} with prompt {plan.prompt.hash}, each counting as {_pct(plan.trust)} sure "
                f"({plan.trust_basis}): {plan.calls_needed} "
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

    # -- comparing candidates --------------------------------------------------------------
    def add_candidate(self, model: str = "", price_in: str = "", price_out: str = "") -> None:
        row = self.candidates.rowCount()
        self.candidates.insertRow(row)
        for col, text in enumerate((model, price_in, price_out)):
            self.candidates.setItem(row, col, QTableWidgetItem(text))

    def _remove_candidate(self) -> None:
        rows = sorted({i.row() for i in self.candidates.selectedIndexes()}, reverse=True)
        for r in rows or [self.candidates.rowCount() - 1]:
            if r >= 0:
                self.candidates.removeRow(r)

    def _candidate_rows(self) -> list[list[str]]:
        out = []
        for r in range(self.candidates.rowCount()):
            cells = [self.candidates.item(r, c) for c in range(3)]
            texts = [(c.text().strip() if c is not None else "") for c in cells]
            if texts[0]:
                out.append(texts)
        return out

    def _candidate_prices(self, rows: list[list[str]]) -> list[tuple[str, Pricing]]:
        """(model, pricing) a row; an empty price is the one set above. Raises on a bad price."""
        out = []
        for model, pin, pout in rows:
            try:
                p_in = float(pin) if pin else self.price_in.value()
                p_out = float(pout) if pout else self.price_out.value()
                out.append((model, Pricing(p_in, p_out)))
            except ValueError:
                raise ValueError(
                    f"The prices of {model} must be numbers of dollars per million tokens (or empty: the prices above)."
                ) from None
        return out

    def start_compare(self) -> None:
        """Plan (no network), show every candidate's calls and cost, ask, then ask them all."""
        if self.task is not None:
            return
        rows = self._candidate_rows()
        if not rows and self.model.text().strip():
            self.add_candidate(self.model.text().strip())
            rows = self._candidate_rows()
        ticked = [
            self.compare_prompts.item(i).data(Qt.ItemDataRole.UserRole)
            for i in range(self.compare_prompts.count())
            if self.compare_prompts.item(i).checkState() == Qt.CheckState.Checked
        ]
        try:
            if not rows:
                raise ValueError("Name at least one model to compare (Add model).")
            if not ticked:
                raise ValueError("Tick at least one prompt to ask the models with.")
            models = self._candidate_prices(rows)
            config = self.config(models[0][0])
            base_prompt = load_prompt(self.prompt_file.text().strip() or None) if None in ticked else None
        except Exception as e:  # noqa: BLE001 - sentences for bad settings
            self.status.setText(str(e))
            return
        self._save_settings()
        folder, n = self.folder, self.compare_pairs.value()
        labels: dict[str, str] = {}

        def plan_job(report, cancelled):
            with Project(folder) as p:
                prompts = []
                for key in ticked:
                    prompt = base_prompt if key is None else load_version(p, key)
                    assert prompt is not None
                    prompts.append((key, prompt))
                candidates = []
                for model, pricing in models:
                    for key, prompt in prompts:
                        cand = Candidate(model, prompt, pricing)
                        what = "prompt above" if key is None else f"prompt v{key}"
                        labels[cand.name] = model if len(prompts) == 1 else f"{model} / {what}"
                        candidates.append(cand)
                return plan_compare(p, candidates, n, config.image_side)

        def planned(plan) -> None:
            free = all(c.pricing.free for c in plan.candidates)
            cap = self._cap(plan.cost, free)
            lines = []
            for c, calls, est in zip(plan.candidates, plan.calls_needed, plan.estimates, strict=True):
                cost = "free or no price set" if c.pricing.free else f"about {format_usd(calls * est.cost)}"
                lines.append(f"  {labels[c.name]} (prompt {c.prompt.hash}): {calls} calls to send ({cost})")
            total = sum(plan.calls_needed)
            text = (
                f"Compare {len(plan.candidates)} candidates on the same {len(plan.pairs)} of your pairs, "
                f"both orders:\n" + "\n".join(lines)
            )
            if cap is not None:
                text += f"\nStops before spending more than {format_usd(cap)} in all."
            self.compare_verdict.setText(
                f"Planned: {len(plan.candidates)} candidates on {len(plan.pairs)} of your pairs, {total} calls to send."
            )
            if total and not self.confirm(f"{text}\n\nThe images of these pairs are sent to {config.base_url}. Start?"):
                self.status.setText("Nothing was sent.")
                return
            clients: dict[str, LLMClient] = {}

            def job(report, cancelled):
                def client_for(model: str) -> LLMClient:
                    if model not in clients:
                        clients[model] = LLMClient(replace(config, model=model))
                    return clients[model]

                try:
                    with Project(folder) as p:
                        return run_compare(p, client_for, plan, cap=cap, progress=report, cancel=cancelled)
                finally:
                    for c in clients.values():
                        c.close()

            self._run("prelabel-compare", job, lambda rep: self._compare_done(rep, labels), "Asking...")

        self._run("prelabel-plan", plan_job, planned, "Choosing pairs...")

    def _compare_done(self, report: CompareReport, labels: dict[str, str]) -> None:
        self.compare_report = report
        plan = report.plan
        names = [labels.get(c.name, c.name) for c in plan.candidates]
        best = report.best_supported()
        rows = []
        for i, (c, ev) in enumerate(zip(plan.candidates, report.evaluations, strict=True)):
            if math.isnan(ev.cost_per_1000):
                per = "n/a (none answered)"
            elif c.pricing.free:
                per = f"no price set ({ev.answered} labels)"
            else:
                per = f"{format_usd(ev.cost_per_1000)} ({ev.answered} labels)"
            verdicts = []
            for t in report.tests:
                if c.name not in (t.first, t.second):
                    continue
                other = names[[x.name for x in plan.candidates].index(t.second if c.name == t.first else t.first)]
                mine = "first better" if c.name == t.first else "second better"
                theirs = "second better" if c.name == t.first else "first better"
                if t.verdict == mine:
                    verdicts.append(f"better than {other} (p = {t.p_value:.3f}, {t.n} pairs)")
                elif t.verdict == theirs:
                    verdicts.append(f"worse than {other} (p = {t.p_value:.3f}, {t.n} pairs)")
                elif t.verdict == "too few to tell":
                    verdicts.append(f"too few pairs to tell vs {other} ({t.n} pairs)")
                else:
                    verdicts.append(f"no difference shown vs {other} on {t.n} pairs")
            rows.append(
                [
                    names[i] + ("  [best]" if best == i else ""),
                    interval_text(ev.agreement),
                    f"{_pct(ev.position_bias)} of {ev.answered}",
                    f"{_pct(ev.tie_rate)} of {ev.answered}",
                    per,
                    "; ".join(verdicts) or "nothing to compare it with",
                ]
            )
        _fill(self.compare_table, rows)
        for i, c in enumerate(plan.candidates):  # the exact prompt, for the curious
            item = self.compare_table.item(i, 0)
            if item is not None:
                item.setToolTip(f"{c.model}, prompt {c.prompt.hash}")
        lines = []
        if best is not None:
            lines.append(f"<b>{html.escape(names[best])}</b> is better than every other candidate on the paired test.")
        elif report.tests:
            shown = max(t.n for t in report.tests)
            lines.append(
                f"<b>No candidate is better than every other</b>: no difference shown on {shown} pairs; pick by "
                "cost, or compare on more pairs."
            )
        for t in report.tests:
            first = names[[x.name for x in plan.candidates].index(t.first)]
            second = names[[x.name for x in plan.candidates].index(t.second)]
            lines.append(html.escape(paired_text(t, first, second)))
        spent = f"Spent {format_usd(report.spent)} now"
        if report.stopped == "cap":
            spent += "; stopped at the cap (raise it and compare again to continue)"
        elif report.stopped == "cancelled":
            spent += "; cancelled (compare again to continue; answers received are kept)"
        lines.append(spent + ".")
        self.compare_verdict.setTextFormat(Qt.TextFormat.RichText)
        self.compare_verdict.setText("<br>".join(lines))
        self.status.setText(
            " ".join(f"{names[i]}: {self._ask_text(a)}" for i, a in enumerate(report.asks))
            if report.asks
            else "Nothing asked."
        )

    # -- plumbing ------------------------------------------------------------------------------
    def _cap(self, estimate: float, free: bool) -> float | None:
        if self.cap.value() > 0:
            return self.cap.value()
        if free or estimate == 0:
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

    def _buttons(self) -> tuple[QPushButton, ...]:
        return (self.check_button, self.run_button, self.compare_button)

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
        for b in self._buttons():
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
            for b in self._buttons():
                b.setEnabled(True)
