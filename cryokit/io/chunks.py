"""Reading one zarr array chunk by chunk, so that a missing or damaged chunk is an error naming it.

zarr itself returns the fill value for a chunk file that is missing (a store copied in part, a file
deleted) and a codec traceback that names no file for one that does not decompress. A tomogram is
never legitimately sparse, so ``ChunkedArray`` reads every chunk a region touches from its file, decodes
it with the array's numcodecs codecs and raises ``ValueError`` naming the store, the level and the chunk.

Both array formats are read, whichever zarr is installed: zarr 2 (``.zarray``: compressor, filters,
``dimension_separator``) and zarr 3 (``zarr.json``: the ``bytes`` and ``transpose`` codecs, then
``blosc``, ``zstd``, ``gzip`` or ``crc32c``; ``default`` or ``v2`` chunk keys; not sharding).
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numcodecs
import numpy as np
from numcodecs.compat import ensure_ndarray

__all__ = ["ChunkedArray", "open_chunked_array"]

_V3_TYPES = {
    "bool": "b1",
    "int8": "i1",
    "int16": "i2",
    "int32": "i4",
    "int64": "i8",
    "uint8": "u1",
    "uint16": "u2",
    "uint32": "u4",
    "uint64": "u8",
    "float16": "f2",
    "float32": "f4",
    "float64": "f8",
}


@dataclass(frozen=True)
class ChunkedArray:
    """A read-only zarr array read chunk by chunk; index it with (z, y, x) slices or ``...``.

    Attributes:
        folder: the array's folder (``STORE/LEVEL``). where: "tomogram STORE level N" for messages.
        shape, chunks: array and chunk shapes. dtype: the stored type.
        chunk_key: chunk index -> file path relative to ``folder``. decode: file bytes -> chunk array.
    """

    folder: Path
    where: str
    shape: tuple[int, ...]
    chunks: tuple[int, ...]
    dtype: np.dtype
    chunk_key: Callable[[tuple[int, ...]], str]
    decode: Callable[[bytes], np.ndarray]

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __getitem__(self, key: Any) -> np.ndarray:
        bounds, steps = self._bounds(key)
        out = np.empty([stop - start for start, stop in bounds], dtype=self.dtype)
        ranges = [range(start // c, -(-stop // c)) for (start, stop), c in zip(bounds, self.chunks)]
        indices = list(itertools.product(*ranges))
        for index in indices:
            try:
                raw = (self.folder / self.chunk_key(index)).read_bytes()
            except FileNotFoundError:
                missing = [i for i in indices if not (self.folder / self.chunk_key(i)).is_file()]
                raise ValueError(
                    f"{self.where}: chunk {self.chunk_key(index)} (index {index}) is missing "
                    f"({len(missing)} of the {len(indices)} chunks this read needs are): the store is incomplete"
                ) from None
            chunk = self._chunk(index, raw)
            origin = [i * c for i, c in zip(index, self.chunks)]
            source, target = [], []
            for (start, stop), o, c in zip(bounds, origin, self.chunks):
                low, high = max(start, o), min(stop, o + c)
                source.append(slice(low - o, high - o))
                target.append(slice(low - start, high - start))
            out[tuple(target)] = chunk[tuple(source)]
        return out[tuple(slice(None, None, s) for s in steps)]

    def _bounds(self, key: Any) -> tuple[list[tuple[int, int]], list[int]]:
        if key is Ellipsis or key is None:
            key = ()
        key = key if isinstance(key, tuple) else (key,)
        if len(key) > self.ndim or not all(isinstance(k, slice) for k in key):
            raise IndexError(f"{self.where}: index with up to {self.ndim} slices, got {key!r}")
        key = key + (slice(None),) * (self.ndim - len(key))
        bounds, steps = [], []
        for k, n in zip(key, self.shape):
            start, stop, step = k.indices(n)
            if step < 1:
                raise IndexError(f"{self.where}: slices must step forwards, got {k!r}")
            bounds.append((start, max(start, stop)))
            steps.append(step)
        return bounds, steps

    def _chunk(self, index: tuple[int, ...], raw: bytes) -> np.ndarray:
        key = self.chunk_key(index)
        try:
            data = self.decode(raw)
            return data.reshape(self.chunks) if data.shape != self.chunks else data
        except Exception as error:  # codecs raise many types for truncated or random bytes
            raise ValueError(
                f"{self.where}: chunk {key} (index {index}) cannot be decoded ({type(error).__name__}: {error})"
            ) from None


def _checked(codec: Any) -> Callable[[Any], Any]:
    """``codec.decode``, refusing a blosc frame whose length differs from its header's: blosc decodes a
    truncated frame without complaint (reading past its end)."""
    if getattr(codec, "codec_id", "") != "blosc":
        return codec.decode

    def decode(raw: Any) -> Any:
        raw = raw if isinstance(raw, bytes) else bytes(ensure_ndarray(raw))
        expected = int.from_bytes(raw[12:16], "little") if len(raw) >= 16 else -1
        if expected != len(raw):
            raise ValueError(f"blosc frame of {len(raw)} bytes, its header says {expected}: truncated or not blosc")
        return codec.decode(raw)

    return decode


def _v2(folder: Path, meta: dict, where: str) -> ChunkedArray:
    dtype, chunks = np.dtype(meta["dtype"]), tuple(int(c) for c in meta["chunks"])
    compressor = _checked(numcodecs.get_codec(meta["compressor"])) if meta.get("compressor") else None
    filters = [numcodecs.get_codec(f) for f in meta.get("filters") or []]
    order, separator = meta.get("order", "C"), meta.get("dimension_separator") or "."

    def decode(raw: bytes) -> np.ndarray:
        data = compressor(raw) if compressor is not None else raw
        for codec in reversed(filters):
            data = codec.decode(data)
        flat = ensure_ndarray(data).view(dtype).reshape(-1)
        if flat.size != int(np.prod(chunks)):
            raise ValueError(f"{flat.size} values where a chunk holds {int(np.prod(chunks))}")
        return flat.reshape(chunks, order=order)

    return ChunkedArray(
        folder, where, tuple(meta["shape"]), chunks, dtype, lambda i: separator.join(map(str, i)) or "0", decode
    )


def _v3(folder: Path, meta: dict, where: str) -> ChunkedArray:
    grid = meta.get("chunk_grid", {})
    if grid.get("name") != "regular":
        raise ValueError(f"{where}: chunk grid {grid.get('name')!r} is not supported (only 'regular')")
    chunks = tuple(int(c) for c in grid["configuration"]["chunk_shape"])
    if meta.get("data_type") not in _V3_TYPES:
        raise ValueError(f"{where}: data type {meta.get('data_type')!r} is not supported")
    encoding = meta.get("chunk_key_encoding", {"name": "default"})
    separator = encoding.get("configuration", {}).get("separator", "/" if encoding["name"] == "default" else ".")
    if encoding["name"] == "default":
        chunk_key = lambda i: separator.join(["c", *map(str, i)])  # noqa: E731
    else:
        chunk_key = lambda i: separator.join(map(str, i)) or "0"  # noqa: E731
    endian, transpose, byte_codecs = "<", None, []
    for codec in meta.get("codecs", []):
        name, config = codec["name"], codec.get("configuration", {})
        if name == "bytes":
            endian = {"little": "<", "big": ">"}.get(config.get("endian", "little"), "<")
        elif name == "transpose":
            transpose = tuple(config["order"])
        elif name in ("blosc", "zstd", "gzip"):
            byte_codecs.append(_checked(numcodecs.get_codec({"id": name})))
        elif name == "crc32c":
            byte_codecs.append(None)
        else:
            raise ValueError(f"{where}: zarr 3 codec {name!r} is not supported (sharding and {name} stores are not)")
    dtype = np.dtype(endian + _V3_TYPES[meta["data_type"]])
    stored_shape = tuple(chunks[a] for a in transpose) if transpose else chunks

    def decode(raw: bytes) -> np.ndarray:
        data: Any = raw
        for codec in reversed(byte_codecs):
            data = bytes(ensure_ndarray(data))[:-4] if codec is None else codec(data)
        flat = ensure_ndarray(data).view(dtype).reshape(-1)
        if flat.size != int(np.prod(chunks)):
            raise ValueError(f"{flat.size} values where a chunk holds {int(np.prod(chunks))}")
        array = flat.reshape(stored_shape)
        return np.transpose(array, np.argsort(transpose)) if transpose else array

    return ChunkedArray(folder, where, tuple(meta["shape"]), chunks, dtype, chunk_key, decode)


def open_chunked_array(folder: str | Path, where: str) -> ChunkedArray:
    """The zarr 2 (``.zarray``) or zarr 3 (``zarr.json``) array in ``folder``; ``where`` prefixes errors."""
    folder = Path(folder)
    for name, build in ((".zarray", _v2), ("zarr.json", _v3)):
        if (folder / name).is_file():
            try:
                meta = json.loads((folder / name).read_text())
                if name == "zarr.json" and meta.get("node_type") != "array":
                    raise ValueError(f"node_type is {meta.get('node_type')!r}, not 'array'")
                return build(folder, meta, where)
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
                if isinstance(error, ValueError) and str(error).startswith(where):
                    raise
                raise ValueError(f"{where}: {folder / name} is not readable zarr metadata ({error!r})") from None
    raise FileNotFoundError(f"{where}: {folder} holds no zarr array (neither .zarray nor zarr.json)")
