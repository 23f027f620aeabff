"""Exact maps from keys to dense row numbers, held in sorted numpy arrays: the live state's lookups.

A Python dict of string keys costs about 150 bytes a key before the key's own string object; at a bank's
scale (millions of customer-merchant pairs) that is most of the driver's memory. Here a key costs 16
bytes (key and row), and looking up a chunk's 10,000 keys is one `searchsorted`.

Keys are int64: a pair's merchant code and customer code in one number, or a string's 64-bit hash (an
`Interner` holds the strings themselves once, as UTF-8 bytes NUL-padded to the longest, and compares
them on every hit, so a hash collision costs a dict entry, never a wrong row). New keys go to a small
sorted run that is merged into the main one once it holds an eighth of it, so adding a key costs a
constant number of copies on average, not a copy of the whole index.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

_MIN_RUN = 4096  # the recent run is merged into the main one past max(this, main / 8) keys


def combined(col: pa.Array | pa.ChunkedArray) -> pa.Array:
    """One array from a column of any number of chunks."""
    if isinstance(col, pa.ChunkedArray):
        return col.combine_chunks() if col.num_chunks else pa.array([], col.type)
    return col


def pair_keys(merchants: np.ndarray, customers: np.ndarray) -> np.ndarray:
    """One int64 per (merchant code, customer code), both below 2**31."""
    return (merchants.astype(np.int64) << 32) | customers.astype(np.int64)


def utf8_bytes(col: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A string column (no nulls) as a numpy array of fixed-width bytes, without a Python object per value."""
    col = combined(col)
    if col.type != pa.string():
        col = col.cast(pa.string())
    n = len(col)
    if n == 0:
        return np.empty(0, dtype="S1")
    offsets = np.frombuffer(col.buffers()[1], dtype=np.int32)[col.offset:col.offset + n + 1]
    lengths = np.diff(offsets)
    width = max(1, int(lengths.max()))
    data = np.frombuffer(col.buffers()[2], dtype=np.uint8) if col.buffers()[2] is not None else np.empty(0, np.uint8)
    out = np.zeros((n, width), dtype=np.uint8)
    if len(data):
        starts = offsets[:-1].astype(np.int64)
        for j in range(width):  # one gather per byte position, not one Python step per string
            column = data[np.minimum(starts + j, len(data) - 1)]
            column[lengths <= j] = 0
            out[:, j] = column
    return out.view(f"S{width}").ravel()


def to_arrow(values: np.ndarray) -> pa.Array:
    """Fixed-width bytes back to an Arrow string column."""
    return pa.array(values.tolist(), pa.binary()).cast(pa.string())


def _widest(a: np.dtype, b: np.dtype) -> np.dtype:
    return a if a.itemsize >= b.itemsize else b


def _merge(keys: np.ndarray, rows: np.ndarray, new_keys: np.ndarray, new_rows: np.ndarray
           ) -> tuple[np.ndarray, np.ndarray]:
    """Two sorted runs as one sorted run (the new keys are not in the first)."""
    at = np.searchsorted(keys, new_keys)
    return np.insert(keys, at, new_keys), np.insert(rows, at, new_rows)


