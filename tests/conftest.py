"""Fixtures live in tests/fixtures/; each module there is registered here."""

pytest_plugins = [
    "tests.fixtures.embedder",
    "tests.fixtures.homes",
    "tests.fixtures.packets",
    "tests.fixtures.tiny_model",
]
