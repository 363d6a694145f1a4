"""Sharded dense search on Ray: a store's segments spread over actors, results merged exactly.

Each actor opens the store at the driver's manifest (the same immutable segments, the same global
row numbers) and answers ``indexing.search.candidates`` for its shard: its first-stage top ``c``
and their full-vector scores. The driver merges the shards with ``merge_candidates`` into exactly
the rows and scores one process searching every segment gives (tests/test_ray_search.py). An
actor that dies is restarted on a replacement and the query retried (``retries`` times); past
that the query fails with ClusterError, unless ``allow_partial``: then the shards that answered
are merged and ``last_missing`` names the segments that did not.

Each actor scans its segments with ``shard_threads`` OpenMP threads (the cluster's CPUs shared by
the shards; Ray would otherwise give a ``num_cpus=0`` actor one thread), reads its segments'
codes when it starts (not in the first query), and shards are spread over the cluster's nodes.
Queries and candidates travel as bytes (``pack_query``, ``pack_candidates``), which Ray passes
as they are, not as numpy arrays it pickles. Ray's Compiled Graphs would cut the round trip
further (0.75 vs 2.55 ms p50 for two actors, bench/results/ray_roundtrip.json), but their actors
poll their channels while idle (70-76 % of a core each, same file), so ordinary actor calls are
used: see bench/README.md ("Sharded search on Ray").
"""

from __future__ import annotations

import os
import struct
from typing import Any

import numpy as np

from indexing.errors import ClusterError, ConfigError
from indexing.ray_cluster import RayOptions, cluster_cpus, error_line, ray_session
from indexing.store import Store

QUERY_TIMEOUT = 60.0  # seconds a shard may take for one batch of queries
_QUERY, _REPLY = struct.Struct("<iii"), struct.Struct("<ii")  # (nq, d, c) and (nq, c) headers


def pack_query(xq: np.ndarray, c: int) -> bytes:
    """xq (nq, d) float32 and ``c`` as one bytes message (shapes in a small header)."""
    xq = np.ascontiguousarray(xq, np.float32)
    return _QUERY.pack(*xq.shape, c) + xq.tobytes()


def unpack_query(msg: bytes) -> tuple[np.ndarray, int]:
    nq, d, c = _QUERY.unpack_from(msg)
    return np.frombuffer(msg, np.float32, nq * d, _QUERY.size).reshape(nq, d), c


def pack_candidates(D0: np.ndarray, I: np.ndarray, R: np.ndarray) -> bytes:
    """A shard's ``candidates`` D0, R (nq, c) float32 and I (nq, c) int64 as one bytes message."""
    return _REPLY.pack(*I.shape) + np.ascontiguousarray(D0, np.float32).tobytes() + \
        np.ascontiguousarray(I, np.int64).tobytes() + np.ascontiguousarray(R, np.float32).tobytes()


