"""Ray for a stage: a session (join ``ray.address`` or start a local Ray with ``ray.num_cpus``) and
bounded task submission with a progress bar (curation's and the clips stage's tasks)."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
from collections import Counter

from tqdm import tqdm

from ..config import RayConfig, UserError

log = logging.getLogger(__name__)


@contextlib.contextmanager
def ray_session(cfg: RayConfig):
    """Yield an initialised Ray; shut it down afterwards only if this call started it."""
    import ray

    if ray.is_initialized():
        yield ray
        return
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    if cfg.address:
        log.info("joining the Ray cluster at %s", cfg.address)
        ray.init(address=cfg.address, log_to_driver=True)
    else:
        ray.init(num_cpus=cfg.num_cpus, include_dashboard=False, log_to_driver=True, configure_logging=False)
    try:
        yield ray
    finally:
        ray.shutdown()


def _on_node(fn, *args):
    """Run ``fn(*args)`` in a Ray task and say which node ran it."""
    import ray

    return ray.get_runtime_context().get_node_id(), fn(*args)


def run_tasks(ray, fn, args: list, desc: str, unit: str, weights: list[int], kill_after: int | None = None,
               nodes: Counter | None = None, in_flight: int | None = None) -> list:
    """Run ``fn(*a)`` for each ``a`` as Ray tasks with a throughput/ETA bar; results in ``args`` order.

    At most ``in_flight`` tasks (default: 4 per cluster CPU) are submitted and unfinished at any
    time, so the object store and the driver hold a bounded number of arguments and results in
    flight however many tasks there are. ``nodes`` counts the tasks each Ray node ran."""
    # SPREAD: on a cluster, tasks go round the nodes instead of filling the driver's node first
    # (the work is I/O on a shared filesystem, so every node's share of the bandwidth counts)
    # max_retries: a task whose worker process dies (OOM killer, lost node) runs again; shard
    # writes are idempotent (a .tmp file, renamed when complete), so a retry gives the same bytes
    remote = ray.remote(num_cpus=1, scheduling_strategy="SPREAD", max_retries=3)(_on_node)
    if in_flight is None:
        in_flight = 4 * max(1, int(ray.cluster_resources().get("CPU", 1)))
    results: list = [None] * len(args)
    index: dict = {}
    pending: list = []
    submitted = finished = 0
    with tqdm(total=sum(weights), desc=desc, unit=unit, mininterval=1.0) as bar:
        while finished < len(args):
            while submitted < len(args) and len(pending) < in_flight:
                ref = remote.remote(fn, *args[submitted])
                index[ref], submitted = submitted, submitted + 1
                pending.append(ref)
            done, pending = ray.wait(pending, num_returns=1)
            i = index.pop(done[0])
            try:
                node, results[i] = ray.get(done[0])
            except ray.exceptions.RayTaskError as err:
                if isinstance(err.cause, UserError):  # e.g. a full disk: its message, not a remote traceback
                    raise err.cause from None
                raise
            finished += 1
            if nodes is not None:
                nodes[node] += 1
            bar.update(weights[i])
            if kill_after is not None and finished >= kill_after:
                os.kill(os.getpid(), signal.SIGKILL)
    return results