class KeyIndex:
    """key -> row; rows are numbered 0, 1, 2, ... in the order keys were added unless given."""

    def __init__(self) -> None:
        self.size = 0
        self._runs = [(np.empty(0, np.int64), np.empty(0, np.int64)) for _ in range(2)]  # main, recent

    @property
    def nbytes(self) -> int:
        return sum(k.nbytes + r.nbytes for k, r in self._runs)

    def find(self, keys: np.ndarray) -> np.ndarray:
        """The row of each key, -1 where it is not in the index."""
        keys = keys.astype(np.int64, copy=False)
        found = np.full(len(keys), -1, dtype=np.int64)
        for run_keys, run_rows in self._runs:
            if not len(run_keys):
                continue
            at = np.minimum(np.searchsorted(run_keys, keys), len(run_keys) - 1)
            hit = run_keys[at] == keys
            found[hit] = run_rows[at[hit]]
        return found

    def add(self, keys: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        """Keys that are not in the index yet (distinct), with their rows: by default the next `len(keys)`
        numbers."""
        keys = keys.astype(np.int64, copy=False)
        if rows is None:
            rows = np.arange(self.size, self.size + len(keys), dtype=np.int64)
        self.size += len(keys)
        order = np.argsort(keys, kind="stable")
        (main_k, main_r), (new_k, new_r) = self._runs
        new_k, new_r = _merge(new_k, new_r, keys[order], rows[order])
        if len(new_k) > max(_MIN_RUN, len(main_k) // 8):
            main_k, main_r = _merge(main_k, main_r, new_k, new_r)
            new_k, new_r = new_k[:0], new_r[:0]
        self._runs = [(main_k, main_r), (new_k, new_r)]
        return rows


def hash64(values: np.ndarray) -> np.ndarray:
    """A 64-bit hash of fixed-width bytes, vectorised over 8-byte words. NUL padding does not change it (a
    zero word is skipped), so an id hashes the same at any width. Not unique: `Interner` checks the bytes."""
    width = values.dtype.itemsize
    matrix = values.view(np.uint8).reshape(len(values), width)
    if width % 8:
        matrix = np.pad(matrix, ((0, 0), (0, 8 - width % 8)))
    words = np.ascontiguousarray(matrix).view(np.uint64)
    h = np.full(len(values), 0x9E3779B97F4A7C15, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for j in range(words.shape[1]):
            mixed = (h ^ words[:, j]) * np.uint64(0xFF51AFD7ED558CCD)
            mixed ^= mixed >> np.uint64(33)
            h = np.where(words[:, j] != 0, mixed, h)
    return h.view(np.int64)


class Interner:
    """Strings <-> dense codes: each distinct string is held once (as fixed-width bytes), a row holds its code.

    Strings are found by a 64-bit hash in a KeyIndex, and the bytes behind a hit are compared, so the map is
    exact. A string whose hash an earlier string already holds (about one in 10^6 at ten million strings)
    keeps its code in a small dict instead."""

    def __init__(self) -> None:
        self.index = KeyIndex()
        self.size = 0
        self._values = np.empty(16, dtype="S1")
        self._spilled: dict[bytes, int] = {}

    @property
    def nbytes(self) -> int:
        return self.index.nbytes + self._values.nbytes

    def codes(self, col: pa.Array | pa.ChunkedArray | np.ndarray) -> np.ndarray:
        """The code of each string (new strings get new codes)."""
        values = col if isinstance(col, np.ndarray) else utf8_bytes(col)
        hashes = hash64(values)
        distinct, first, inverse = np.unique(hashes, return_index=True, return_inverse=True)
        inverse = inverse.reshape(-1)
        held = values[first]  # the string each distinct hash stands for in this batch
        found = self.index.find(distinct)
        new = found < 0
        if new.any():
            found[new] = self._new(held[new], distinct[new])
        codes = found[inverse]
        # Exact: a row whose bytes are not the bytes its code holds shares its hash with another string.
        odd = np.flatnonzero(self._values[codes] != values)
        for i in odd.tolist():
            codes[i] = self._spill(bytes(values[i]), values[i:i + 1])
        return codes

    def find(self, col: pa.Array | pa.ChunkedArray | np.ndarray) -> np.ndarray:
        """The code of each string, -1 where it has none (nothing is added)."""
        values = col if isinstance(col, np.ndarray) else utf8_bytes(col)
        codes = self.index.find(hash64(values))
        for i in np.flatnonzero((codes >= 0) & (self._values[np.maximum(codes, 0)] != values)).tolist():
            codes[i] = self._spilled.get(bytes(values[i]), -1)
        return codes

    def _new(self, values: np.ndarray, hashes: np.ndarray | None) -> np.ndarray:
        codes = np.arange(self.size, self.size + len(values), dtype=np.int64)
        self.size += len(values)
        if hashes is not None:
            self.index.add(hashes, codes)
        self._store(codes, values)
        return codes

    def _spill(self, key: bytes, value: np.ndarray) -> int:
        code = self._spilled.get(key)
        if code is None:
            code = self._spilled[key] = int(self._new(value, None)[0])
        return code

    def _store(self, codes: np.ndarray, values: np.ndarray) -> None:
        dtype = _widest(self._values.dtype, values.dtype)
        if self.size > len(self._values) or dtype != self._values.dtype:
            grown = np.zeros(max(self.size, 2 * len(self._values)), dtype=dtype)
            grown[:len(self._values)] = self._values
            self._values = grown
        self._values[codes] = values

    def values(self, codes: np.ndarray) -> np.ndarray:
        """The strings of codes, as fixed-width bytes."""
        return self._values[codes]
