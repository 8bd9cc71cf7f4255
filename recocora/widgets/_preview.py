"""Preview → re-check → confirm → progress → results: the widgets behind
``df.cora.preview()`` and ``df.recotap.preview()``.

The preview is worked out with the free local diffs, so showing it writes nothing and spends
no bulk slot. **Apply** works the diff out again, asks for a confirmation when rows changed
meanwhile or stored data would be overwritten, then runs the real call in a background
thread. Every part is an attribute, so code and tests can click without a browser:

>>> w = df.cora.preview(client=cora, on_invalid="skip")  # doctest: +SKIP
>>> w.apply_button.click(); w.wait(); w.confirm_button.click(); w.wait()  # doctest: +SKIP
"""

from __future__ import annotations

import html
import threading
from dataclasses import replace
from typing import Any

import ipywidgets as widgets
import pandas as pd

from .._display import MUTED, as_result, badges_html, summary_html
from .._progress import Progress, sharing_note
from .._report import STATUS_ORDER, status_counts, summary_text
from .._run import RunOptions
from ..cora._client import CoraClient
from ..errors import ValidationError
from ..recotap._client import RecotapClient
from ._apply import changed_rows, closed_text, confirm_lines, outcome_text, waiting_text
from ._results import PagedTable, message_html
from ._sides import (
    CoraSide,
    RecotapSide,
    Side,
    error_text,
    in_row_order,
    plural,
    problem_frame,
    validation_report,
)

__all__ = ["STATES", "CoraPreview", "Preview", "RecotapPreview"]

#: What a preview can be doing; ``Preview.state`` holds one of these. ``checking``: Apply
#: works the diff out again before anything is written.
STATES = ("ready", "blocked", "checking", "confirming", "running", "done", "failed")

