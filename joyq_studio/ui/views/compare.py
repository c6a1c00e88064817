"""The Compare view: two images side by side; click (or press a key on) the better one.

Keys: Left / 1 left wins, Right / 2 right wins, Down / Space skip, T tie,
Backspace / Ctrl+Z undo, F flicker (a tap swaps the images in place until the next tap;
held longer than ``FLICKER_HOLD_S`` it swaps back on release), Z zoom 100% / fit, wheel zoom,
drag pan (synchronised across both images), Esc fit, S show / hide model scores.

The next pairs are chosen and decoded ahead of time (``PREFETCH`` pairs), so a click
shows the next pair from memory: no decoding on the GUI thread.
"""

from __future__ import annotations

import math
import time
from collections import deque

from PySide6.QtCore import QSize, Qt, QTimer, Signal
from PySide6.QtGui import QFontMetrics
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QPushButton,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from ...compare import CompareStats, more_clicks_sentence
from ...compare.stats import PREDICTED_NAME, describe, plural
from ...metrics import MIN_PAIRS_TO_TELL
from ..controller import Controller
from ..imagecache import Decoded
from ..session import Pair, Session
from ..util import error_sentence, format_bytes, format_name
from .canvas import ImageCanvas, ViewState

PREFETCH = 2
FLICKER_HOLD_S = 0.35  # F held longer than this: hold-to-compare (swaps back on release)


class ImagePane(QWidget):
    """A canvas plus the file facts under it: name, pixel size, file size, format (and the
    model score when shown)."""

    def __init__(self, view: ViewState, side: str, parent: QWidget | None = None):
        super().__init__(parent)
        self.side = side
        self.canvas = ImageCanvas(view, self)
        self.name = QLabel(self)
        self.name.setAlignment(Qt.AlignmentFlag.AlignCenter)
        f = self.name.font()
        f.setBold(True)
        self.name.setFont(f)
        self.name.setTextInteractionFlags(Qt.TextInteractionFlag.NoTextInteraction)
        self.facts = QLabel(self)
        self.facts.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.score = QLabel(self)
        self.score.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.score.setVisible(False)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(2)
        lay.addWidget(self.canvas, 1)
        lay.addWidget(self.name)
        lay.addWidget(self.facts)
        lay.addWidget(self.score)

    def set_facts(self, name: str, facts: str, score: str) -> None:
        self.name.setText(name)
        self.name.setToolTip(name)
        self.facts.setText(facts)
        self.score.setText(score)


