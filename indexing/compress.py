"""Compression: uncentered PCA to fewer dimensions, and per-dimension scaled float8 (e4m3) codes.

Why uncentered: the retriever ranks by inner product. Centered PCA (FAISS ``PCAMatrix``)
subtracts the corpus mean, which shifts every score by ``q . mean`` and, once dimensions are
dropped, changes the ranking. Projecting onto the top eigenvectors of the second-moment matrix
``X^T X`` keeps ``q . x`` as close as a rank-p projection can.
"""

from __future__ import annotations

from dataclasses import dataclass

import ml_dtypes
import numpy as np

from indexing.errors import ConfigError

FLOAT8 = ml_dtypes.float8_e4m3fn
FLOAT8_MAX = 448.0  # largest finite e4m3fn value; larger inputs would become NaN
CODE_DTYPES = ("float8", "float16", "float32", "sq8")
BYTES_PER_DIM = {"float8": 1, "float16": 2, "float32": 4, "sq8": 1}

# Every one of the 256 float8 bit patterns decoded once. Our float8 is e4m3fn flushed to zero:
# encode() never writes subnormals (exponent bits 0) nor the NaN patterns (0x7f, 0xff), and
# those decode to 0 here, as in the C scan kernel (indexing/_float8scan.c), so a corrupt byte
# cannot poison a score.
_ALL_CODES = np.arange(256, dtype=np.uint8)
FLOAT8_VALUES = np.where(
    (_ALL_CODES & 0x78) == 0, 0.0, np.nan_to_num(_ALL_CODES.view(FLOAT8).astype(np.float32), nan=0.0)
).astype(np.float32)


def default_pca_dims(d: int) -> int:
    """Reduced dimensions when none are asked for: a quarter (16x smaller with float8)."""
    return max(1, d // 4)


@dataclass(frozen=True)
class Pca:
    """An orthonormal projection ``x @ components``; ``energy`` is the share of E[x_j^2] kept per axis."""

    components: np.ndarray  # (d, p) float32, orthonormal columns
    energy: np.ndarray  # (p,) float32, sums to the fraction of second-moment energy kept

    @property
    def dims(self) -> int:
        return int(self.components.shape[1])

    def transform(self, x: np.ndarray) -> np.ndarray:
        """x: (n, d) -> (n, p) float32."""
        return np.asarray(x, np.float32) @ self.components


def identity_pca(d: int) -> Pca:
    """No reduction: the projection that keeps all ``d`` dimensions."""
    return Pca(np.eye(d, dtype=np.float32), np.full(d, 1.0 / d, np.float32))


def fit_pca(
    x: np.ndarray,
    dims: int | None = None,
    variance: float | None = None,
    max_samples: int = 100_000,
    seed: int = 0,
) -> Pca:
    """Fit an uncentered PCA on (a capped random sample of) ``x``: (n, d).

    Give ``dims`` (number of axes kept) or ``variance`` (smallest number of axes keeping that
    share of the second-moment energy); with neither, all dimensions are kept.
    """
    if dims is not None and variance is not None:
        raise ConfigError("give either pca_dims or pca_variance, not both")
    x = np.asarray(x, np.float32)
    n, d = x.shape
    if n == 0:
        raise ConfigError("cannot fit PCA on zero vectors: index at least one document first")
    if dims is not None and not 1 <= dims <= d:
        raise ConfigError(f"pca_dims={dims} must be between 1 and the embedding dimension {d}")
    if variance is not None and not 0.0 < variance <= 1.0:
        raise ConfigError(f"pca_variance={variance} must be in (0, 1]")
    if n > max_samples:
        x = x[np.random.default_rng(seed).choice(n, max_samples, replace=False)]
    moment = np.zeros((d, d), np.float64)  # accumulated in blocks: no float64 copy of the sample
    for i0 in range(0, len(x), 8192):
        block = x[i0 : i0 + 8192].astype(np.float64)  # (b, d)
        moment += block.T @ block
    moment /= len(x)
    eigval, eigvec = np.linalg.eigh(moment)  # ascending
    order = np.argsort(eigval)[::-1]
    eigval = np.clip(eigval[order], 0.0, None)
    eigvec = eigvec[:, order]
    share = eigval / max(eigval.sum(), 1e-30)
    if variance is not None:
        dims = int(np.searchsorted(np.cumsum(share), variance - 1e-9) + 1)
    p = min(dims or d, d)
    return Pca(eigvec[:, :p].astype(np.float32), share[:p].astype(np.float32))


@dataclass(frozen=True)
class Float8Codec:
    """Per-dimension scaled float8 e4m3: ``code = e4m3(x / scale)``, ``x ~ value(code) * scale``.

    The scale maps each dimension's largest magnitude (times ``headroom``, for vectors added
    later) to 448, so values use the format's normal range instead of falling into
    subnormals, where a plain cast of small embedding coordinates loses most of its precision.
    """

    scale: np.ndarray  # (d,) float32

    @classmethod
    def fit(cls, x: np.ndarray, headroom: float = 2.0, bound: float | None = 1.0) -> Float8Codec:
        """x: (n, d). ``bound`` caps the range: unit vectors (and their projections) never exceed 1."""
        peak = np.abs(np.asarray(x, np.float32)).max(axis=0) * headroom  # (d,)
        if bound is not None:
            peak = np.minimum(peak, bound)
        return cls((np.maximum(peak, 1e-6) / FLOAT8_MAX).astype(np.float32))

    @classmethod
    def for_unit_vectors(cls, d: int) -> Float8Codec:
        """One scale for every dimension, 1/448: coordinates of unit vectors (and of their
        orthonormal projections) never exceed 1, so nothing is ever clipped, however the corpus
        grows, and every coordinate above ~3.5e-5 stays in float8's normal range, where the
        relative error is at most 1/16. A data-fitted scale would buy nothing more here (float
        precision is relative) but could clip vectors added later."""
        return cls(np.full(d, 1.0 / FLOAT8_MAX, np.float32))

    def encode(self, x: np.ndarray) -> np.ndarray:
        """x: (n, d) float -> (n, d) uint8 float8 bit patterns (clipped, never NaN, no subnormals)."""
        with np.errstate(over="ignore", invalid="ignore"):
            y = np.clip(np.asarray(x, np.float32) / self.scale, -FLOAT8_MAX, FLOAT8_MAX)
        codes = np.nan_to_num(y, nan=0.0).astype(FLOAT8).view(np.uint8)
        codes[(codes & 0x78) == 0] = 0  # flush subnormals (< 2^-6 * scale) to zero: see _float8scan.c
        return codes

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """codes: (n, d) uint8 -> (n, d) float32 (a table lookup: faster than a dtype cast)."""
        return FLOAT8_VALUES[np.asarray(codes, np.uint8)] * self.scale

    def table(self) -> np.ndarray:
        """(d, 256) float32: the value of every code in every dimension (a FAISS PQ codebook)."""
        return self.scale[:, None] * FLOAT8_VALUES[None, :]
