"""The keyword index: SQLite FTS5 over the chunk table of ``chunks.sqlite``, queried by BM25.

Why FTS5 and not a dedicated BM25 library (``bench/keyword_engines.py``, results in
``bench/results/keyword_engines.json``): FTS5 is already inside the chunk database, so the
keyword index is written by the same generation writer, in the same file, under the same
checksum and atomic manifest swap as the chunks; it is updated row by row (a library such as
``bm25s`` rebuilds its sparse matrix from every chunk and needs its own files and pickles-free
serialisation), and its quality on SciFact is on par with bm25s (same Okapi BM25). bm25s was
~8x faster per query at 100k chunks than FTS5's bm25(), mostly FTS5's per-row length lookups;
the store now reads FTS5's postings and scores them itself (``indexing.bm25``, row lengths
written at commit by ``finish``).

The table is *external content* (``content='chunks'``): the text is stored once, in ``chunks``;
FTS5 adds only its inverted index. Columns: the chunk's title and text.

Queries are data: ``query_terms`` tokenises the user's text itself into words of letters and
digits, each looked up as one term (a bound parameter, or quoted in an OR of terms for FTS5's
MATCH), so FTS5 syntax (``"``, ``NEAR``, ``*``, ``-``, ``AND``, parentheses, ``:``) never
reaches a parser; BM25 ranks by how many (and how rare) of the terms a chunk holds.
"""

from __future__ import annotations

import re
import sqlite3
import threading
from dataclasses import dataclass

import numpy as np

from indexing.errors import ConfigError, StoreError

TABLE = "keyword"
COLUMNS = ("title", "text")
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
LENGTHS_TABLE = "keyword_lengths"  # one row: every row's tokens (all columns), little-endian uint32, written at commit
VOCAB = "keyword_instances"  # a temporary fts5vocab table over the index: one row per occurrence of a term
# Every posting searched costs time: FTS5's bm25() took ~1 us per (row, term) at 100k chunks (150 ms
# for a 10-term claim of scientific text, bench/keyword_engines.py) and ~4 us per matching row at
# 1M; the store's own scoring (indexing.bm25) ~0.7 us per matching row at 1M, fixed costs included
# (bench/keyword_scoring.py). Terms are taken rarest first while
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
        f"CREATE VIRTUAL TABLE {TABLE} USING fts5({', '.join(COLUMNS)}, content='chunks', content_rowid='row', "
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


