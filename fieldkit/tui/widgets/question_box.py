"""The Ask screen's question box: one line of text that recalls the questions asked."""

from __future__ import annotations

from textual.binding import Binding
from textual.widgets import Input


class QuestionBox(Input):
    """An Input whose Up and Down step through the questions asked this session, as a
    shell's history does: Down past the newest gives back what was typed before Up."""

    BINDINGS = [
        Binding("up", "recall(-1)", "Previous question", show=False),
        Binding("down", "recall(1)", "Next question", show=False),
    ]

    def __init__(self, placeholder: str = "", *, id: str | None = None) -> None:  # noqa: A002 - textual's name
        # coming back to the box (a key typed outside it, Tab) keeps what is typed there
        super().__init__(placeholder=placeholder, id=id, select_on_focus=False)
        self.asked: list[str] = []
        self.place: int | None = None  # the index in `asked` shown now; None: not browsing
        self.draft = ""  # what was typed before the first Up

    def remember(self, question: str) -> None:
        """Keep a question that was asked (once, when it repeats the one before), and stop
        browsing: the next Up starts again from the newest."""
        if not self.asked or self.asked[-1] != question:
            self.asked.append(question)
        self.place = None

    def action_recall(self, step: int) -> None:
        """Show the question `step` places older (-1) or newer (1) than the one shown;
        newer than the newest is the draft again."""
        if self.place is None:
            if step > 0 or not self.asked:
                return
            self.draft = self.value
            place = len(self.asked) - 1
        else:
            place = max(self.place + step, 0)
        if place >= len(self.asked):
            self.place = None
            self.value = self.draft
        else:
            self.place = place
            self.value = self.asked[place]
        self.cursor_position = len(self.value)
