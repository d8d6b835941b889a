"""`fieldkit sync --ble` and `peers --ble` through a running agent, which holds the radio.

Same progress lines, summary and exit codes as a sync on this process's own radio
(fieldkit/commands/report.py prints both). A new peer's six-digit code cannot be confirmed
through the agent: such a peer stays pending (`fieldkit trust ID` accepts it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fieldkit.gossip.ble.link import Sighting
    from fieldkit.gossip.summary import ProgressCallback, SyncOptions
    from fieldkit.services import Services


def sync_through_agent(
    svc: Services,
    *,
    peer: str | None,
    options: SyncOptions,
    progress: ProgressCallback | None,
    as_json: bool,
    scan_seconds: float,
) -> bool:
    """Run the session on the agent's radio; return False when no agent of this home runs.

    Raises SyncError (exit 1) when the session failed, as a local sync does.
    """
    from fieldkit.commands.report import SyncError, report_summary
    from fieldkit.server.client import find_agent
    from fieldkit.server.radio import progress_from_dict, summary_from_dict

    client = find_agent(svc.home)
    if client is None:
        return False
    payload = {
        "peer": peer,
        "scan_seconds": scan_seconds,
        "accept_pending": options.accept_pending,
        "idle_timeout": options.idle_timeout,
    }
    summary = None
    for event in client.post_lines("/fieldkit/sync/ble", payload):
        if "progress" in event and progress is not None:
            progress(progress_from_dict(event["progress"]))
        elif "error" in event:
            raise SyncError(event["error"])
        elif "summary" in event:
            summary = summary_from_dict(event["summary"])
    if summary is None:
        raise SyncError("The agent ended the Bluetooth session without a summary.")
    report_summary(summary, as_json)
    if not summary.ok:
        raise SyncError(summary.error or "Some packets failed to transfer.")
    return True


def scan_through_agent(svc: Services, seconds: float) -> list[Sighting] | None:
    """Return the sightings of a scan on the agent's radio; None when no agent runs.

    Raises FieldkitError with the agent's sentence when the scan failed.
    """
    from fieldkit.errors import TransportError
    from fieldkit.gossip.ble.link import Sighting
    from fieldkit.server.client import find_agent

    client = find_agent(svc.home)
    if client is None:
        return None
    answer = client.post("/fieldkit/scan/ble", {"seconds": seconds})
    if "error" in answer:
        raise TransportError(answer["error"])
    return [Sighting(**s) for s in answer["sightings"]]
