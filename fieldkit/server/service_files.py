"""Start `fieldkit serve` at login: a launchd LaunchAgent (macOS) or a systemd user unit (Linux).

`service_spec` says what to run and where its file goes; `launchd_plist` and `systemd_unit`
render the file; `install`, `uninstall` and `manager_state` talk to launchctl/systemctl.
A LaunchAgent runs in the person's login (Aqua) session, which is where macOS grants
Bluetooth; a systemd user unit runs in the user's manager, with logs in the journal.
"""

from __future__ import annotations

import hashlib
import os
import plistlib
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from fieldkit.errors import FieldkitError
from fieldkit.home import Home

KINDS = ("launchd", "systemd")
_PASSED_ENV = ("PYTHONPATH", "FIELDKIT_SERVE_TOKEN")


class ServiceError(FieldkitError):
    """The login service cannot be written, started or stopped."""


@dataclass(frozen=True)
class ServiceSpec:
    """One home's login service: its name, its file, and the command it runs."""

    kind: str
    label: str
    path: Path
    program: tuple[str, ...]
    home: Path
    log_path: Path | None = None  # launchd's file; systemd logs to the journal
    environment: dict[str, str] = field(default_factory=dict)


def default_kind() -> str:
    """Return "launchd" on macOS, "systemd" elsewhere."""
    return "launchd" if sys.platform == "darwin" else "systemd"


def fieldkit_executable() -> str:
    """Return the `fieldkit` script of this Python environment; ServiceError if none."""
    beside = Path(sys.executable).parent / "fieldkit"
    if beside.is_file():
        return str(beside)
    found = shutil.which("fieldkit")
    if found:
        return found
    raise ServiceError("No `fieldkit` command was found beside this Python; install fieldkit.")


def _suffix(home: Home) -> str:
    """'' for the platform's default home, else a short hash: one service per home."""
    import platformdirs

    default = Path(platformdirs.user_data_dir("fieldkit", appauthor=False)).resolve()
    if home.root.resolve() == default:
        return ""
    return hashlib.sha256(os.fsencode(home.root.resolve())).hexdigest()[:8]


def service_spec(
    home: Home,
    model_override: Path | None = None,
    kind: str | None = None,
    executable: str | None = None,
) -> ServiceSpec:
    """Return the service for `home` (and its --model, if any) on this platform or `kind`."""
    kind = kind or default_kind()
    if kind not in KINDS:
        raise ServiceError(f"The service kind must be one of {', '.join(KINDS)}, not {kind!r}.")
    program = [executable or fieldkit_executable(), "--home", str(home.root)]
    if model_override is not None:
        program += ["--model", str(model_override)]
    program.append("serve")
    env = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    env.update({k: os.environ[k] for k in _PASSED_ENV if os.environ.get(k)})
    suffix = _suffix(home)
    user_home = Path.home()
    log_path = None
    if kind == "launchd":
        label = "org.fieldkit.serve" + (f".{suffix}" if suffix else "")
        path = user_home / "Library" / "LaunchAgents" / f"{label}.plist"
        log_path = user_home / "Library" / "Logs" / "fieldkit" / f"{label}.log"
    else:
        label = "fieldkit-serve" + (f"-{suffix}" if suffix else "")
        config = Path(os.environ.get("XDG_CONFIG_HOME") or user_home / ".config")
        path = config / "systemd" / "user" / f"{label}.service"
    return ServiceSpec(
        kind, label, path, tuple(program), home.root, log_path=log_path, environment=env
    )


def launchd_plist(spec: ServiceSpec) -> bytes:
    """Return the LaunchAgent property list (XML) for `spec`."""
    assert spec.log_path is not None
    return plistlib.dumps(
        {
            "Label": spec.label,
            "ProgramArguments": list(spec.program),
            "EnvironmentVariables": spec.environment,
            "WorkingDirectory": str(spec.home),
            "RunAtLoad": True,
            "KeepAlive": {"SuccessfulExit": False},  # restarted after a crash, not a stop
            "LimitLoadToSessionType": "Aqua",  # the login session, which holds Bluetooth
            "ProcessType": "Interactive",
            "StandardOutPath": str(spec.log_path),
            "StandardErrorPath": str(spec.log_path),
        }
    )


