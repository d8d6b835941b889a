"""The Textual app: three modes (Peers, Library, Ask), help, command palette, model loading.

The app is handed its Services; `make_app` is the one factory used by the CLI and tests.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.reactive import reactive
from textual.screen import Screen
from textual.worker import Worker, WorkerState, get_current_worker

from fieldkit.errors import FieldkitError
from fieldkit.services import Services
from fieldkit.tui.backend import TuiBackend

MODE_NAMES = ("peers", "library", "ask")


class FieldkitApp(App[None]):
    """fieldkit's terminal interface; every action has a key, nothing needs a mouse."""

    TITLE = "fieldkit"
    BINDINGS = [
        # F-keys work everywhere; 1 2 3 too, except while typing a question
        Binding("f2,1", "switch_mode('peers')", "Peers", show=False),
        Binding("f3,2", "switch_mode('library')", "Library", show=False),
        Binding("f4,3", "switch_mode('ask')", "Ask", show=False),
        Binding("question_mark,f1", "help", "Help"),
        # q where no text box has focus (the box takes it, and the footer then hides it)
        Binding("q", "quit_asking", "Quit"),
        Binding("ctrl+q", "quit", "Quit", show=False, priority=True),
        # Escape closes the keys panel (Ctrl+P, Keys) before it does anything else; while
        # no panel is shown, check_action lets each screen's own Escape have the key
        Binding("escape", "hide_help_panel", "Hide keys", show=False, priority=True),
    ]
    # work a quit would stop, by worker group: `q` asks first when any runs (Ctrl+Q not)
    UNFINISHED = {
        "ask": "an answer is being written",
        "sync": "a sync runs",
        "listen": "this device listens for syncs",
        "library-action": "a library action runs",
    }
    model_state: reactive[str] = reactive("not loaded")

    def __init__(
        self,
        backend: TuiBackend,
        *,
        start_mode: str = "library",
        load_model: bool = True,
        ble: bool = True,
    ) -> None:
        super().__init__()
        self.backend = backend
        self.start_mode = start_mode
        self.load_model_on_start = load_model
        self.ble = ble

    def on_mount(self) -> None:
        from fieldkit.tui.screens.ask import AskScreen
        from fieldkit.tui.screens.library import LibraryScreen
        from fieldkit.tui.screens.peers import PeersScreen

        self.add_mode("peers", lambda: PeersScreen(self.backend, ble=self.ble))
        self.add_mode("library", lambda: LibraryScreen(self.backend))
        self.add_mode("ask", lambda: AskScreen(self.backend))
        self.switch_mode(self.start_mode)
        if self.load_model_on_start:
            self.load_model()

    def on_unmount(self) -> None:
        self.backend.close()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Offer Escape's hide_help_panel only while the keys panel is on this screen."""
        if action == "hide_help_panel":
            return bool(self.screen.query("HelpPanel"))
        return True

    def unfinished(self) -> list[str]:
        """Return what a quit now would stop (UNFINISHED), in words."""
        running = {w.group for w in self.workers if not w.is_finished}
        return [what for group, what in self.UNFINISHED.items() if group in running]

    @work(exclusive=True, group="quit-ask", description="Quit?")
    async def action_quit_asking(self) -> None:
        """Quit, asking first when that would stop work under way: `q` is one key from
        the keys around it, and a listener or a half-written answer would be lost."""
        from fieldkit.tui.screens.dialogs import ConfirmDialog

        if isinstance(self.screen, ConfirmDialog):  # already asking
            return
        busy = self.unfinished()
        if busy and not await self.push_screen_wait(
            ConfirmDialog(f"Quit fieldkit? {'; '.join(busy).capitalize()}: quitting stops it.")
        ):
            return
        self.exit()

    @work(thread=True, exit_on_error=False, group="model", description="Loading the model")
    def load_model(self) -> None:
        """Load the base model on the engine's thread; the state line follows along."""
        self.call_from_thread(setattr, self, "model_state", "loading...")
        worker = get_current_worker()  # cancelled when the app quits: stop waiting then
        try:
            state = self.backend.load_model(lambda: worker.is_cancelled)
        except Exception as exc:
            missing = not self.backend.model_installed()
            failed = "not installed" if missing else "failed to load (see the notice)"
            self.call_from_thread(setattr, self, "model_state", failed)
            raise exc
        if state is not None:  # None: the app quit while the model loaded
            self.call_from_thread(setattr, self, "model_state", state)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """Turn any failed worker into a notification; the app keeps running."""
        if event.state is not WorkerState.ERROR:
            return
        error = event.worker.error
        what = event.worker.description or "A task"
        if isinstance(error, FieldkitError):
            self.notify(str(error), title=what, severity="error", timeout=8)
        else:
            self.notify(
                f"{type(error).__name__}: {error}",
                title=f"{what} failed",
                severity="error",
                timeout=8,
            )

    def action_help(self) -> None:
        from fieldkit.tui.screens.help import HelpScreen

        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        for name in MODE_NAMES:
            if name != self.current_mode:
                yield SystemCommand(
                    f"Go to {name.title()}",
                    f"Show the {name} mode",
                    lambda name=name: self.switch_mode(name),
                )
        yield SystemCommand("Help", "What each mode does and its keys", self.action_help)
        yield SystemCommand("Reload model", "Load the base model again", self.load_model)


def make_app(services: Services, radio: object = None, **options: object) -> FieldkitApp:
    """Return the app over a backend for these services (the one factory used by the CLI
    and the tests). `radio` is a fieldkit.gossip.ble.sync.Radio; None: the platform's."""
    return FieldkitApp(TuiBackend(services, radio=radio), **options)  # type: ignore[arg-type]


def run_app(services: Services, start_mode: str = "library") -> None:
    """Run the TUI in the current terminal until the user quits.

    Raises KeyboardInterrupt when SIGINT or SIGTERM ended it: textual then restores the
    terminal and returns as if the user had quit, and the CLI would exit 0."""
    app = make_app(services, start_mode=start_mode)

    async def run() -> None:
        await app.run_async()
        task = asyncio.current_task()
        if task is not None and task.cancelling():  # asyncio's SIGINT handler cancelled it
            raise KeyboardInterrupt

    asyncio.run(run())
