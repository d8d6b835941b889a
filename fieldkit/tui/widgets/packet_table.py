"""The library table: one row per packet, its verification state spelled out in words."""

from __future__ import annotations

from rich.text import Text
from textual.binding import Binding
from textual.message import Message
from textual.widgets import DataTable

from fieldkit.tui.views import PacketRow, PacketStatus

_STATUS_STYLE = {
    PacketStatus.VERIFIED: "green",
    PacketStatus.UNVERIFIED: "bold red",
    PacketStatus.FOREIGN_BASE: "bold yellow",
    PacketStatus.BLOCKED: "bold red",
    PacketStatus.NO_MODEL: "bold yellow",
}


# Every column but the date fits 80 terminal columns, padding and the vertical scrollbar
# included: the state's longest label ("!! FOREIGN BASE"), a domain such as grain_storage,
# an author's and a sending peer's short id (the detail pane says "peer" before it).
COLUMNS = (
    ("name", 14),
    ("state", 15),
    ("domain", 13),
    ("size", 8),
    ("author", 8),
    ("source", 8),
)
# The date, shown only where it fits (the detail pane always shows it): a table wider than
# its screen scrolls sideways, and scrolling hides the names.
DATE_COLUMN = ("received", 16)
CELL_PADDING = 1  # each side of each column, as DataTable draws it


def columns_for(width: int) -> tuple[tuple[str, int], ...]:
    """Return the columns that fit a table `width` cells wide: COLUMNS, then the date
    when it fits too; on a narrower screen (60 columns) COLUMNS from the last, down to the
    name and the state (the detail pane shows every field)."""
    shown = [*COLUMNS, DATE_COLUMN]
    while len(shown) > 2 and sum(w + 2 * CELL_PADDING for _label, w in shown) > width:
        shown.pop()
    return tuple(shown)


def status_text(status: PacketStatus) -> Text:
    """Return the status as styled text; the words alone already tell good from bad."""
    return Text(status.label, style=_STATUS_STYLE[status])


class PacketTable(DataTable[object]):
    """A cursor-driven table of PacketRow; posts Highlighted when the cursor moves."""

    DEFAULT_CSS = """
    PacketTable { height: 1fr; }
    """
    # Home and End move the cursor (the table's own only scroll), as in any list
    BINDINGS = [
        Binding("home", "first_row", "First", show=False),
        Binding("end", "last_row", "Last", show=False),
    ]

    def action_first_row(self) -> None:
        if self.row_count:
            self.move_cursor(row=0)

    def action_last_row(self) -> None:
        if self.row_count:
            self.move_cursor(row=self.row_count - 1)

    class Highlighted(Message):
        """The cursor is on a packet (None when the table is empty)."""

        def __init__(self, packet_id: str | None) -> None:
            super().__init__()
            self.packet_id = packet_id

    def __init__(self, *, id: str | None = None) -> None:  # noqa: A002 - textual's name
        super().__init__(id=id, cursor_type="row", zebra_stripes=False, cell_padding=CELL_PADDING)
        self.rows_by_key: dict[str, PacketRow] = {}
        self.shown_columns: tuple[tuple[str, int], ...] = ()

    def on_mount(self) -> None:
        self._fit_columns(self.app.size.width)  # the screen's width until the table has one

    def on_resize(self) -> None:
        self._fit_columns(self.size.width)

    def _fit_columns(self, width: int) -> None:
        """Show the columns that fit `width` cells, less room kept for the vertical
        scrollbar (so that a longer library never makes the table scroll sideways)."""
        columns = columns_for(width - self.styles.scrollbar_size_vertical)
        if columns == self.shown_columns:
            return
        self.shown_columns = columns
        current = self.current_packet_id
        self.clear(columns=True)
        for label, size in columns:
            self.add_column(label, width=size, key=label)
        if self.rows_by_key:
            self.show(list(self.rows_by_key.values()))
        if current in self.rows_by_key:
            self.move_cursor(row=self.get_row_index(current))

    def show(self, rows: list[PacketRow]) -> None:
        """Replace the rows, keeping the cursor on the same packet when it is still here, or
        on the row that took its place (the next one after a removal)."""
        current = self.current_packet_id
        index = self.cursor_row if self.row_count else 0
        self.clear()
        self.rows_by_key = {row.packet_id: row for row in rows}
        for row in rows:
            cells = {
                "name": f"{row.name} (merged)" if row.merged else row.name,
                "state": status_text(row.status),
                "domain": row.domain,
                "size": row.size,
                "author": row.author,
                "source": row.source,
                "received": row.received,
            }
            self.add_row(*(cells[label] for label, _w in self.shown_columns), key=row.packet_id)
        if current in self.rows_by_key:
            self.move_cursor(row=self.get_row_index(current))
        elif self.row_count:
            self.move_cursor(row=min(index, self.row_count - 1))
        self.post_message(self.Highlighted(self.current_packet_id))

    @property
    def current_packet_id(self) -> str | None:
        """Return the packet under the cursor, or None for an empty table."""
        if not self.row_count:
            return None
        key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key
        return str(key.value) if key.value is not None else None

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        self.post_message(self.Highlighted(str(event.row_key.value)))
