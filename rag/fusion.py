"""Fuse the dense and keyword legs of a hybrid search into one ranking.

Both legs propose candidates (dense: float8 first stage + full-vector rerank; keyword: FTS5
BM25); every candidate of the union is then scored by *both* legs (its float8 full vector and
its BM25 for the query), so no candidate is missing a score. Each leg's scores are min-max
normalised over the union and mixed: ``w * dense + (1 - w) * keyword``.

The weight adapts per query (``query_weight``): the share of the keyword leg follows how
strongly the keyword leg's own top hits are backed by the dense leg. A query whose words the
relevant text shares (names, numbers, rare terms) gets keyword hits that the dense leg also
ranks high; a query phrased in other words than its answer gets keyword hits that match only
incidental terms, which the dense leg ranks low, and the keyword leg then loses its weight.
Why per query and not (only) per store: the documents alone cannot tell whether users will ask
in the documents' words or in their own (the same SciFact corpus favours keywords with its
claims and dense with paraphrased claims, see bench/dense_favoured.py), so a label-free
per-store calibration cannot see it; the query's own score distributions can. A store weight
measured on labelled queries (``rag eval --calibrate``) replaces the default prior ``w0``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from indexing.errors import ConfigError

MODES = ("hybrid", "dense", "keyword")
DEFAULT_MODE = "hybrid"
# Candidates each leg proposes to the fusion (at least k): enough that a chunk ranked ~50th by one
# leg and near the top by the other can still win, small enough to cost < 1 ms to rescore.
POOL = 50
# Prior weight of the dense leg when the store holds no calibrated one. Chosen as the middle of
# the range that is safe on both shared sets (SciFact, SQuAD) *and* the dense-favoured set
# (bench/fusion_study.py, bench/results/fusion_study.json); not tuned to one set.
DEFAULT_DENSE_WEIGHT = 0.5
# Share of the query's terms the keyword leg's best chunk must hold to get the prior weight.
FULL_COVERAGE = 0.5
KEYWORD_TOP = 3  # keyword chunks looked at for coverage
_WORD = re.compile(r"[^\W_]+")


@dataclass(frozen=True)
class FusionSettings:
    """``dense_weight``: the prior w0; ``adaptive``: move it per query (see ``query_weight``)."""

    dense_weight: float = DEFAULT_DENSE_WEIGHT
    adaptive: bool = True

    def __post_init__(self) -> None:
        if not 0.0 <= self.dense_weight <= 1.0:
            raise ConfigError(f"dense weight {self.dense_weight} must be between 0 and 1")

    @classmethod
    def from_manifest(cls, manifest: dict) -> FusionSettings:
        """The store's calibrated fusion (``manifest["fusion"]``), or the default."""
        section = manifest.get("fusion") or {}
        w = section.get("dense_weight")
        if not isinstance(w, (int, float)) or isinstance(w, bool) or not 0.0 <= w <= 1.0:
            return cls()
        return cls(float(w), bool(section.get("adaptive", True)))


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise ConfigError(f"mode {mode!r} is not one of {', '.join(MODES)}")
    return mode


def minmax(s: np.ndarray) -> np.ndarray:
    """(m,) -> (m,) in [0, 1]; all zeros when every score is equal."""
    if len(s) == 0:
        return np.zeros(0, np.float32)
    lo, hi = float(s.min()), float(s.max())
    if hi - lo <= 1e-12:
        return np.zeros_like(s, np.float32)
    return ((s - lo) / (hi - lo)).astype(np.float32)


def query_weight(nd: np.ndarray, nk: np.ndarray, w0: float, top: int = 5) -> float:
    """The dense weight for one query from normalised union scores nd, nk (m,).

    ``support``: mean normalised dense score of the keyword leg's top ``top`` candidates, i.e.
    how much the dense leg agrees with what the keyword leg puts first (1: the same chunks are
    on top; ~0: the keyword leg's best are the dense leg's worst). The keyword share of the
    weight is scaled by it: w = 1 - (1 - w0) * support."""
    if len(nk) == 0 or float(nk.max(initial=0.0)) <= 0.0:
        return 1.0  # no keyword evidence at all: dense alone
    order = np.argsort(-nk, kind="stable")[:top]
    support = float(np.mean(nd[order])) if len(nd) else 0.0
    return 1.0 - (1.0 - w0) * support


