"""One directory holds all of a device's state; two homes on one machine are two devices."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

ENV_VAR = "FIELDKIT_HOME"


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

    @property
    def db_path(self) -> Path:
        return self.root / "library.db"

    @property
    def blobs_dir(self) -> Path:
        return self.root / "blobs"

    @property
    def parts_dir(self) -> Path:
        return self.root / "parts"

    @property
    def keys_dir(self) -> Path:
        return self.root / "keys"

    @property
    def models_dir(self) -> Path:
        return self.root / "models"

    @property
    def settings_path(self) -> Path:
        return self.root / "settings.json"

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
