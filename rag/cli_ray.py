"""``--ray [ADDRESS]`` and ``--workers N``: the flags that run a command on Ray (indexing.ray_cluster)."""

from __future__ import annotations

import argparse
from typing import Any

from rag.cli_util import positive_int


def add_ray_flags(parser: argparse.ArgumentParser, workers: bool = False) -> None:
    parser.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                        help="run on Ray: alone, a local Ray on this machine's cores (127.0.0.1 only); "
                             "ADDRESS (host:port, ray://host:port, auto) joins a running cluster, whose nodes must all mount "
                             "the store at the same path (Ray actors write and read its segments)")
    if workers:
        parser.add_argument("--workers", type=positive_int, default=None,
                            help="embedding workers on Ray (default: one per CPU of the cluster)")


def ray_options(args: argparse.Namespace) -> Any:
    """RayOptions from the flags, or None without --ray (``--workers`` alone is a usage error)."""
    if args.ray is None:
        if getattr(args, "workers", None) is not None:
            from indexing.errors import ConfigError

            raise ConfigError("--workers applies to Ray runs: add --ray (a local Ray) or --ray ADDRESS")
        return None
    from indexing.ray_cluster import RayOptions

    return RayOptions(address=args.ray, workers=getattr(args, "workers", None))
