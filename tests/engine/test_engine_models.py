"""Base model folders: fingerprint (and its cache), id, info, and refusals."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from fieldkit.errors import ModelError
from fieldkit.store.models import FINGERPRINT_CACHE, model_fingerprint, model_id, model_info


@pytest.fixture
def model_copy(tiny_model_dir: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(tiny_model_dir, tmp_path / "copy-model"))


def test_fingerprint_is_cached_and_follows_the_weights(model_copy: Path) -> None:
    first = model_fingerprint(model_copy)
    assert len(first) == 64
    cache = json.loads((model_copy / FINGERPRINT_CACHE).read_text())
    assert cache["fingerprint"] == first
    assert model_fingerprint(model_copy) == first
    weights = model_copy / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x01
    weights.write_bytes(bytes(data))
    os.utime(weights, ns=(1, 1))
    assert model_fingerprint(model_copy) != first


def test_fingerprint_ignores_key_order_in_config(model_copy: Path) -> None:
    first = model_fingerprint(model_copy)
    config_path = model_copy / "config.json"
    config = json.loads(config_path.read_text())
    config_path.write_text(json.dumps(dict(reversed(list(config.items())))))
    assert model_fingerprint(model_copy) == first
    config["rope_theta"] = 20000.0
    config_path.write_text(json.dumps(config))
    assert model_fingerprint(model_copy) != first


def test_info_and_id(model_copy: Path) -> None:
    info = model_info(model_copy)
    assert info.model_id == model_id(model_copy) == "copy-model"
    assert (info.architecture, info.dtype, info.n_layers) == ("llama", "float32", 4)
    assert info.size_bytes > (model_copy / "model.safetensors").stat().st_size
    assert info.to_dict()["path"] == str(model_copy.resolve())


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda d: (d / "config.json").unlink(), "has no config.json"),
        (lambda d: (d / "config.json").write_text("{not json"), "not readable JSON"),
        (lambda d: (d / "model.safetensors").unlink(), "no .safetensors weights"),
    ],
)
def test_a_folder_that_is_not_a_model_is_refused(model_copy: Path, setup, message: str) -> None:
    setup(model_copy)
    with pytest.raises(ModelError, match=message):
        model_info(model_copy)


def test_a_missing_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="is not a folder"):
        model_fingerprint(tmp_path / "absent")
