"""Process lifecycle of the core: export at interpreter exit, a fresh pipeline after fork."""

from __future__ import annotations

import atexit
import logging
import multiprocessing.util
import os
import threading

from opentelemetry.instrumentation.vllm import _core

_logger = logging.getLogger("opentelemetry.instrumentation.vllm")
_lock = threading.Lock()
_registered = False
_shutdown_timeout = 5.0


_exited_in_pid: int | None = None


def _at_exit() -> None:
    # Reached from atexit and from multiprocessing's exit finalizers: act once per process.
    global _exited_in_pid
    if _exited_in_pid == os.getpid():
        return
    _exited_in_pid = os.getpid()
    try:
        if _core.latency_summary_at_exit():
            table = _core.latency_summary()
            if table.count("\n") > 1:
                # Opt-in report: logged at WARNING so it shows under Python's default logging setup.
                _logger.warning("vLLM latency summary (HDR percentiles)\n%s", table)
        _core.shutdown(_shutdown_timeout)
    except Exception:  # noqa: BLE001 - nothing may escape into interpreter shutdown
        _logger.debug("shutdown at exit failed", exc_info=True)


class _ForkedChildHook:
    """Weak-referenceable owner of the multiprocessing after-fork hook (it holds hooks weakly)."""


_fork_hook_owner = _ForkedChildHook()


def _register_multiprocessing_exit(_owner: object = None) -> None:
    # multiprocessing children end with os._exit(), which skips atexit; its own exit function runs
    # these finalizers first. Forked children start with an empty finalizer registry, hence the
    # after-fork hook that registers it again there.
    multiprocessing.util.Finalize(None, _at_exit, exitpriority=0)


def register(shutdown_timeout: float) -> None:
    """Registers the exit and fork hooks once per process."""
    global _registered, _shutdown_timeout
    with _lock:
        _shutdown_timeout = shutdown_timeout
        if _registered:
            return
        _registered = True
    atexit.register(_at_exit)
    _register_multiprocessing_exit()
    multiprocessing.util.register_after_fork(_fork_hook_owner, _register_multiprocessing_exit)
    if hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=_core._after_fork_child)
