"""Small modal dialogs returning typed results: confirm, one line of text, pick from a list."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, OptionList
from textual.widgets.option_list import Option

from fieldkit.tui.screens.base import keys_footer

DIALOG_CSS = """
{name} {{ align: center middle; }}
{name} > Vertical {{
    width: 64; height: auto; max-height: 20;
    border: thick $primary; background: $surface; padding: 0 1;
}}
{name} Label {{ width: 1fr; margin-bottom: 1; }}
{name} OptionList {{ height: auto; max-height: 14; }}
{name} .keys {{ color: $text-muted; margin: 1 0 0 0; }}
"""


class ConfirmDialog(ModalScreen[bool]):
    """Ask a yes/no question; returns True for y, False for n or escape."""

    DEFAULT_CSS = DIALOG_CSS.format(name="ConfirmDialog")
    BINDINGS = [
        Binding("y", "answer(True)", "Yes"),
        Binding("n,escape", "answer(False)", "No"),
    ]

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self.question, markup=False)
            yield Label("[b]y[/b] yes    [b]n[/b] no")
        yield keys_footer()

    def action_answer(self, value: bool) -> None:
        self.dismiss(value)


class TextDialog(ModalScreen[str | None]):
    """Ask for one line of text; returns it stripped, or None on escape."""

    DEFAULT_CSS = DIALOG_CSS.format(name="TextDialog")
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, prompt: str, value: str = "", placeholder: str = "") -> None:
        super().__init__()
        self.prompt = prompt
        self.value = value
        self.placeholder = placeholder

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self.prompt)
            yield Input(value=self.value, placeholder=self.placeholder)
            yield Label("[b]Enter[/b] accept    [b]Escape[/b] cancel", classes="keys")
        yield keys_footer()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        text = event.value.strip()
        self.dismiss(text or None)

    def action_cancel(self) -> None:
        self.dismiss(None)


class PickDialog(ModalScreen[str | None]):
    """Pick one of several (key, label) choices; returns the key, or None on escape."""

    DEFAULT_CSS = DIALOG_CSS.format(name="PickDialog")
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(
        self, prompt: str, choices: list[tuple[str, str]], current: str | None = None
    ) -> None:
        super().__init__()
        self.prompt = prompt
        self.choices = choices
        self.current = current  # the key highlighted first (the choice in force)

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self.prompt)
            yield OptionList(*(Option(label, id=key) for key, label in self.choices))
            yield Label("[b]Enter[/b] pick    [b]Escape[/b] cancel", classes="keys")
        yield keys_footer()

    def on_mount(self) -> None:
        keys = [key for key, _ in self.choices]
        if self.current in keys:
            self.query_one(OptionList).highlighted = keys.index(self.current)

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self.dismiss(event.option.id)

    def action_cancel(self) -> None:
        self.dismiss(None)
