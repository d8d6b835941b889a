"""The base of every mode screen: worker failures go to the app's one handler."""

from __future__ import annotations

from textual import events
from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import Footer
from textual.worker import Worker


class KeysFooter(Footer):
    """The footer, compact below 80 columns (no space around the keys, and no "q Quit":
    Ctrl+Q quits anywhere, and ? Help lists both), so that a narrow terminal (60 columns
    over SSH from a phone) shows every other key of each mode."""

    def on_resize(self, event: events.Resize) -> None:
        compact = event.size.width < 80
        if compact != self.compact:
            self.compact = compact
            self.refresh(recompose=True)

    def compose(self) -> ComposeResult:
        for widget in super().compose():
            if self.compact and getattr(widget, "action", None) in NARROW_LEFT_OUT:
                continue  # a key (FooterKey) of an action a narrow footer leaves out
            yield widget


NARROW_LEFT_OUT = frozenset({"quit_asking"})  # the actions a compact footer leaves out


def keys_footer() -> Footer:
    """Return the footer every screen shows, modes and dialogs alike: its own keys (a mode's
    then ? Help and q Quit; a dialog's alone, never those of the screen under it). Ctrl+P
    (the command palette) is left to the help page, so that all of them fit 80 columns."""
    return KeysFooter(show_command_palette=False)


class ModeScreen(Screen[None]):
    """A screen whose failed workers become notifications (StateChanged does not bubble)."""

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        report = getattr(self.app, "on_worker_state_changed", None)
        if report is not None:
            report(event)