def unpack_candidates(msg: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    nq, c = _REPLY.unpack_from(msg)
    m, at = nq * c, _REPLY.size
    D0 = np.frombuffer(msg, np.float32, m, at).reshape(nq, c)
    I = np.frombuffer(msg, np.int64, m, at + 4 * m).reshape(nq, c)
    R = np.frombuffer(msg, np.float32, m, at + 12 * m).reshape(nq, c)
    return D0, I, R


def split_segments(live: list[int], shards: int) -> list[list[int]]:
    """Segment ids in ``shards`` groups of about equal live rows (largest first, to the lightest
    group); empty groups are dropped, each group's ids sorted."""
    groups: list[list[int]] = [[] for _ in range(max(1, shards))]
    load = [0] * len(groups)
    for s in sorted(range(len(live)), key=lambda s: -live[s]):
        g = load.index(min(load))
        groups[g].append(s)
        load[g] += live[s]
    return [sorted(g) for g in groups if g]


def shard_threads(cpus: int, shards: int) -> int:
    """OpenMP threads for each shard actor: the cluster's ``cpus`` shared evenly by ``shards``."""
    return max(1, cpus // max(1, shards))


class _Shard:
    """A Ray actor holding some segments of a store opened at a given manifest."""

    def __init__(self, path: str, manifest: dict[str, Any], segments: list[int]) -> None:
        from pathlib import Path

        from indexing.manifest import MANIFEST, Manifest

        self.store = Store(Path(path), Manifest.parse(manifest, Path(path) / MANIFEST), lazy=True)
        self.segments = segments
        for s in segments:  # this shard's codes read now, not in its first query (other segments stay unread)
            self.store.segments[s].index  # noqa: B018

    def threads(self) -> int:
        """OpenMP threads this actor's scan uses (OMP_NUM_THREADS, set for it by ShardedSearch)."""
        return int(os.environ.get("OMP_NUM_THREADS", "0")) or (os.cpu_count() or 1)

    def pid(self) -> int:
        return os.getpid()

    def candidates(self, msg: bytes) -> bytes:
        """``pack_query`` message -> ``pack_candidates`` message of this shard's segments."""
        from indexing.search import candidates

        xq, c = unpack_query(msg)
        return pack_candidates(*candidates(self.store, xq, c, self.segments))


class ShardedSearch:
    """``search(xq, k, oversample)`` over ``store``'s segments on Ray actors (``shards`` of them,
    default: one per cluster CPU, at most one per segment). ``close()`` ends the actors and a Ray
    this object started."""

    def __init__(self, store: Store, options: RayOptions, shards: int | None = None, allow_partial: bool = False,
                 retries: int = 1) -> None:
        self.store, self.allow_partial = store, allow_partial
        self.last_missing: list[int] = []  # segments whose shard did not answer the last search
        options.check()
        self._session = ray_session(options)
        self.ray = self._session.__enter__()
        try:
            live = [seg.live for seg in store.segments]
            cpus = cluster_cpus(self.ray)
            self.groups = split_segments(live, shards or options.workers or cpus)
            env = {"OMP_NUM_THREADS": str(shard_threads(cpus, len(self.groups)))}  # merged into the job's env vars
            actor = self.ray.remote(num_cpus=0)(_Shard).options(max_restarts=retries, max_task_retries=retries,
                                                                  scheduling_strategy="SPREAD", runtime_env={"env_vars": env})
            manifest = store.manifest.to_json()
            path = os.path.abspath(store.path)  # a shard (a Ray worker) has its own working directory
            self.actors = [actor.remote(path, manifest, g) for g in self.groups]
            self.pids = self.ray.get([a.pid.remote() for a in self.actors], timeout=QUERY_TIMEOUT)
        except Exception as exc:
            self.close()
            if isinstance(exc, (ClusterError, ConfigError)):
                raise
            raise ClusterError(f"cannot start the search shards on Ray: {error_line(exc)}") from None

    def search(self, xq: np.ndarray, k: int, oversample: int) -> tuple[np.ndarray, np.ndarray]:
        """xq (nq, d) unit queries -> D, I (nq, k) global rows, as ``indexing.search.search``."""
        from indexing.search import merge_candidates, search

        if k < 1 or oversample < 1:
            raise ConfigError(f"k={k} and oversample={oversample} must both be >= 1")
        if not self.groups:  # no segment at all (every document deleted): nothing to spread, nothing to find
            self.last_missing = []
            return search(self.store, xq, k, oversample)
        n = max(self.store.n, 1)
        k, c = min(k, n), min(k * oversample, n)
        msg = pack_query(xq, c)
        pending = [a.candidates.remote(msg) for a in self.actors]  # a small message travels inline with the call
        self.last_missing = []
        try:
            return merge_candidates([unpack_candidates(m) for m in self.ray.get(pending, timeout=QUERY_TIMEOUT)], k, c)
        except (self.ray.exceptions.RayError, TimeoutError):
            pass  # one shard failed for good (Ray already restarted and retried it): which, below
        parts, missing = [], []
        for group, future in zip(self.groups, pending):
            try:
                parts.append(unpack_candidates(self.ray.get(future, timeout=QUERY_TIMEOUT)))
            except (self.ray.exceptions.RayError, TimeoutError) as exc:
                if not self.allow_partial:
                    raise ClusterError(f"a search shard (segments {group}) failed and was not recovered: {error_line(exc)}; "
                                       "no partial answer was given (pass allow_partial=True to accept one)") from None
                missing += group
        self.last_missing = missing
        if not parts:
            raise ClusterError("every search shard failed; check `ray status`")
        return merge_candidates(parts, k, c)

    def close(self) -> None:
        for a in getattr(self, "actors", []):
            try:
                self.ray.kill(a)
            except Exception:  # noqa: BLE001 - already gone
                pass
        self.actors = []
        session, self._session = getattr(self, "_session", None), None
        if session is not None:
            session.__exit__(None, None, None)