class CompareView(QWidget):
    """The main view. ``shown(latency_s)`` fires when a new pair is fully on screen after
    an action (for the latency benchmark)."""

    shown = Signal(float)
    status_changed = Signal()

    def __init__(self, controller: Controller, parent: QWidget | None = None):
        super().__init__(parent)
        self.c = controller
        self.loader = controller.loader
        self.session: Session | None = None
        self.current: Pair | None = None
        self.queue: deque[Pair] = deque()
        self._generation = -1  # the pair source the queued pairs came from
        self.flicker = False
        self._flicker_pressed_at: float | None = None
        self.show_scores = False
        self._action_t: float | None = None
        self._painted: set[str] = set()
        self.view = ViewState()
        self.view.changed.connect(self._update_zoom_label)

        self.left = ImagePane(self.view, "left", self)
        self.right = ImagePane(self.view, "right", self)
        self.left.canvas.clicked.connect(lambda: self.choose(1.0))
        self.right.canvas.clicked.connect(lambda: self.choose(0.0))
        for pane in (self.left, self.right):
            pane.canvas.painted.connect(self._on_painted)
        self.loader.ready.connect(self._on_decoded)
        controller.session_changed.connect(self.set_session)
        controller.pairs_reseeded.connect(self.reseed)
        controller.scores_updated.connect(self._on_scores_updated)
        controller.busy_changed.connect(lambda *_: self._update_buttons())

        self.prompt = QLabel("Which image has the better quality? Click it, or press Left / Right.", self)
        self.prompt.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.zoom_label = QLabel("", self)

        def button(text, tip, slot):
            b = QPushButton(text, self)
            b.setToolTip(tip)
            b.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # keys always reach the view
            b.clicked.connect(slot)
            return b

        self.b_left = button("\u2190  Left is better", "Left image is better (Left or 1)", lambda: self.choose(1.0))
        self.b_tie = button("Tie", "Both equally good (T)", lambda: self.choose(0.5))
        self.b_skip = button("Skip", "Skip this pair (Down or Space)", self.skip)
        self.b_right = button("Right is better  \u2192", "Right image is better (Right or 2)", lambda: self.choose(0.0))
        self.b_undo = button("Undo", "Undo the last decision (Backspace or Ctrl+Z); several steps", self.undo)
        self.b_live = button(
            "Use the live model",
            "Adopt the live model (what your clicks taught it so far) as a new version: the rank "
            "view, calibration and exports then use it. Reversible in Train \u2192 Model versions.",
            self.use_live_model,
        )
        self.b_scores = button(
            "Show scores",
            "Show / hide the model's scores (S); hidden by default to avoid anchoring",
            self.toggle_scores,
        )
        self.b_scores.setCheckable(True)
        self.status = QLabel(self)
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.NoTextInteraction)
        self.hint = QLabel(self)
        self.hint.setTextInteractionFlags(Qt.TextInteractionFlag.NoTextInteraction)
        hf = self.hint.font()
        hf.setBold(True)
        self.hint.setFont(hf)
        # Its line is always reserved: a hint appearing must not move the images under the pointer.
        self.hint.setFixedHeight(QFontMetrics(hf).lineSpacing() + 2)
        self.hint.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)

        top = QHBoxLayout()
        top.addWidget(self.prompt, 1)
        top.addWidget(self.zoom_label)
        top.addWidget(self.b_scores)
        panes = QHBoxLayout()
        panes.setSpacing(8)
        panes.addWidget(self.left, 1)
        panes.addWidget(self.right, 1)
        buttons = QHBoxLayout()
        buttons.addWidget(self.b_undo)
        buttons.addWidget(self.b_live)
        buttons.addStretch(1)
        for b in (self.b_left, self.b_tie, self.b_skip, self.b_right):
            buttons.addWidget(b)
        buttons.addStretch(1)
        lay = QVBoxLayout(self)
        lay.addLayout(top)
        lay.addLayout(panes, 1)
        lay.addLayout(buttons)
        lay.addWidget(self.hint)
        lay.addWidget(self.status)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setToolTip("")
        self._update_buttons()

    # -- session ---------------------------------------------------------------------------
    def set_session(self, session: Session | None) -> None:
        self.session = session
        self._generation = session.source_generation() if session is not None else -1
        self.current = None
        self.queue.clear()
        self.view.fit()
        if session is not None:
            session.changed.connect(self.refresh_status)
            session.updated.connect(self._on_updated)
        self.advance()

    def reseed(self, stale: bool = True) -> None:
        """New scores or selector (``stale``): drop the prefetched pairs (keep the one on
        screen); then fetch pairs, show one if none is, and the new figures."""
        if stale:
            self.queue.clear()
        if self.current is None:
            self.advance()
        else:
            self._fill_queue()
        self.refresh_status()

    def _on_updated(self) -> None:
        """The source learnt, or a new one is in place (pairs fetched under the one before are stale)."""
        generation = self.session.source_generation() if self.session is not None else -1
        stale, self._generation = generation != self._generation, generation
        self.reseed(stale)

    def _on_scores_updated(self, newly: int) -> None:
        if newly and self.current is None:
            self.advance()
        self.refresh_status()

    def ready(self) -> bool:
        """True when the pair on screen is fully decoded (a decision may be taken)."""
        return self.current is not None and self.left.canvas.has_image() and self.right.canvas.has_image()

    def _fill_queue(self) -> None:
        if self.session is None:
            return
        while len(self.queue) < PREFETCH:
            # only an empty queue takes a random pair while the model learns; the rest are
            # fetched when the update is done (``updated``)
            pair = self.session.next_pair(busy_random=not self.queue)
            if pair is None:
                break
            self.queue.append(pair)
        box = self.left.canvas.box()
        for pair in self.queue:
            for digest in (pair.left, pair.right):
                self.loader.request(digest, self.session.path(digest), box)

    def advance(self) -> None:
        """Show the next pair (prefetched when possible)."""
        if self.session is None:
            self._show(None)
            return
        if not self.queue:
            self._fill_queue()
        self._show(self.queue.popleft() if self.queue else None, status=False)
        # The live model's update (a refit now and then) and the next pair's choice run after
        # this pair is painted: a click shows the next pair at once.
        QTimer.singleShot(0, self._after_advance)

    def _after_advance(self) -> None:
        if self.session is None:
            return
        self._fill_queue()
        self.refresh_status()

    def _show(self, pair: Pair | None, status: bool = True) -> None:
        self.current = pair
        self.flicker = False  # a new pair starts unswapped
        self._painted.clear()
        if self.view.zoom is not None:
            self.view.fit()  # a new pair starts fitted
        self._render_current()
        self._update_buttons()
        if status:
            self.refresh_status()

    def _render_current(self) -> None:
        pair = self.current
        if pair is None or self.session is None:
            msg = self._empty_message()
            self.left.canvas.show_image(None, None, msg)
            self.right.canvas.show_image(None, None, "")
            self.left.set_facts("", "", "")
            self.right.set_facts("", "", "")
            return
        box = self.left.canvas.box()
        digests = (pair.right, pair.left) if self.flicker else (pair.left, pair.right)
        for pane, digest in zip((self.left, self.right), digests, strict=True):
            d = self.loader.request(digest, self.session.path(digest), box)
            pane.canvas.show_image(digest, d, d.error if d is not None and d.error else "")
            pane.set_facts(*self._facts(self.session, digest))

    def _empty_message(self) -> str:
        if self.session is None:
            return "Open a folder to start comparing."
        n = len(self.session.hashes)
        if n < 2:
            return "This folder has fewer than two readable images, so there is nothing to compare."
        return "Scoring the first images; comparing starts in a moment."

    def _facts(self, s: Session, digest: str) -> tuple[str, str, str]:
        rel = s.rel(digest)
        info = s.project.image_info(digest) or {}
        size = f"{info.get('width')}\u00d7{info.get('height')}" if info.get("width") else "?"
        facts = f"{size} px  \u00b7  {format_bytes(info.get('bytes'))}  \u00b7  {format_name(rel)}"
        score = s.score_of(digest)
        text = f"model score {score:+.3f}" if math.isfinite(score) else "model score: not yet scored"
        live, sd = s.live_score_of(digest)
        if math.isfinite(live):
            text += f"  \u00b7  live {live:+.3f} \u00b1 {sd:.3f}"
        return rel, facts, text

    def _on_decoded(self, d: Decoded) -> None:
        if self.current is None:
            return
        if d.key in (self.current.left, self.current.right):
            self._render_current()
            self._update_buttons()

    def _on_painted(self, digest: str) -> None:
        if self._action_t is None or self.current is None:
            return
        self._painted.add(digest)
        if {self.current.left, self.current.right} <= self._painted:
            latency = time.perf_counter() - self._action_t
            self._action_t = None
            self.shown.emit(latency)

    # -- actions -------------------------------------------------------------------------
    def choose(self, outcome: float) -> bool:
        """outcome 1 = left better, 0 = right better, 0.5 = tie. Ignored until both images
        are on screen (never a blind judgement)."""
        pair = self.current
        if not self.ready() or self.session is None or pair is None:
            return False
        if self.flicker:  # the images are swapped on screen: the judgement is about what is seen
            outcome = 1.0 - outcome
        self._action_t = time.perf_counter()
        try:
            self.session.record(pair, outcome)
        except Exception as e:  # noqa: BLE001 - a failed save must be visible, not silent
            self._action_t = None
            self.c.report_error(error_sentence(e) + " The click was not saved.")
            return False
        self.advance()
        return True

    def skip(self) -> None:
        if self.current is None or self.session is None:
            return
        self._action_t = time.perf_counter()
        self.session.skip(self.current)
        self.advance()

    def undo(self) -> bool:
        if self.session is None or not self.session.can_undo():
            return False
        try:
            entry = self.session.undo()
        except Exception as e:  # noqa: BLE001
            self.c.report_error(error_sentence(e))
            return False
        if entry is None:
            return False
        if self.current is not None:
            self.queue.appendleft(self.current)
        self._action_t = time.perf_counter()
        self._show(entry.pair)
        return True

    def use_live_model(self) -> bool:
        """Adopt the live head (the controller writes it as a version and rescores); a result
        that is too few to tell or worse is adopted only when the user confirms."""
        compare = self.session.compare if self.session is not None else None
        warning = compare.adoption_warning() if compare is not None else ""
        if warning:
            answer = QMessageBox.question(
                self,
                "Use the live model? - JoyQuality Studio",
                warning,
                QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
                QMessageBox.StandardButton.No,
            )
            if answer != QMessageBox.StandardButton.Yes:
                return False
        return self.c.use_live_model()

    def toggle_scores(self) -> None:
        self.show_scores = not self.show_scores
        self.b_scores.setChecked(self.show_scores)
        self.b_scores.setText("Hide scores" if self.show_scores else "Show scores")
        for pane in (self.left, self.right):
            pane.score.setVisible(self.show_scores)

    def set_flicker(self, on: bool) -> None:
        if on != self.flicker:
            self.flicker = on
            self._render_current()

    def toggle_zoom(self) -> None:
        if self.view.zoom is None:
            self.view.set(1.0, 0.5, 0.5)
        else:
            self.view.fit()

    def _update_zoom_label(self) -> None:
        self.zoom_label.setText("" if self.view.zoom is None else f"zoom {100 * self.view.zoom:.0f}%  (Esc: fit)")

    def _update_buttons(self) -> None:
        ok = self.ready()
        for b in (self.b_left, self.b_tie, self.b_right):
            b.setEnabled(ok)
        self.b_skip.setEnabled(self.current is not None)
        self.b_undo.setEnabled(bool(self.session and self.session.can_undo()))
        self.b_live.setEnabled(bool(self.session and self.session.live_changed()) and not self.c.busy_scoring())

    def refresh_status(self) -> None:
        self._update_buttons()
        st = self.session.compare_stats() if self.session is not None else None
        if self.session is None or st is None:
            self.status.setText("" if self.session is None else self.session.live_note)
            self.hint.setText("")
            return
        s = self.session
        parts = [plural(st.total, "comparison")]
        if st.trained:
            parts.append(f"{st.since_training} since the last training")
        parts.append(predicted_text(st))
        parts.append(heldout_text(st))
        if st.self_agreement.count:
            parts.append(f"your self-agreement on repeated pairs: {describe(st.self_agreement)}")
        if st.pending:
            parts.append(f"learning {plural(st.pending, 'click')}\u2026")
        if s.n_scored() < len(s.hashes):
            parts.append(f"{s.n_scored()} of {len(s.hashes)} images scored")
        if st.note:
            parts.append(st.note)
        self.status.setText("   \u00b7   ".join(parts))
        self.status.setToolTip(
            f"\u201c{PREDICTED_NAME}\u201d: each of this session's clicks as the model predicted it before it "
            "learnt from that click (an honest figure from the first click on). Held-out pairs: uniformly random "
            "pairs the live model never learns from, so they test it without bias. The live model learns from "
            "every other click; the rank view and the exports keep using the adopted model until you press "
            "\u201cUse the live model\u201d."
        )
        self.hint.setText(st.retrain_hint)
        self.hint.setToolTip(st.retrain_hint)
        self.status_changed.emit()

    # -- keys --------------------------------------------------------------------------------
    def keyPressEvent(self, event) -> None:  # noqa: N802
        key = event.key()
        mods = event.modifiers() & ~Qt.KeyboardModifier.KeypadModifier
        if key == Qt.Key.Key_F:
            if not event.isAutoRepeat() and self._flicker_pressed_at is None:
                self._flicker_pressed_at = time.monotonic()
                self.set_flicker(not self.flicker)
            return
        if mods not in (Qt.KeyboardModifier.NoModifier,):
            if key == Qt.Key.Key_Z and mods == Qt.KeyboardModifier.ControlModifier:
                self.undo()
                return
            super().keyPressEvent(event)
            return
        if event.isAutoRepeat() and key not in (Qt.Key.Key_Backspace,):
            return  # holding a key must never cast many votes
        if key in (Qt.Key.Key_Left, Qt.Key.Key_1):
            self.choose(1.0)
        elif key in (Qt.Key.Key_Right, Qt.Key.Key_2):
            self.choose(0.0)
        elif key in (Qt.Key.Key_Down, Qt.Key.Key_Space):
            self.skip()
        elif key == Qt.Key.Key_T:
            self.choose(0.5)
        elif key == Qt.Key.Key_Backspace:
            self.undo()
        elif key == Qt.Key.Key_Z:
            self.toggle_zoom()
        elif key == Qt.Key.Key_Escape:
            self.view.fit()
        elif key == Qt.Key.Key_S:
            self.toggle_scores()
        else:
            super().keyPressEvent(event)

    def keyReleaseEvent(self, event) -> None:  # noqa: N802
        if event.key() == Qt.Key.Key_F and not event.isAutoRepeat():
            pressed, self._flicker_pressed_at = self._flicker_pressed_at, None
            if pressed is not None and time.monotonic() - pressed > FLICKER_HOLD_S:
                self.set_flicker(not self.flicker)  # held: hold-to-compare, back on release
            return
        super().keyReleaseEvent(event)

    def sizeHint(self) -> QSize:  # noqa: N802
        return QSize(1100, 700)


def predicted_text(st: CompareStats) -> str:
    """The predict-then-update figure with its count and interval, named for what it is."""
    return f"{PREDICTED_NAME}: {describe(st.predicted)}"


def heldout_text(st: CompareStats) -> str:
    """The status strip's held-out figure: the live model next to the model it started from
    on the same held-out pairs, with counts and intervals; until it can tell, "too few to
    tell" and how many more clicks (the compare loop's one rule)."""
    pairs = plural(st.heldout_count, "held-out pair")
    if not st.enough:
        more = more_clicks_sentence(MIN_PAIRS_TO_TELL - st.heldout_count, st.schedule, "to go")
        return f"{pairs}: too few to tell ({MIN_PAIRS_TO_TELL} needed, {more})"
    if st.heldout_live is None:
        return f"{st.base_name} on {pairs}: {describe(st.heldout_base)}"
    return f"on {pairs}: live model {describe(st.heldout_live)}, {st.base_name} {describe(st.heldout_base)}"
