"""One directory holds all of a device's state; two homes on one machine are two devices."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

ENV_VAR = "FIELDKIT_HOME"


class _Under:
    """A fixed path below a home's root, read as an attribute (`home.db_path`)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, home: Home, owner: type | None = None) -> Path:
        return home.root / self.name


@dataclass(frozen=True)
class Home:
    """Every path fieldkit reads or writes, under `root`."""

    root: Path

    @classmethod
    def resolve(cls, explicit: str | os.PathLike[str] | None = None) -> Home:
        """Return the home from `--home`, then `$FIELDKIT_HOME`, then the platform data dir."""
        if explicit:
            return cls(Path(explicit).expanduser().resolve())
        env = os.environ.get(ENV_VAR)
        if env:
            return cls(Path(env).expanduser().resolve())
        import platformdirs

        return cls(Path(platformdirs.user_data_dir("fieldkit", appauthor=False)))

    db_path = _Under("library.db")
    blobs_dir = _Under("blobs")
    parts_dir = _Under("parts")
    keys_dir = _Under("keys")
    models_dir = _Under("models")
    settings_path = _Under("settings.json")
    everyday_path = _Under("everyday.txt")  # the home's own everyday questions (router)

    def ensure(self) -> Home:
        """Create the folders (idempotent) and return self; LibraryError if they cannot be."""
        try:
            for path in (self.root, self.blobs_dir, self.parts_dir, self.keys_dir, self.models_dir):
                path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            from fieldkit.errors import LibraryError

            where = str(self.root)[:120]
            raise LibraryError(
                f"The home {where} cannot be used ({exc.strerror or exc}); "
                "give --home a folder this user can write."
            ) from None
        return self

    def writable(self) -> bool:
        """True when this user may write the root and the library file (False on a
        read-only medium or another user's folder: the reason a database will not open)."""
        db = self.db_path
        return os.access(self.root, os.W_OK) and (not db.exists() or os.access(db, os.W_OK))
