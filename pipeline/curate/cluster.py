"""A Ray session for a stage: join ``ray.address`` or start a local Ray with ``ray.num_cpus``."""

from __future__ import annotations

import contextlib
import logging
import os

from ..config import RayConfig

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