def _unit_quote(arg: str) -> str:
    """Quote one word of a systemd command line (specifiers and variables escaped)."""
    escaped = arg.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%").replace("$", "$$")
    return f'"{escaped}"'


def systemd_unit(spec: ServiceSpec) -> str:
    """Return the systemd user unit for `spec`."""
    env = " ".join(_unit_quote(f"{k}={v}") for k, v in sorted(spec.environment.items()))
    home = str(spec.home).replace("%", "%%")
    return (
        "[Unit]\n"
        f"Description=fieldkit agent for {home}\n"
        "\n"
        "[Service]\n"
        "Type=simple\n"
        f"ExecStart={' '.join(_unit_quote(a) for a in spec.program)}\n"
        f"Environment={env}\n"
        f"WorkingDirectory={home}\n"
        "Restart=on-failure\n"
        "RestartSec=5\n"
        "\n"
        "[Install]\n"
        "WantedBy=default.target\n"
    )


def render(spec: ServiceSpec) -> bytes:
    return launchd_plist(spec) if spec.kind == "launchd" else systemd_unit(spec).encode()


def _manager(spec: ServiceSpec, action: str) -> list[list[str]]:
    """Return the launchctl/systemctl commands that start or stop the service."""
    if spec.kind == "launchd":
        domain = f"gui/{os.getuid()}"
        if action == "start":
            return [["launchctl", "bootstrap", domain, str(spec.path)]]
        return [["launchctl", "bootout", f"{domain}/{spec.label}"]]
    unit = spec.path.name
    if action == "start":
        return [
            ["systemctl", "--user", "daemon-reload"],
            ["systemctl", "--user", "enable", "--now", unit],
        ]
    return [["systemctl", "--user", "disable", "--now", unit]]


def _run(argv: list[str]) -> tuple[int, str]:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return 127, str(exc)
    return done.returncode, (done.stderr or done.stdout).strip()


def install(spec: ServiceSpec, start: bool = True) -> None:
    """Write the service file (atomically) and, with `start`, enable and start it now.

    Raises ServiceError naming the command to run when the service manager refuses.
    """
    spec.path.parent.mkdir(parents=True, exist_ok=True)
    if spec.log_path is not None:
        spec.log_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = spec.path.with_suffix(spec.path.suffix + ".tmp")
    tmp.write_bytes(render(spec))
    os.replace(tmp, spec.path)
    if not start:
        return
    for argv in _manager(spec, "start"):
        code, said = _run(argv)
        if code != 0:
            raise ServiceError(
                f"Wrote {spec.path}, but `{' '.join(argv)}` failed ({said or code}); run it "
                "in your login session."
            )


def uninstall(spec: ServiceSpec, stop: bool = True) -> bool:
    """Stop the service (with `stop`) and remove its file; return False if none was there."""
    if not spec.path.exists():
        return False
    if stop:
        for argv in _manager(spec, "stop"):
            _run(argv)  # an agent that is not loaded is already stopped
    spec.path.unlink()
    return True


def manager_state(spec: ServiceSpec) -> str:
    """Return what launchd/systemd says of the service ("active", "inactive", ...)."""
    if spec.kind == "launchd":
        code, _ = _run(["launchctl", "print", f"gui/{os.getuid()}/{spec.label}"])
        return "loaded" if code == 0 else "not loaded"
    code, said = _run(["systemctl", "--user", "is-active", spec.path.name])
    if code == 127:
        return "unknown (systemctl not found)"
    return said.splitlines()[-1] if said else ("active" if code == 0 else "unknown")
