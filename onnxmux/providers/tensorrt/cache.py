"""On-disk caches of built TensorRT engines and timing caches: complete keys, atomic writes, checked reads.

A cache file holds a header (the key's fields and digest, the payload's length and SHA-256)
followed by the payload, so a file that is truncated, corrupt, or written for another key is
recognised before TensorRT is handed its bytes; such a file is reported with a warning and
rebuilt. Files are written to a temporary name in the same folder and renamed into place, so a
crash or a concurrent writer never leaves a half-written file under the final name.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import struct
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, TypeVar

from onnxmux.core.errors import ProviderError

MAGIC = b"ONNXMUXTRT1\n"
T = TypeVar("T")
_LENGTH = struct.Struct("<I")


@dataclass(frozen=True)
class GpuIdentity:
    """What makes an engine or timing cache valid on one machine: TensorRT's version and the GPU."""

    tensorrt_version: str
    gpu_name: str
    compute_capability: str


@dataclass(frozen=True)
class EngineKey:
    """Everything a built engine depends on; any field that changes gives another cache file.

    ``subgraph`` is the SHA-256 of the exported subgraph model (nodes, weights, types); ``shapes``
    each input's (min, opt, max) shapes; ``precision`` the fp16/bf16 flags; ``builder`` the
    workspace limit and optimization level.
    """

    subgraph: str
    shapes: tuple[tuple[str, tuple[int, ...], tuple[int, ...], tuple[int, ...]], ...]
    precision: tuple[tuple[str, bool], ...]
    builder: tuple[tuple[str, int], ...]
    gpu: GpuIdentity


def fields_of(key: Any) -> dict[str, Any]:
    """A key's fields as JSON-ready values."""
    return json.loads(json.dumps(dataclasses.asdict(key)))


def digest_of(key: Any) -> str:
    """The SHA-256 of a key's fields: the cache file's name."""
    return hashlib.sha256(json.dumps(fields_of(key), sort_keys=True).encode()).hexdigest()


class CorruptCacheFile(Exception):
    """A cache file that cannot be used as it is (truncated, damaged, or for another key)."""


class BlobCache:
    """Payloads stored in ``folder`` under their key's digest, one file per key."""

    def __init__(self, folder: str | os.PathLike, prefix: str, suffix: str) -> None:
        self.folder = Path(folder)
        self.prefix = prefix
        self.suffix = suffix

    def path(self, key: Any) -> Path:
        """Where ``key``'s payload lives."""
        return self.folder / f"{self.prefix}{digest_of(key)[:40]}{self.suffix}"

    def load(self, key: Any) -> bytes | None:
        """The payload stored for ``key``; None when there is none or the file is unusable (warned)."""
        path = self.path(key)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            self.warn(path, f"it cannot be read: {exc}")
            return None
        try:
            return unpack(data, digest_of(key))
        except CorruptCacheFile as exc:
            self.warn(path, str(exc))
            return None

    def store(self, key: Any, payload: bytes) -> Path:
        """Write ``payload`` for ``key`` atomically; returns the file's path."""
        path = self.path(key)
        atomic_write(path, pack(fields_of(key), digest_of(key), payload))
        return path

    @staticmethod
    def warn(path: Path, why: str) -> None:
        """Report a cache file that will be rebuilt."""
        warnings.warn(f"TensorRT cache file {path} is unusable ({why}); it is rebuilt", stacklevel=3)


def load_or_build(cache: BlobCache | None, key: Any, build: Callable[[], bytes], accept: Callable[[bytes], T]) -> T:
    """``accept`` of the cached payload when it is usable, else of a new one from ``build`` (stored when caching).

    A payload that ``accept`` refuses with ProviderError (TensorRT cannot deserialize it) is
    reported like a corrupt file and rebuilt.
    """
    if cache is not None:
        payload = cache.load(key)
        if payload is not None:
            try:
                return accept(payload)
            except ProviderError as exc:
                cache.warn(cache.path(key), f"it cannot be loaded: {exc}")
    payload = build()
    if cache is not None:
        cache.store(key, payload)
    return accept(payload)


def pack(fields: dict[str, Any], digest: str, payload: bytes) -> bytes:
    """Header and payload as one file's bytes."""
    header = json.dumps(
        {"key": fields, "digest": digest, "length": len(payload), "sha256": hashlib.sha256(payload).hexdigest()},
        sort_keys=True,
    ).encode()
    return MAGIC + _LENGTH.pack(len(header)) + header + payload


def unpack(data: bytes, digest: str) -> bytes:
    """The payload of a file's bytes, checked against ``digest``; raises CorruptCacheFile."""
    if not data.startswith(MAGIC):
        raise CorruptCacheFile("it does not start with onnxmux's cache header")
    start = len(MAGIC) + _LENGTH.size
    if len(data) < start:
        raise CorruptCacheFile("it is truncated inside its header")
    (size,) = _LENGTH.unpack_from(data, len(MAGIC))
    try:
        header = json.loads(data[start : start + size])
        length, checksum, stored = int(header["length"]), str(header["sha256"]), str(header["digest"])
    except (ValueError, KeyError, TypeError) as exc:
        raise CorruptCacheFile(f"its header is damaged: {exc}") from exc
    if stored != digest:
        raise CorruptCacheFile("it was written for another key")
    payload = data[start + size :]
    if len(payload) != length:
        raise CorruptCacheFile(f"it holds {len(payload)} payload bytes, its header says {length} (truncated?)")
    if hashlib.sha256(payload).hexdigest() != checksum:
        raise CorruptCacheFile("its payload does not match its checksum")
    return payload


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
