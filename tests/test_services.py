"""The composition root (fieldkit.services): what it builds, and on which thread."""

from __future__ import annotations

import threading

from fieldkit.home import Home
from fieldkit.services import DEFAULT_MODEL_DIRNAME, MODEL_SETTING, Services


def test_the_model_choice_read_in_a_worker_leaves_the_library_to_its_own_thread(
    home: Home,
) -> None:
    """Without --model the chosen model is read from the library's settings. The TUI
    first asks for it in a worker thread (loading the model, listing packets), and the
    library connection must not then belong to that worker: SQLite refuses a connection
    used from another thread than the one that opened it."""
    services = Services.build(home.root)
    try:
        seen: list = []
        workers = [threading.Thread(target=lambda: seen.append(services.model_dir)) for _ in "ab"]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        assert seen == [home.models_dir / DEFAULT_MODEL_DIRNAME] * 2
        assert services.library.list_packets() == []  # the caller's thread, as before
        services.use_model("other")
        assert services.model_dir == home.models_dir / "other"
        assert services.library.get_setting(MODEL_SETTING) == "other"
    finally:
        services.close()
    again = Services.build(home.root)  # a new process reads the remembered choice
    try:
        assert again.model_dir == home.models_dir / "other"
    finally:
        again.close()


def test_a_model_path_given_that_holds_no_model_is_named_as_the_one_given(tmp_path) -> None:
    import pytest

    from fieldkit.errors import ModelError

    given = Services.build(tmp_path / "home", tmp_path / "nonexistent")
    with pytest.raises(ModelError, match="nonexistent, the --model given") as said:
        given.require_model()
    assert "pass --model PATH" not in str(said.value)  # it was passed
    plain = Services.build(tmp_path / "home")
    with pytest.raises(ModelError, match="pass --model PATH"):
        plain.require_model()
    given.close()
    plain.close()
