"""The composition root: one object that wires identity, library, engine and router.

Built once by the CLI (or a test) and passed down; nothing in fieldkit keeps global state.
Heavy parts (engine, router) are built on first use, so light commands stay light.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fieldkit.home import Home

if TYPE_CHECKING:
    from fieldkit.engine.engine import Engine
    from fieldkit.router.embedder import Embedder
    from fieldkit.router.retrieval import PassageIndex
    from fieldkit.router.router import RouteDecision, Router
    from fieldkit.store.adapter import Adapter
    from fieldkit.store.identity import Identity
    from fieldkit.store.library import Library, PacketRecord

DEFAULT_MODEL_DIRNAME = "smollm2-135m-instruct"
MODEL_SETTING = "model"  # the installed model chosen with `fieldkit model use NAME`


@dataclass
class Services:
    """Everything a command or a screen needs, built lazily from one home."""

    home: Home
    model_override: Path | None = None
    # Told, in one sentence, why closing waits (a model still loading): see Engine.close.
    notice: Callable[[str], None] | None = field(default=None, repr=False)
    _closers: list[Any] = field(default_factory=list, repr=False)
    _model_choice: str | None = field(default=None, repr=False)
    _choice_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def build(
        cls, home: str | Path | None = None, model_path: str | Path | None = None
    ) -> Services:
        """Return services for the given home (see Home.resolve) and optional model: a
        folder, or the name of a model installed in the home (a folder of that name wins)."""
        resolved = Home.resolve(home).ensure()
        override = None
        if model_path:
            path, named = Path(model_path).expanduser(), resolved.models_dir / str(model_path)
            override = (named if named.is_dir() and not path.is_dir() else path).resolve()
        return cls(home=resolved, model_override=override)

    @property
    def model_dir(self) -> Path:
        """The base model folder: --model (or $FIELDKIT_MODEL) if given, else the model
        chosen with `fieldkit model use`, else the embedded default, in the home."""
        if self.model_override:
            return self.model_override
        return self.home.models_dir / self.chosen_model

    @property
    def chosen_model(self) -> str:
        """The name of the model this home uses (`fieldkit model use`, else the embedded
        default), whatever --model says for this one command."""
        with self._choice_lock:
            if self._model_choice is None:  # read once, on a connection of the caller's own:
                library = self.open_library()  # a worker thread (the TUI loads the model
                try:  # in one) must not make `library` belong to it
                    chosen = library.get_setting(MODEL_SETTING, kind=str)
                finally:
                    library.close()
                self._model_choice = chosen or DEFAULT_MODEL_DIRNAME
            return self._model_choice

    def use_model(self, name: str) -> None:
        """Make the installed model `name` the one this home uses (remembered)."""
        self.library.set_setting(MODEL_SETTING, name)
        self._model_choice = name

    @property
    def model_installed(self) -> bool:
        return (self.model_dir / "config.json").is_file()

    @cached_property
    def base_fingerprint(self) -> str | None:
        """The fingerprint of the base model in use, or None when none is installed."""
        if not self.model_installed:
            return None
        from fieldkit.store.models import model_fingerprint

        return model_fingerprint(self.model_dir)

    def require_model(self) -> tuple[str, str, dict[str, Any]]:
        """Return (model id, fingerprint, config) of the base model; ModelError if absent."""
        from fieldkit.errors import ModelError
        from fieldkit.store.models import model_fingerprint, model_id, read_config

        if not self.model_installed and self.model_override is not None:
            raise ModelError(
                f"No base model at {self.model_dir}, the --model given (an mlx-lm model "
                "folder holds config.json and its weights)."
            )
        if not self.model_installed:
            raise ModelError(
                f"No base model at {self.model_dir}; run `fieldkit model install-default` "
                "or `fieldkit model install PATH`, or pass --model PATH."
            )
        return (
            model_id(self.model_dir),
            model_fingerprint(self.model_dir),
            read_config(self.model_dir),
        )

    @cached_property
    def identity(self) -> Identity:
        from fieldkit.store.identity import Identity

        return Identity.load_or_create(self.home)

    @cached_property
    def library(self) -> Library:
        from fieldkit.store.library import Library

        lib = Library.open(self.home, identity=self.identity)
        self._closers.append(lib.close)
        return lib

    def open_library(self) -> Library:
        """Return a new connection to this home's library, for a thread of its own (SQLite
        connections belong to the thread that opened them); the caller closes it."""
        from fieldkit.store.library import Library

        return Library.open(self.home, identity=self.identity)

    def make_router(self, library: Library, embedder: Embedder | None = None) -> Router:
        """Return a router over `library` for this device's base model, with the shipped
        everyday questions and the home's own (fieldkit.router.everyday)."""
        from fieldkit.router.everyday import everyday_questions
        from fieldkit.router.router import Router

        everyday = everyday_questions(self.home.everyday_path)
        return Router(library, embedder, base_fingerprint=self.base_fingerprint, everyday=everyday)

    @cached_property
    def engine(self) -> Engine:
        from fieldkit.engine.engine import Engine

        eng = Engine(self.model_dir)
        self._closers.append(lambda: eng.close(self.notice))
        return eng

    @cached_property
    def router(self) -> Router:
        router = self.make_router(self.library)
        # New packets (sync, import, train) are embedded as they arrive, not at query time.
        self.library.add_listener(router.index_packet)
        return router

    @cached_property
    def passages(self) -> PassageIndex:
        """The packets' note passages, searched with the router's embedder."""
        from fieldkit.router.retrieval import PassageIndex

        index = PassageIndex(self.library, self.router.embedder)
        self.library.add_listener(index.index_packet)  # notes embedded as a packet arrives
        return index

    def pick_packet(
        self,
        question: str,
        name: str | None = None,
        base: bool = False,
        *,
        instead: str = "Name another packet, or use --base.",
    ) -> tuple[PacketRecord | None, RouteDecision | None]:
        """Return the packet to answer with (None = base model) and the router's decision.

        A named packet wins, then `base`; otherwise the router decides (among usable packets
        only). Raises LibraryError when the named packet is missing or may not answer here
        (unverified, by a blocked author, or made for another base model), ending with
        `instead`: what to do (a command line's words by default).
        """
        if name:
            from fieldkit.errors import LibraryError
            from fieldkit.store.usable import usable_problem

            record = self.library.get(name)
            problem = usable_problem(self.library, record, self.base_fingerprint)
            if problem is not None:
                raise LibraryError(f"{problem} {instead}")
            return record, None
        if base:
            return None, None
        decision = self.router.route(question)
        record = self.library.get(decision.packet_id) if decision.packet_id else None
        return record, decision

    def checked_adapter(self, record: PacketRecord) -> Adapter:
        """Return the packet's adapter; ModelError if it was made for another base model."""
        from fieldkit.errors import ModelError

        model_id, fingerprint, _ = self.require_model()
        if record.base_fingerprint != fingerprint:
            theirs, ours = record.base_model_id, model_id
            if theirs == ours:  # same name, other weights: the fingerprints tell them apart
                theirs = f"{theirs} {record.base_fingerprint[:12]}"
                ours = f"{ours} {fingerprint[:12]}"
            raise ModelError(
                f"The packet {record.name!r} was made for the base model {theirs!r}, "
                f"not for {ours!r} in use here."
            )
        return self.library.load_adapter(record)

    def close(self) -> None:
        """Release what was built (engine thread, database), newest first."""
        while self._closers:
            self._closers.pop()()
