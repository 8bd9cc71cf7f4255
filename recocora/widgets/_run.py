"""The live view of a background run: progress bar, counts, 429s, ETA and a Cancel button.

No thread ever touches a widget: a hidden ``Play`` widget ticks in the browser, each tick
reaches the kernel as an ordinary message handled while it is idle (between cells, or while
another cell waits on I/O), and the tick's handler re-reads the run's record. When the run
ends the ticking stops and the final summary stays.

>>> run = df.cora.upsert(client=cora, background=True)  # doctest: +SKIP
>>> run  # the monitor; recocora.attach(run.id) shows it again after a page reload
... # doctest: +SKIP
"""

from __future__ import annotations

import html
from typing import Any, Protocol

import ipywidgets as widgets

from .._display import badges_html
from .._progress import format_duration, sharing_note

__all__ = ["RunMonitor", "run_mimebundle"]

_STATE_COLOURS = {"queued": "#6e7781", "running": "#0969da", "succeeded": "#1a7f37",
                  "failed": "#cf222e", "cancelled": "#9a6700", "interrupted": "#bc4c00"}


class Run(Protocol):
    """What the monitor reads of a :class:`recocora.Run`."""

    id: str

    @property
    def done(self) -> bool: ...

    def info(self) -> dict[str, Any]: ...

    def cancel(self) -> None: ...


class RunMonitor(widgets.VBox):  # type: ignore[misc]
    """A :class:`recocora.Run` as a widget, refreshed by the browser's ticks.

    >>> RunMonitor(recocora.attach(run_id))  # doctest: +SKIP
    """

    #: Milliseconds between the browser's ticks.
    TICK_MS = 500

    def __init__(self, run: Run) -> None:
        self.run = run
        self.bar = widgets.IntProgress(min=0, max=1, value=0, bar_style="info",
                                       layout=widgets.Layout(width="28em"))
        self.label = widgets.HTML()
        self.cancel_button = widgets.Button(description="Cancel", button_style="warning",
                                            icon="stop")
        self.cancel_button.on_click(self._cancel)
        # The browser starts a Play's clock only when ``playing`` changes under a view, so
        # the view count (reported by the front end once a view is drawn, again after a page
        # reload) is the cue to switch it on.
        self.ticker = widgets.Play(interval=self.TICK_MS, min=0, max=1000, repeat=True,
                                   show_repeat=False, _view_count=0,
                                   layout=widgets.Layout(display="none"))
        self.ticker.observe(self._tick, names="value")
        self.ticker.observe(self._drawn, names="_view_count")
        super().__init__([widgets.HBox([self.bar, self.cancel_button, self.ticker]),
                          self.label])
        self.add_class("recocora-run")
        self.refresh()

    def _drawn(self, change: dict[str, Any]) -> None:
        if (change["new"] or 0) > (change["old"] or 0) and not self.run.done:
            self.ticker.playing = False
            self.ticker.playing = True

    def _tick(self, change: dict[str, Any]) -> None:
        self.refresh()

    def _cancel(self, button: widgets.Button) -> None:
        button.disabled = True
        button.description = "Cancelling…"
        self.run.cancel()
        self.refresh()

    def refresh(self) -> None:
        """Re-read the run's record and show it."""
        info = self.run.info()
        state = info["state"]
        total = info["rows_total"] if info["rows_total"] is not None else info["rows"]
        self.bar.max = max(1, int(total))
        self.bar.value = min(int(info["rows_done"]), self.bar.max)
        colour = _STATE_COLOURS.get(state, "#6e7781")
        note = sharing_note(int(info["sharing"]))
        shared = f" ({note})" if note else ""
        self.label.value = (
            f'<div class="recocora-run-summary" data-state="{html.escape(state)}">'
            f'<b>{html.escape(self.run.id)}</b> '
            f'<span style="color:{colour};font-weight:bold">{html.escape(state)}</span> '
            f'<span class="recocora-rows">{int(info["rows_done"]):,} / {int(total):,} rows'
            f"</span> · {badges_html(info['counts'])} · {int(info['requests']):,} requests"
            f" · {int(info['rate_limited']):,} answered 429"
            + (f" · {format_duration(float(info['eta_s']))} left{shared}"
               if state in ("queued", "running") and info["eta_s"] is not None else "")
            + (f"<br><span>{html.escape(str(info['error']))}</span>" if info["error"] else "")
            + "</div>"
        )
        if state in ("queued", "running"):
            return
        self.ticker.playing = False
        self.cancel_button.disabled = True
        self.cancel_button.description = state.capitalize()
        self.bar.bar_style = {"succeeded": "success", "failed": "danger"}.get(state, "warning")


def run_mimebundle(run: Run) -> dict[str, Any]:
    """What a notebook shows for ``run``: the live monitor, with the text summary for front
    ends without widgets."""
    bundle: dict[str, Any] = dict(RunMonitor(run)._repr_mimebundle_() or {})
    bundle["text/plain"] = repr(run)
    return bundle
