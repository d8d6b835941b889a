"""The detail pane of the library: manifest, exemplars, signature and base-model match."""

from __future__ import annotations

import io

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Static

from fieldkit.tui.views import THIS_DEVICE, PacketDetail, PacketRow
from fieldkit.tui.widgets.packet_table import status_text


def render_detail(detail: PacketDetail) -> Group:
    """Return the rich renderable for one packet's detail."""
    row = detail.row
    head = Text.assemble((row.name, "bold"), "  ", status_text(row.status))
    facts = Table.grid(padding=(0, 1))
    facts.add_column(style="bold", no_wrap=True)
    facts.add_column()
    sig = Text("valid", "green") if detail.signature_ok else Text("NOT VERIFIED", "bold red")
    if detail.base_match is None:
        base = Text(f"no model installed here; made for {detail.base_model_id}", "bold yellow")
    elif detail.base_match:
        base = Text("matches this device", "green")
    else:
        base = Text(f"FOREIGN: made for {detail.base_model_id}", "bold yellow")
    facts.add_row("signature", sig)
    facts.add_row("base model", base)
    facts.add_row("domain", row.domain)
    facts.add_row(
        "author", Text.assemble(f"{row.author} ({row.author_id[:16]}), ", trust_text(row))
    )
    source = f"peer {row.source}" if row.from_peer else row.source
    facts.add_row("source", f"{source}, received {row.received}")
    facts.add_row("size", row.size)
    facts.add_row(
        "notes",
        f"{row.notes} source passages, signed: answers cite them"
        if row.notes
        else "none: answers come from the adapter only",
    )
    adapter = detail.manifest.get("adapter") or {}
    if isinstance(adapter, dict) and adapter:
        lora = adapter.get("lora_parameters", adapter)
        facts.add_row(
            "adapter",
            f"rank {lora.get('rank', '?')}, {_layers(adapter.get('num_layers'))}",
        )
    if detail.description:
        facts.add_row("about", detail.description)
    parts: list[object] = [head, facts]
    if detail.exemplars:
        parts.append(Text("exemplars", "bold"))
        parts.extend(Text(f"  - {ex}") for ex in detail.exemplars[:8])
    parts.append(Text(f"packet id {row.packet_id}", style="dim"))
    return Group(*parts)


def trust_text(row: PacketRow) -> Text:
    """Return whether the packet's author is trusted here, blocked, neither, or this
    device, in words that do not rely on colour."""
    if row.author_trust == "trusted":
        return Text("trusted", "green")
    if row.author_trust == "blocked":
        return Text("BLOCKED", "bold red")
    if row.author_trust == THIS_DEVICE:
        return Text(THIS_DEVICE)
    return Text("neither trusted nor blocked", "yellow")


class PacketDetailPane(VerticalScroll):
    """A scrollable pane that shows one PacketDetail, or a hint when nothing is selected."""

    DEFAULT_CSS = """
    PacketDetailPane { height: 1fr; border-top: solid $primary; padding: 0 1; }
    PacketDetailPane:focus { border-top: heavy $accent; background-tint: $foreground 5%; }
    PacketDetailPane > Static { width: 1fr; }
    """

    def compose(self) -> ComposeResult:
        yield Static("Select a packet to see its manifest.", id="detail-body")

    detail: PacketDetail | None = None

    def show(self, detail: PacketDetail | None) -> None:
        """Display `detail`, or the empty hint for None; another packet shows from its top
        (its name), the same one keeps the place read to."""
        shown = self.detail.row.packet_id if self.detail is not None else None
        if detail is None or detail.row.packet_id != shown:
            self.scroll_home(animate=False, immediate=True)
        self.detail = detail
        body = self.query_one("#detail-body", Static)
        if detail is None:
            body.update("No packet selected.")
        else:
            body.update(render_detail(detail))

    def plain_text(self, width: int = 78) -> str:
        """Return what the pane shows, as plain text (for logs and tests)."""
        if self.detail is None:
            return "No packet selected."
        console = Console(width=width, record=True, file=io.StringIO())
        console.print(render_detail(self.detail))
        return console.export_text()


def _layers(num_layers: object) -> str:
    """Return '4 layers' or 'all layers' (mlx-lm writes -1 for all)."""
    return "all layers" if num_layers in (-1, None) else f"last {num_layers} layers"
