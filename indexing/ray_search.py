"""Sharded dense search on Ray: a store's segments spread over actors, results merged exactly.

Each actor opens the store at the driver's manifest (the same immutable segments, the same global
row numbers) and answers ``indexing.search.candidates`` for its shard: its first-stage top ``c``
and their full-vector scores. The driver merges the shards with ``merge_candidates`` into exactly
the rows and scores one process searching every segment gives (tests/test_ray_search.py). An
actor that dies is restarted on a replacement and the query retried (``retries`` times); past
that the query fails with ClusterError, unless ``allow_partial``: then the shards that answered
are merged and ``last_missing`` names the segments that did not.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from indexing.errors import ClusterError, ConfigError
from indexing.ray_cluster import RayOptions, cluster_cpus, ray_session
from indexing.store import Store

QUERY_TIMEOUT = 60.0  # seconds a shard may take for one batch of queries


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


class _Shard:
    """A Ray actor holding some segments of a store opened at a given manifest."""

    def __init__(self, path: str, manifest: dict[str, Any], segments: list[int]) -> None:
        from pathlib import Path

        from indexing.manifest import MANIFEST, Manifest

        self.store = Store(Path(path), Manifest.parse(manifest, Path(path) / MANIFEST), lazy=True)
        self.segments = segments

    def pid(self) -> int:
        import os

        return os.getpid()

    def candidates(self, xq: np.ndarray, c: int) -> tuple[np.ndarray, ...]:
        from indexing.search import candidates

        return candidates(self.store, xq, c, self.segments)


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
            self.groups = split_segments(live, shards or options.workers or cluster_cpus(self.ray))
            actor = self.ray.remote(num_cpus=0)(_Shard).options(max_restarts=retries, max_task_retries=retries)
            manifest = store.manifest.to_json()
            self.actors = [actor.remote(str(store.path), manifest, g) for g in self.groups]
            self.pids = self.ray.get([a.pid.remote() for a in self.actors], timeout=QUERY_TIMEOUT)
        except Exception as exc:
            self.close()
            if isinstance(exc, (ClusterError, ConfigError)):
                raise
            raise ClusterError(f"cannot start the search shards on Ray: {_first_line(exc)}") from None

    def search(self, xq: np.ndarray, k: int, oversample: int) -> tuple[np.ndarray, np.ndarray]:
        """xq (nq, d) unit queries -> D, I (nq, k) global rows, as ``indexing.search.search``."""
        from indexing.search import merge_candidates

        if k < 1 or oversample < 1:
            raise ConfigError(f"k={k} and oversample={oversample} must both be >= 1")
        n = max(self.store.n, 1)
        k, c = min(k, n), min(k * oversample, n)
        xq = np.ascontiguousarray(xq, np.float32)
        pending = [a.candidates.remote(xq, c) for a in self.actors]  # a small xq travels inline with the call
        self.last_missing = []
        try:
            return merge_candidates(self.ray.get(pending, timeout=QUERY_TIMEOUT), k, c)
        except (self.ray.exceptions.RayError, TimeoutError):
            pass  # one shard failed for good (Ray already restarted and retried it): which, below
        parts, missing = [], []
        for group, future in zip(self.groups, pending):
            try:
                parts.append(self.ray.get(future, timeout=QUERY_TIMEOUT))
            except (self.ray.exceptions.RayError, TimeoutError) as exc:
                if not self.allow_partial:
                    raise ClusterError(f"a search shard (segments {group}) failed and was not recovered: {_first_line(exc)}; "
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


def _first_line(exc: BaseException) -> str:
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__
