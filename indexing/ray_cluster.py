"""Start or join Ray for distributed indexing and search, without network use nobody asked for.

``--ray`` alone (address ``local``) starts a private local Ray bound to 127.0.0.1 with the
machine's cores, no dashboard, usage-stats reporting off, worker logs not copied to the driver;
it is shut down when the work is done. ``--ray ADDRESS`` (``host:port`` of a head node's GCS,
``ray://host:port`` for Ray Client, or ``auto``) joins a cluster the user runs: the address is
checked with one TCP connect first, so a wrong one fails in seconds with what to do. A process
that already called ``ray.init`` (a notebook, the tests) is used as it is and left running.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from indexing.errors import ClusterError, ConfigError

LOCAL = "local"
RAY_ENV = {
    "RAY_USAGE_STATS_ENABLED": "0",  # Ray's usage-stats reporting (a POST to ray.io) off
    "RAY_USAGE_STATS_PROMPT_ENABLED": "0",
    "RAY_DISABLE_DOCKER_CPU_WARNING": "1",
    "RAY_worker_niceness": "0",  # a local Ray's workers at the driver's priority (Ray's default: nice 15)
}
CONNECT_TIMEOUT = 5.0  # seconds for the reachability check of a cluster address
NAMESPACE = "compressed-rag"
# Ray turns ``_node_ip_address="127.0.0.1"`` into the machine's "remotely reachable" address
# (services.resolve_ip_for_localhost: a UDP connect towards 8.8.8.8 picks the interface) and binds
# its daemons there, i.e. on the LAN. Its switch for single-machine Ray (meant for macOS/Windows)
# keeps every address on loopback; read when ray is imported, also checked after start-up.
LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
# Ray's dashboard process (started even with include_dashboard=False, to host usage stats) asks the
# cloud metadata endpoints (169.254.169.254, metadata.google.internal) which cloud it runs on before
# it reads RAY_USAGE_STATS_ENABLED (ray 2.60, usage_stats_head.run). Ray's daemons are started with
# HTTP(S) sent to a dead loopback proxy, except loopback itself, so that probe fails on this
# machine; the job's workers get the user's own proxy settings back through the runtime env.
DEAD_PROXY = "http://127.0.0.1:9"
PROXY_VARS = ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "no_proxy", "NO_PROXY")


@dataclass(frozen=True)
class RayOptions:
    """How to run on Ray: ``address`` is ``local`` (start one here) or a cluster address;
    ``workers`` embedding actors (default: one per CPU of the cluster, at most 64);
    ``gpus_per_worker`` (default: 1 when the cluster has a GPU per worker, else 0);
    ``embedder_factory``: a picklable callable building the embedder inside each actor
    (default: the driver's model, rebuilt by name)."""

    address: str = LOCAL
    workers: int | None = None
    gpus_per_worker: float | None = None
    embedder_factory: Callable[[], Any] | None = None

    def __post_init__(self) -> None:
        if self.workers is not None and self.workers < 1:
            raise ConfigError(f"--workers {self.workers}: use 1 or more")
        if not self.address or not self.address.strip():
            raise ConfigError("--ray ADDRESS is empty: pass host:port of a Ray head node, or --ray alone for a local Ray")


    def check(self) -> None:
        """Fail fast, before any work: Ray is importable and a cluster address answers."""
        import_ray(local=self.address == LOCAL)
        if self.address != LOCAL:
            check_reachable(self.address)


def import_ray(local: bool = False) -> Any:
    """``ray`` with usage stats off (set before the import, unless the user set them). ``local``:
    Ray's node address stays on loopback (see ``_keep_on_loopback``)."""
    for name, value in RAY_ENV.items():
        os.environ.setdefault(name, value)
    if local:
        os.environ.setdefault(LOOPBACK_ENV, "0")
    try:
        import ray
        import ray.data  # noqa: F401 - the pipeline needs Ray Data; fail here, not mid-run
    except ImportError as exc:
        raise ClusterError(f"--ray needs Ray with Ray Data: pip install 'ray[data]' ({exc})") from None
    return ray


def check_reachable(address: str) -> None:
    """One TCP connect to ``host:port`` (or ``ray://host:port``); ClusterError saying what to do."""
    if address == "auto":
        return
    hostport = address.removeprefix("ray://")
    host, sep, port = hostport.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ConfigError(f"--ray {address!r}: expected host:port (e.g. 10.0.0.5:6379), ray://host:10001, auto, or "
                          "local (a local Ray; --ray alone works too when it comes after the PATHs)")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT):
            pass
    except OSError as exc:
        raise ClusterError(
            f"cannot reach the Ray cluster at {address} ({exc.strerror or exc}); start it there with "
            f"`ray start --head`, check the address and firewall, or pass --ray alone for a local Ray"
        ) from None


