"""The mesh simulator: real devices spread a packet; seeds repeat; hostile packets stay out."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

from fieldkit.cli import main
from fieldkit.errors import FieldkitError
from fieldkit.testing.mesh import EncounterModel, MeshConfig, run_mesh, spread_plot
from fieldkit.testing.mesh.encounters import trace_rounds

TIMES = ("wall_seconds", "setup_seconds")


def measured(result) -> dict:
    data = result.to_dict()
    for key in TIMES:
        data.pop(key)
    return data


def test_twenty_devices_spread_one_packet_to_all(tmp_path: Path):
    result = run_mesh(MeshConfig(devices=20, seed=3), tmp_path)
    assert result.delivery == 1.0
    assert result.rounds_to_99 is not None
    assert result.rounds_to_99 <= 2 * 5  # 2 ln 20 ~ 6; push-pull needs about log2(20) + 1
    assert result.transfers_completed == 19  # each device but the author got it once
    assert result.duplicate_transfers == 0
    assert result.bad_admitted == 0
    assert 0 < result.overhead_ratio < 0.2
    assert result.curve == sorted(result.curve)
    assert "100.0%" in spread_plot(result)


def test_a_seed_repeats_the_run_exactly(tmp_path: Path):
    config = MeshConfig(devices=16, seed=11, hostile=0.2, packet_size=16 * 1024)
    first = run_mesh(config, tmp_path / "one")
    second = run_mesh(config, tmp_path / "two")
    assert measured(first) == measured(second)
    other = run_mesh(replace(config, seed=12), tmp_path / "three")
    assert measured(other) != measured(first)


def test_hostile_devices_get_nothing_admitted(tmp_path: Path):
    # 3 hostile devices of 15: one tampers chunks, one forges an author, one floods
    result = run_mesh(MeshConfig(devices=15, seed=2, hostile=0.2), tmp_path)
    assert result.bad_admitted == 0
    assert result.hostile_bytes > 0
    assert result.refused + result.sessions_failed > 0
    assert result.delivery == 1.0  # honest spread goes on


def test_cut_transfers_resume_from_other_peers_and_do_not_without_resume(tmp_path: Path):
    # a 64 KiB packet over encounters that carry 25 kB: three encounters per device at least
    model = EncounterModel(rate=1000, seconds=25)
    config = MeshConfig(devices=8, seed=4, encounters=model, max_rounds=40)
    resumed = run_mesh(config, tmp_path / "resume")
    assert resumed.delivery == 1.0
    assert resumed.resumed_transfers >= 7
    assert resumed.resume_saved_bytes > 0
    stuck = run_mesh(replace(config, resume=False, max_rounds=10), tmp_path / "none")
    assert stuck.delivery == 1 / 8  # only the author: no encounter is long enough alone


def test_trusted_only_spreads_along_the_trust_graph_and_ask_in_between(tmp_path: Path):
    base = MeshConfig(devices=20, seed=5, max_rounds=30)
    open_ = run_mesh(base, tmp_path / "open")
    trusted = run_mesh(replace(base, policy="trusted-only", trust_degree=3), tmp_path / "t")
    assert trusted.delivery > 0.5
    assert trusted.rounds >= open_.rounds


def test_villages_and_trace_models_run(tmp_path: Path):
    villages = run_mesh(
        MeshConfig(devices=20, seed=6, model="villages", encounters=EncounterModel(village_size=5)),
        tmp_path / "v",
    )
    assert villages.delivery > 0.5
    trace = tmp_path / "trace.txt"
    trace.write_text("# time a b seconds\n0 0 1 60\n0,2,3,60\n60 1 2 60\n120 2 4 60 50000\n")
    result = run_mesh(MeshConfig(devices=5, model="trace", trace=trace), tmp_path / "t")
    assert result.curve == [0.4, 0.6, 0.8]  # 0 and 1, then 2, then 4


def test_a_malformed_trace_line_is_one_sentence(tmp_path: Path):
    trace = tmp_path / "trace.txt"
    trace.write_text("0 0 1 60\n5 0 9 60\n")
    with pytest.raises(FieldkitError, match="Line 2 of"):
        trace_rounds(trace, 5, 60)


def test_bench_mesh_command_prints_the_required_json_keys(tmp_path: Path):
    args = ["--home", str(tmp_path), "bench", "mesh", "--devices", "10", "--seed", "1", "--json"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    for key in ("delivery", "rounds_to_50", "rounds_to_90", "rounds_to_99", "overhead_ratio",
                "inventory_share", "bad_admitted", "wall_seconds"):  # fmt: skip
        assert key in data
    assert data["delivery"] == 1.0


def test_bench_mesh_refuses_bad_input_in_one_sentence(tmp_path: Path):
    result = CliRunner().invoke(
        main, ["--home", str(tmp_path), "bench", "mesh", "--hostile", "0.9"]
    )
    assert result.exit_code != 0
    assert "--hostile is a share" in result.output
    assert "Traceback" not in result.output
