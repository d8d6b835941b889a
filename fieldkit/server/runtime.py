"""Where a running agent of a home can be found, and the token that guards its TCP port.

A running `fieldkit serve` writes `<home>/run/serve.json` (owner-only) naming its process,
its Unix socket and its TCP address; it removes the file when it stops. Clients read the
file, check that the process lives, and connect to the socket. No HTTP library here.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import socket
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from fieldkit.errors import FieldkitError
from fieldkit.formats import is_loopback, join_address
from fieldkit.home import Home
from fieldkit.store.blobs import process_alive

DEFAULT_PORT = 8731
TOKEN_FILENAME = "serve.token"
# sun_path holds 108 bytes on Linux and 104 on macOS, the terminating NUL included.
_MAX_SOCKET_PATH = 100


class ServerError(FieldkitError):
    """The agent cannot start, or a client cannot talk to it."""


@dataclass(frozen=True)
class RuntimeInfo:
    """What a running agent tells its clients: how to reach it and what it serves."""

    pid: int
    socket: str
    host: str
    port: int
    model_dir: str
    token_required: bool
    started: float

    @property
    def url(self) -> str:
        return f"http://{join_address(self.host, self.port)}"


def run_dir(home: Home) -> Path:
    """Return `<home>/run`, created owner-only."""
    path = home.root / "run"
    path.mkdir(mode=0o700, exist_ok=True)
    os.chmod(path, 0o700)
    return path


def runtime_path(home: Home) -> Path:
    return home.root / "run" / "serve.json"


def socket_path(home: Home) -> Path:
    """Return the agent's Unix socket path: in the home when short enough, else in /tmp.

    A long home path cannot hold a socket (sun_path is ~104 bytes); the fallback is an
    owner-only folder in the temp dir, named by the user and a hash of the home.
    """
    inside = run_dir(home) / "serve.sock"
    if len(os.fsencode(inside)) <= _MAX_SOCKET_PATH:
        return inside
    digest = hashlib.sha256(os.fsencode(home.root)).hexdigest()[:16]
    folder = Path(tempfile.gettempdir()) / f"fieldkit-{os.getuid()}"
    folder.mkdir(mode=0o700, exist_ok=True)
    if folder.stat().st_uid != os.getuid():
        raise ServerError(f"{folder} belongs to another user; remove it or set TMPDIR.")
    os.chmod(folder, 0o700)
    return folder / f"{digest}.sock"


def write_runtime(home: Home, info: RuntimeInfo) -> None:
    """Write the runtime file atomically, readable by the owner only."""
    path = runtime_path(home)
    run_dir(home)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(asdict(info), f)
    os.replace(tmp, path)


def clear_runtime(home: Home, pid: int) -> None:
    """Remove the runtime file if it still names process `pid` (a newer agent's stays)."""
    info = read_runtime(home, check_alive=False)
    if info is not None and info.pid == pid:
        with contextlib.suppress(FileNotFoundError):
            runtime_path(home).unlink()


def read_runtime(home: Home, check_alive: bool = True) -> RuntimeInfo | None:
    """Return the running agent's RuntimeInfo, or None when none runs for this home.

    With `check_alive`, a file left by a process that is gone counts as none.
    """
    try:
        data = json.loads(runtime_path(home).read_text())
        info = RuntimeInfo(**data)
    except (OSError, ValueError, TypeError):
        return None
    if check_alive and not process_alive(info.pid):
        return None
    return info


def token_path(home: Home) -> Path:
    return home.root / TOKEN_FILENAME


def resolve_token(home: Home, explicit: str | None, host: str) -> str | None:
    """Return the token TCP clients must send, or None when none is needed.

    `--token` wins, then `<home>/serve.token`. A host beyond loopback without either, and
    a `--token` that is blank, are refused with ServerError.
    """
    if explicit is not None and not explicit.strip():
        raise ServerError(
            "The token given is empty, and an empty token lets anyone in: pass a real "
            "one, or run `fieldkit serve --new-token`."
        )
    token = explicit.strip() if explicit is not None else None
    if token is None:
        with contextlib.suppress(FileNotFoundError):
            token = token_path(home).read_text().strip() or None
    if token is None and not is_loopback(host):
        raise ServerError(
            f"Listening on {host} reaches beyond this machine and needs a token: pass "
            f"--token TOKEN, or run `fieldkit serve --new-token` to write {token_path(home)}."
        )
    return token


def new_token(home: Home) -> str:
    """Write a fresh random token to `<home>/serve.token` (owner-only) and return it."""
    token = secrets.token_urlsafe(32)
    path = token_path(home)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    return token


def bind_unix(path: Path) -> socket.socket:
    """Return a listening Unix socket at `path`, owner-only; a stale socket is replaced.

    Raises ServerError when another agent already answers there.
    """
    if path.exists():
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(path))
        except OSError:
            path.unlink()  # left by an agent that died
        else:
            raise ServerError(f"An agent of this home already listens on {path}.")
        finally:
            probe.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)  # the socket is created 0600: only the owner may connect
    try:
        sock.bind(str(path))
    finally:
        os.umask(old)
    os.chmod(path, 0o600)
    sock.listen(64)
    sock.setblocking(False)
    return sock


def bind_tcp(host: str, port: int) -> socket.socket:
    """Return a listening TCP socket; ServerError (one sentence) when the port is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        sock.close()
        raise ServerError(f"Cannot listen on {host}:{port}: {exc.strerror or exc}.") from exc
    sock.listen(64)
    sock.setblocking(False)
    return sock
