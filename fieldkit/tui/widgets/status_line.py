"""The one-line header every screen shares: the mode keys and the base model's state."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

MODE_KEYS: tuple[tuple[str, str], ...] = (("F2", "Peers"), ("F3", "Library"), ("F4", "Ask"))


def status_text(mode: str, model_state: str, width: int | None = None) -> Text:
    """Return the header: every mode with its key, the current one marked, then the model;
    within `width` the model's state is cut (its end, '~' marking the cut), never lost."""
    text = Text()
    for key, name in MODE_KEYS:
        if name == mode:
            text.append(f"[{key} {name}]", style="bold reverse")
        else:
            text.append(f" {key} {name} ")
        text.append(" ")
    label = " model: "
    if width is not None and len(text) + len(label) + len(model_state) > width:
        label = " "  # narrow: the state alone ("ready" says what it is)
        room = max(width - len(text) - len(label), 8)
        if len(model_state) > room:
            model_state = "~" + model_state[-(room - 1) :]
    text.append(label, style="bold")
    text.append(model_state)
    return text


class StatusLine(Static):
    """Shows the mode keys and follows the app's `model_state`."""

    DEFAULT_CSS = """
    StatusLine {
        height: 1;
        width: 1fr;
        background: $primary-background;
        padding: 0 1;
    }
    """

    def __init__(self, mode: str) -> None:
        super().__init__("")
        self.mode = mode
        self.state = ""

    def on_mount(self) -> None:
        self.watch(self.app, "model_state", self._refresh_line)

    def _refresh_line(self, state: str) -> None:
        self.state = state
        self.update(status_text(self.mode, state, self.content_size.width or None))

    def on_resize(self) -> None:
        self._refresh_line(self.state)
