"""Walk an ``index.faiss`` file's structure before FAISS reads it.

FAISS trusts the sizes inside the file: one flipped bit in a vector length makes
``faiss.read_index`` ask for gigabytes (``std::bad_alloc``) or read past the end. This walker
follows the layout FAISS writes for the index kinds a store uses (``IndexPQ``, ``IndexFlatIP``,
``IndexScalarQuantizer`` and their IVF forms with a flat quantizer), checks every length against
the bytes left in the file and the shapes against the manifest, and raises ``StoreError``
naming the file on the first inconsistency. Only a file that passes reaches FAISS.
"""

from __future__ import annotations

import mmap
import struct
from pathlib import Path

import numpy as np

from indexing.errors import StoreError

FLAT_KINDS = {b"IxPq", b"IxFI", b"IxSQ"}
IVF_KINDS = {b"IwPQ", b"IwFl", b"IwSq", b"IwSQ"}


class _Bad(Exception):
    pass


class _Reader:
    def __init__(self, data: mmap.mmap | bytes) -> None:
        self.data, self.pos = data, 0

    def skip(self, n: int) -> int:
        """Step over ``n`` bytes; return where they start."""
        if n < 0 or n > len(self.data) - self.pos:
            raise _Bad(f"a field of {n} bytes at offset {self.pos} runs past the end ({len(self.data)} bytes)")
        self.pos += n
        return self.pos - n

    def take(self, n: int) -> bytes:
        at = self.skip(n)
        return self.data[at : at + n]

    def get(self, fmt: str) -> int | float:
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt)))[0]

    def vector(self, itemsize: int, expect: int | None = None) -> int:
        """Skip a length-prefixed vector (size_t count, then items); return its count."""
        n = int(self.get("Q"))
        if expect is not None and n != expect:
            raise _Bad(f"a vector at offset {self.pos - 8} holds {n} items, expected {expect}")
        self.skip(n * itemsize)
        return n


def check_index_file(file: Path, ntotal: int, d: int) -> None:
    """Raise StoreError unless ``file`` is a well-formed index of ``ntotal`` x ``d`` codes."""
    try:
        with open(file, "rb") as fh:
            if fh.seek(0, 2) == 0:
                raise _Bad("the file is empty")
            with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as data:
                r = _Reader(data)
                _index(r, ntotal, d, quantizer=False)
                if r.pos != len(r.data):
                    raise _Bad(f"{len(r.data) - r.pos} bytes after the end of the index")
    except _Bad as exc:
        raise StoreError(f"{file} is not a valid FAISS index for {ntotal} x {d} codes: {exc}") from exc
    except OSError as exc:
        raise StoreError(f"{file} cannot be read: {exc.strerror or exc}") from exc


def _index(r: _Reader, ntotal: int, d: int, quantizer: bool) -> None:
    kind = r.take(4)
    allowed = {b"IxFI"} if quantizer else FLAT_KINDS | IVF_KINDS
    if kind not in allowed:
        raise _Bad(f"index kind {kind!r} is not one a store writes")
    got_d, got_n = int(r.get("i")), int(r.get("q"))
    r.skip(16 + 1)  # two unused int64, is_trained
    if int(r.get("i")) not in (0, 1):  # metric type; a metric argument follows only for the exotic ones
        raise _Bad("metric type is not inner product or L2")
    if got_d != d or (ntotal >= 0 and got_n != ntotal):
        raise _Bad(f"it says {got_n} x {got_d}")
    if kind == b"IxFI":
        r.vector(4, got_n * d)  # float32 vectors
    elif kind == b"IxPq":
        code_size = _pq(r, d)
        r.vector(1, got_n * code_size)
        r.skip(4 + 1 + 4)  # search_type, encode_signs, polysemous_ht
    elif kind == b"IxSQ":
        code_size = _sq(r, d)
        r.vector(1, got_n * code_size)
    else:
        _ivf(r, kind, got_n, d)


