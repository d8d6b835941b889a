"""`fieldkit library` end to end through click, on real homes and a tiny real base model."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
from click.testing import CliRunner
from safetensors.numpy import save_file

from fieldkit.cli import main


def _exemplars(tmp_path: Path) -> Path:
    path = tmp_path / "exemplars.txt"
    path.write_text("\n".join(f"How do I service pump part {i}?" for i in range(12)))
    return path


def write_mlx_folder(folder: Path, adapter) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    save_file(adapter.tensors, str(folder / "adapters.safetensors"))
    config = adapter.config.to_mlx_dict() | {"model": "x", "iters": 10}
    (folder / "adapter_config.json").write_text(json.dumps(config))
    return folder


def write_peft_folder(folder: Path, adapter) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for name, array in adapter.tensors.items():
        prefix, part = name.rsplit(".", 1)
        peft_part = "lora_A" if part == "lora_a" else "lora_B"
        tensors[f"base_model.model.{prefix}.{peft_part}.weight"] = np.ascontiguousarray(array.T)
    save_file(tensors, str(folder / "adapter_model.safetensors"))
    rank = adapter.config.rank
    config = {
        "peft_type": "LORA",
        "r": rank,
        "lora_alpha": adapter.config.scale * rank,
        "lora_dropout": 0.0,
        "bias": "none",
        "target_modules": [k.split(".")[1] for k in adapter.config.keys],
        "task_type": "CAUSAL_LM",
    }
    (folder / "adapter_config.json").write_text(json.dumps(config))
    return folder


def exported_packet(cli, tmp_path: Path, adapter) -> Path:
    """Import `adapter` as packet 'pumps' into home a, export it, return the file."""
    folder = write_mlx_folder(tmp_path / "f", adapter)
    r = cli(tmp_path / "a", "library", "import", str(folder), "--name", "pumps",
            "--domain", "d", "--exemplars", str(_exemplars(tmp_path)))  # fmt: skip
    assert r.exit_code == 0, r.output
    good = tmp_path / "good.fkpkt"
    assert cli(tmp_path / "a", "library", "export", "pumps", "-o", str(good)).exit_code == 0
    return good


def _rows(home: Path) -> list:
    if not (home / "library.db").exists():
        return []
    con = sqlite3.connect(home / "library.db")
    rows = con.execute("select name, packet_id from packets").fetchall()
    con.close()
    return rows


def test_import_export_import_round_trip(cli, tmp_path, make_adapter):
    folder = write_mlx_folder(tmp_path / "mlx", make_adapter(seed=1))
    a, b = tmp_path / "a", tmp_path / "b"
    r = cli(
        a,
        "library",
        "import",
        str(folder),
        "--name",
        "pumps",
        "--domain",
        "solar_pumps",
        "--exemplars",
        str(_exemplars(tmp_path)),
    )
    assert r.exit_code == 0, r.output
    r = cli(a, "library", "export", "pumps", "-o", str(tmp_path / "pumps.fkpkt"))
    assert r.exit_code == 0, r.output
    r = cli(b, "library", "import", str(tmp_path / "pumps.fkpkt"))
    assert r.exit_code == 0, r.output
    listed_a = json.loads(cli(a, "library", "list", "--json").output)
    listed_b = json.loads(cli(b, "library", "list", "--json").output)
    assert listed_a[0]["sha256"] == listed_b[0]["sha256"]
    assert listed_b[0]["verified"] is True
    assert listed_b[0]["base_match"] is True
    assert listed_b[0]["source"] == "file"
    assert listed_a[0]["source"] == "local"
    assert listed_b[0]["author"] == listed_a[0]["author"]
    assert cli(b, "library", "verify").exit_code == 0
    shown = json.loads(cli(b, "library", "show", "pumps", "--json").output)
    assert len(shown["exemplars"]) == 12
    assert cli(b, "library", "remove", "pumps").exit_code == 0
    assert _rows(b) == []


def test_a_packet_imported_with_no_model_installed_says_its_base_is_not_checked(
    cli, tmp_path, make_adapter, tiny_model_dir
):
    folder = write_mlx_folder(tmp_path / "mlx", make_adapter(seed=1))
    args = ("--name", "pumps", "--domain", "solar_pumps", "--exemplars", str(_exemplars(tmp_path)))
    assert cli(tmp_path / "a", "library", "import", str(folder), *args).exit_code == 0
    packet = tmp_path / "pumps.fkpkt"
    assert cli(tmp_path / "a", "library", "export", "pumps", "-o", str(packet)).exit_code == 0
    with_model = cli(tmp_path / "b", "library", "import", str(packet))
    assert with_model.exit_code == 0, with_model.output
    assert with_model.stderr == ""
    no_model = ["--home", str(tmp_path / "c")]  # the default model, not installed there
    result = CliRunner().invoke(main, [*no_model, "library", "import", str(packet)])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("Imported 'pumps'")
    assert result.stderr == (
        "The base model smollm2-135m-instruct is not installed here, so a packet's base "
        "model is not checked yet; it shows NO MODEL until one is "
        "(`fieldkit model install-default`).\n"
    )
    assert "NO MODEL" in CliRunner().invoke(main, [*no_model, "library", "list"]).stdout
    install = [*no_model, "model", "install", str(tiny_model_dir), "--name", "tiny"]
    assert CliRunner().invoke(main, install).exit_code == 0
    again = CliRunner().invoke(main, [*no_model, "library", "import", str(packet)])
    assert "(`fieldkit model use NAME`; installed: tiny)" in again.stderr


def test_several_packet_files_import_at_once_and_a_bad_one_stops_none_of_the_others(
    cli, tmp_path, make_adapter
):
    files = []
    for seed, name in ((1, "pumps"), (2, "wells")):
        folder = write_mlx_folder(tmp_path / name, make_adapter(seed=seed))
        args = ("--name", name, "--domain", "water", "--exemplars", str(_exemplars(tmp_path)))
        assert cli(tmp_path / "a", "library", "import", str(folder), *args).exit_code == 0
        files.append(tmp_path / f"{name}.fkpkt")
        assert cli(tmp_path / "a", "library", "export", name, "-o", str(files[-1])).exit_code == 0
    bad = tmp_path / "bad.fkpkt"
    bad.write_bytes(files[0].read_bytes()[:-10])
    result = cli(tmp_path / "b", "library", "import", str(files[0]), str(bad), str(files[1]))
    assert result.exit_code == 1
    assert [line.split(" (")[0] for line in result.stdout.splitlines()] == [
        "Imported 'pumps'",
        "Imported 'wells'",
    ]
    assert result.stderr.splitlines()[0].startswith(f"fieldkit: {bad}: ")
    assert result.stderr.splitlines()[-1] == "fieldkit: 1 of 3 were not imported (see above)."
    assert sorted(name for name, _ in _rows(tmp_path / "b")) == ["pumps", "wells"]
    again = cli(tmp_path / "b", "library", "import", *map(str, files))
    assert again.exit_code == 0
    assert again.stdout.count("is already in the library") == 2
    one_name = cli(tmp_path / "c", "library", "import", *map(str, files), "--name", "x")
    assert one_name.exit_code == 2
    assert "give them with one PATH" in one_name.output
    assert not (tmp_path / "c" / "library.db").exists()


def test_several_packets_export_to_a_folder_and_a_damaged_one_stops_none_of_the_others(
    cli, tmp_path, make_adapter
):
    from fieldkit.home import Home
    from fieldkit.store.library import Library

    home = tmp_path / "a"
    for seed, name in ((1, "pumps"), (2, "wells"), (3, "tanks")):
        folder = write_mlx_folder(tmp_path / name, make_adapter(seed=seed))
        args = ("--name", name, "--domain", "water", "--exemplars", str(_exemplars(tmp_path)))
        assert cli(home, "library", "import", str(folder), *args).exit_code == 0
    library = Library.open(Home(home))
    blob = library.weights_path(library.get("tanks"))
    library.close()
    blob.write_bytes(blob.read_bytes()[:-1] + b"\x00")
    usb = tmp_path / "usb" / "packets"
    result = cli(home, "library", "export", "--all", "-o", str(usb))
    assert result.exit_code == 1
    assert sorted(p.name for p in usb.iterdir()) == ["pumps.fkpkt", "wells.fkpkt"]
    assert result.stderr.splitlines()[0].startswith("fieldkit: tanks: ")
    assert result.stderr.splitlines()[-1] == "fieldkit: 1 of 3 were not exported (see above)."
    imported = cli(tmp_path / "b", "library", "import", *map(str, sorted(usb.iterdir())))
    assert imported.exit_code == 0, imported.output
    again = cli(home, "library", "export", "pumps", "wells", "-o", str(usb))
    assert again.exit_code == 1
    assert again.stderr.count("already exists") == 2
    one = cli(home, "library", "export", "pumps", "-o", str(usb), "--force")  # into the folder
    assert one.exit_code == 0
    assert one.stdout.startswith(f"Exported 'pumps' to {usb / 'pumps.fkpkt'} (")
    for args in (("pumps", "--all"), (), ("pumps", "wells", "--format", "peft")):
        refused = cli(home, "library", "export", *args, "-o", str(tmp_path / "x"))
        assert refused.exit_code == 2, refused.output
    assert not (tmp_path / "x").exists()


def test_peft_and_mlx_imports_give_the_same_delta(cli, tmp_path, make_adapter):
    adapter = make_adapter(seed=2)
    home = tmp_path / "h"
    ex = str(_exemplars(tmp_path))
    assert (
        cli(
            home,
            "library",
            "import",
            str(write_mlx_folder(tmp_path / "m", adapter)),
            "--name",
            "m",
            "--domain",
            "d",
            "--exemplars",
            ex,
        ).exit_code
        == 0
    )
    r = cli(
        home,
        "library",
        "import",
        str(write_peft_folder(tmp_path / "p", adapter)),
        "--name",
        "p",
        "--domain",
        "d",
        "--exemplars",
        ex,
    )
    assert r.exit_code == 0, r.output
    from fieldkit.home import Home
    from fieldkit.store.library import Library

    lib = Library.open(Home(home))
    m, p = (lib.load_adapter(lib.get(n)) for n in ("m", "p"))
    assert m.config.scale == p.config.scale == 2.0
    for name in m.tensors:
        if name.endswith("lora_a"):
            b = name[: -len("lora_a")] + "lora_b"
            dm = (
                m.config.scale
                * m.tensors[name].astype(np.float32)
                @ m.tensors[b].astype(np.float32)
            )
            dp = (
                p.config.scale
                * p.tensors[name].astype(np.float32)
                @ p.tensors[b].astype(np.float32)
            )
            np.testing.assert_allclose(dm, dp, rtol=1e-6, atol=1e-7)


def _refusal(cli, tmp_path, folder, message, *extra):
    home = tmp_path / "refuse"
    r = cli(
        home,
        "library",
        "import",
        str(folder),
        "--name",
        "x",
        "--domain",
        "d",
        "--exemplars",
        str(_exemplars(tmp_path)),
        *extra,
    )
    assert r.exit_code != 0
    assert message in r.output, r.output
    assert "Traceback" not in r.output
    assert r.output.count("\n") == 1
    assert _rows(home) == []
    assert not any(p.is_file() for p in (home / "blobs").rglob("*"))


def test_refuses_non_lora_tensor(cli, tmp_path, make_adapter):
    adapter = make_adapter(seed=3)
    adapter.tensors["model.embed_tokens.weight"] = np.zeros((4, 4), np.float32)
    _refusal(cli, tmp_path, write_mlx_folder(tmp_path / "f", adapter), "not LoRA")


def test_refuses_full_fine_tune_config(cli, tmp_path, make_adapter):
    folder = write_mlx_folder(tmp_path / "f", make_adapter(seed=3))
    (folder / "adapter_config.json").write_text(
        json.dumps({"fine_tune_type": "full", "lora_parameters": {}})
    )
    _refusal(cli, tmp_path, folder, "a full fine-tune (fine_tune_type 'full'), not a LoRA")


def test_refuses_unknown_config_field(cli, tmp_path, make_adapter):
    folder = write_mlx_folder(tmp_path / "f", make_adapter(seed=3))
    config = json.loads((folder / "adapter_config.json").read_text()) | {"use_dora": True}
    (folder / "adapter_config.json").write_text(json.dumps(config))
    _refusal(cli, tmp_path, folder, "sets use_dora = True, which fieldkit does not know")


def test_refuses_missing_tensor(cli, tmp_path, make_adapter):
    adapter = make_adapter(seed=3)
    adapter.tensors.pop(sorted(adapter.tensors)[0])
    _refusal(cli, tmp_path, write_mlx_folder(tmp_path / "f", adapter), "lacks the tensor")


def test_refuses_shape_mismatch_with_config(cli, tmp_path, make_adapter):
    adapter = make_adapter(seed=3)
    name = sorted(adapter.tensors)[0]
    adapter.tensors[name] = np.zeros((adapter.tensors[name].shape[0], 7), np.float32)
    _refusal(cli, tmp_path, write_mlx_folder(tmp_path / "f", adapter), "has rank 7")


def test_refuses_wrong_base_model(cli, tmp_path, make_adapter):
    from tests.fixtures.packets import random_adapter  # hidden 64 but mlp widths differ per key

    adapter = random_adapter(seed=4, rank=4, n_layers=4, size_scale=2)
    _refusal(cli, tmp_path, write_mlx_folder(tmp_path / "f", adapter), "another base model")


def test_refuses_nan(cli, tmp_path, make_adapter):
    adapter = make_adapter(seed=3)
    next(iter(adapter.tensors.values()))[0, 0] = np.inf
    _refusal(cli, tmp_path, write_mlx_folder(tmp_path / "f", adapter), "NaN or infinite")


def test_refuses_truncated_weights_file(cli, tmp_path, make_adapter):
    folder = write_mlx_folder(tmp_path / "f", make_adapter(seed=3))
    path = folder / "adapters.safetensors"
    path.write_bytes(path.read_bytes()[:-50])
    _refusal(cli, tmp_path, folder, "not a readable safetensors file")


def test_refuses_pickle(cli, tmp_path, make_adapter):
    folder = write_peft_folder(tmp_path / "f", make_adapter(seed=3))
    (folder / "adapter_model.safetensors").rename(folder / "adapter_model.bin")
    _refusal(cli, tmp_path, folder, "Pickled")


def test_refuses_too_few_exemplars(cli, tmp_path, make_adapter):
    folder = write_mlx_folder(tmp_path / "f", make_adapter(seed=3))
    home = tmp_path / "h"
    r = cli(home, "library", "import", str(folder), "--name", "x", "--domain", "d")
    assert r.exit_code != 0
    assert "exemplar" in r.output
    assert _rows(home) == []


def test_packet_file_refusals_leave_library_untouched(cli, tmp_path, make_adapter):
    b = tmp_path / "b"
    raw = exported_packet(cli, tmp_path, make_adapter(seed=5)).read_bytes()
    cases = {
        "truncated": (raw[:-10], "truncated"),
        "sig": (raw.replace(b"signature", b"signaturX", 1), "damaged header"),
        "version": (raw[:8] + b"\x07" + raw[9:], "format 7"),
        "flip": (raw[:-4] + bytes([raw[-4] ^ 1]) + raw[-3:], "sha256"),
    }
    for label, (data, message) in cases.items():
        path = tmp_path / f"{label}.fkpkt"
        path.write_bytes(data)
        r = cli(b, "library", "import", str(path))
        assert r.exit_code != 0, label
        assert message in r.output, (label, r.output)
        assert _rows(b) == []


def test_unknown_packet_is_one_sentence(cli, tmp_path):
    r = cli(tmp_path / "h", "library", "show", "nothing")
    assert r.exit_code == 1
    assert r.output.strip() == "fieldkit: No packet named 'nothing' is in the library."


def test_id_json(cli, tmp_path):
    r = cli(tmp_path / "h", "id", "--json")
    data = json.loads(r.output)
    assert len(data["id"]) == 16
    assert len(data["public_key"]) == 64
    assert json.loads(cli(tmp_path / "h", "id", "--json").output)["id"] == data["id"]


def test_refuses_oversize_files_without_reading_them(cli, tmp_path, make_adapter):
    folder = write_mlx_folder(tmp_path / "f", make_adapter(seed=3))
    with open(folder / "adapters.safetensors", "r+b") as f:
        f.truncate(300 * 1024 * 1024)  # sparse: no disk used
    _refusal(cli, tmp_path, folder, "larger than the 256 MiB")
    big = tmp_path / "big.fkpkt"
    with open(big, "wb") as f:
        f.truncate(300 * 1024 * 1024)
    r = cli(tmp_path / "h2", "library", "import", str(big))
    assert r.exit_code != 0
    assert "larger than the 256 MiB" in r.output


def test_refuses_packet_file_with_forged_manifest(cli, tmp_path, make_adapter):
    import io

    from fieldkit.store.packet import read_packet_file, write_packet_file

    packet = read_packet_file(exported_packet(cli, tmp_path, make_adapter(seed=6)))
    forged = dict(packet.manifest, description="Now with a forged description.")
    buf = io.BytesIO()
    write_packet_file(buf, forged, packet.signature, packet.weights)
    bad = tmp_path / "forged.fkpkt"
    bad.write_bytes(buf.getvalue())
    r = cli(tmp_path / "b", "library", "import", str(bad))
    assert r.exit_code != 0
    assert "does not verify" in r.output
    assert _rows(tmp_path / "b") == []


def test_reissue_with_new_exemplars(cli, tmp_path, make_adapter):
    good = exported_packet(cli, tmp_path, make_adapter(seed=4))
    before = json.loads(cli(tmp_path / "a", "library", "show", "pumps", "--json").output)
    questions = tmp_path / "more.txt"
    questions.write_text("\n".join(f"Which seal fits pump model {i}?" for i in range(30)))
    r = cli(tmp_path / "a", "library", "reissue", "pumps", "--exemplars", str(questions))
    assert r.exit_code == 0, r.output
    assert "30 exemplars" in r.output
    after = json.loads(cli(tmp_path / "a", "library", "show", "pumps", "--json").output)
    assert len(after["exemplars"]) == 30
    assert after["sha256"] == before["sha256"]
    assert after["packet_id"] != before["packet_id"]
    r = cli(tmp_path / "b", "library", "import", str(good))
    assert r.exit_code == 0, r.output
    r = cli(tmp_path / "b", "library", "reissue", "pumps", "--description", "x")
    assert r.exit_code == 1, r.output
    assert "another author" in r.output
    assert "Traceback" not in r.output
    r = cli(tmp_path / "b", "library", "reissue", "pumps")
    assert r.exit_code == 2
    assert "--exemplars" in r.output


def test_export_takes_a_name_given_twice_once_and_refuses_an_empty_output(
    make_home, make_packet, tmp_path: Path
) -> None:
    home = make_home("me")
    make_packet(home, name="pumps")
    base = ["--home", str(home.root), "library", "export"]
    twice = CliRunner().invoke(main, [*base, "pumps", "pumps", "-o", str(tmp_path / "usb")])
    assert twice.exit_code == 0, twice.output  # it wrote the file, then refused it as existing
    assert twice.output.count("Exported 'pumps'") == 1
    empty = CliRunner().invoke(main, [*base, "pumps", "-o", ""])
    assert empty.exit_code == 2
    assert "is empty; name a file or a folder." in empty.output
    assert not list(Path.cwd().glob("pumps.fkpkt"))


def test_show_prints_a_flag_as_yes_or_no(make_home, make_packet) -> None:
    home = make_home("me")
    make_packet(home, name="pumps")
    shown = CliRunner().invoke(main, ["--home", str(home.root), "library", "show", "pumps"])
    assert shown.exit_code == 0, shown.output
    assert "\nmerged         no\n" in shown.output


def test_an_adapter_folder_export_refuses_a_packet_file_name(make_home, make_packet, tmp_path):
    """`--format peft -o p2.fkpkt` made a folder named p2.fkpkt."""
    home = make_home("me")
    make_packet(home, name="pumps")
    out = tmp_path / "p2.fkpkt"
    result = CliRunner().invoke(
        main, ["--home", str(home.root), "library", "export", "pumps", "-o", str(out),
               "--format", "peft"],
    )  # fmt: skip
    assert result.exit_code == 2
    assert "names a packet file; --format peft writes a folder: give a name without" in (
        " ".join(result.output.split())
    )
    assert not out.exists()
    make_packet(home, name="solar", seed=2)
    two = tmp_path / "two.fkpkt"  # two packets to one file name: a folder called two.fkpkt
    result = CliRunner().invoke(
        main, ["--home", str(home.root), "library", "export", "pumps", "solar", "-o", str(two)]
    )
    assert result.exit_code == 2
    assert "several packets go to a folder" in " ".join(result.output.split())
    assert not two.exists()


def test_an_empty_description_is_refused(make_home, make_packet, tmp_path) -> None:
    """`reissue NAME --description ''` signed a new version described by nothing."""
    home = make_home("me")
    make_packet(home, name="pumps")
    base = ["--home", str(home.root), "library"]
    for argv in (["reissue", "pumps", "--description", " "],
                 ["import", str(tmp_path), "--description", ""]):  # fmt: skip
        result = CliRunner().invoke(main, [*base, *argv])
        assert result.exit_code == 2, result.output
        assert "'--description': is empty; give a sentence" in result.output


def test_list_marks_a_name_it_cut(make_home, make_packet) -> None:
    home = make_home("me")
    make_packet(home, name="kisoro-clinic-cold-chain-2026", domain="cold_chain_and_vaccines")
    listed = CliRunner().invoke(main, ["--home", str(home.root), "library", "list"])
    assert listed.exit_code == 0, listed.output
    row = listed.output.splitlines()[1]
    assert row.startswith("kisoro-clinic-c~ cold_chain_a~ ")  # cut, and marked so
    assert max(len(line) for line in listed.output.splitlines()) <= 80
