"""The help screen (`?`): what each mode is for and every key, readable at 80x24."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Markdown

from fieldkit.tui.screens.base import keys_footer

HELP_TEXT = """\
# fieldkit

Offline knowledge packets: small expert adapters for the model on this laptop.

- **F2 Peers**: devices nearby (Bluetooth LE) and known. `s` sync with the selected
  peer or a LAN address, `l` let LAN peers sync with this one, `x` cancel (the
  transfer resumes next time), `t` trust, `b` block, `r` rescan. A new peer shows a
  six-digit code: accept only if the other screen shows the same code.
- **F3 Library**: every packet with its state. `v` verify, `d` remove, `e` export,
  `i` import packet files (one, or a folder of them), `t` trust or `b` block its
  author, `r` refresh.
- **F4 Ask**: type a question, press Enter. The route shows before the answer.
  `Ctrl+O` picks a packet or the base model by hand, `Escape` stops the answer,
  `Ctrl+E` shows an answer's sources in full, `Ctrl+L` clears the history,
  `Up` and `Down` bring back the questions asked. `Ctrl+N` answers a question
  again from a record its answer showed: the nearest one when the notes had
  nothing on it, or one it cites (pick which).

Only `ok verified` packets are good. `!! UNVERIFIED` (signature or weights failed),
`!! FOREIGN BASE` (made for another base model), `!! BLOCKED` (author blocked) and
`!! NO MODEL` (no base model installed yet) are never offered by hand.

`1` `2` `3` also switch modes and `q` quits, except on Ask, where every key
typed goes into the question box (`Tab` moves to the answers, arrows scroll).
`q` asks first while an answer is written, a sync runs or this device listens.
`F1` or `?` this help, `Ctrl+P` command palette, `Ctrl+Q` quit from anywhere
at once, `Escape` close.
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
        yield keys_footer()
