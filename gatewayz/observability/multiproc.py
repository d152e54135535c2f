"""prometheus-client plumbing for `Metrics`: which value class its metrics store into, and, across several
worker processes, the shared directory of memory-mapped files every worker writes and any worker reads.

prometheus-client picks the value class once, from a global chosen at import time out of the
PROMETHEUS_MULTIPROC_DIR environment variable. A `Metrics` object instead decides for itself: it swaps the
global in only while its own metrics create or update values (`Binding`), so an in-process `Metrics` and a
multiprocess one can live in the same process (as they do in tests) without writing into each other.

Exemplars are not stored in the shared files (prometheus-client does not support that); in multiprocess
mode each worker keeps the latest exemplar of each histogram bucket it observed (`ExemplarStore`) and adds
them to the merged samples when it is the one scraped. An exemplar is a pointer to one real trace, so a
worker only ever shows its own."""

from __future__ import annotations

import glob
import os
import secrets
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from prometheus_client import values
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.samples import Exemplar
from prometheus_client.utils import floatToGoString

from gatewayz.settings import export_process_env

ENV = "PROMETHEUS_MULTIPROC_DIR"
_LIVE_MODES = ("liveall", "livemin", "livemax", "livesum", "livemostrecent")
# prometheus-client's value-class global is process-wide, so the lock that guards swapping it is too.
_SWAP = threading.RLock()


def reset_multiprocess_dir(path: str) -> None:
    """Create the directory, and delete the files of a previous run. Call it once, in the parent process,
    before any worker starts: the files are cumulative, and stale ones would be added to the new totals."""
    os.makedirs(path, exist_ok=True)
    for f in glob.glob(os.path.join(path, "*.db")):
        os.remove(f)


class Binding:
    """The value class one `Metrics` object stores into: in-process floats, or this process's files in a
    multiprocess directory. Each multiprocess binding writes its own files (named after the pid and a
    random token), so two bindings in one process never share an mmap file."""

    def __init__(self, directory: str | None) -> None:
        self.directory = os.path.abspath(directory) if directory is not None else None
        self.token = secrets.token_hex(4)
        self.value_class: Any
        if self.directory is None:
            self.value_class = values.MutexValue
        else:
            os.makedirs(self.directory, exist_ok=True)
            self.value_class = values.MultiProcessValue(  # type: ignore[no-untyped-call]
                process_identifier=self.identity)

    @property
    def multiprocess(self) -> bool:
        return self.directory is not None

    def identity(self) -> str:
        """Distinct across live processes (the pid) and across bindings in one process (the token)."""
        return f"{os.getpid()}-{self.token}"

    @contextmanager
    def __call__(self) -> Iterator[None]:
        with _SWAP:
            before = values.ValueClass
            values.ValueClass = self.value_class
            # The mmap files are (re)opened under this directory on first use and after a fork.
            if self.directory is not None:
                export_process_env(ENV, self.directory)
            try:
                yield
            finally:
                values.ValueClass = before

    def remove_live_files(self) -> None:
        """At shutdown: drop this process's live gauges (counters and histograms stay, so totals never
        go backwards when a worker is replaced)."""
        if self.directory is None:
            return
        for mode in _LIVE_MODES:
            for f in glob.glob(os.path.join(self.directory, f"gauge_{mode}_{self.identity()}.db")):
                try:
                    os.remove(f)
                except FileNotFoundError:
                    pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def prune_dead_live_gauges(directory: str) -> None:
    """Delete the live-gauge files of workers that are gone (a crash skips `remove_live_files`), so an
    in-flight count never includes requests of a process that no longer exists."""
    for f in glob.glob(os.path.join(directory, "gauge_live*_*.db")):
        identity = os.path.basename(f)[:-3].rsplit("_", 1)[-1]
        pid = identity.split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            try:
                os.remove(f)
            except FileNotFoundError:
                pass


class ExemplarStore:
    """The latest exemplar of each histogram bucket this process observed, keyed by metric name, the
    series' labels and the bucket's `le`. Bounded by series x buckets, and series are capped by labels."""

    def __init__(self) -> None:
        self._latest: dict[tuple[str, tuple[tuple[str, str], ...], str], Exemplar] = {}
        self._lock = threading.Lock()

    def record(self, name: str, labels: dict[str, str], bounds: Sequence[float], value: float,
               exemplar: dict[str, str], at: float) -> None:
        le = next((b for b in bounds if value <= b), float("inf"))
        key = (name, tuple(sorted(labels.items())), str(floatToGoString(le)))  # type: ignore[no-untyped-call]
        with self._lock:
            self._latest[key] = Exemplar(exemplar, value, at)

    def get(self, name: str, labels: dict[str, str]) -> Exemplar | None:
        le = labels.get("le")
        if le is None:
            return None
        series = tuple(sorted((k, v) for k, v in labels.items() if k != "le"))
        with self._lock:
            return self._latest.get((name, series, le))


class MultiprocessSource:
    """Collects the merged files of every worker, with this worker's exemplars added to bucket samples."""

    def __init__(self, directory: str, exemplars: ExemplarStore) -> None:
        self._inner = MultiProcessCollector(None, path=directory)  # type: ignore[no-untyped-call]
        self._directory = directory
        self._exemplars = exemplars

    def collect(self) -> Iterable[Metric]:
        prune_dead_live_gauges(self._directory)
        families: Iterable[Metric] = self._inner.collect()  # type: ignore[no-untyped-call]
        for family in sorted(families, key=lambda f: f.name):
            if family.type == "histogram":
                family.samples = [
                    s._replace(exemplar=self._exemplars.get(family.name, s.labels))
                    if s.name.endswith("_bucket") and s.exemplar is None else s
                    for s in family.samples
                ]
            yield family
