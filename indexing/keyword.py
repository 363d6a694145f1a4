"""The keyword index: SQLite FTS5 over the chunk table of ``chunks.sqlite``, queried by BM25.

Why FTS5 and not a dedicated BM25 library (``bench/keyword_engines.py``, results in
``bench/results/keyword_engines.json``): FTS5 is already inside the chunk database, so the
keyword index is written by the same generation writer, in the same file, under the same
checksum and atomic manifest swap as the chunks; it is updated row by row (a library such as
``bm25s`` rebuilds its sparse matrix from every chunk and needs its own files and pickles-free
serialisation), and its quality on SciFact is on par with bm25s (same Okapi BM25). bm25s is
faster per query at 100k+ chunks; the hybrid search runs the keyword leg in a thread beside the
dense leg (SQLite releases the GIL), which hides most of the difference.

The table is *external content* (``content='chunks'``): the text is stored once, in ``chunks``;
FTS5 adds only its inverted index. Columns: the chunk's title and text.

Queries are data: ``match_expression`` tokenises the user's text itself and quotes every term,
so FTS5 syntax (``"``, ``NEAR``, ``*``, ``-``, ``AND``, parentheses, ``:``) can never reach the
parser; terms are OR-ed and BM25 ranks by how many (and how rare) of them a chunk holds.
"""

from __future__ import annotations

import math
import re
import sqlite3
import threading
from dataclasses import dataclass

import numpy as np

from indexing.errors import ConfigError, StoreError

TABLE = "keyword"
# language -> FTS5 tokenizer; "english": Porter stemming + English stop words (dropped from
# queries); "simple": Unicode words without stemming or stop words, for any language written
# with spaces between words.
TOKENIZERS = {
    "english": "porter unicode61 remove_diacritics 2",
    "simple": "unicode61 remove_diacritics 2",
}
DEFAULT_LANGUAGE = "english"
MAX_QUERY_TERMS = 64  # a 100 KB query keeps its first 64 distinct terms: OR of more only costs time
DF_TABLE = "keyword_df"  # (term, df): document frequency of every stemmed term, written at commit
# An OR query costs ~1 us per matching (row, term) in FTS5's bm25(): 150 ms for a 10-term claim on
# 100k chunks of scientific text (bench/keyword_engines.py). Terms are taken rarest first while
# their summed document frequencies stay within this many postings (the rarest always): common
# terms carry little IDF, and latency stays bounded however large the store grows. Stores below
# ~POSTINGS_BUDGET chunks never lose a term.
POSTINGS_BUDGET = 2_000  # chosen by bench/fusion_rules.py, see rag/fusion.py
# unicode61's token characters: letters, numbers (and private use); everything else separates.
_TOKEN = re.compile(r"[^\W_]+", re.UNICODE)

# English stop words (NLTK's list plus a few query words): frequent words carry no BM25 signal
# but make an OR query visit most of the index.
STOP_WORDS = frozenset("""
a about above after again against all am an and any are aren arent as at be because been before being below
between both but by can cannot could couldn couldnt d did didn didnt do does doesn doesnt doing don dont down
during each few for from further had hadn hadnt has hasn hasnt have haven havent having he her here hers herself
him himself his how i if in into is isn isnt it its itself just ll m ma me might mightn more most mustn my myself
needn no nor not now o of off on once only or other our ours ourselves out over own re s same shan she should
shouldn shouldnt so some such t than that thats the their theirs them themselves then there these they this those
through to too under until up ve very was wasn wasnt we were weren werent what when where which while who whom why
will with won wont would wouldn wouldnt y you your yours yourself yourselves also does whose
""".split())


@dataclass(frozen=True)
class KeywordSettings:
    """How chunks are tokenised for the keyword index (recorded in the manifest)."""

    language: str = DEFAULT_LANGUAGE

    def __post_init__(self) -> None:
        if self.language not in TOKENIZERS:
            raise ConfigError(f"keyword language {self.language!r} is not one of {sorted(TOKENIZERS)}")

    @property
    def tokenizer(self) -> str:
        return TOKENIZERS[self.language]

    def manifest(self) -> dict[str, str]:
        return {"table": TABLE, "language": self.language, "tokenizer": self.tokenizer, "engine": "sqlite-fts5-bm25"}


def create(db: sqlite3.Connection, settings: KeywordSettings) -> None:
    """Create the (empty) FTS5 table over ``chunks(title, text)`` in a new chunk database."""
    db.execute(
        f"CREATE VIRTUAL TABLE {TABLE} USING fts5(title, text, content='chunks', content_rowid='row', "
        f"tokenize='{settings.tokenizer}')"
    )


def add(db: sqlite3.Connection, rows: list[tuple[int, str, str]]) -> None:
    """Index chunks given as (row, title, text); call after inserting them into ``chunks``."""
    db.executemany(f"INSERT INTO {TABLE}(rowid, title, text) VALUES (?,?,?)", rows)


