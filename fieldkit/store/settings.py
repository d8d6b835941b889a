"""Device settings and the event log (one small table each)."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlite_utils import Database

RECEIVE_POLICIES = ("trusted-only", "ask", "open")
DEFAULT_RECEIVE_POLICY = "trusted-only"
RECEIVE_POLICY_SETTING = "receive_policy"
# The event log keeps this many rows; older ones are dropped as new ones arrive.
EVENT_CAP = 5000


class SettingsStore:
    """The `settings` and `events` tables (mixed into Library)."""

    db: Database
    read_only: bool  # Library's: opened where this user cannot write (no event is logged)

    def get_setting(self, key: str, default: Any = None, kind: type | None = None) -> Any:
        """Return the setting's value, or `default` when it is unset, or damaged: not JSON,
        or not of `kind` when one is given (a value set again replaces it)."""
        rows = list(self.db["settings"].rows_where("key = ?", [key]))
        try:
            value = json.loads(rows[0]["value"]) if rows else default
        except (TypeError, ValueError):
            return default
        return default if kind is not None and not isinstance(value, kind) else value

    def set_setting(self, key: str, value: Any) -> None:
        self.db["settings"].upsert({"key": key, "value": json.dumps(value)}, pk="key")

    def receive_policy(self) -> str:
        """Return this device's receive policy (one of RECEIVE_POLICIES)."""
        value = self.get_setting(RECEIVE_POLICY_SETTING, DEFAULT_RECEIVE_POLICY)
        return value if value in RECEIVE_POLICIES else DEFAULT_RECEIVE_POLICY

    def log_event(self, kind: str, **data: Any) -> None:
        """Append an event to the log."""
        self._log(kind, **data)

    def events(self, limit: int = 100) -> list[dict[str, Any]]:
        rows = self.db["events"].rows_where(order_by="id desc", limit=limit)
        return [{"ts": r["ts"], "kind": r["kind"], **json.loads(r["data"])} for r in rows]

    def _log(self, kind: str, **data: Any) -> None:
        if self.read_only:
            return
        row_id = (
            self.db["events"]
            .insert({"ts": time.time(), "kind": kind, "data": json.dumps(data)})
            .last_pk
        )
        if isinstance(row_id, int) and row_id % 100 == 0:
            self.db.execute("delete from events where id <= ?", [row_id - EVENT_CAP])
