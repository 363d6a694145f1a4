"""The fusion studies (bench/fusion_rules.py, bench/fusion_signals.py) on a real segment store with
the fake embedder: their per-query features come from the product's own hybrid candidates, every
rule yields a top 10, and the stated selection rule picks as documented."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bench import fusion_signals
from bench.fusion_rules import features
from indexing.build import index_paths
from rag.fusion import keyword_coverage, term_idfs
from rag.retrieve import Retriever


@pytest.fixture
def retriever(tmp_path: Path, docs_folder: Path, fake_embedder) -> Retriever:
    index_paths([docs_folder], tmp_path / "store", embedder=fake_embedder)
    r = Retriever.open(tmp_path / "store", embedder=fake_embedder)
    yield r
    r.store.close()


def test_features_come_from_a_segment_store(retriever: Retriever, fake_embedder) -> None:
    """(Failed before: the script read ``Store._db``, which segment stores do not have.)"""
    qs = ["zebras stripes flies", "basalt volcano"]
    feats = features(retriever, qs, fake_embedder.embed_queries(qs))
    f = feats[0]
    assert len(f.union) == len(f.dense) == len(f.kw) and f.smax == pytest.approx(float(f.kw.max()))
    assert set(f.searched) <= set(f.terms) and all(v > 0 for v in f.idf.values())
    assert f.ideal == pytest.approx(sum(f.idf.values())) and 0.0 <= f.evidence <= 1.0
    for name, (_, fn) in fusion_signals.rules().items():  # every rule ranks within the union
        top = fn(f)
        assert 0 < len(top) <= 10 and set(top.tolist()) <= set(f.union.tolist()), name


def test_peak_agreement_and_the_stated_choice() -> None:
    assert fusion_signals.peak(np.array([1.0] + [0.5] * 9 + [0.0])) == pytest.approx(1.0)  # one clear winner
    assert fusion_signals.peak(np.linspace(1, 0, 11)) == pytest.approx(1 / 9)  # evenly spread
    assert fusion_signals.peak(np.array([1.0, 0.0])) == 0.0  # too few scores to tell
    legs = {"dense": 0.60, "keyword": 0.70}
    names = list(fusion_signals.rules())
    a, b = names[2], names[3]  # two fusion rules (after dense, keyword)
    table = {"scifact": {**legs, a: 0.72, b: 0.80}, "squad": {**legs, a: 0.71, b: 0.69},  # b loses to keyword on squad
             "other": {"dense": 0.30, "keyword": 0.01, a: 0.28, b: 0.30}}
    out = fusion_signals.choose(table, ["scifact", "squad", "other"], [])
    assert out["chosen"] == a  # b's better worst case does not count: it misses a shared-set target
    assert out["ranked"][0]["worst_ratio_to_better_leg"] == pytest.approx(0.28 / 0.30, abs=1e-4)


def test_a_query_word_the_store_lacks_moves_the_weight_to_dense(retriever: Retriever, fake_embedder) -> None:
    """The keyword evidence is the share of the searched terms' IDF mass its best chunk holds, a term
    absent from the store counting at the highest IDF (rag.fusion.term_idfs). "zebras" matches,
    "quokkaroo" is in no chunk: the keyword leg's hit holds half the terms (the old evidence, 0.5,
    kept the keyword leg's prior weight), but less than half the query's rarity, and its BM25 is far
    from the ideal score: dense alone answers. (Fails on the rule before: evidence 0.5 > FLOOR.)"""
    from rag.fusion import FLOOR, query_dense_weight

    q = "zebras quokkaroo"
    terms = retriever.store.keyword_query(q)
    assert terms.terms == ["zebras", "quokkaroo"] and terms.stemmed[1] not in terms.df
    idf = term_idfs(terms.stemmed, terms.df, retriever.store.rows)
    assert idf[1] == pytest.approx(np.log(2 * retriever.store.rows + 1)) and idf[1] > idf[0] > 0
    union, dense, keyword, evidence = retriever.hybrid_candidates(q, fake_embedder.embed_queries([q])[0], 3)
    assert keyword.max() > 0 and evidence < FLOOR
    assert query_dense_weight(dense, keyword, evidence, 0.3) == 1.0
    assert retriever.hybrid_candidates("zebras stripes", fake_embedder.embed_queries(["zebras stripes"])[0], 3)[3] > FLOOR


def test_idf_weighted_coverage_and_term_idfs() -> None:
    assert keyword_coverage(["zebra", "stripe"], ["stripes only"], [3.0, 1.0]) == pytest.approx(0.25)
    assert keyword_coverage(["zebra", "stripe"], ["zebras", "stripes"], [3.0, 1.0]) == pytest.approx(0.75)  # best chunk
    assert keyword_coverage(["zebra", "stripe"], ["stripes only"]) == 0.5  # unweighted: the term share
    assert keyword_coverage(["zebra"], ["zebra"], [0.0]) == 0.0
    assert term_idfs(["a", "b"], {}, 10) == []  # no document frequencies: no evidence
    a, b = term_idfs(["a", "b"], {"a": 5}, 10)
    assert a == pytest.approx(np.log(5.5 / 5.5), abs=1e-6) or a == pytest.approx(1e-6)
    assert b == pytest.approx(np.log(21.0))
