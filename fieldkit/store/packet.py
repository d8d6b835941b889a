"""Knowledge packets: the signed manifest, weight checks, and the one-file export format.

A packet is a manifest (a JSON-able dict) signed by its author with Ed25519, plus a weights
file (safetensors, fp16, mlx-lm LoRA layout). See docs/PACKET.md for every field and rule.
"""

from __future__ import annotations

import hashlib
import json
import struct
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import msgpack

from fieldkit.errors import PacketError, PacketFileExists
from fieldkit.store.adapter import (
    Adapter,
    AdapterConfig,
    read_safetensors,
    read_safetensors_bytes,
    tensors_to_bytes,
    validate_tensors,
    values_finite,
)
from fieldkit.store.exemplars import (
    FORMAT3_EXEMPLARS,
    MAX_EXEMPLARS,
    check_texts,
    packet_texts,
)
from fieldkit.store.files import inside, read_bounded, write_atomically
from fieldkit.store.identity import Identity, device_id_for, verify_signature
from fieldkit.store.notes import (
    NOTES_FIELD,
    Passage,
    check_notes,
    has_phrasings,
    to_manifest_notes,
)
from fieldkit.store.quantize import (
    QUANT_BITS,
    QuantizedTensors,
    is_trimmed,
    quantize_tensors,
    read_quantized,
)

FORMAT_VERSION = 1  # the one-file container, and a manifest without notes
NOTES_FORMAT = 2  # a manifest carrying notes: format 1 plus the `notes` field
WEIGHTS_FORMAT = 3  # format 2 (notes optional) whose weights may be quantised or rank-trimmed
# format 3 with phrasings: more than FORMAT3_EXEMPLARS exemplar questions, or note passages
# that list other phrasings of their question (`asked`)
EXEMPLARS_FORMAT = 4
MANIFEST_FORMATS = (FORMAT_VERSION, NOTES_FORMAT, WEIGHTS_FORMAT, EXEMPLARS_FORMAT)
SIGNING_CONTEXT = b"fieldkit-packet-v1\0"
DEFAULT_CHUNK_SIZE = 32 * 1024
MIN_CHUNK_SIZE = 4 * 1024
MAX_CHUNK_SIZE = 1024 * 1024
MAX_PACKET_SIZE = 256 * 1024 * 1024
FILE_MAGIC = b"FKPACKET"
MAX_HEADER_SIZE = 4 * 1024 * 1024
DTYPES = ("float16", "float32", "bfloat16")

_FIELDS: dict[str, type | tuple[type, ...]] = {
    "format": int,
    "name": str,
    "domain": str,
    "description": str,
    "exemplars": list,
    "base_model_id": str,
    "base_fingerprint": str,
    "adapter": dict,
    "dtype": str,
    "weights_sha256": str,
    "weights_size": int,
    "chunk_size": int,
    "chunk_hashes": list,
    "created": int,
    "author_id": str,
    "author_key": str,
    "merged": bool,
    "lineage": list,
}
# Present only where it applies: a merged packet's recipe (method, parameters and, for an
# adaptive merge, the learned coefficients).
_OPTIONAL_FIELDS: dict[str, type] = {"merge": dict}


def canonical_bytes(manifest: Mapping[str, Any]) -> bytes:
    """Return the exact bytes that are signed: sorted-key compact ASCII JSON."""
    try:
        return json.dumps(
            manifest, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
        ).encode("ascii")
    except (TypeError, ValueError) as exc:
        raise PacketError("The manifest holds a value that cannot be signed.") from exc


def packet_id(manifest: Mapping[str, Any]) -> str:
    """Return the packet id: the sha256 (hex) of the canonical manifest bytes."""
    return hashlib.sha256(canonical_bytes(manifest)).hexdigest()


def chunk_hashes(data: bytes, chunk_size: int) -> list[str]:
    """Return the sha256 (hex) of each `chunk_size` slice of `data`."""
    return [
        hashlib.sha256(data[i : i + chunk_size]).hexdigest()
        for i in range(0, len(data), chunk_size)
    ]


def check_name(value: str, what: str = "name") -> str:
    """Return a packet name (or domain) stripped; PacketError unless it is 1 to 64 printable
    characters with no path separator, and not '.' or '..' (names become file names)."""
    name = value.strip() if isinstance(value, str) else ""
    if not 1 <= len(name) <= 64 or not name.isprintable():
        raise PacketError(f"The packet's {what} must be 1 to 64 printable characters.")
    if "/" in name or "\\" in name or name in {".", ".."}:
        raise PacketError(
            f"The packet's {what} {name!r} may not contain '/' or '\\', or be '.' or '..'."
        )
    return name


