"""rag.evaluate / rag.eval_configs / rag.eval_answers and ``rag eval``: hand-checked metrics, the
embedding cache, Pareto/budget logic, the in-memory default against the real store, and a tiny
end-to-end run on a synthetic BEIR folder with a fake embedder (no model, no network)."""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from indexing.errors import ConfigError
from rag.cli import main
from rag.eval_answers import exact_match, normalize_answer, token_f1
from rag.eval_configs import (
    MemorySearcher, StorePool, StoreSearcher, dims_grid, index_command, main_configs, pareto_front, recommend,
)
from rag.evaluate import embed_cached, load_beir, overlap_at_k, retrieval_metrics, run_from_ids
from indexing.search import exact as exact_search

DIM = 64
WORDS = re.compile(r"[a-z0-9]+")


class WordEmbedder:
    """Bag of hashed words (3 signed coordinates per word), unit length; counts its calls."""

    model_id = "test/words-64"
    dim = DIM

    def __init__(self) -> None:
        self.doc_calls = 0
        self.query_calls = 0

    def _embed(self, texts: Sequence[str]) -> np.ndarray:
        x = np.zeros((len(texts), DIM), np.float32)  # (n, d)
        for i, text in enumerate(texts):
            for word in WORDS.findall(text.lower()):
                h = hashlib.blake2b(word.encode(), digest_size=6).digest()
                for j in range(3):
                    x[i, h[2 * j] % DIM] += 1.0 if h[2 * j + 1] & 1 else -1.0
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        self.doc_calls += 1
        return self._embed(texts)

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        self.query_calls += 1
        return self._embed(texts)


# -- metrics, by hand --------------------------------------------------------------------------------
DOCS = ["d1", "d2", "d3", "d4"]
QRELS = {"q1": {"d1": 1, "d3": 1}, "q2": {"d2": 1}}
RANKING = np.array([[0, 1, 2, 3], [3, 2, 1, 0]])  # q1: d1 d2 d3 d4; q2: d4 d3 d2 d1


def test_metrics_match_a_hand_computed_case():
    run = run_from_ids(RANKING, ["q1", "q2"], DOCS)
    m = retrieval_metrics(QRELS, run, run, k=10)
    ndcg_q1 = (1 + 1 / math.log2(4)) / (1 + 1 / math.log2(3))  # hits at ranks 1 and 3, ideal at 1 and 2
    ndcg_q2 = (1 / math.log2(4)) / 1  # one hit at rank 3
    assert m["ndcg@10"] == pytest.approx((ndcg_q1 + ndcg_q2) / 2, abs=1e-4)
    assert m["mrr@10"] == pytest.approx((1 + 1 / 3) / 2, abs=1e-4)
    assert m["recall@10"] == pytest.approx(1.0) and m["recall@100"] == pytest.approx(1.0)


def test_metrics_cut_at_k_and_count_empty_results_as_zero():
    top2 = run_from_ids(RANKING[:, :2], ["q1", "q2"], DOCS)  # the k=2 search returns two rows
    deep = run_from_ids(RANKING, ["q1", "q2"], DOCS)
    m = retrieval_metrics(QRELS, top2, deep, k=2)
    assert m["recall@2"] == pytest.approx((1 / 2 + 0) / 2)
    assert m["ndcg@2"] == pytest.approx((1 / (1 + 1 / math.log2(3)) + 0) / 2, abs=1e-4)
    assert m["mrr@2"] == pytest.approx((1 + 0) / 2)  # q2's hit at rank 3 is past the cut
    empty = run_from_ids(np.array([[0, 1, 2, 3], [-1, -1, -1, -1]]), ["q1", "q2"], DOCS)
    assert retrieval_metrics(QRELS, empty, empty)["mrr@10"] == pytest.approx(0.5)  # not 1.0: q2 counts


def test_overlap_with_the_float32_top_k():
    I_ref = np.array([[0, 1, 2], [3, 2, 1]])
    assert overlap_at_k(np.array([[2, 1, 0], [0, 3, -1]]), I_ref) == pytest.approx((3 / 3 + 1 / 3) / 2)


