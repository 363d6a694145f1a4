"""The first-stage FAISS index over reduced vectors, in float8 or a comparison dtype.

FAISS has no float8 type. A float8 vector of p dims is stored as an ``IndexPQ`` with p
sub-quantizers of one dimension and 256 centroids each, whose codebook is exactly the 256
float8 values times that dimension's scale. The PQ code of a vector is then its float8 bit
pattern, byte for byte, so ``index.faiss`` is a plain FAISS index whose own search gives exact
float8 inner products, and IVF (``IndexIVFPQ`` with ``by_residual=False``) reuses the same
codebook. FAISS's PQ scan does one table lookup per byte, so flat search runs the C kernel of
``indexing/float8_scan.py`` over the same code buffer instead (4-6x faster, SQ8 speed per byte).
"""

from __future__ import annotations

import math

import numpy as np

from indexing.compress import BYTES_PER_DIM, CODE_DTYPES, Float8Codec
from indexing.errors import ConfigError

ANN_KINDS = ("flat", "ivf", "auto")
INDEX_CODES = {"float8": "FP8E4M3", "float16": "SQfp16", "float32": "Flat", "sq8": "SQ8"}  # manifest index_key parts
# auto -> IVF from this size. The flat float8 kernel scans 1M x 96 codes in ~3.5 ms on 2 cores,
# ~12x faster per byte than the PQ table scan FAISS's IVF uses, so IVF only wins where it probes
# under ~1/12 of the lists; on the 1M benchmark that costs recall (bench/README.md). Flat stays
# the default until a scan nears ~35 ms per query (10M chunks); --ann ivf opts in earlier.
IVF_MIN_VECTORS = 10_000_000


def choose_ann(ann: str, n: int) -> str:
    """Resolve ``auto``: flat for small stores, IVF once a scan would cost more than its recall."""
    if ann not in ANN_KINDS:
        raise ConfigError(f"ann={ann!r} is not one of {', '.join(ANN_KINDS)}")
    if ann == "auto":
        return "ivf" if n >= IVF_MIN_VECTORS else "flat"
    return ann


def default_nlist(n: int) -> int:
    """About 4 * sqrt(n) inverted lists (the usual FAISS rule), at least 1."""
    return max(1, int(4 * math.sqrt(max(n, 1))))


