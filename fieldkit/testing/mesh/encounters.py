"""Who meets whom: uniform random pairs, clustered villages with travellers, or a trace file.

Every model yields rounds; a round is a list of encounters that happen at the same time
(in the synthetic models each device is in at most one; a trace may list more). Seeds make every model repeatable.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from fieldkit.errors import FieldkitError

MODELS = ("uniform", "villages", "trace")


@dataclass(frozen=True)
class Encounter:
    """Devices `a` and `b` are in range for `seconds` over a link of `rate` bytes a second."""

    a: int
    b: int
    seconds: float
    rate: float


@dataclass(frozen=True)
class EncounterModel:
    """Parameters of the synthetic models (trace files bring their own)."""

    rate: float = 100_000.0  # bytes per second (uniform)
    seconds: float = 60.0  # encounter length (uniform)
    village_size: int = 50
    travellers: float = 0.02  # share of devices that change village every round
    ble_rates: tuple[float, float] = (15_000.0, 100_000.0)  # villages: drawn per encounter
    ble_seconds: tuple[float, float] = (30.0, 600.0)


def _pairs(devices: list[int], rng: random.Random) -> list[tuple[int, int]]:
    shuffled = list(devices)
    rng.shuffle(shuffled)
    return [(shuffled[i], shuffled[i + 1]) for i in range(0, len(shuffled) - 1, 2)]


def uniform_rounds(n: int, model: EncounterModel, rng: random.Random) -> Iterator[list[Encounter]]:
    """Every round, every device meets one other device chosen at random."""
    while True:
        yield [Encounter(a, b, model.seconds, model.rate) for a, b in _pairs(list(range(n)), rng)]


def village_of(index: int, n: int, model: EncounterModel) -> int:
    """Return the home village of device `index`."""
    return index % max(1, n // model.village_size)


def village_rounds(n: int, model: EncounterModel, rng: random.Random) -> Iterator[list[Encounter]]:
    """Devices meet inside their village; a few travellers (a technician's motorbike) move to a
    random village every round. Rates and lengths are drawn from the BLE ranges."""
    villages = max(1, n // model.village_size)
    travellers = set(rng.sample(range(n), max(1, round(n * model.travellers))))
    while True:
        present: dict[int, list[int]] = {v: [] for v in range(villages)}
        for index in range(n):
            village = (
                rng.randrange(villages) if index in travellers else village_of(index, n, model)
            )
            present[village].append(index)
        encounters = []
        for v in range(villages):
            for a, b in _pairs(present[v], rng):
                seconds = rng.uniform(*model.ble_seconds)
                encounters.append(Encounter(a, b, seconds, rng.uniform(*model.ble_rates)))
        yield encounters


def trace_rounds(path: Path, n: int, round_seconds: float) -> list[list[Encounter]]:
    """Read a contact trace: one encounter a line, `time a b seconds [rate]` (spaces or commas;
    # starts a comment); devices are numbered from 0. Returns the encounters by round.

    Raises FieldkitError (with the line number) for a malformed line or an unknown device.
    """
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise FieldkitError(f"Cannot read the trace file {path}: {exc.strerror}.") from None
    rounds: dict[int, list[Encounter]] = {}
    for number, line in enumerate(lines, 1):
        fields = line.split("#", 1)[0].replace(",", " ").split()
        if not fields:
            continue
        try:
            if len(fields) not in (4, 5):
                raise ValueError
            time, seconds = float(fields[0]), float(fields[3])
            a, b = int(fields[1]), int(fields[2])
            rate = float(fields[4]) if len(fields) == 5 else 100_000.0
            if not (0 <= a < n and 0 <= b < n and a != b and seconds > 0 and rate > 0):
                raise ValueError
            if time < 0:
                raise ValueError
        except ValueError:
            raise FieldkitError(
                f"Line {number} of {path} is not `time a b seconds [rate]` with devices "
                f"0 to {n - 1}."
            ) from None
        rounds.setdefault(int(time // round_seconds), []).append(Encounter(a, b, seconds, rate))
    if not rounds:
        raise FieldkitError(f"The trace file {path} lists no encounters.")
    last = max(rounds)
    return [rounds.get(r, []) for r in range(last + 1)]  # run in file order within a round
