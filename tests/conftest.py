"""Fixtures live in tests/fixtures/; each module there is registered here."""

pytest_plugins = [
    "tests.fixtures.embedder",
    "tests.fixtures.homes",
    "tests.fixtures.packets",
    "tests.fixtures.tiny_model",
]

_EXIT_STATUS: list[int] = []


def pytest_sessionfinish(session, exitstatus) -> None:  # noqa: ANN001
    _EXIT_STATUS.append(int(exitstatus))


def pytest_unconfigure(config) -> None:  # noqa: ANN001
    """End the test process with the suite's own status once pytest has reported.

    Hundreds of tests load MLX models and torch on their own threads; the interpreter's
    teardown of what they leave to the garbage collector can crash (SIGSEGV) after every
    result is printed, which would turn a passing suite into a failure. The product's own
    exit is checked separately: tests/engine/test_clean_exit.py runs `fieldkit ask` 30 times
    in fresh processes and checks every exit code.
    """
    import os
    import sys

    if _EXIT_STATUS and not os.environ.get("FIELDKIT_TEST_NORMAL_EXIT"):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_EXIT_STATUS[0])
