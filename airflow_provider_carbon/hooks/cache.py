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
        self._entries: dict[str, tuple[float, Any]] = {}  # key -> (fetched_at, payload)
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
        wait: float | None = None,
        stale: Callable[[Any], bool] | None = None,
    ) -> Any:
        """Return the cached payload for ``key`` or call ``fetch()`` once to fill it.

        :param key: what identifies the data (service, host, zone, granularity, horizon).
        :param fetch: returns a JSON-serialisable payload, or raises (nothing is cached then).
        :param ttl: seconds a payload stays fresh; ``<= 0`` disables caching.
        :param cache_dir: directory of the shared file cache; ``None`` keeps the cache in this process.
        :param on_hit: called with ``"memory"`` or ``"file"`` when a cached payload is served (for logging).
        :param wait: seconds to wait at most for another caller's fetch of the same key (a caller with a deadline);
            ``None`` waits as long as that takes.
        :param stale: a cached payload for which this returns ``True`` is fetched again although its TTL has not
            run out (a forecast that no longer reaches far enough ahead). It is asked under the key's lock, so callers
            that waited for another's refetch judge the new payload and fetch no second time.
        :raises TimeoutError: if the other caller's fetch did not end within ``wait``.
        """
        if ttl <= 0:
            return fetch()
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        ends = None if wait is None else time.monotonic() + wait
        if not lock.acquire(timeout=-1 if wait is None else max(wait, 0.0)):
            raise TimeoutError(f"another caller's fetch of {key!r} did not end within {wait:.1f} s")
        try:
            # Entries carry when they were fetched, not when they expire: each caller judges freshness by its own
            # TTL, and a payload read from the file cache keeps its age instead of starting a new TTL.
            entry = self._entries.get(key)
            if entry is not None and _fresh(entry[0], ttl) and not (stale and stale(entry[1])):
                if on_hit:
                    on_hit("memory")
                return entry[1]
            if cache_dir is None:
                fetched_at, payload = time.time(), fetch()
            else:
                fetched_at, payload = self._through_file(key, fetch, ttl, Path(cache_dir), on_hit, ends, stale)
            self._entries[key] = (fetched_at, payload)
            return payload
        finally:
            lock.release()

    def _through_file(
        self,
        key: str,
        fetch: Callable[[], Any],
        ttl: float,
        directory: Path,
        on_hit: Callable[[str], None] | None,
        ends: float | None,
        stale: Callable[[Any], bool] | None,
    ) -> tuple[float, Any]:
        directory.mkdir(parents=True, exist_ok=True)
        name = hashlib.sha256(key.encode()).hexdigest()[:32]
        path = directory / f"{name}.json"
        with _file_lock(directory / f"{name}.lock", ends):
            cached = _read_fresh(path, key, ttl)
            if cached is not None and not (stale and stale(cached[1])):
                if on_hit:
                    on_hit("file")
                return cached
            fetched_at, payload = time.time(), fetch()
            _write_atomic(path, {"key": key, "fetched_at": fetched_at, "payload": payload})
            return fetched_at, payload


@contextlib.contextmanager
def _file_lock(path: Path, ends: float | None = None) -> Iterator[None]:
    """An exclusive lock on ``path``; with ``ends`` (a ``time.monotonic()`` instant), given up then with
    :class:`TimeoutError` (``flock`` has no timeout, so it is polled)."""
    with open(path, "a+") as fh:
        if fcntl is not None:
            if ends is None:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            else:
                while True:
                    try:
                        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except BlockingIOError:
                        if time.monotonic() >= ends:
                            raise TimeoutError(f"another process holds {path.name}") from None
                        time.sleep(0.02)
        try:
            yield
        finally:
            if fcntl is not None:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _fresh(fetched_at: float, ttl: float) -> bool:
    return 0 <= time.time() - fetched_at < ttl


def _read_fresh(path: Path, key: str, ttl: float) -> tuple[float, Any] | None:
    """``(fetched_at, payload)`` of a file entry younger than ``ttl``, else ``None``."""
    try:
        data = json.loads(path.read_text())
        fetched_at = float(data["fetched_at"])
    except (OSError, ValueError, KeyError, TypeError):
        return None  # missing, from an older format, or half-written by a crashed process: fetch again
    if data.get("key") != key or not _fresh(fetched_at, ttl):
        return None
    return fetched_at, data.get("payload")


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