def top_z(s: np.ndarray, top: int = POOL) -> float:
    """How far the best score stands out of the leg's own top ``top``: (s1 - mean) / std, >= 0."""
    head = np.sort(s)[::-1][:top]
    if len(head) < 2:
        return 0.0
    sd = float(head.std())
    return max(0.0, float(head[0] - head.mean()) / sd) if sd > 1e-12 else 0.0


def confidence_weight(dense: np.ndarray, keyword: np.ndarray, w0: float) -> float:
    """The dense weight for one query from each leg's confidence (``top_z``), scaled by the prior."""
    if float(keyword.max(initial=0.0)) <= 0.0:
        return 1.0
    cd, ck = w0 * top_z(dense), (1.0 - w0) * top_z(keyword)
    return cd / (cd + ck) if cd + ck > 0 else w0


def keyword_coverage(terms: Sequence[str], texts: Sequence[str]) -> float:
    """Best share of the query's ``terms`` that one of ``texts`` (the keyword leg's top chunks)
    contains, a word matching a term when their first 5 letters agree (a crude stem)."""
    if not terms or not texts:
        return 0.0
    want = {t[:5] for t in terms}
    return max(len(want & {w.lower()[:5] for w in _WORD.findall(text)}) / len(want) for text in texts)


def coverage_weight(coverage: float, w0: float, full: float = FULL_COVERAGE) -> float:
    """The dense weight for one query: the prior ``w0`` when the keyword leg's best chunk holds
    ``full`` of the query's terms or more, sliding to 1 (dense only) as that share goes to 0."""
    trust = min(1.0, coverage / full) if full > 0 else 1.0
    return 1.0 - (1.0 - w0) * trust


def fuse(dense: np.ndarray, keyword: np.ndarray, settings: FusionSettings, coverage: float | None = None,
         method: str = "coverage") -> tuple[np.ndarray, float]:
    """Scores of the union candidates: dense (m,) inner products and keyword (m,) BM25 ->
    fused (m,) scores (higher is better) and the dense weight used. ``coverage``: see
    ``keyword_coverage`` (None: not adaptive)."""
    nd, nk = minmax(dense), minmax(keyword)
    if float(keyword.max(initial=0.0)) <= 0.0:
        w = 1.0  # no keyword evidence at all: dense alone
    elif not settings.adaptive:
        w = settings.dense_weight
    elif method == "support":
        w = query_weight(nd, nk, settings.dense_weight)
    elif method == "confidence":
        w = confidence_weight(dense, keyword, settings.dense_weight)
    else:
        w = coverage_weight(coverage if coverage is not None else 1.0, settings.dense_weight)
    return w * nd + (1.0 - w) * nk, w


def save_fusion(store_dir: str | Path, settings: FusionSettings, source: str, measured: dict | None = None) -> dict:
    """Record ``settings`` as the store's fusion (``manifest["fusion"]``), atomically, under the
    writers' lock; ``source`` says where they come from (e.g. "rag eval --calibrate on DATASET")."""
    import fcntl

    from indexing.errors import StoreError
    from indexing.files import write_json_atomic
    from indexing.manifest import MANIFEST, read_manifest

    store_dir = Path(store_dir)
    manifest = read_manifest(store_dir)
    with open(store_dir / ".lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise StoreError(f"another process is writing {store_dir}; wait for it to finish") from exc
        manifest = read_manifest(store_dir)  # re-read under the lock
        manifest["fusion"] = {"dense_weight": settings.dense_weight, "adaptive": settings.adaptive, "source": source,
                              **({"measured": measured} if measured else {})}
        write_json_atomic(store_dir / MANIFEST, manifest)
    return manifest["fusion"]