def test_run_scores_follow_the_search_order_even_for_tied_scores():
    run = run_from_ids(np.array([[3, 0, 2]]), ["q"], DOCS)
    assert sorted(run["q"], key=run["q"].get, reverse=True) == ["d4", "d1", "d3"]


# -- SQuAD answer metrics --------------------------------------------------------------------------------
def test_squad_normalisation_exact_match_and_f1():
    assert normalize_answer("The  Cat, sat on a mat!") == "cat sat on mat"
    assert exact_match("the Eiffel Tower.", ["Eiffel Tower"]) == 1.0
    assert exact_match("Eiffel Tower in Paris", ["Eiffel Tower"]) == 0.0
    # "in october 1973 crisis" vs "october 1973": 2 common tokens, precision 2/4, recall 2/2
    assert token_f1("In October 1973, the crisis", ["1979", "October 1973"]) == pytest.approx(2 / 3)
    assert token_f1("nothing shared", ["1979"]) == 0.0


# -- Pareto front and budget --------------------------------------------------------------------------
def test_pareto_front_on_a_toy_list():
    points = [(96, 0.60), (48, 0.55), (96, 0.58), (384, 0.62), (24, 0.40), (384, 0.61), (192, 0.60)]
    assert pareto_front(points) == [4, 1, 0, 3]  # (192, 0.60) ties (96, 0.60) at more bytes: dominated


def row(name: str, bpv: int, ndcg: float, p50: float = 1.0, dims: int = 16, dtype: str = "float8") -> dict:
    return {"name": name, "bytes_per_vector": bpv, "ndcg@10": ndcg, "latency_ms_p50": p50, "pca_dims": dims, "dtype": dtype}


def test_budget_picks_the_best_config_that_fits():
    rows = [row("big", 384, 0.70), row("mid", 96, 0.66), row("mid-same-more-bytes", 128, 0.66),
            row("small", 24, 0.50), row("mid-worse", 64, 0.60)]
    assert recommend(rows, 128)["name"] == "mid"  # equal quality: fewer bytes wins
    assert recommend(rows, 95)["name"] == "mid-worse"
    assert recommend(rows, 10_000)["name"] == "big"
    with pytest.raises(ConfigError, match="smallest takes 24"):
        recommend(rows, 8)
    assert index_command(row("x", 96, 0.6, dims=96), "stores/s").endswith("--store stores/s --pca-dims 96 --dtype float8")


def test_dims_grid():
    assert dims_grid(384) == [24, 48, 64, 96, 128, 192, 384]


