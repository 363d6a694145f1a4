"""The store-level basis every segment is encoded with: the PCA projection and float8 scales.

Written once into the folder of the commit that fitted it (four ``.npy`` files, no pickle) and
named by the manifest; segments hold codes only. A refit writes a new basis and re-encodes every
segment from its stored full vectors (``indexing.compact``), never re-embedding.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from indexing.compress import Float8Codec, Pca, default_pca_dims, fit_pca
from indexing.errors import StoreError

PCA_FILE, PCA_ENERGY_FILE, REDUCED_SCALE_FILE, FULL_SCALE_FILE = "pca.npy", "pca_energy.npy", "reduced_scale.npy", "full_scale.npy"
BASIS_FILES_ORDER = (PCA_FILE, PCA_ENERGY_FILE, REDUCED_SCALE_FILE, FULL_SCALE_FILE)


@dataclass(frozen=True)
class Basis:
    """PCA (d -> p) and the float8 codecs of the reduced and the full vectors."""

    pca: Pca
    reduced_codec: Float8Codec
    full_codec: Float8Codec
    fit_vectors: int  # how many vectors the PCA was fitted on

    @classmethod
    def fit(cls, x: np.ndarray, pca_dims: int | None, pca_variance: float | None, max_samples: int) -> Basis:
        """Fit on x: (n, d) unit vectors; neither dims nor variance: a quarter of d."""
        dims = pca_dims if pca_dims is not None or pca_variance is not None else default_pca_dims(x.shape[1])
        pca = fit_pca(x, dims=dims, variance=pca_variance, max_samples=max_samples)
        return cls(pca, Float8Codec.for_unit_vectors(pca.dims), Float8Codec.for_unit_vectors(x.shape[1]), min(len(x), max_samples))

    def save(self, folder: Path) -> None:
        for name, arr in ((PCA_FILE, self.pca.components), (PCA_ENERGY_FILE, self.pca.energy),
                          (REDUCED_SCALE_FILE, self.reduced_codec.scale), (FULL_SCALE_FILE, self.full_codec.scale)):
            np.save(folder / name, np.ascontiguousarray(arr, np.float32), allow_pickle=False)

    @classmethod
    def load(cls, folder: Path, dim: int, dims: int, fit_vectors: int) -> Basis:
        """Read the four arrays, each checked for shape, dtype and finite values."""
        return cls(Pca(_npy(folder / PCA_FILE, (dim, dims)), _npy(folder / PCA_ENERGY_FILE, (dims,))),
                   Float8Codec(_npy(folder / REDUCED_SCALE_FILE, (dims,))), Float8Codec(_npy(folder / FULL_SCALE_FILE, (dim,))),
                   fit_vectors)


def _npy(file: Path, shape: tuple[int, ...]) -> np.ndarray:
    try:
        arr = np.load(file, allow_pickle=False)
    except Exception as exc:  # noqa: BLE001 - a damaged header raises SyntaxError, TokenError, ...
        raise StoreError(f"{file} is not a readable .npy array: {exc}") from exc
    if arr.shape != shape or arr.dtype != np.float32 or not np.all(np.isfinite(arr)):
        raise StoreError(f"{file} holds {arr.dtype}{arr.shape}, expected finite float32{shape}")
    return arr
