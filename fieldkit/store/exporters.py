"""Export a packet's adapter back to the tools it may have come from.

`mlx-lm`: `adapters.safetensors` + `adapter_config.json`, as `mlx_lm lora` writes them
(`mlx_lm.generate --adapter-path DIR` loads it). `peft`: `adapter_model.safetensors` +
`adapter_config.json`, as `save_pretrained` writes them (`PeftModel.from_pretrained` loads
it). Both folders also get `packet.json` (name, domain, description, exemplars, the
notes a packet carries, and the signed manifest), so `fieldkit library import DIR` takes
either back without flags, as the same packet while its weights are unchanged.

The folder is built beside the target under a temporary name and renamed at the end, so
a failed export leaves nothing behind, and an existing target is never touched.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from fieldkit.errors import PacketError
from fieldkit.store.adapter import Adapter

FORMATS = ("mlx-lm", "peft")


def export_adapter(
    adapter: Adapter,
    target: Path,
    fmt: str,
    *,
    n_model_layers: int,
    base_model: str,
    info: Mapping[str, Any],
) -> Path:
    """Write the adapter as a `fmt` folder at `target` (atomically); return `target`.

    `n_model_layers` is the base model's depth (PEFT names layers by index), `base_model`
    goes into PEFT's base_model_name_or_path, `info` into packet.json. Raises PacketError
    for an unknown format, an existing target, or a failed write.
    """
    from safetensors.numpy import save

    if fmt not in FORMATS:
        raise PacketError(f"Unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}.")
    target = Path(target)
    if target.exists():
        raise PacketError(f"{target} already exists; choose a new folder.")
    layers = adapter.config.resolved_layers(n_model_layers)
    if fmt == "mlx-lm":
        weights_name = "adapters.safetensors"
        config: dict[str, Any] = adapter.config.to_mlx_dict()
        tensors = dict(adapter.tensors)
        metadata = {"format": "mlx"}
    else:
        from fieldkit.store.peft import export_config, export_name

        weights_name = "adapter_model.safetensors"
        config = export_config(adapter.config, layers, base_model)
        tensors = {export_name(name): array.T for name, array in adapter.tensors.items()}
        metadata = {"format": "pt"}
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    except OSError as exc:
        raise PacketError(f"Cannot write beside {target} ({exc.strerror}).") from exc
    try:
        ordered = {name: np.ascontiguousarray(tensors[name]) for name in sorted(tensors)}
        (work / weights_name).write_bytes(save(ordered, metadata=metadata))
        (work / "adapter_config.json").write_text(json.dumps(config, indent=2) + "\n")
        (work / "packet.json").write_text(json.dumps(dict(info), indent=2) + "\n")
        work.chmod(0o755)  # mkdtemp makes it private; a folder others may read, like any
        os.rename(work, target)
    except OSError as exc:
        raise PacketError(f"Cannot write {target} ({exc.strerror}).") from exc
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target