@contextmanager
def ray_session(options: RayOptions) -> Iterator[Any]:
    """Ray, ready to use: started locally, joined, or the caller's own; shut down if we started it."""
    ray = import_ray(local=options.address == LOCAL)
    if ray.is_initialized():
        yield ray
        return
    if options.address != LOCAL:
        check_reachable(options.address)
    kwargs: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.ERROR,
                              "namespace": NAMESPACE, "configure_logging": True}
    try:
        if options.address == LOCAL:
            _keep_on_loopback(ray)
            with _daemons_offline() as user_env:
                ray.init(address="local",  # always a new private Ray, never one RAY_ADDRESS or `ray start` left
                         num_cpus=os.cpu_count() or 1, _node_ip_address="127.0.0.1", include_dashboard=False,
                         runtime_env={"env_vars": user_env}, **kwargs)
        else:
            ray.init(address=options.address, **kwargs)
    except Exception as exc:  # Ray raises ConnectionError, RuntimeError, ValueError...
        where = "start a local Ray" if options.address == LOCAL else f"join the Ray cluster at {options.address}"
        raise ClusterError(f"cannot {where}: {exc}. Check `ray status`, or index without --ray").with_traceback(None) from None
    try:
        if options.address == LOCAL and ray.util.get_node_ip_address() != "127.0.0.1":
            raise ClusterError(f"the local Ray started on {ray.util.get_node_ip_address()}, not 127.0.0.1; "
                               f"unset {LOOPBACK_ENV} or index without --ray")
        _quiet_data()
        _raylet_messages_to_log(ray)
        yield ray
    finally:
        ray.shutdown()


def _keep_on_loopback(ray: Any) -> None:
    """Single-machine mode (see LOOPBACK_ENV) even when ray was imported before the variable was set."""
    from ray._private import ray_constants

    if os.environ.get(LOOPBACK_ENV) == "0":
        ray_constants.ENABLE_RAY_CLUSTER = False


@contextmanager
def _daemons_offline() -> Iterator[dict[str, str]]:
    """While Ray's daemons start: HTTP(S) goes to DEAD_PROXY except for loopback. Yields the user's
    proxy variables ("" where unset: an empty proxy variable means none) for the job's workers."""
    saved = {name: os.environ.get(name) for name in PROXY_VARS}
    loopback = "127.0.0.1,localhost,::1"
    os.environ.update(http_proxy=DEAD_PROXY, HTTP_PROXY=DEAD_PROXY, https_proxy=DEAD_PROXY, HTTPS_PROXY=DEAD_PROXY,
                      no_proxy=loopback, NO_PROXY=loopback)
    try:
        yield {name: value or "" for name, value in saved.items()}
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _quiet_data() -> None:
    """Ray Data's progress bars and start-up logs off: the driver draws its own progress bar."""
    import ray.data

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    if hasattr(ctx, "print_on_execution_start"):
        ctx.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.ERROR)


def _raylet_messages_to_log(ray: Any) -> None:
    """Ray's driver prints the raylet's messages (a task retried, a worker dead, with tracebacks) to
    stdout, where they broke ``--json`` output; they go to this module's debug log instead (a failure
    that matters is our own one-line error). Only in a Ray this process started or joined."""
    worker = getattr(getattr(ray, "_private", None), "worker", None)
    original = getattr(worker, "print_to_stdstream", None)
    if original is None or getattr(original, "rag_quiet", False):
        return

    def to_log(data: dict[str, Any], *args: Any, **kwargs: Any) -> None:
        if data.get("pid") == "raylet":
            logging.getLogger(__name__).debug("raylet: %s", "\n".join(map(str, data.get("lines", []))))
            return
        original(data, *args, **kwargs)

    to_log.rag_quiet = True  # type: ignore[attr-defined]
    worker.print_to_stdstream = to_log


def cluster_cpus(ray: Any) -> int:
    """Logical CPUs the cluster offers (at least 1)."""
    return max(1, int(ray.cluster_resources().get("CPU", 1)))


def cluster_gpus(ray: Any) -> float:
    return float(ray.cluster_resources().get("GPU", 0.0))


def error_line(exc: BaseException) -> str:
    """The last non-blank line of a Ray error (its own message, after Ray's traceback), for a
    one-line ClusterError."""
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__