def check_new_name(value: str, what: str = "name") -> str:
    """Return a name for a packet made here (`check_name`), refusing one that starts with
    '-': every command would take it for an option (`library show -dash`). A packet from
    another device keeps the name its author signed."""
    name = check_name(value, what)
    if name.startswith("-"):
        raise PacketError(f"The packet's {what} {name!r} may not start with '-'.")
    return name


def check_manifest(manifest: Any) -> None:
    """Check the manifest's schema and limits (not its signature); raise PacketError if bad."""
    if not isinstance(manifest, dict):
        raise PacketError("The packet manifest is not a map.")
    if manifest.get("format") not in MANIFEST_FORMATS:
        raise PacketError(
            f"The packet has format version {manifest.get('format')!r}; "
            f"this fieldkit reads versions {', '.join(map(str, MANIFEST_FORMATS))}."
        )
    fields = set(_FIELDS) | ({NOTES_FIELD} if manifest["format"] == NOTES_FORMAT else set())
    missing = sorted(fields - set(manifest))
    if missing:
        raise PacketError(f"The packet manifest lacks the field {missing[0]}.")
    optional = {NOTES_FIELD} if manifest["format"] >= WEIGHTS_FORMAT else set()
    extra = sorted(set(manifest) - fields - optional - set(_OPTIONAL_FIELDS))
    if extra:
        raise PacketError(f"The packet manifest has an unknown field {extra[0]}.")
    for key, kind in _FIELDS.items():
        value = manifest[key]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise PacketError(f"The packet manifest's field {key} has the wrong type.")
    for key, kind in _OPTIONAL_FIELDS.items():
        if key in manifest and not isinstance(manifest[key], kind):
            raise PacketError(f"The packet manifest's field {key} has the wrong type.")
    for key in ("name", "domain"):
        check_name(manifest[key], key)
    most = MAX_EXEMPLARS if manifest["format"] >= EXEMPLARS_FORMAT else FORMAT3_EXEMPLARS
    check_texts(manifest["description"], manifest["exemplars"], most)
    AdapterConfig.from_mlx_dict(manifest["adapter"])
    if manifest["dtype"] not in DTYPES + (
        tuple(QUANT_BITS) if manifest["format"] >= WEIGHTS_FORMAT else ()
    ):
        raise PacketError(
            f"The packet's weights dtype {manifest['dtype']!r} is not supported"
            f" in format {manifest['format']}."
        )
    size, csize = manifest["weights_size"], manifest["chunk_size"]
    if not 0 < size <= MAX_PACKET_SIZE:
        raise PacketError(f"The packet's weights size {size} is outside 1 byte to 256 MiB.")
    if not MIN_CHUNK_SIZE <= csize <= MAX_CHUNK_SIZE:
        raise PacketError(f"The packet's chunk size {csize} is outside 4 KiB to 1 MiB.")
    hashes = manifest["chunk_hashes"]
    if len(hashes) != -(-size // csize) or not all(_is_hex(h, 64) for h in hashes):
        raise PacketError("The packet's chunk hashes do not match its size.")
    for key in ("weights_sha256", "base_fingerprint"):
        if not _is_hex(manifest[key], 64):
            raise PacketError(f"The packet's {key} is not a sha256 hex digest.")
    if not _is_hex(manifest["author_key"], 64):
        raise PacketError("The packet's author key is not a 32-byte hex key.")
    if device_id_for(bytes.fromhex(manifest["author_key"])) != manifest["author_id"]:
        raise PacketError("The packet's author id does not belong to its author key.")
    if not all(isinstance(p, str) and _is_hex(p, 64) for p in manifest["lineage"]):
        raise PacketError("The packet's lineage must list packet ids.")
    if NOTES_FIELD in manifest:
        check_notes(manifest[NOTES_FIELD], phrasings=manifest["format"] >= EXEMPLARS_FORMAT)


def verify_manifest(manifest: Any, signature: bytes) -> str:
    """Check schema and the author's signature; return the packet id or raise PacketError."""
    check_manifest(manifest)
    if not isinstance(signature, bytes) or not verify_signature(
        bytes.fromhex(manifest["author_key"]),
        SIGNING_CONTEXT + canonical_bytes(manifest),
        signature,
    ):
        raise PacketError(f"The signature of packet {manifest['name']!r} does not verify.")
    return packet_id(manifest)


def verify_weights(
    manifest: Mapping[str, Any], data: bytes, *, check_chunks: bool = True, copy: bool = True
) -> Adapter:
    """Check the weights bytes against the manifest (hashes, tensors); return the Adapter.

    `check_chunks=False` skips re-hashing every chunk, for bytes whose chunks were each
    checked against this manifest as they arrived (a gossip transfer); the whole-file
    sha256, which the signature covers, is checked either way. `copy=False` leaves the
    Adapter's tensors as read-only views into `data` (for a caller that only checks).
    """
    if len(data) != manifest["weights_size"]:
        raise PacketError(
            f"The weights of {manifest['name']!r} are {len(data)} bytes, "
            f"the manifest says {manifest['weights_size']} (truncated or padded)."
        )
    digest = hashlib.sha256(data).hexdigest()
    if digest != manifest["weights_sha256"]:
        raise PacketError(f"The weights of {manifest['name']!r} do not match their sha256.")
    if check_chunks and chunk_hashes(data, manifest["chunk_size"]) != manifest["chunk_hashes"]:
        raise PacketError(f"The weights of {manifest['name']!r} do not match their chunk hashes.")
    tensors = read_safetensors_bytes(data, f"weights of {manifest['name']!r}", copy=copy)
    config = AdapterConfig.from_mlx_dict(manifest["adapter"])
    exact_rank = manifest["format"] < WEIGHTS_FORMAT
    if manifest["dtype"] in QUANT_BITS:  # codes are integers; their scales are checked here
        packed = read_quantized(tensors, manifest["dtype"])
        validate_tensors(config, packed.placeholders(), check_values=False, exact_rank=False)
        return Adapter(config=config, tensors=packed, key=digest)
    dtypes = {array.dtype for array in tensors.values()}
    for dtype in dtypes:  # str(dtype) is slow: once per dtype, not per tensor
        if str(dtype) != manifest["dtype"]:
            name = next(n for n, a in tensors.items() if a.dtype == dtype)
            raise PacketError(f"The tensor {name} is {dtype}, not {manifest['dtype']}.")
    # one pass over all the values; tensor by tensor only to name a bad one
    finite = len(dtypes) == 1 and values_finite(data, dtypes.pop())
    validate_tensors(config, tensors, check_values=not finite, exact_rank=exact_rank)
    return Adapter(config=config, tensors=tensors, key=digest)


def build_manifest(
    adapter: Adapter,
    identity: Identity,
    *,
    name: str,
    domain: str,
    description: str,
    exemplars: Iterable[str],
    base_model_id: str,
    base_fingerprint: str,
    merged: bool = False,
    lineage: Iterable[str] = (),
    merge: Mapping[str, Any] | None = None,
    dtype: str = "float16",
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    created: int | None = None,
    notes: Iterable[Passage] | None = None,
) -> tuple[dict[str, Any], bytes, bytes]:
    """Serialise and sign a new packet; return (manifest, signature, weights bytes).

    A quantised adapter (its tensors a QuantizedTensors) is written as its stored codes and
    scales in its own dtype, whatever `dtype` says. The manifest has the lowest format that
    holds it, so older readers still read every packet they can: 1, 2 with `notes` (at least
    one passage), 3 when the weights are quantised or trimmed (with or without notes), 4
    with more than FORMAT3_EXEMPLARS exemplar questions or passages listing phrasings.
    Raises PacketError for a bad field or notes over the limits.
    """
    tensors = adapter.tensors
    if dtype in QUANT_BITS and not isinstance(tensors, QuantizedTensors):
        tensors = quantize_tensors(tensors, dtype)
    if isinstance(tensors, QuantizedTensors):
        validate_tensors(adapter.config, tensors.placeholders(), exact_rank=False)
        dtype, data = tensors.dtype, tensors.to_bytes()
    else:
        validate_tensors(adapter.config, tensors, exact_rank=False)
        data = tensors_to_bytes(tensors, dtype)
    compact = isinstance(tensors, QuantizedTensors) or is_trimmed(adapter)
    texts = packet_texts(description, exemplars)
    manifest: dict[str, Any] = {
        "format": WEIGHTS_FORMAT if compact else FORMAT_VERSION,
        "name": name.strip(),
        "domain": domain.strip(),
        "description": texts[0],
        "exemplars": texts[1],
        "base_model_id": base_model_id,
        "base_fingerprint": base_fingerprint,
        "adapter": adapter.config.to_mlx_dict(),
        "dtype": dtype,
        "weights_sha256": hashlib.sha256(data).hexdigest(),
        "weights_size": len(data),
        "chunk_size": chunk_size,
        "chunk_hashes": chunk_hashes(data, chunk_size),
        "created": int(time.time()) if created is None else created,
        "author_id": identity.device_id,
        "author_key": identity.public_key.hex(),
        "merged": merged,
        "lineage": list(lineage),
    }
    if merge is not None:
        manifest["merge"] = dict(merge)
    passages = list(notes or ())
    if passages:
        manifest["format"] = WEIGHTS_FORMAT if compact else NOTES_FORMAT
        manifest[NOTES_FIELD] = to_manifest_notes(passages)
    if len(texts[1]) > FORMAT3_EXEMPLARS or has_phrasings(passages):
        manifest["format"] = EXEMPLARS_FORMAT
    check_manifest(manifest)
    signature = identity.sign(SIGNING_CONTEXT + canonical_bytes(manifest))
    return manifest, signature, data


@dataclass(frozen=True)
class PacketFile:
    """A packet read from a one-file export: manifest, signature and weights bytes."""

    manifest: dict[str, Any]
    signature: bytes
    weights: bytes


def write_packet_file(
    out: IO[bytes], manifest: Mapping[str, Any], signature: bytes, weights: bytes
) -> None:
    """Write the one-file format: magic, u32 header length, msgpack header, weights."""
    header = msgpack.packb({"manifest": dict(manifest), "signature": signature}, use_bin_type=True)
    out.write(FILE_MAGIC + struct.pack(">BI", FORMAT_VERSION, len(header)))
    out.write(header)
    out.write(weights)


def packet_file_path(target: Path, name: str) -> Path:
    """Return where a packet named `name` is written for `target`: the file `target`, or
    NAME.fkpkt inside it when it is a folder (PacketError if the name would leave it)."""
    return inside(target, f"{name}.fkpkt") if target.is_dir() else target


def export_path(target: Path, name: str, replace: bool = False) -> Path:
    """Return where packet `name` is exported for `target` (see packet_file_path), before
    anything is read or written; PacketFileExists when a file is there and not `replace`.
    The one rule for `library export` and the Library screen."""
    path = packet_file_path(target, name)
    if path.is_file() and not replace:
        raise PacketFileExists(path)
    return path


def packet_files_in(folder: Path) -> list[Path]:
    """Return the packet files of a folder (a USB stick), sorted, as a shell's
    `FOLDER/*.fkpkt` lists them: without hidden ones such as macOS's ._NAME.fkpkt."""
    return sorted(f for f in folder.glob("*.fkpkt") if not f.name.startswith("."))


def save_packet_file(
    path: Path, manifest: Mapping[str, Any], signature: bytes, weights: bytes
) -> None:
    """Write the one-file format at `path` atomically (whole, or not at all)."""
    write_atomically(
        path, lambda out: write_packet_file(out, manifest, signature, weights), "packet file"
    )


def read_packet_file(path: Path) -> PacketFile:
    """Read and fully verify a packet file; raise PacketError with one sentence if bad."""
    raw = read_bounded(
        path, MAX_PACKET_SIZE + MAX_HEADER_SIZE, "packet file", "the 256 MiB packet limit"
    )
    prefix = len(FILE_MAGIC) + 5
    if len(raw) < prefix or not raw.startswith(FILE_MAGIC):
        raise PacketError(f"{path.name} is not a fieldkit packet file.")
    version, header_len = struct.unpack(">BI", raw[len(FILE_MAGIC) : prefix])
    if version != FORMAT_VERSION:
        raise PacketError(
            f"{path.name} has packet format {version}; this fieldkit reads {FORMAT_VERSION}."
        )
    if header_len > MAX_HEADER_SIZE or prefix + header_len > len(raw):
        raise PacketError(f"{path.name} is truncated or its header is damaged.")
    try:
        header = msgpack.unpackb(raw[prefix : prefix + header_len], raw=False, strict_map_key=True)
    except (ValueError, msgpack.UnpackException, TypeError) as exc:
        raise PacketError(f"{path.name} has a damaged header.") from exc
    if not isinstance(header, dict) or set(header) != {"manifest", "signature"}:
        raise PacketError(f"{path.name} has a damaged header.")
    manifest, signature = header["manifest"], header["signature"]
    verify_manifest(manifest, signature)
    weights = raw[prefix + header_len :]
    if len(weights) < manifest["weights_size"]:
        raise PacketError(f"{path.name} is truncated: its weights end early.")
    verify_weights(manifest, weights, copy=False)
    return PacketFile(manifest=manifest, signature=signature, weights=weights)


def adapter_from_file(path: Path, config: AdapterConfig) -> Adapter:
    """Read a safetensors file into a validated Adapter with the given config."""
    tensors = read_safetensors(path)
    validate_tensors(config, tensors)
    return Adapter(config=config, tensors=tensors)


def _is_hex(value: Any, length: int) -> bool:
    if not isinstance(value, str) or len(value) != length:
        return False
    try:
        bytes.fromhex(value)
    except ValueError:
        return False
    return True