def query_terms(query: str, language: str = DEFAULT_LANGUAGE) -> list[str]:
    """The distinct lowercase terms of ``query`` FTS5 will look up (stop words dropped for English;
    if a query is nothing but stop words they are kept)."""
    words = list(dict.fromkeys(w.lower() for w in _TOKEN.findall(query)))
    if language == "english":
        content = [w for w in words if w not in STOP_WORDS]
        words = content or words
    return words[:MAX_QUERY_TERMS]


def match_expression(query: str, language: str = DEFAULT_LANGUAGE) -> str | None:
    """An FTS5 MATCH string OR-ing every quoted term of ``query``; None when it has no terms.
    Terms hold only letters and digits, so quoting them makes each one a plain string."""
    terms = query_terms(query, language)
    return " OR ".join(f'"{t}"' for t in terms) if terms else None


def search(db: sqlite3.Connection, query: str, k: int, language: str = DEFAULT_LANGUAGE) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best rows by BM25: scores (m,) float32 (higher is better), rows (m,) int64, m <= k."""
    terms = budget_terms(db, query_terms(query, language), language)
    if not terms or k < 1:
        return np.zeros(0, np.float32), np.zeros(0, np.int64)
    sql = f"SELECT rowid, bm25({TABLE}) FROM {TABLE} WHERE {TABLE} MATCH ? ORDER BY bm25({TABLE}) LIMIT ?"
    return _run(db, sql, (_or(terms), int(k)))


def search_all(db: sqlite3.Connection, query: str, language: str = DEFAULT_LANGUAGE) -> tuple[np.ndarray, np.ndarray]:
    """BM25 of every matching row, unsorted: scores (m,), rows (m,). One pass, no sort: what the
    hybrid search needs (its top candidates *and* the scores of the dense leg's candidates);
    m is bounded by the postings budget."""
    return search_terms(db, budget_terms(db, query_terms(query, language), language))


def search_terms(db: sqlite3.Connection, terms: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """BM25 (this database's statistics) of every row holding one of ``terms``, unsorted."""
    if not terms:
        return np.zeros(0, np.float32), np.zeros(0, np.int64)
    return _run(db, f"SELECT rowid, bm25({TABLE}) FROM {TABLE} WHERE {TABLE} MATCH ?", (_or(terms),))


def search_terms_scaled(db: sqlite3.Connection, terms: list[str], stemmed: list[str], local: Stats, store: Stats) -> tuple[np.ndarray, np.ndarray]:
    """``search_terms`` scored with the whole store's IDFs instead of this database's.

    BM25 is a sum over the query's terms of IDF(term) times a term-frequency part, and FTS5
    computes that IDF from its own table: a small segment (one upload beside a large store) would
    rank by IDFs of a few chunks, where a term in 3 of 5 chunks weighs nothing. So each term is
    searched alone and its scores rescaled by IDF(store) / IDF(this database); the length
    normalisation keeps this database's average chunk length (chunks are about equal in tokens).
    One segment's scores are unchanged, and those of several equal a compacted store's up to that
    average length. Scores (m,) float32, rows (m,) int64, unsorted."""
    scores, rows = [np.zeros(0)], [np.zeros(0, np.int64)]
    sql = f"SELECT rowid, bm25({TABLE}) FROM {TABLE} WHERE {TABLE} MATCH ?"
    for term, stem in zip(terms, stemmed):
        S, R = _run(db, sql, (_or([term]),), np.float64)  # (a,), (a,)
        if not len(R):
            continue
        if not local.df.get(stem):
            raise StoreError(f"the keyword statistics ({DF_TABLE}) do not match the keyword index: damaged; "
                             "rebuild with `rag index ... --refit`")
        scores.append(S * (idf(store.rows, store.df[stem]) / idf(local.rows, local.df[stem])))
        rows.append(R)
    unique, at = np.unique(np.concatenate(rows), return_inverse=True)  # (m,), (a_total,)
    return np.bincount(at, weights=np.concatenate(scores), minlength=len(unique)).astype(np.float32), unique


def _or(terms: list[str]) -> str:
    """Terms hold only letters and digits: quoted, each is a plain string to FTS5."""
    return " OR ".join(f'"{t}"' for t in terms)


_local = threading.local()


def stems(terms: list[str], language: str = DEFAULT_LANGUAGE) -> list[str] | None:
    """The index's form of each term (FTS5's own tokenizer, in a private in-memory table); None
    if the tokenizer does not give exactly one token per term."""
    if not terms:
        return []
    conns = getattr(_local, "conns", None) or {}
    _local.conns = conns
    if language not in conns:
        c = sqlite3.connect(":memory:")
        c.execute(f"CREATE VIRTUAL TABLE t USING fts5(x, tokenize='{TOKENIZERS[language]}')")
        c.execute("CREATE VIRTUAL TABLE tv USING fts5vocab(t, 'instance')")
        conns[language] = c
    c = conns[language]
    c.execute("DELETE FROM t")
    c.execute("INSERT INTO t(rowid, x) VALUES (1, ?)", ("\n".join(terms),))
    out = [term for term, in c.execute("SELECT term FROM tv ORDER BY offset")]
    return out if len(out) == len(terms) else None


def doc_freqs(db: sqlite3.Connection, stemmed: list[str]) -> dict[str, int] | None:
    """Document frequency of each stemmed term in this database; None without the table."""
    if not stemmed:
        return {}
    marks = ",".join("?" * len(set(stemmed)))
    try:
        rows = db.execute(f"SELECT term, df FROM {DF_TABLE} WHERE term IN ({marks})", sorted(set(stemmed))).fetchall()
    except sqlite3.OperationalError:
        return None  # written before the table existed
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"the keyword index cannot be read: {exc}; rebuild with `rag index ... --refit`") from exc
    if not all(type(n) is int and n >= 0 for _, n in rows):
        raise StoreError(f"the keyword statistics ({DF_TABLE}) are damaged; rebuild with `rag index ... --refit`")
    return dict(rows)


def choose_terms(terms: list[str], stemmed: list[str], df: dict[str, int], budget: int | None = None) -> list[str]:
    """``terms`` (``stemmed`` their index forms), rarest first while their document frequencies
    sum to at most ``budget`` (the rarest is always kept), in query order."""
    budget = POSTINGS_BUDGET if budget is None else budget
    order = sorted(range(len(terms)), key=lambda i: (df.get(stemmed[i], 0), i))
    kept, total = [], 0
    for i in order:
        total += df.get(stemmed[i], 0)
        if kept and total > budget:
            break
        kept.append(i)
    return [terms[i] for i in sorted(kept)]


def budget_terms(db: sqlite3.Connection, terms: list[str], language: str = DEFAULT_LANGUAGE, budget: int | None = None) -> list[str]:
    """``choose_terms`` with this database's document frequencies; unchanged for a store
    without the document-frequency table."""
    if len(terms) < 2:
        return terms
    stemmed = stems(terms, language)
    df = doc_freqs(db, stemmed) if stemmed is not None else None
    return terms if df is None else choose_terms(terms, stemmed, df, budget)


@dataclass(frozen=True)
class Stats:
    """What BM25's IDF needs: ``rows`` indexed and the document frequency of each stemmed term."""

    rows: int
    df: dict[str, int]


def idf(rows: int, df: int) -> float:
    """FTS5's BM25 IDF of a term held by ``df`` of ``rows`` rows (its fts5_aux.c: at least 1e-6)."""
    value = math.log((rows - df + 0.5) / (df + 0.5))
    return value if value > 0.0 else 1e-6


def finish(db: sqlite3.Connection) -> None:
    """After the last chunk: write the document frequency of every term (one pass over the index)."""
    db.execute(f"CREATE VIRTUAL TABLE temp.{TABLE}_vocab USING fts5vocab(main, {TABLE}, row)")
    db.execute(f"CREATE TABLE {DF_TABLE}(term TEXT PRIMARY KEY, df INTEGER) WITHOUT ROWID")
    db.execute(f"INSERT INTO {DF_TABLE} SELECT term, doc FROM temp.{TABLE}_vocab")
    db.execute(f"DROP TABLE temp.{TABLE}_vocab")


def _run(db: sqlite3.Connection, sql: str, params: tuple, dtype: type = np.float32) -> tuple[np.ndarray, np.ndarray]:
    try:
        result = db.execute(sql, params).fetchall()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            raise StoreError(
                "this store has no keyword index (written by an older version); rebuild it with "
                "`rag index PATH... --store DIR --refit`, or search with --mode dense"
            ) from exc
        raise StoreError(f"keyword search failed: {exc}") from exc
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"the keyword index cannot be read: {exc}; rebuild with `rag index ... --refit`") from exc
    rows = np.fromiter((r for r, _ in result), np.int64, len(result))
    scores = -np.fromiter((s for _, s in result), dtype, len(result))  # FTS5's bm25() is negated
    return scores, rows


