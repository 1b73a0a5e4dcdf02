"""Where the heavy stages run: in this process (``local``, the default) or on a Ray cluster (``ray``).

The ``score`` and ``generate`` stages can hand their work to Ray Data (``pip install 'cerbero-hf[ray]'``):
PLL scoring in a pool of scorer actors, generation fanned out over endpoint replicas. Their output is the same
as the local run's (same rows, same order, same scores within float rounding), so the engine is not part of a
stage's cache key: switching engines does not re-run a finished stage.

:class:`EngineConfig` is the recipe's top-level ``engine:`` section and the ``--engine`` / ``--ray-*`` flags of
``cerbero-hf score`` and ``cerbero-hf generate``::

    engine:
      kind: ray
      address: ${RAY_ADDRESS:-}   # empty: a new local cluster
      workers: 4
      gpus_per_worker: 0.5

:func:`ray_session` connects (address order: ``--ray-address``, then ``RAY_ADDRESS``, then a new local cluster
of ``num_cpus`` CPUs; never a bare ``ray.init()``, which attaches to whatever cluster a stale ``/tmp/ray`` file
names) and sizes the actor pool so Ray Data's read and write tasks keep at least one CPU: actors holding every
CPU make a run wait forever with no error (ray-project/ray#44687). ``ray`` is imported only here, only when the
engine is ``ray``.
"""

from __future__ import annotations

import contextlib
import math
import os
from dataclasses import dataclass
from typing import Any

from cerbero_hf.config import Config, key_of, setting
from cerbero_hf.errors import InputError

ENGINES = ("local", "ray")
# CPUs left to Ray Data's read/write tasks (each asks for one CPU): the pool never takes them
RESERVED_CPUS = 1.0


@dataclass
class EngineConfig(Config):
    """The engine of the ``score`` and ``generate`` stages, and the size of a Ray actor pool.

    Examples:
        >>> from cerbero_hf import EngineConfig
        >>> EngineConfig(kind="ray", workers=4).ray
        True
        >>> EngineConfig(kind="spark")
        Traceback (most recent call last):
        cerbero_hf.errors.InputError: column 'engine.kind': engine.kind must be local or ray, got 'spark'
    """

    SECTION = "engine"
    kind: str = setting("local", choices=ENGINES, flag="--engine",
                        help="local, or ray (pip install 'cerbero-hf[ray]').")
    address: str | None = setting(None, flag="--ray-address",
                                  help="Ray cluster to join (ray://host:10001 or host:6379); default: RAY_ADDRESS, "
                                       "else a new local cluster.")
    workers: int | None = setting(None, ge=1, flag="--ray-workers",
                                  help="Actors (scorers, generators); default: as many as fit, one CPU left to "
                                       "Ray Data.")
    cpus_per_worker: float = setting(1.0, gt=0, flag="--ray-cpus-per-worker",
                                     help="CPUs each actor reserves (fractions allowed); also its torch threads.")
    gpus_per_worker: float = setting(0.0, ge=0, flag="--ray-gpus-per-worker",
                                     help="GPUs per actor (0.5: two share a GPU).")
    batch_rows: int = setting(64, ge=1, flag="--ray-batch-rows",
                              help="Rows per Ray block: the unit of work, of resuming and of load balancing.")
    num_cpus: int | None = setting(None, ge=1, flag="--ray-num-cpus",
                                   help="CPUs of a new local cluster (default: all).")

    @property
    def ray(self) -> bool:
        return self.kind == "ray"


def resolve_address(config: EngineConfig) -> str:
    """The cluster to join: ``config.address``, else ``RAY_ADDRESS``, else ``"local"`` (a new local cluster)."""
    return config.address or os.environ.get("RAY_ADDRESS") or "local"