def _pq(r: _Reader, d: int) -> int:
    pd, m, nbits = (int(r.get("Q")) for _ in range(3))
    if pd != d or m < 1 or d % m or not 1 <= nbits <= 16:
        raise _Bad(f"product quantizer d={pd} M={m} nbits={nbits} does not fit d={d}")
    r.vector(4, d * (1 << nbits))  # centroids: M x 2^nbits x (d / M) floats
    return (m * nbits + 7) // 8


def _sq(r: _Reader, d: int) -> int:
    qtype = int(r.get("i"))
    r.skip(4 + 4)  # rangestat, rangestat_arg
    sd, code_size = int(r.get("Q")), int(r.get("Q"))
    expected = {0: d, 4: 2 * d}.get(qtype)  # QT_8bit (sq8), QT_fp16 (float16): the two a store writes
    if sd != d or expected is None or code_size != expected:
        raise _Bad(f"scalar quantizer type {qtype}, d={sd}, code size {code_size} does not fit d={d}")
    r.vector(4)  # trained ranges
    return code_size


def _ivf(r: _Reader, kind: bytes, ntotal: int, d: int) -> None:
    nlist = int(r.get("Q"))
    r.skip(8)  # nprobe
    if nlist < 1 or nlist * d * 4 > len(r.data):  # the quantizer holds nlist float32 centroids
        raise _Bad(f"nlist={nlist} does not fit in the file")
    _index(r, nlist, d, quantizer=True)  # the coarse quantizer: nlist centroids
    direct_map = int(r.get("b"))
    if direct_map != 0:
        raise _Bad("an IVF index of a store has no direct map")
    r.vector(8, 0)
    if kind == b"IwPQ":
        r.skip(1)  # by_residual
        code_size = int(r.get("Q"))
        if code_size != _pq(r, d):
            raise _Bad(f"code size {code_size} does not match the product quantizer")
    elif kind == b"IwFl":
        code_size = 4 * d
    else:
        code_size = _sq(r, d)
        if int(r.get("Q")) != code_size:
            raise _Bad("code size does not match the scalar quantizer")
        if kind == b"IwSq":
            r.skip(1)  # by_residual
    _inverted_lists(r, nlist, code_size, ntotal)


def _inverted_lists(r: _Reader, nlist: int, code_size: int, ntotal: int) -> None:
    if r.take(4) != b"ilar" or int(r.get("Q")) != nlist or int(r.get("Q")) != code_size:
        raise _Bad("inverted lists are not the array lists of this index")
    layout, start = r.take(4), r.pos + 8
    if layout == b"full":  # one size per list
        r.vector(8, nlist)
        sizes = list(struct.unpack(f"<{nlist}Q", r.data[start : r.pos]))
    elif layout == b"sprs":  # (list, size) pairs of the non-empty lists
        pairs = r.vector(8)
        flat = struct.unpack(f"<{pairs}Q", r.data[start : r.pos])
        sizes = [0] * nlist
        if pairs % 2 or any(i >= nlist for i in flat[::2]):
            raise _Bad("sparse inverted list sizes name lists that do not exist")
        for i, n in zip(flat[::2], flat[1::2]):
            sizes[i] = n
    else:
        raise _Bad(f"inverted list layout {layout!r} is unknown")
    if sum(sizes) != ntotal:
        raise _Bad(f"inverted lists hold {sum(sizes)} vectors, expected {ntotal}")
    for n in sizes:
        r.skip(n * code_size)
        if n and not _ids_in_range(r.data, r.skip(8 * n), n, ntotal):
            raise _Bad(f"an inverted list names rows outside 0..{ntotal - 1}")


def _ids_in_range(data: mmap.mmap | bytes, at: int, n: int, ntotal: int) -> bool:
    ids = np.frombuffer(data, np.int64, n, at)  # (n,) the row of each code; a view that dies here
    return bool(ids.min() >= 0 and ids.max() < ntotal)