def index_bytes(db: sqlite3.Connection) -> int | None:
    """Bytes the FTS5 shadow tables and the document-frequency table take in the database
    (dbstat), None if it cannot be measured."""
    try:
        (total,) = db.execute("SELECT sum(pgsize) FROM dbstat WHERE name LIKE ? OR name LIKE ?",
                              (f"{TABLE}_%", f"sqlite_autoindex_{DF_TABLE}%")).fetchone()
    except sqlite3.DatabaseError:
        return None
    return int(total or 0)


def settings_from_manifest(section: dict | None, path: object) -> KeywordSettings | None:
    """The manifest's ``keyword`` section as settings; None if absent (a store older than it)."""
    if section is None:
        return None
    if not isinstance(section, dict) or section.get("language") not in TOKENIZERS:
        raise StoreError(f"{path}/manifest.json: keyword section {section!r} is corrupt; rebuild with `rag index ... --refit`")
    return KeywordSettings(section["language"])


def require(settings: KeywordSettings | None) -> KeywordSettings:
    """``settings``, or the error telling how to get a keyword index."""
    if settings is None:
        raise StoreError(
            "this store has no keyword index (it was written by an older version); rebuild it with "
            "`rag index PATH... --store DIR --refit`, or search with --mode dense"
        )
    return settings
