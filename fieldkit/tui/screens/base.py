"""The base of every mode screen: worker failures go to the app's one handler."""

from __future__ import annotations

from textual.screen import Screen
from textual.worker import Worker


class ModeScreen(Screen[None]):
    """A screen whose failed workers become notifications (StateChanged does not bubble)."""

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        report = getattr(self.app, "on_worker_state_changed", None)
        if report is not None:
            report(event)