def new_index(
    xr: np.ndarray,
    dtype: str = "float8",
    ann: str = "flat",
    codec: Float8Codec | None = None,
    nlist: int | None = None,
    seed: int = 0,
):  # type: ignore[no-untyped-def]
    """An empty, trained index for reduced vectors like ``xr``: (n, p) float32 (training data)."""
    import faiss

    if dtype not in CODE_DTYPES:
        raise ConfigError(f"dtype={dtype!r} is not one of {', '.join(CODE_DTYPES)}")
    ann = choose_ann(ann, len(xr))
    p = xr.shape[1]
    ip = faiss.METRIC_INNER_PRODUCT
    quantizer = None
    if ann == "ivf":
        nlist = min(nlist or default_nlist(len(xr)), max(1, len(xr) // 39))  # FAISS wants >= 39 points a list
        quantizer = faiss.IndexFlatIP(p)
    if dtype == "float8":
        if codec is None:
            raise ConfigError("a float8 index needs the Float8Codec fitted on the corpus")
        if quantizer is None:
            index = faiss.IndexPQ(p, p, 8, ip)
        else:
            index = faiss.IndexIVFPQ(quantizer, p, nlist, p, 8, ip)
            index.by_residual = False
        faiss.copy_array_to_vector(codec.table().ravel(), index.pq.centroids)  # (p, 256, dsub=1)
        index.is_trained = quantizer is None
    elif dtype == "float32":
        index = faiss.IndexFlatIP(p) if quantizer is None else faiss.IndexIVFFlat(quantizer, p, nlist, ip)
    else:
        qtype = faiss.ScalarQuantizer.QT_fp16 if dtype == "float16" else faiss.ScalarQuantizer.QT_8bit
        if quantizer is None:
            index = faiss.IndexScalarQuantizer(p, qtype, ip)
            index.train(np.ascontiguousarray(xr, np.float32))
        else:
            index = faiss.IndexIVFScalarQuantizer(quantizer, p, nlist, qtype, ip, False)
    if quantizer is not None:
        _train_coarse(index, quantizer, xr, nlist, seed)
        if dtype == "sq8":
            index.sq.train(np.ascontiguousarray(xr, np.float32))
        index.is_trained = True
    return index


def _train_coarse(index, quantizer, xr: np.ndarray, nlist: int, seed: int) -> None:  # type: ignore[no-untyped-def]
    import faiss

    sample = xr if len(xr) <= nlist * 256 else xr[np.random.default_rng(seed).choice(len(xr), nlist * 256, replace=False)]
    km = faiss.Kmeans(xr.shape[1], nlist, niter=20, spherical=True, seed=seed, verbose=False)
    km.train(np.ascontiguousarray(sample, np.float32))
    quantizer.add(km.centroids)
    index.nprobe = max(1, nlist // 4)  # bench/results/scale_1000000.json: nlist/16 kept recall 0.79


def to_ivf(index, dtype: str, codec: Float8Codec | None, nlist: int | None = None, batch: int = 65_536, seed: int = 0):  # type: ignore[no-untyped-def]
    """The same codes in an IVF index (coarse quantizer trained on a sample of them)."""
    n = index.ntotal
    nlist = nlist or default_nlist(n)
    rng = np.random.default_rng(seed)
    sample_rows = np.sort(rng.choice(n, min(n, nlist * 64), replace=False)).astype(np.int64)
    sample = reduced_vectors(index, sample_rows)  # (s, p)
    ivf = new_index(sample, dtype, "ivf", codec=codec, nlist=nlist, seed=seed)
    for i0 in range(0, n, batch):
        add_vectors(ivf, index.reconstruct_n(i0, min(batch, n - i0)), codec)
    return ivf


def add_vectors(index, xr: np.ndarray, codec: Float8Codec | None = None) -> None:  # type: ignore[no-untyped-def]
    """Append reduced vectors (n, p). ``codec`` is used by float8 indexes only (others ignore it):
    flat float8 takes the codec's bytes directly."""
    import faiss

    xr = np.ascontiguousarray(xr, np.float32)
    if codec is not None and isinstance(index, faiss.IndexPQ):
        index.add_sa_codes(codec.encode(xr))
    elif codec is not None and isinstance(index, faiss.IndexIVFPQ):
        index.add(codec.decode(codec.encode(xr)))  # values on the float8 grid encode to themselves
    else:
        index.add(xr)


def reduced_vectors(index, rows: np.ndarray | None = None) -> np.ndarray:  # type: ignore[no-untyped-def]
    """The decoded vectors held by ``index`` at ``rows`` (m,), or all in insertion order: (m, p) float32."""
    import faiss

    rows = np.arange(index.ntotal, dtype=np.int64) if rows is None else np.asarray(rows, np.int64)
    if not len(rows):
        return np.zeros((0, index.d), np.float32)
    if isinstance(index, faiss.IndexIVF):
        index.make_direct_map()
    if rows[-1] - rows[0] + 1 == len(rows):  # a contiguous run: one call
        return index.reconstruct_n(int(rows[0]), len(rows))
    return index.reconstruct_batch(np.ascontiguousarray(rows))


def code_bytes(index) -> int:  # type: ignore[no-untyped-def]
    """Bytes one vector costs in the first-stage index: its code, plus its 8-byte id in an IVF list."""
    import faiss

    if isinstance(index, faiss.IndexIVF):
        return int(index.code_size) + 8
    return int(index.sa_code_size())


def expected_code_bytes(dtype: str, p: int) -> int:
    return BYTES_PER_DIM[dtype] * p