def size_pool(config: EngineConfig, cluster_cpus: float, cluster_gpus: float = 0.0) -> int:
    """The number of actors to start on a cluster with ``cluster_cpus`` CPUs and ``cluster_gpus`` GPUs.

    Default: as many as fit after :data:`RESERVED_CPUS` (and in the GPUs, when actors ask for some). An explicit
    ``workers`` that does not fit is an input error, before anything starts: the run would otherwise wait
    forever for a CPU (ray#44687).
    """
    free = cluster_cpus - RESERVED_CPUS
    fit = math.floor(free / config.cpus_per_worker + 1e-9) if free > 0 else 0
    if config.gpus_per_worker:
        fit = min(fit, math.floor(cluster_gpus / config.gpus_per_worker + 1e-9))
    workers = config.workers or fit
    need_cpus = workers * config.cpus_per_worker
    if workers < 1 or need_cpus > free + 1e-9:
        raise InputError(
            f"{key_of(config, 'workers')} {workers} x {key_of(config, 'cpus_per_worker')} {config.cpus_per_worker:g} "
            f"= {need_cpus:g} CPUs leaves less than {RESERVED_CPUS:g} of the cluster's {cluster_cpus:g} for Ray Data's "
            f"read/write tasks (the run would hang): use fewer workers or a smaller cpus_per_worker",
            column=key_of(config, "workers"))
    if config.gpus_per_worker and workers * config.gpus_per_worker > cluster_gpus + 1e-9:
        raise InputError(f"{workers} workers x {config.gpus_per_worker:g} GPUs need more than the cluster's "
                         f"{cluster_gpus:g} GPUs", column=key_of(config, "gpus_per_worker"))
    return workers


@dataclass
class RaySession:
    """A connected Ray cluster and the actor pool sized for it."""

    config: EngineConfig
    address: str
    workers: int
    cpus: float
    gpus: float

    def actor_options(self) -> dict:
        """``num_cpus`` / ``num_gpus`` of each actor (for ``map_batches`` or ``.options``)."""
        options = {"num_cpus": self.config.cpus_per_worker}
        if self.config.gpus_per_worker:
            options["num_gpus"] = self.config.gpus_per_worker
        return options

    @property
    def torch_threads(self) -> int:
        """Threads for torch in each actor: its CPU reservation, at least one."""
        return max(1, int(self.config.cpus_per_worker))


def quiet_ray_data() -> None:
    """No progress bars or per-run banners from Ray Data (our console prints what matters)."""
    import logging

    import ray.data

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    for attr in ("print_on_execution_start", "enable_operator_progress_bars"):
        if hasattr(ctx, attr):
            setattr(ctx, attr, False)
    logging.getLogger("ray.data").setLevel(logging.WARNING)


@contextlib.contextmanager
def ray_session(config: EngineConfig):
    """Connect to Ray (see the module docstring), size the actor pool, and disconnect at the end.

    A Ray already initialised in this process (by a caller or a test) is used as it is and left running.

    Raises:
        InputError: ``ray`` is not installed (names the extra), the address cannot be reached, or the pool
            does not fit the cluster.
    """
    from cerbero_hf.errors import require

    ray = require("ray", "ray", f"{key_of(config, 'kind')} ray")
    owned = not ray.is_initialized()
    address = resolve_address(config)
    if owned:
        # no usage report. (Ray's dashboard process still asks the cloud metadata servers once at start-up:
        # see docs/deployment.md, "Beyond one machine: Ray".)
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        kwargs: dict[str, Any] = dict(include_dashboard=False, log_to_driver=False, configure_logging=False)
        if address == "local":
            # no idle workers started ahead for the driver: actors start their own (saves ~170 MB and a second)
            kwargs.update(num_cpus=config.num_cpus or os.cpu_count() or 1,
                          _system_config={"prestart_worker_first_driver": False})
        try:
            ray.init(address=address, **kwargs)
        except (ConnectionError, RuntimeError, ValueError) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise InputError(f"cannot join the Ray cluster at {address}: {first}",
                             column=key_of(config, "address")) from None
    try:
        quiet_ray_data()
        resources = ray.cluster_resources()
        cpus, gpus = float(resources.get("CPU", 0)), float(resources.get("GPU", 0))
        workers = size_pool(config, cpus, gpus)
        yield RaySession(config, address, workers, cpus, gpus)
    finally:
        if owned:
            ray.shutdown()