def search_terms(db: sqlite3.Connection, terms: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """FTS5's own bm25() (this database's statistics) of every row holding one of ``terms``,
    unsorted: scores (a,) float32, rows (a,) int64. The search of a store written before the
    keyword statistics (``Store.keyword_all`` scores the others itself, ``indexing.bm25``)."""
    if not terms:
        return np.zeros(0, np.float32), np.zeros(0, np.int64)
    return _run(db, f"SELECT rowid, bm25({TABLE}) FROM {TABLE} WHERE {TABLE} MATCH ?", (_or(terms),))


def _or(terms: list[str]) -> str:
    """Terms hold only letters and digits: quoted, each is a plain string to FTS5."""
    return " OR ".join(f'"{t}"' for t in terms)


_local = threading.local()


def stems(terms: list[str], language: str = DEFAULT_LANGUAGE) -> list[str] | None:
    """The index's form of each term (FTS5's own tokenizer, in a private in-memory table); None
    if the tokenizer does not give exactly one token for each term (unicode61's Unicode 6.1 drops
    a few letters Python's newer tables have: such a term is a phrase, or nothing, to FTS5)."""
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
    c.executemany("INSERT INTO t(rowid, x) VALUES (?, ?)", enumerate(terms))
    out = c.execute("SELECT doc, term FROM tv ORDER BY doc, offset").fetchall()
    return [term for _, term in out] if [doc for doc, _ in out] == list(range(len(terms))) else None


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


def finish(db: sqlite3.Connection) -> None:
    """After the last chunk: write the document frequency of every term (one pass over the index)
    and every row's length in tokens (what BM25 needs beside the postings, ``indexing.bm25``)."""
    db.execute(f"CREATE VIRTUAL TABLE temp.{TABLE}_vocab USING fts5vocab(main, {TABLE}, row)")
    db.execute(f"CREATE TABLE {DF_TABLE}(term TEXT PRIMARY KEY, df INTEGER) WITHOUT ROWID")
    db.execute(f"INSERT INTO {DF_TABLE} SELECT term, doc FROM temp.{TABLE}_vocab")
    db.execute(f"DROP TABLE temp.{TABLE}_vocab")
    lengths = _docsize_lengths(db)
    db.execute(f"CREATE TABLE {LENGTHS_TABLE}(id INTEGER PRIMARY KEY, lengths BLOB NOT NULL)")
    db.execute(f"INSERT INTO {LENGTHS_TABLE} VALUES (0, ?)", (lengths.astype("<u4").tobytes(),))


def token_counts(db: sqlite3.Connection, rows: int) -> np.ndarray:
    """Every row's length in tokens (title + text), (rows,) int64: the array ``finish`` wrote, or
    for a database written before it, decoded from FTS5's own docsize table."""
    try:  # a blob of any other size is never read (length() reads no overflow pages)
        got = db.execute(f"SELECT CASE WHEN typeof(lengths) = 'blob' AND length(lengths) = ? THEN lengths END "
                         f"FROM {LENGTHS_TABLE} WHERE id = 0", (4 * rows,)).fetchone()
    except sqlite3.OperationalError:
        lengths = _docsize_lengths(db)  # written before the table existed
    except sqlite3.DatabaseError as exc:  # a corrupt page
        raise StoreError(f"the keyword row lengths cannot be read: {exc}; rebuild with `rag index ... --refit`") from exc
    else:
        if got is None or not isinstance(got[0], bytes) or len(got[0]) != 4 * rows:
            raise StoreError(f"the keyword row lengths ({LENGTHS_TABLE}) are not {rows} lengths: damaged; "
                             "rebuild with `rag index ... --refit`")
        lengths = np.frombuffer(got[0], "<u4").astype(np.int64)
    if len(lengths) != rows:
        raise StoreError(f"the keyword index holds {len(lengths)} row lengths for {rows} rows: damaged; "
                         "rebuild with `rag index ... --refit`")
    return lengths


def _docsize_lengths(db: sqlite3.Connection) -> np.ndarray:
    """Tokens of each row (all columns) from FTS5's docsize table: one varint per column (SQLite's
    format: 7 bits a byte, most significant first, the high bit set on all but the last byte)."""
    try:
        pairs = db.execute(f"SELECT id, sz FROM {TABLE}_docsize ORDER BY id").fetchall()
        blob = np.frombuffer(b"".join(sz for _, sz in pairs), np.uint8)  # (bytes,)
    except (sqlite3.DatabaseError, TypeError) as exc:
        raise StoreError(f"the keyword index's row sizes cannot be read: {exc}; rebuild with `rag index ... --refit`") from exc
    ids = np.fromiter((i for i, _ in pairs), np.int64, len(pairs))  # (rows,)
    last = np.cumsum(np.fromiter((len(sz) for _, sz in pairs), np.int64, len(pairs))) - 1  # (rows,) each row's last byte
    ends = np.flatnonzero(blob < 0x80)  # (varints,) the last byte of each varint
    per_row = np.bincount(np.searchsorted(last, ends), minlength=len(ids))  # (rows,) varints ending in each row
    # every row: its ids in order, one varint per column, none left open, none over 5 bytes (2**35)
    if (not np.array_equal(ids, np.arange(len(ids))) or np.any(per_row != len(COLUMNS)) or np.any(blob[last] >= 0x80)
            or np.any(np.diff(np.r_[-1, ends]) > 5)):
        raise StoreError(f"the keyword index's row sizes ({TABLE}_docsize) are damaged; rebuild with `rag index ... --refit`")
    varint = np.repeat(np.arange(len(ends)), np.diff(np.r_[-1, ends]))  # (bytes,) which varint each byte is in
    place = ends[varint] - np.arange(len(blob))  # (bytes,) 0 for a varint's last byte
    values = np.bincount(varint, weights=(blob & 0x7F) * 128.0 ** place, minlength=len(ends))  # (varints,)
    return values.reshape(len(ids), len(COLUMNS)).sum(axis=1).astype(np.int64)


def postings(db: sqlite3.Connection, stem: str, rows: int) -> np.ndarray:
    """The rows holding the index term ``stem``, one entry per occurrence, ascending: (a,) int64.
    Read as one string (a common term has millions of occurrences: no Python tuple for each)."""
    _fetch(db, f"CREATE VIRTUAL TABLE IF NOT EXISTS temp.{VOCAB} USING fts5vocab(main, {TABLE}, instance)", ())
    ((hits,),) = _fetch(db, f"SELECT group_concat(doc, ' ') FROM temp.{VOCAB} WHERE term = ?", (stem,))
    found = np.fromstring(hits, np.int64, sep=" ") if hits else np.zeros(0, np.int64)  # in the scan's order
    if len(found) and (found[0] < 0 or found[-1] >= rows or np.any(np.diff(found) < 0)):
        raise StoreError("the keyword index names rows the segment lacks: damaged; rebuild with `rag index ... --refit`")
    return found


def _run(db: sqlite3.Connection, sql: str, params: tuple) -> tuple[np.ndarray, np.ndarray]:
    result = _fetch(db, sql, params)
    rows = np.fromiter((r for r, _ in result), np.int64, len(result))
    scores = -np.fromiter((s for _, s in result), np.float32, len(result))  # FTS5's bm25() is negated
    return scores, rows


def _fetch(db: sqlite3.Connection, sql: str, params: tuple) -> list[tuple]:
    """The rows of a query on the keyword index, its failures as StoreErrors saying what to do."""
    try:
        return db.execute(sql, params).fetchall()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            raise StoreError(
                "this store has no keyword index (written by an older version); rebuild it with "
                "`rag index PATH... --store DIR --refit`, or search with --mode dense"
            ) from exc
        raise StoreError(f"keyword search failed: {exc}") from exc
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"the keyword index cannot be read: {exc}; rebuild with `rag index ... --refit`") from exc


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
