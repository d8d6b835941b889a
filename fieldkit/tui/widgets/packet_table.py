"""The library table: one row per packet, its verification state spelled out in words."""

from __future__ import annotations

from rich.text import Text
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


# Every column but the date fits 80 terminal columns, padding included: the state's
# longest label ("!! FOREIGN BASE"), a domain such as grain_storage, an author's and a
# sending peer's short id (the detail pane says "peer" before it).
COLUMNS = (
    ("name", 14),
    ("state", 15),
    ("domain", 13),
    ("size", 8),
    ("author", 8),
    ("source", 8),
    ("received", 16),
)


def status_text(status: PacketStatus) -> Text:
    """Return the status as styled text; the words alone already tell good from bad."""
    return Text(status.label, style=_STATUS_STYLE[status])


class PacketTable(DataTable[object]):
    """A cursor-driven table of PacketRow; posts Highlighted when the cursor moves."""

    DEFAULT_CSS = """
    PacketTable { height: 1fr; }
    """

    class Highlighted(Message):
        """The cursor is on a packet (None when the table is empty)."""

        def __init__(self, packet_id: str | None) -> None:
            super().__init__()
            self.packet_id = packet_id

    def __init__(self, *, id: str | None = None) -> None:  # noqa: A002 - textual's name
        super().__init__(id=id, cursor_type="row", zebra_stripes=False)
        self.rows_by_key: dict[str, PacketRow] = {}

    def on_mount(self) -> None:
        for label, width in COLUMNS:
            self.add_column(label, width=width, key=label)

    def show(self, rows: list[PacketRow]) -> None:
        """Replace the rows, keeping the cursor on the same packet when it is still here."""
        current = self.current_packet_id
        self.clear()
        self.rows_by_key = {row.packet_id: row for row in rows}
        for row in rows:
            self.add_row(
                f"{row.name} (merged)" if row.merged else row.name,
                status_text(row.status),
                row.domain,
                row.size,
                row.author,
                row.source,
                row.received,
                key=row.packet_id,
            )
        if current in self.rows_by_key:
            self.move_cursor(row=self.get_row_index(current))
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