class Preview(widgets.VBox):  # type: ignore[misc]
    """What a bulk call would do, shown before it runs, with an **Apply** button.

    **Apply** first works the diff out again: when rows changed since the preview it shows
    the new counts and asks for a confirmation before anything is written (it asks too when
    stored data would be overwritten); a closed client is refused before any request. Once a
    run ends, the header says what it wrote.

    Parts (attributes): ``title_html`` (the header), ``validation_html`` and ``problems`` (a
    :class:`~recocora.widgets.PagedTable` of invalid rows and rows that would fail, in row
    order), ``counts_html``, ``eta_html``, ``changes_title`` and ``changes`` (a
    ``PagedTable``), ``apply_button``, ``confirm_box`` with ``confirm_html``,
    ``confirm_button`` and ``cancel_button``, ``progress`` (an ``IntProgress``),
    ``progress_html``, ``message_html`` (errors) and ``result_html``. State: ``state`` (one
    of :data:`STATES`), ``preview_result`` (the diff frame, the fresh one after a stale
    re-check), ``stale_rows`` (rows the last re-check found changed), ``failure_cases``
    (``row, column, problem, value, message``: the problem in words, the row's own value in
    that column), ``overwrites`` (rows whose stored data would be replaced), ``result`` (the
    real run's result frame, the partial one after an error), ``error`` and
    ``preview_error``.

    Build it with ``df.cora.preview()`` or ``df.recotap.preview()``.
    """

    def __init__(self, side: Side, client: Any, kwargs: dict[str, Any]) -> None:
        self._side = side
        # A misspelt option fails now, not after the user clicked Apply. ``progress`` shows
        # a bar while the preview is worked out; the run reports to the widget's own bar.
        self._options: RunOptions = side.options(kwargs)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._own_client = client is None
        self.client: Any = client
        self.state = "ready"
        self.preview_result: pd.DataFrame | None = None
        self.preview_error: BaseException | None = None
        self.failure_cases: pd.DataFrame = problem_frame(pd.DataFrame())
        self.overwrites = 0
        self.result: pd.DataFrame | None = None
        self.error: BaseException | None = None
        #: Why nothing can be applied when it is not an error (a closed client).
        self._blocked_reason: str | None = None
        #: Rows the last re-check found changed since the preview (0: it was up to date).
        self.stale_rows = 0

        self.title_html = widgets.HTML()
        self.validation_html = widgets.HTML()
        self.counts_html = widgets.HTML()
        self.eta_html = widgets.HTML()
        self.apply_button = widgets.Button(
            description="Apply", button_style="primary", icon="play",
            tooltip="Run the real call with these settings",
        )
        self.confirm_html = widgets.HTML()
        self.confirm_button = widgets.Button(description="Confirm", button_style="danger")
        self.cancel_button = widgets.Button(description="Cancel")
        self.confirm_box = widgets.VBox(
            [self.confirm_html, widgets.HBox([self.confirm_button, self.cancel_button])],
            layout=widgets.Layout(display="none"),
        )
        self.progress = widgets.IntProgress(
            value=0, min=0, max=1, layout=widgets.Layout(display="none")
        )
        self.progress_html = widgets.HTML()
        self.message_html = widgets.HTML()
        self.result_html = widgets.HTML()
        # Stable class names, so a page (or a browser test) can find each part.
        for part, name in ((self.apply_button, "apply"), (self.confirm_button, "confirm"),
                           (self.cancel_button, "cancel"), (self.progress, "progress"),
                           (self.message_html, "message"), (self.result_html, "result")):
            part.add_class(f"recocora-{name}")
        self.apply_button.on_click(self._on_apply)
        self.confirm_button.on_click(self._on_confirm)
        self.cancel_button.on_click(self._on_cancel)

        self._compute()
        self.problems = PagedTable(
            self.failure_cases, facet="problem", page_size=10, empty="No problems found."
        )
        self.changes = PagedTable(
            side.changes(self.preview_result), facet=side.changes_facet, page_size=15,
            empty="Nothing would change.",
        )
        self.changes_title = widgets.HTML(f"<b>{html.escape(side.changes_title)}</b>")
        self._render_preview()
        super().__init__(
            [
                self.title_html,
                self.validation_html, self.problems,
                self.counts_html, self.eta_html,
                self.changes_title, self.changes,
                widgets.HBox([self.apply_button]), self.confirm_box,
                widgets.HBox([self.progress, self.progress_html]),
                self.message_html, self.result_html,
            ]
        )
        self.add_class("recocora-preview")
        self._sync_buttons()

    # -- the preview ----------------------------------------------------------------------------

    def _compute(self) -> None:
        side = self._side
        try:
            if self.client is None:
                self.client = side.make_client()
            self._blocked_reason = closed_text(self.client, side.call)
            if self._blocked_reason is not None:
                self.state = "blocked"
                return
            preview = side.diff(self.client, self._options)
        except ValidationError as exc:
            self.preview_error = exc
            self.failure_cases = in_row_order(
                problem_frame(exc.failure_cases, side.own_column), side.index
            )
            self.state = "blocked"
            return
        except Exception as exc:
            self.preview_error = exc
            self.state = "blocked"
            return
        self._adopt(preview)

    def _adopt(self, preview: pd.DataFrame) -> None:
        """Take ``preview`` (a diff of the frame) as what Apply would do."""
        side = self._side
        self.preview_result = as_result(preview)
        cases = problem_frame(pd.DataFrame())
        if status_counts(preview).get("invalid"):
            cases = problem_frame(side.failure_cases(self._options), side.own_column)
        failing = side.would_fail(preview)
        if len(failing):
            cases = pd.concat([cases, failing], ignore_index=True)
        self.failure_cases = in_row_order(cases, side.index)
        self.overwrites = side.overwrites(preview, self._options)

    @property
    def _dry_run(self) -> bool:
        return bool(getattr(self._options, "dry_run", False))

    def _render_header(self) -> None:
        side = self._side
        ended = self.result is not None and self.state in ("done", "failed")
        # What a run wrote is news, in the text's own colour; before that, a quiet note.
        look = "font-weight:600" if ended else f"color:{MUTED}"
        self.title_html.value = (
            f"<h3 style='margin:4px 0'>{html.escape(side.label)} preview: "
            f"{plural(side.rows, 'row')}</h3><div class='recocora-header' "
            f"style='{look}'>{html.escape(self._header_text())}</div>"
        )

    def _header_text(self) -> str:
        if self.result is not None and self.state in ("done", "failed"):
            return outcome_text(self.result, self._side.service, self._side.written,
                                done=self.state == "done", dry_run=self._dry_run)
        return waiting_text(self.stale_rows)

    def _render_preview(self) -> None:
        side = self._side
        self._render_header()
        self.validation_html.value = validation_report(
            self.failure_cases, self.preview_error)
        self.problems.show(self.failure_cases)
        self.problems.layout.display = "" if len(self.failure_cases) else "none"
        preview = self.preview_result
        if preview is None:
            # Nothing is known about what would change: show no empty table that says so.
            self.changes_title.layout.display = self.changes.layout.display = "none"
            # A validation failure already has its report and table above.
            if not (isinstance(self.preview_error, ValidationError) and len(self.failure_cases)):
                self.message_html.value = message_html(self._blocked_text(), kind="error")
            return
        self.changes.show(side.changes(preview))
        counts = status_counts(preview)
        shown = {s: counts.get(s, 0) for s in side.headline}
        shown.update({s: k for s, k in counts.items() if s not in shown})
        what = "What would happen now" if self.stale_rows else "What would happen"
        self.counts_html.value = (
            f"<div style='margin:6px 0'><b>{what}:</b> "
            f"{badges_html(shown, show_zero=True)}</div>"
        )
        eta = html.escape(side.eta(self.client, preview, self._options))
        self.eta_html.value = f"<div style='margin:4px 0'>{eta}</div>"

    def _blocked_text(self) -> str:
        if self._blocked_reason is not None:
            return self._blocked_reason
        exc = self.preview_error
        if isinstance(exc, ValidationError):
            return str(exc)
        return ("The preview could not be worked out, so nothing can be applied from it.\n"
                f"{error_text(exc) if exc is not None else ''}")

    # -- buttons --------------------------------------------------------------------------------

    def _sync_buttons(self) -> None:
        state = self.state
        self.apply_button.disabled = state not in ("ready", "failed")
        self.confirm_button.disabled = state != "confirming"
        self.cancel_button.disabled = state != "confirming"
        self.confirm_box.layout.display = "" if state == "confirming" else "none"
        self.confirm_button.description = "Confirm overwrite" if self.overwrites else "Confirm"
        label = {"done": ("Applied", "check"), "running": ("Running…", "spinner"),
                 "checking": ("Checking…", "spinner")}
        self.apply_button.description, self.apply_button.icon = label.get(
            state, ("Apply", "play")
        )

    def _on_apply(self, _button: Any = None) -> None:
        with self._lock:
            if self.state not in ("ready", "failed"):
                return
            self.state = "checking"
            self.error = None
            thread = threading.Thread(target=self._check, name="recocora-check", daemon=True)
            self._thread = thread
        self.message_html.value = ""
        self.progress_html.value = "Checking the accounts' current state before writing…"
        self._sync_buttons()
        thread.start()

    def _check(self) -> None:
        """Apply's first step: the same diff again, so what is confirmed and sent is what the
        accounts need now, not what they needed when the preview was shown."""
        side = self._side
        problem = closed_text(self.client, side.call)
        fresh = None
        if problem is None:
            try:
                fresh = side.diff(self.client, replace(self._options, progress=False))
            # Whatever stops the check, the widget must say so rather than stay "checking".
            except BaseException as exc:
                with self._lock:
                    self.error = exc
                    self.state = "failed"
                problem = ("Apply stopped before writing anything: the accounts' current state "
                           f"could not be read again.\n{error_text(exc)}")
        if fresh is None:
            with self._lock:
                if self.error is None:  # the client was closed: no retry can help
                    self._blocked_reason, self.state = problem, "blocked"
            self.progress_html.value = ""
            self.message_html.value = message_html(str(problem), kind="error")
            self._sync_buttons()
            return
        assert self.preview_result is not None
        stale = changed_rows(self.preview_result, fresh, side.status_column, side.changes)
        before = status_counts(self.preview_result)
        if stale:
            self.stale_rows = stale
            self._adopt(fresh)
            self._render_preview()
        with self._lock:
            ask = bool(stale or (self.overwrites and not self._dry_run))
            if ask:
                self.state = "confirming"
            else:
                self._begin(spawn=False)
        if not ask:
            self._launch(None)
            self._work()
            return
        overwrite = (self._side.confirm_text(self.overwrites, len(self.changes.frame))
                     if self.overwrites and not self._dry_run else None)
        text = confirm_lines(stale, before, status_counts(self.preview_result), overwrite)
        self.confirm_html.value = message_html("\n".join(text), kind="warning")
        self.progress_html.value = ""
        self._sync_buttons()

    def _on_confirm(self, _button: Any = None) -> None:
        thread = None
        with self._lock:
            if self.state == "confirming":
                thread = self._begin()
        self._launch(thread)

    def _on_cancel(self, _button: Any = None) -> None:
        with self._lock:
            if self.state == "confirming":
                self.state = "ready" if self.error is None else "failed"
        self._sync_buttons()

    # -- the real run ---------------------------------------------------------------------------

    def _begin(self, spawn: bool = True) -> threading.Thread | None:
        """Move to ``running`` (the caller holds the lock, so a double click starts one run);
        the thread to run it in, unless the caller's own thread runs it (``spawn=False``)."""
        self.state = "running"
        self.error = None
        if not spawn:
            return None
        self._thread = threading.Thread(target=self._work, name="recocora-apply", daemon=True)
        return self._thread

    def _launch(self, thread: threading.Thread | None) -> None:
        """Show the run starting, and start ``thread`` (``None``: the caller runs it)."""
        assert self.preview_result is not None
        if self.state == "running":
            self.progress.max = max(1, self._side.to_send(self.preview_result))
            self.progress.value = 0
            self.progress.bar_style = "info"
            self.progress.layout.display = ""
            self.progress_html.value = "starting…"
            self.message_html.value = ""
            self.result_html.value = ""
        self._sync_buttons()
        if thread is not None:
            thread.start()

    def _on_progress(self, event: Progress) -> None:
        """The run's events move the bar: rows done of those to send, counts, runs on the key."""
        order = STATUS_ORDER.get(self._side.api, ())
        live = {k: event.counts[k] for k in order if event.counts.get(k)}
        live.update((k, n) for k, n in event.counts.items() if k not in live and n)
        with self._lock:
            self.progress.max = max(1, event.rows_total, event.rows_done)
            self.progress.value = event.rows_done
            total = self.progress.max
        self.progress_html.value = (
            f"<span style='margin-left:8px'>{event.rows_done:,} / {total:,} rows "
            f"{badges_html(live)} {html.escape(sharing_note(event.sharing))}</span>"
        )

    def _work(self) -> None:
        try:
            options = replace(self._options, progress=False, on_progress=self._on_progress)
            result = self._side.run(self.client, options)
        # Whatever stops the run, the widget must say so rather than stay "running".
        except BaseException as exc:
            partial = getattr(exc, "result", None)
            with self._lock:
                self.error = exc
                self.result = as_result(partial) if isinstance(partial, pd.DataFrame) else None
                self.state = "failed"
            self._show_failure(exc)
        else:
            with self._lock:
                self.result = as_result(result)
                self.state = "done"
            self.progress.bar_style = "success"
            self.result_html.value = (
                "<div style='margin:6px 0'><b>Result</b> (<code>widget.result</code> holds the "
                f"frame):</div>{summary_html(self.result)}"
            )
            if self._own_client:
                self.client.close()
        finally:
            self._render_header()
            self._sync_buttons()

    def _show_failure(self, exc: BaseException) -> None:
        self.progress.bar_style = "danger"
        partial = self.result
        lines = ["The run stopped with an error. Apply reads the accounts again and sends what "
                 "they still need.", error_text(exc)]
        if partial is not None:
            lines.append("Rows so far: " + summary_text(partial))
            self.result_html.value = summary_html(partial)
        self.message_html.value = message_html("\n".join(lines), kind="error")

    def wait(self, timeout: float | None = None) -> pd.DataFrame | None:
        """Block until a started run ends (or ``timeout`` seconds pass); returns ``result``.

        >>> w.apply_button.click(); res = w.wait()  # doctest: +SKIP
        """
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        return self.result

    def close(self) -> None:
        """Close the widget, and the client when the preview built it."""
        # getattr: ipywidgets also calls close() on a widget whose __init__ raised.
        client = getattr(self, "client", None)
        if getattr(self, "_own_client", False) and client is not None and (
            getattr(self, "state", "") != "running"
        ):
            client.close()
        super().close()

    # -- static display -------------------------------------------------------------------------

    def __repr__(self) -> str:
        side = self._side
        lines = [f"{side.label} preview: {plural(side.rows, 'row')}, "
                 f"state {self.state}"]
        preview = self.preview_result
        if preview is None or self._blocked_reason is not None:
            lines.append(self._blocked_text())
        if preview is not None:
            counts = status_counts(preview)
            lines.append("would: " + ", ".join(f"{n:,} {s}" for s, n in counts.items()))
            lines.append(side.eta(self.client, preview, self._options))
            if len(self.failure_cases):
                lines.append(f"{plural(len(self.failure_cases), 'problem')} in the rows "
                             "(see .failure_cases)")
        if self.result is not None:
            lines.append("result: " + summary_text(self.result))
        if self.error is not None:
            lines.append("error: " + error_text(self.error))
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        parts = [self.title_html.value, self.validation_html.value]
        if len(self.failure_cases):
            parts.append(self.problems.static_html())
        parts += [self.counts_html.value, self.eta_html.value]
        if len(self.changes.frame):
            parts += [f"<b>{html.escape(self._side.changes_title)}</b>",
                      self.changes.static_html()]
        parts += [self.message_html.value, self.result_html.value]
        if self.state in ("ready", "failed", "confirming"):
            parts.append(
                f"<div style='color:{MUTED};margin-top:6px'><em>Static view: run this in "
                "Jupyter with ipywidgets for the Apply button.</em></div>"
            )
        return f"<div class='recocora-preview'>{''.join(parts)}</div>"

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        # The widget view where a front end can show widgets; HTML or text everywhere else.
        data = dict(super()._repr_mimebundle_(**kwargs) or {})
        data["text/plain"] = repr(self)
        data["text/html"] = self._repr_html_()
        return data


class CoraPreview(Preview):
    """The widget ``df.cora.preview()`` returns; see :class:`Preview` for its parts.

    ``upsert_kwargs`` are ``df.cora.upsert``'s options; Apply passes them all on.

    >>> w = CoraPreview(df, client=cora, on_invalid="skip")  # doctest: +SKIP
    """

    def __init__(self, df: pd.DataFrame, client: CoraClient | None = None,
                 **upsert_kwargs: Any) -> None:
        super().__init__(CoraSide(df), client, upsert_kwargs)


class RecotapPreview(Preview):
    """The widget ``df.recotap.preview()`` returns; see :class:`Preview` for its parts.

    ``map_ids_kwargs`` are ``df.recotap.map_ids``'s options; Apply passes them all on.

    >>> w = RecotapPreview(crm, client=rtp, overwrite=True)  # doctest: +SKIP
    """

    def __init__(self, df: pd.DataFrame, client: RecotapClient | None = None,
                 **map_ids_kwargs: Any) -> None:
        super().__init__(RecotapSide(df), client, map_ids_kwargs)
