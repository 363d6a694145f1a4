"""Fuse the dense and keyword legs of a hybrid search into one ranking.

Both legs propose candidates (dense: float8 first stage + full-vector rerank; keyword: FTS5
BM25); every candidate of the union is then scored by *both* legs (its float8 full vector and
its BM25 for the query), so no candidate is missing a score. Each leg's scores are min-max
normalised over the union and mixed: ``w * dense + (1 - w) * keyword``.

The weight adapts per query (``coverage_weight``): the keyword leg keeps its prior share only
when its own evidence is strong -- one of its best chunks holds most of the IDF mass of the
query's terms (``keyword_coverage`` weighted by ``term_idfs``; a term the store lacks counts as
the rarest) and its best BM25 is close to the sum of those IDFs, i.e. the query is written in the
documents' words (names, numbers, rare terms). A query phrased in other
words than its answer gets keyword hits on incidental, common terms; the evidence is weak and the
weight moves to the dense leg. (Two other per-query rules were measured and dropped: the dense
leg's support of the keyword top hits, and each leg's top-score z-score; they live on in bench/fusion_study.py.)
Why per query and not (only) per store: the documents alone cannot tell whether users will ask
in the documents' words or in their own (the same SciFact corpus favours keywords with its
claims and dense with the claims in other words, see bench/dense_favoured.py), so a label-free
per-store calibration cannot see it; the query's own evidence can. A store weight
measured on labelled queries (``rag eval --calibrate``) replaces the default prior ``w0``.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from indexing.errors import ConfigError
from indexing.bm25 import idf

MODES = ("hybrid", "dense", "keyword")
DEFAULT_MODE = "hybrid"
# Candidates each leg proposes to the fusion (at least k): enough that a chunk ranked ~50th by one
# leg and near the top by the other can still win, small enough to cost < 1 ms to rescore.
POOL = 50
# Prior weight of the dense leg when the store holds no calibrated one (chosen with FULL_COVERAGE
# below, by the same rule).
DEFAULT_DENSE_WEIGHT = 0.3
# Keyword evidence (see Retriever.hybrid_candidates), times the dense leg's support of the keyword
# leg's best chunk raised to SUPPORT_POWER (``keyword_support``), gives the keyword leg its prior
# weight from FULL_COVERAGE up, none at FLOOR or below, and ((evidence - FLOOR) / (FULL_COVERAGE -
# FLOOR)) ** POWER of it in between.
# How chosen (bench/fusion_rules.py, bench/results/fusion_rules.json: nDCG@10 on SciFact, SQuAD
# and SciFact in other words, the dense-favoured set of bench/dense_favoured.py, every rule and
# postings budget in one run): among the settings that keep hybrid >= the better single leg on
# both shared sets and >= 1.05x dense on SciFact (the targets), the one whose worst ratio
# to the better leg over all three sets is best; then the smallest postings budget
# (indexing.keyword.POSTINGS_BUDGET) whose winner keeps >= 99 % of the largest budget's winner on
# every set: 2,000. With the full SQuAD set (bench/fusion_choice.py, bench/results/fusion_choice.json)
# that picked w0 0.3, floor 0.3, full 0.6, power 2, support ** 0.5 over the term share of the
# searched terms: SciFact 1.036x keyword, SQuAD 1.0002x keyword, other words 0.974x dense (target
# 0.98x missed). The evidence then became the share of the searched terms' IDF mass, a term the
# store lacks at the highest IDF (``term_idfs``), the constants kept: chosen by the same rule among
# 87 fusions (the dense leg's confidence, the legs' top-10 agreement, dense-anchored ranking,
# higher floors; bench/fusion_signals.py, bench/results/fusion_signals_v2.json, found after the
# first grid's results (fusion_signals.json) showed absent terms in the losing queries): SciFact
# 0.6929 = 1.027x keyword and 1.068x dense, SQuAD (10,570) 0.8847 = 1.0016x keyword, other words
# 0.2516 = 0.987x dense; SQuAD in other words, a held-out check never selected on: 0.987x dense
# (0.981x with the term share). Every target met; worst case over the three sets 0.974 -> 0.987.
FULL_COVERAGE = 0.6
FLOOR = 0.3
POWER = 2.0
SUPPORT_POWER = 0.5
KEYWORD_TOP = 3  # keyword chunks looked at for coverage
_WORD = re.compile(r"[^\W_]+")
# The keyword leg runs in a worker thread beside the dense leg (SQLite and the float8 kernel both
# release the GIL), so a hybrid query costs about the slower leg rather than the sum of both.
PARALLEL_LEGS = True
_legs: tuple[int, ThreadPoolExecutor] | None = None  # (pid, pool): a forked child makes its own
_legs_lock = threading.Lock()


def beside(fn: Callable[..., object], *args: object) -> Callable[[], object]:
    """Start ``fn(*args)`` in a worker thread; the returned call waits for its result (or
    raises its error). Runs it at once, here, when PARALLEL_LEGS is off."""
    global _legs
    if not PARALLEL_LEGS:
        result = fn(*args)
        return lambda: result
    with _legs_lock:
        if _legs is None or _legs[0] != os.getpid():  # a pool inherited through fork has no threads
            _legs = (os.getpid(), ThreadPoolExecutor(max_workers=4, thread_name_prefix="keyword-leg"))
        pool = _legs[1]
    return pool.submit(fn, *args).result


@dataclass(frozen=True)
class FusionSettings:
    """``dense_weight``: the prior w0; ``adaptive``: move it per query (see ``coverage_weight``)."""

    dense_weight: float = DEFAULT_DENSE_WEIGHT
    adaptive: bool = True

    def __post_init__(self) -> None:
        if not 0.0 <= self.dense_weight <= 1.0:
            raise ConfigError(f"dense weight {self.dense_weight} must be between 0 and 1")

    @classmethod
    def from_manifest(cls, section: dict | None) -> FusionSettings:
        """The store's calibrated fusion (the manifest's ``fusion`` section), or the default."""
        section = section or {}
        w = section.get("dense_weight")
        if not isinstance(w, (int, float)) or isinstance(w, bool) or not 0.0 <= w <= 1.0:
            return cls()
        return cls(float(w), bool(section.get("adaptive", True)))


def check_mode(mode: str) -> str:
    """``mode`` itself when it is one of MODES, else ConfigError."""
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


def keyword_coverage(terms: Sequence[str], texts: Sequence[str], weights: Sequence[float] | None = None) -> float:
    """Best share of the query's ``terms`` that one of ``texts`` (the keyword leg's top chunks)
    contains, a word matching a term when their first 5 letters agree (a crude stem); with
    ``weights`` (one per term, e.g. ``term_idfs``) the share of their weight instead of their count."""
    if not terms or not texts:
        return 0.0
    want: dict[str, float] = {}
    for i, t in enumerate(terms):
        want[t[:5]] = max(want.get(t[:5], 0.0), float(weights[i]) if weights is not None else 1.0)
    total = sum(want.values())
    if total <= 0:
        return 0.0
    best = 0.0
    for text in texts:
        words = {w.lower()[:5] for w in _WORD.findall(text)}  # once per text, not once per term
        best = max(best, sum(v for t, v in want.items() if t in words) / total)
    return best


def term_idfs(stemmed: Sequence[str], df: dict[str, int], n: int) -> list[float]:
    """BM25 IDF of each of a query's (stemmed) terms over ``n`` chunks, a term the store does not
    hold at all counting as the rarest possible (document frequency 0), not as 0: a query word the
    documents never use is the surest sign that the query is not written in their words, and it
    is often its most telling word. [] when the store has no document frequencies (``df`` empty)."""
    if not df:
        return []
    return [idf(n, df.get(t, 0)) for t in stemmed]


def coverage_weight(evidence: float, w0: float, full: float = FULL_COVERAGE, power: float = POWER, floor: float = FLOOR) -> float:
    """The dense weight for one query: the prior ``w0`` when the keyword leg's evidence reaches
    ``full``, sliding to 1 (dense only) as it falls to ``floor``, as
    ``((evidence - floor) / (full - floor)) ** power``."""
    trust = min(1.0, max(0.0, evidence - floor) / (full - floor)) ** power if full > floor else 1.0
    return 1.0 - (1.0 - w0) * trust


def keyword_support(dense: np.ndarray, keyword: np.ndarray) -> float:
    """How the dense leg rates the keyword leg's best chunk: its min-max normalised dense score over
    the union (m,) candidates, 1 when it is the dense leg's best too, 0 when it is its worst. A
    keyword hit on incidental, common words (a query whose telling word is a stop word, "how does
    the with statement work", or one asked in other words than its answer) is a chunk the dense
    leg puts at the bottom, so its evidence should not count."""
    if len(keyword) == 0 or float(keyword.max()) <= 0.0:
        return 0.0
    return float(minmax(dense)[int(np.argmax(keyword))])


def query_dense_weight(dense: np.ndarray, keyword: np.ndarray, evidence: float, w0: float, full: float = FULL_COVERAGE,
                       power: float = POWER, floor: float = FLOOR, support_power: float = SUPPORT_POWER) -> float:
    """The dense weight for one query from the union's dense (m,) and keyword (m,) scores and the
    keyword leg's evidence (``Retriever.hybrid_candidates``): 1 when no candidate holds a query
    term, else ``coverage_weight`` of the evidence times ``keyword_support ** support_power``."""
    if float(keyword.max(initial=0.0)) <= 0.0:
        return 1.0  # no keyword evidence at all: dense alone
    if support_power > 0:
        evidence *= keyword_support(dense, keyword) ** support_power
    return coverage_weight(evidence, w0, full, power, floor)


def fuse(dense: np.ndarray, keyword: np.ndarray, settings: FusionSettings,
         coverage: float | None = None) -> tuple[np.ndarray, float]:
    """Scores of the union candidates: dense (m,) inner products and keyword (m,) BM25 ->
    fused (m,) scores (higher is better) and the dense weight used. ``coverage``: see
    ``keyword_coverage`` (None: not adaptive)."""
    nd, nk = minmax(dense), minmax(keyword)
    if float(keyword.max(initial=0.0)) <= 0.0:
        w = 1.0  # no keyword evidence at all: dense alone
    elif not settings.adaptive:
        w = settings.dense_weight
    else:
        w = query_dense_weight(dense, keyword, coverage if coverage is not None else 1.0, settings.dense_weight)
    return w * nd + (1.0 - w) * nk, w


def save_fusion(store_dir: str | Path, settings: FusionSettings, source: str, measured: dict | None = None) -> dict:
    """Record ``settings`` as the store's fusion (``manifest["fusion"]``), atomically, under the
    writers' lock (``StoreLock``); ``source`` says where they come from (e.g. "rag eval --calibrate on DATASET")."""
    from indexing.lock import StoreLock, StoreLockedError
    from indexing.manifest import read_manifest
    from indexing.writer import set_fusion

    store_dir = Path(store_dir)
    read_manifest(store_dir)  # a clear error for a folder that is not a store, before any lock file
    lock = StoreLock(store_dir)
    try:
        lock.acquire()
    except StoreLockedError as exc:  # its hint names `rag index --wait`, which this caller does not have
        raise StoreLockedError(f"{str(exc).rsplit('; ', 1)[0]}; run this again when it has finished") from exc
    try:
        section = {"dense_weight": settings.dense_weight, "adaptive": settings.adaptive, "source": source,
                   **({"measured": measured} if measured else {})}
        set_fusion(store_dir, section, lock)
    finally:
        lock.release()
    return section
