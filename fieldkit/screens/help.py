"""The help screen (`?`): what each mode is for and every key, readable at 80x24."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Markdown

HELP_TEXT = """\
# fieldkit

Offline knowledge packets: small expert adapters for the model on this laptop.

**F1 Peers**: find nearby devices (Bluetooth LE, LAN), pair with the 6-digit code,
sync packets (`s`, cancel with `x`). **F2 Library**: every packet, its signature and
base-model match; verify `v`, remove `d`, export `e`, trust `t` / block `b` its
author. **F3 Ask**: type a question and press Enter; the route is shown before the
answer; `o` picks a packet or the base model by hand, `x` stops the answer.

A packet marked `!! UNVERIFIED`, `!! FOREIGN BASE` or `!! BLOCKED` is never used
for answers; only `ok verified` packets are.

`Ctrl+P` opens the command palette, `?` this help, `Ctrl+Q` quits.
Press `Escape` to close.
"""


class HelpScreen(ModalScreen[None]):
    """A modal page of help text."""

    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll {
        width: 78; height: 22; border: thick $primary; background: $surface;
    }
    """
    BINDINGS = [Binding("escape,q,question_mark", "dismiss", "Close")]

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Markdown(HELP_TEXT)
