"""Drive the real `fieldkit` TUI in tmux at 80x24 through the library and ask flows.

    .venv/bin/python -m tests.tui.tmux_drive --home HOME --model MODEL_DIR [--show]

The home must hold a verified packet named "pumps" (whose exemplars include "How do I
prime a hand pump?") and an unverified packet named "solar" with intact weights, as
tests/tui/conftest.py's `stocked` fixture makes. Keys go in with `tmux send-keys`, the
screen comes back with `tmux capture-pane`; every step waits for text, never for time.
Exits non-zero with the last screen when a step does not show what it should.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

FIELDKIT = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "fieldkit"


class DriveError(AssertionError):
    """A step of the drive did not show what it should."""


class Tmux:
    """One detached tmux session of a given size running one command."""

    def __init__(self, command: str, width: int = 80, height: int = 24) -> None:
        self.name = f"fieldkit-{uuid.uuid4().hex[:8]}"
        self._tmux(
            "new-session", "-d", "-s", self.name, "-x", str(width), "-y", str(height), command
        )
        self._tmux("set-option", "-t", self.name, "remain-on-exit", "on")

    def _tmux(self, *args: str) -> str:
        done = subprocess.run(["tmux", *args], capture_output=True, text=True, check=True)
        return done.stdout

    def keys(self, *keys: str, literal: bool = False) -> None:
        self._tmux("send-keys", "-t", self.name, *(["-l"] if literal else []), *keys)

    def screen(self) -> str:
        return self._tmux("capture-pane", "-p", "-t", self.name)

    def dead(self) -> bool:
        return self._tmux("display-message", "-p", "-t", self.name, "#{pane_dead}").strip() == "1"

    def wait_for(self, what: str, check: Callable[[str], bool], limit_s: float = 60.0) -> str:
        """Return the screen once `check(screen)` holds; raise DriveError after limit_s."""
        deadline = time.monotonic() + limit_s
        while True:
            text = self.screen()
            if check(text):
                return text
            if time.monotonic() > deadline:
                raise DriveError(f"Waited {limit_s:.0f} s for {what}; the screen was:\n{text}")
            time.sleep(0.2)

    def cursor_to(self, name: str, order: list[str], limit_s: float = 60.0) -> str:
        """Move the library's cursor to packet `name` (rows in `order`) with Up and Down;
        return the screen once the detail pane shows it. Every press is chosen from the
        screen as it is, so a press the app took late (a loaded machine) is corrected by
        the next one instead of sending the cursor past the row."""
        deadline = time.monotonic() + limit_s
        while True:
            text = self.screen()
            shown = detail_name(text)
            if shown == name:
                return text
            if time.monotonic() > deadline:
                raise DriveError(f"Waited {limit_s:.0f} s for the cursor on {name}:\n{text}")
            if shown not in order:
                time.sleep(0.2)
                continue
            self.keys("Down" if order.index(shown) < order.index(name) else "Up")
            with contextlib.suppress(DriveError):  # not taken yet: the next look decides
                self.wait_for("the cursor to move", lambda s, was=shown: detail_name(s) != was, 5)

    def kill(self) -> None:
        subprocess.run(["tmux", "kill-session", "-t", self.name], capture_output=True)


def detail_name(screen: str) -> str:
    """Return the packet name the library's detail pane shows (the first word under the
    rule that divides it from the table), or "" when there is none."""
    lines = screen.splitlines()
    for at, line in enumerate(lines[:-1]):
        if line.startswith("\u2500" * 20):
            words = lines[at + 1].split()
            return words[0] if words else ""
    return ""


def row(screen: str, name: str) -> str:
    """Return the first table line that starts with a packet name."""
    return next((line for line in screen.splitlines() if line.strip().startswith(name)), "")


def fieldkit_command(home: Path, model: Path | None, term: str) -> str:
    """Return the shell command that runs the real fieldkit on this home, offline (with
    --model MODEL, or, for None, the model the home has chosen, as a user starts it)."""
    env = {"TERM": term, "HF_HUB_OFFLINE": "1", "COLORTERM": ""}
    chosen = [] if model is None else ["--model", shlex.quote(str(model))]
    return " ".join(
        [
            "env",
            *(f"{k}={shlex.quote(v)}" for k, v in env.items()),
            shlex.quote(str(FIELDKIT)),
            "--home",
            shlex.quote(str(home)),
            *chosen,
        ]
    )


def library_in_16_colours(home: Path, model: Path) -> str:
    """Open the library with TERM=xterm-16color; return the screen with its escape codes.

    Raises DriveError if the app draws with 256 or 24-bit colours, or if a packet's state
    is not spelled out in words (colour alone must never tell good from bad).
    """
    tmux = Tmux(fieldkit_command(home, model, "xterm-16color"))
    try:
        tmux.wait_for("the library", lambda s: "UNVERIFIED" in s and "FOREIGN BASE" in s)
        styled = tmux._tmux("capture-pane", "-p", "-e", "-t", tmux.name)
        tmux.keys("C-q")
        tmux.wait_for("the app to exit", lambda _s: tmux.dead(), limit_s=60)
    finally:
        tmux.kill()
    if "38;5;" in styled or "38;2;" in styled or "48;5;" in styled or "48;2;" in styled:
        raise DriveError("The app used more than 16 colours under TERM=xterm-16color.")
    return styled


def drive(home: Path, model: Path | None, export_dir: Path, show: bool = False) -> list[str]:
    """Run the flows; return the screens captured at each checkpoint (raises DriveError).
    `model` None: the home's own choice (`fieldkit model use`), read at start."""
    screens: list[str] = []
    started = time.monotonic()
    tmux = Tmux(fieldkit_command(home, model, "xterm-256color"))

    def step(what: str, check: Callable[[str], bool], limit_s: float = 60.0) -> str:
        text = tmux.wait_for(what, check, limit_s)
        screens.append(text)
        if show:
            print(f"--- {time.monotonic() - started:5.1f} s: {what}\n{text}")
        return text

    try:
        # Library: the screen comes up at once, states spelled out in words.
        step("the library", lambda s: "[F3 Library]" in s and "pumps" in s and "solar" in s)
        step(
            "the states",
            lambda s: "ok verified" in row(s, "pumps") and "UNVERIFIED" in row(s, "solar"),
        )
        tmux.cursor_to("solar", ["pumps", "solar", "vaccines"])
        step("solar's detail", lambda s: "NOT VERIFIED" in s)
        tmux.keys("v")
        step("solar verified", lambda s: "ok verified" in row(s, "solar"))
        tmux.keys("Up", "e")
        step("the export dialog", lambda s: "Export pumps to folder" in s)
        tmux.keys("Home", "C-k")  # clear the suggested folder
        step("an empty folder box", lambda s: "/exports" not in s)
        tmux.keys(str(export_dir), literal=True)
        step("the typed folder", lambda s: export_dir.name in s)
        tmux.keys("Enter")
        if not export_dir.exists():  # a folder not there yet: the screen asks first
            step("the question", lambda s: "does not exist" in s)
            tmux.keys("y")
        step("the export notice", lambda s: "Exported to" in s)
        # Ask: the route shows before the answer, then tokens and their speed.
        tmux.keys("F4")
        step("the ask screen", lambda s: "[F4 Ask]" in s and "ready" in s, limit_s=120)
        tmux.keys("How do I prime a hand pump?", literal=True)
        step("the typed question", lambda s: "hand pump?" in s)
        tmux.keys("Enter")
        step(
            "the whole routed answer",
            lambda s: "route: pumps" in s and " tokens, " in s and "tok/s]" in s,
            limit_s=120,
        )
        # Help, then quit with the keyboard.
        tmux.keys("F1")  # on Ask, ? is text: every printable key is the question's
        step("the help", lambda s: "Offline knowledge packets" in s)
        tmux.keys("Escape", "C-q")
        step("the app to exit", lambda _s: tmux.dead(), limit_s=60)
    finally:
        tmux.kill()
    return screens


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--export-dir", type=Path, default=None)
    parser.add_argument("--show", action="store_true", help="print each checkpoint's screen")
    args = parser.parse_args(argv)
    if shutil.which("tmux") is None:
        print("tmux is not installed; apt-get install tmux", file=sys.stderr)
        return 2
    export_dir = args.export_dir or args.home / "exports-tmux"
    try:
        drive(args.home, args.model, export_dir, show=args.show)
    except DriveError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(f"ok: library and ask flows passed; exported {sorted(os.listdir(export_dir))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
