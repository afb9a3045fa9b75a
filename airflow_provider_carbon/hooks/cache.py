"""Forecast cache: one fetch per key and TTL, shared by threads in a process and, optionally, by processes on a machine.

Why: free tiers allow one zone and a few calls; a DAG with mapped tasks or several sensors for one zone must not
multiply requests. Two layers:

* in process: a dict plus one lock per key, so N concurrent callers for a key cause one fetch (single flight);
* on disk (optional, ``cache_dir``): one JSON file per key, written atomically (temp file + ``os.replace``) and
  guarded by an exclusive ``fcntl`` lock on a sibling ``.lock`` file while fetching, so several workers or the
  triggerer on one machine share one fetch too.

Failures are never cached: an exception from the fetch propagates and leaves both layers untouched, so the next
caller tries again. Expiry uses wall-clock time because the file layer is shared between processes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

try:  # POSIX only; elsewhere the file layer still works, just without cross-process single flight
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

__all__ = ["ForecastCache", "forecast_cache"]


class ForecastCache:
    """Cache of JSON-serialisable payloads keyed by strings, with single-flight fetching."""

    def __init__(self) -> None:
        self._entries: dict[str, tuple[float, Any]] = {}  # key -> (expires_at, payload)
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def clear(self) -> None:
        """Forget every in-process entry (files are left to expire)."""
        with self._guard:
            self._entries.clear()

    def get_or_fetch(
        self,
        key: str,
        fetch: Callable[[], Any],
        *,
        ttl: float,
        cache_dir: str | os.PathLike[str] | None = None,
        on_hit: Callable[[str], None] | None = None,
    ) -> Any:
        """Return the cached payload for ``key`` or call ``fetch()`` once to fill it.

        :param key: what identifies the data (service, host, zone, granularity, horizon).
        :param fetch: returns a JSON-serialisable payload, or raises (nothing is cached then).
        :param ttl: seconds a payload stays fresh; ``<= 0`` disables caching.
        :param cache_dir: directory of the shared file cache; ``None`` keeps the cache in this process.
        :param on_hit: called with ``"memory"`` or ``"file"`` when a cached payload is served (for logging).
        """
        if ttl <= 0:
            return fetch()
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            entry = self._entries.get(key)
            if entry is not None and entry[0] > time.time():
                if on_hit:
                    on_hit("memory")
                return entry[1]
            if cache_dir is None:
                payload = fetch()
            else:
                payload = self._through_file(key, fetch, ttl, Path(cache_dir), on_hit)
            self._entries[key] = (time.time() + ttl, payload)
            return payload

    def _through_file(
        self, key: str, fetch: Callable[[], Any], ttl: float, directory: Path, on_hit: Callable[[str], None] | None
    ) -> Any:
        directory.mkdir(parents=True, exist_ok=True)
        name = hashlib.sha256(key.encode()).hexdigest()[:32]
        path = directory / f"{name}.json"
        with _file_lock(directory / f"{name}.lock"):
            cached = _read_fresh(path, key)
            if cached is not None:
                if on_hit:
                    on_hit("file")
                return cached
            payload = fetch()
            _write_atomic(path, {"key": key, "expires_at": time.time() + ttl, "payload": payload})
            return payload


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    with open(path, "a+") as fh:
        if fcntl is not None:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            if fcntl is not None:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _read_fresh(path: Path, key: str) -> Any:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None  # missing or half-written by a crashed process: fetch again
    if data.get("key") != key or data.get("expires_at", 0) <= time.time():
        return None
    return data.get("payload")


def _write_atomic(path: Path, data: dict[str, Any]) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


#: the process-wide cache every hook uses
forecast_cache = ForecastCache()