# -- stores and references ------------------------------------------------------------------------
def structured(n: int, nq: int, d: int = DIM, latent: int = 12, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors with a low-dimensional structure: xb (n, d), xq (nq, d)."""
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((latent, d))

    def draw(m: int) -> np.ndarray:
        z = rng.standard_normal((m, latent)) @ A + 0.3 * rng.standard_normal((m, d))
        return (z / np.linalg.norm(z, axis=1, keepdims=True)).astype(np.float32)

    return draw(n), draw(nq)


def test_stores_are_real_and_the_float8_reference_scans_their_full_vectors():
    xb, xq = structured(1500, 40)
    configs = main_configs(DIM)
    default = next(c for c in configs if c.default)
    with StorePool(xb, "test/x", [f"d{i}" for i in range(len(xb))], [""] * len(xb), [""] * len(xb)) as pool:
        searcher = StoreSearcher(pool.retriever(DIM // 4, "float8"), default)
        store = searcher.retriever.store
        assert store.manifest.compression.pca_dims == DIM // 4 and store.manifest.compression.dtype == "float8"
        assert (searcher.bytes_per_vector, searcher.rerank_bytes_per_vector) == (DIM // 4, DIM)
        D, I = searcher.search(xq, 10)
        np.testing.assert_array_equal(I, searcher.retriever.search_vectors(xq, 10, default.oversample)[1])
        float8 = next(c for c in configs if c.pca_dims is None and c.dtype == "float8")
        mem = MemorySearcher(xb, float8, store.full_codec)
        Dm, Im = mem.search(xq, 10)
        De, Ie = exact_search(store, xq, 10)  # numpy over the store's float8 full vectors
        np.testing.assert_allclose(Dm, De, rtol=1e-4, atol=1e-5)
        assert np.mean(Im == Ie) > 0.99  # equal up to ties
        folder = pool.root / f"PCA{DIM // 4}-float8"
        assert folder.is_dir()
        pool.release()
        assert not folder.exists()
    assert not pool.root.exists()


# -- a synthetic BEIR folder ----------------------------------------------------------------------
TOPICS = {
    "zebra": "Zebras graze on the savanna. Their black and white stripes confuse biting flies.",
    "volcano": "Volcanoes erupt molten basalt lava. Magma pressure breaks through the crust.",
    "glacier": "Glaciers carve deep fjords. Compacted ice creeps slowly down the valley.",
    "saxophone": "The saxophone is a woodwind instrument. It is played with a single reed.",
    "comet": "Comets grow bright tails of dust. Sunlight pushes the gas away from the nucleus.",
    "coral": "Coral reefs are built by tiny polyps. Warm shallow seas keep the reefs alive.",
}
QUESTIONS = {  # query id -> (text, relevant topic, answer)
    "q-zebra": ("what confuses biting flies on zebras", "zebra", "black and white stripes"),
    "q-volcano": ("what lava do volcanoes erupt", "volcano", "molten basalt lava"),
    "q-glacier": ("what do glaciers carve", "glacier", "deep fjords"),
    "q-comet": ("what do comets grow", "comet", "bright tails of dust"),
}


def write_beir(folder: Path, answers: bool = True) -> Path:
    (folder / "qrels").mkdir(parents=True)
    with open(folder / "corpus.jsonl", "w", encoding="utf-8") as f:
        for name, text in TOPICS.items():
            f.write(json.dumps({"_id": name, "title": name.capitalize(), "text": text}) + "\n")
            for j in range(3):  # filler documents, never relevant
                f.write(json.dumps({"_id": f"{name}-x{j}", "title": "", "text": f"Notes {j} about {name} trips and maps."}) + "\n")
    with open(folder / "queries.jsonl", "w", encoding="utf-8") as f:
        for qid, (text, _, _) in QUESTIONS.items():
            f.write(json.dumps({"_id": qid, "text": text}) + "\n")
        f.write(json.dumps({"_id": "q-unjudged", "text": "coral reefs"}) + "\n")
    rows = ["query-id\tcorpus-id\tscore"] + [f"{qid}\t{topic}\t1" for qid, (_, topic, _) in QUESTIONS.items()]
    (folder / "qrels" / "test.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    if answers:
        with open(folder / "answers.jsonl", "w", encoding="utf-8") as f:
            for qid, (_, _, answer) in QUESTIONS.items():
                f.write(json.dumps({"_id": qid, "answers": [answer], "is_impossible": False}) + "\n")
    return folder


def test_load_beir_keeps_judged_queries_and_their_documents(tmp_path):
    folder = write_beir(tmp_path / "ds")
    data = load_beir(folder)
    assert data.query_ids == list(QUESTIONS) and len(data.doc_ids) == 4 * len(TOPICS)
    assert data.doc_inputs()[0] == f"Zebra {TOPICS['zebra']}"  # BEIR: title + " " + text
    assert data.doc_inputs()[1] == "Notes 0 about zebra trips and maps."  # no title: no leading space
    small = load_beir(folder, max_docs=7, max_queries=3)
    assert len(small.doc_ids) == 7 and len(small.query_ids) == 3
    assert {d for q in small.query_ids for d in small.qrels[q]} <= set(small.doc_ids)
    assert load_beir(folder, max_docs=7, max_queries=3).doc_ids == small.doc_ids  # deterministic
    with pytest.raises(ConfigError, match="raise --max-docs or lower --max-queries"):
        load_beir(folder, max_docs=2)


def test_missing_qrels_is_a_config_error_that_says_the_fix(tmp_path):
    folder = write_beir(tmp_path / "ds")
    (folder / "qrels" / "test.tsv").unlink()
    with pytest.raises(ConfigError, match=r"no qrels/test.tsv: pass a BEIR-layout folder"):
        load_beir(folder)


def test_embedding_cache_is_hit_on_the_second_run(tmp_path):
    data = load_beir(write_beir(tmp_path / "ds"))
    emb = WordEmbedder()
    xb1, xq1, info1 = embed_cached(data, emb.model_id, lambda: emb, tmp_path / "cache")
    assert (emb.doc_calls, emb.query_calls) == (1, 1) and not info1["docs_cache_hit"]
    xb2, xq2, info2 = embed_cached(data, emb.model_id, lambda: emb, tmp_path / "cache")
    assert (emb.doc_calls, emb.query_calls) == (1, 1) and info2["docs_cache_hit"] and info2["queries_cache_hit"]
    np.testing.assert_array_equal(xb1, xb2)
    np.testing.assert_array_equal(xq1, xq2)
    embed_cached(data, "another/model", lambda: emb, tmp_path / "cache")
    assert emb.doc_calls == 2  # another model is another cache entry


def test_rag_eval_end_to_end(tmp_path, monkeypatch, capsys):
    folder = write_beir(tmp_path / "ds")
    emb = WordEmbedder()
    loads = []
    monkeypatch.setattr("indexing.embed.load_embedder", lambda model="", base_url=None, backend="auto": loads.append(model) or emb)
    out, png = tmp_path / "eval.json", tmp_path / "sweep.png"
    argv = ["eval", "--dataset", str(folder), "--cache-dir", str(tmp_path / "cache"), "--json", str(out),
            "--plot", str(png), "--budget", "16", "--build-store", "stores/x", "--answers", "3", "--model", emb.model_id]
    assert main(argv) == 0
    report = json.loads(out.read_text())
    assert {"dataset", "model", "n_docs", "n_queries", "configs", "default", "sweep", "recommended", "answers"} <= set(report)
    assert (report["n_docs"], report["n_queries"]) == (4 * len(TOPICS), len(QUESTIONS))
    keys = {"name", "ndcg@10", "recall@10", "recall@100", "mrr@10", "bytes_per_vector", "store_bytes",
            "latency_ms_p50", "latency_ms_p95", "pct_of_float32"}
    assert all(keys <= set(r) for r in report["configs"] + report["sweep"])
    base, default = report["configs"][0], next(r for r in report["configs"] if r["default_store"])
    assert base["pct_of_float32"] == 100.0 and base["bytes_per_vector"] == 4 * DIM and base["overlap@10_float32"] == 1.0
    assert default["bytes_per_vector"] == DIM // 4 and default["store_bytes"] == report["n_docs"] * (DIM // 4 + DIM)
    assert report["default"]["reaches_target"] == (default["ndcg@10"] >= 0.99 * base["ndcg@10"])
    assert base["ndcg@10"] > 0.9  # the fake embedder finds each topic's document
    assert report["recommended"]["bytes_per_vector"] <= 16
    assert "--store stores/x --model test/words-64 --pca-dims" in report["recommended"]["command"]
    assert any(r["pareto"] for r in report["sweep"])
    assert all(r["measured_via"] == "store" for r in report["sweep"])  # every PCA point is a real store
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    a = report["answers"]
    s = a["answerers"]["extractive"]
    assert a["n"] == 3 and 0 <= s["f1"] <= 1 and s["citation_recall"] == 1.0  # each topic's doc is cited
    stdout = capsys.readouterr().out
    assert "float32 flat (baseline)" in stdout and "default store" in stdout and "build it: rag index" in stdout
    assert len(loads) == 1
    calls = (emb.doc_calls, emb.query_calls)

    assert main(["eval", "--dataset", str(folder), "--cache-dir", str(tmp_path / "cache"), "--model", emb.model_id]) == 0
    assert len(loads) == 1 and (emb.doc_calls, emb.query_calls) == calls  # from the cache, no model load


def test_rag_eval_reports_bad_input_as_one_line(tmp_path, capsys):
    assert main(["eval", "--dataset", str(tmp_path)]) == 1
    assert "corpus.jsonl" in capsys.readouterr().err
    folder = write_beir(tmp_path / "ds", answers=False)
    assert main(["eval", "--dataset", str(folder), "--answers", "2", "--cache-dir", str(tmp_path / "c")]) == 1
    assert "answers.jsonl" in capsys.readouterr().err


# -- bad input: one line, before any work (issue 10, item 11) ------------------------------------------
def corrupt(folder: Path, name: str, text: str) -> None:
    (folder / name).write_text(text, encoding="utf-8")


@pytest.mark.parametrize("name, text, says", [
    ("corpus.jsonl", '5\n', "corpus.jsonl:1 is not a JSON object"),
    ("corpus.jsonl", '{"_id": "d"}\n', "needs '_id' and 'text'"),
    ("queries.jsonl", '{"_id": "q-zebra"}\n', "queries.jsonl' needs '_id' and 'text'"),
    ("queries.jsonl", '{"text": "zebras"}\n', "queries.jsonl' needs '_id' and 'text'"),
    ("queries.jsonl", '["q", "zebras"]\n', "queries.jsonl:1 is not a JSON object"),
    ("answers.jsonl", '{"_id": "q-zebra", "answers": 5}\n', "a list 'answers'"),
    ("answers.jsonl", '"stripes"\n', "answers.jsonl:1 is not a JSON object"),
])
def test_malformed_dataset_lines_are_one_line_errors(tmp_path, capsys, name, text, says):
    folder = write_beir(tmp_path / "ds")
    corrupt(folder, name, text)
    assert main(["eval", "--dataset", str(folder), "--cache-dir", str(tmp_path / "c")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and says.replace("'", "") in err.replace("'", "") and len(err.splitlines()) == 1


def test_cache_dir_that_is_a_file_and_huge_k_are_config_errors(tmp_path, capsys):
    folder = write_beir(tmp_path / "ds")
    (tmp_path / "cache").write_text("not a folder", encoding="utf-8")
    assert main(["eval", "--dataset", str(folder), "--cache-dir", str(tmp_path / "cache")]) == 1
    assert "--cache-dir" in capsys.readouterr().err
    assert main(["eval", "--dataset", str(folder), "--cache-dir", str(tmp_path / "c"), "-k", "1000000000"]) == 1
    assert "-k 1000000000 is more than the 24 documents" in capsys.readouterr().err
    from rag.evaluate import evaluate

    with pytest.raises(ConfigError, match="--pca-dims 0 must be >= 1"):
        evaluate(folder, pca_dims=0, cache_dir=tmp_path / "c", embedder=WordEmbedder())


@pytest.mark.parametrize("argv", [["-k", "1e9"], ["--pca-dims", "0"], ["--oversample", "-3"], ["-k", "ten"], ["--answers", "-1"], ["--answer-k", "0"]])
def test_bad_numbers_are_usage_errors(tmp_path, capsys, argv):
    with pytest.raises(SystemExit) as exc:
        main(["eval", "--dataset", str(tmp_path), *argv])
    assert exc.value.code == 2 and "Traceback" not in capsys.readouterr().err


@pytest.mark.parametrize("flag", ["--json", "--plot"])
def test_unwritable_outputs_fail_before_the_work(tmp_path, monkeypatch, capsys, flag):
    folder = write_beir(tmp_path / "ds")
    (tmp_path / "a-file").write_text("x", encoding="utf-8")
    monkeypatch.setattr("rag.evaluate.load_beir", lambda *a, **k: pytest.fail("the work started"))
    for target in (tmp_path / "a-file" / "out.json", tmp_path):  # under a file; a folder
        assert main(["eval", "--dataset", str(folder), flag, str(target)]) == 1
        err = capsys.readouterr().err
        assert err.startswith(f"error: {flag} {target}: cannot write there") and len(err.strip().splitlines()) == 1
    probe = tmp_path / "new" / "ok.json"  # a writable path is left as it was: no file appears
    monkeypatch.setattr("rag.evaluate.load_beir", lambda *a, **k: (_ for _ in ()).throw(ConfigError("stop here")))
    assert main(["eval", "--dataset", str(folder), flag, str(probe)]) == 1
    assert "stop here" in capsys.readouterr().err and not probe.exists()
