"""A local, append-only journal of settlements, so a process killed after an answer was sent loses no charge.

Every settlement is one JSON line written (os.write, no Python buffer) before the answer's last bytes go to
the client; once the settlement's transaction commits, an "applied" line follows. The file is fsynced every
`fsync_ms` (off the event loop), truncated whenever nothing is outstanding, and compacted when it grows.

On start, before serving, a process replays the journals of dead processes: each journal has a lock file
held (fcntl.flock) for the life of its process, so a live process's journal is never touched. A replayed
settlement goes through the store's idempotent write (UNIQUE per user and request id: a settlement that was
applied after all is a no-op), releasing its database hold in the same transaction, with the same caps as a
normal settlement (never above the hold, never below zero, never into other requests' holds).

What it guarantees: a SIGKILL after the answer was sent loses no charge when the journal's disk survives
(the line is in the page cache); a machine crash can lose the settlements of the last `fsync_ms`.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import orjson

from gatewayz.billing.store import LedgerStore, Settlement

log = logging.getLogger("gatewayz.billing")

COMPACT_BYTES = 4 * 1024 * 1024   # rewrite the file with only what is outstanding past this size


@dataclass(slots=True)
class Replayed:
    journals: int = 0     # dead processes' journals read
    settlements: int = 0  # settlements found unapplied in them
    charged: int = 0      # nanos charged by the replay (0 for the ones applied before the process died)


def encode(seq: int, s: Settlement) -> bytes:
    return orjson.dumps({"s": seq, "t": round(time.time(), 3), "u": s.user_id, "r": s.request_id,
                         "c": s.cost_nanos, "h": s.hold_nanos, "m": s.model, "p": s.prompt_tokens,
                         "o": s.completion_tokens, "g": s.usage}) + b"\n"


def read(path: Path) -> list[Settlement]:
    """The settlements of a journal file not marked applied. A line that does not parse (torn by a crash
    mid-write: only ever the last one) is skipped."""
    entries: dict[int, Settlement] = {}
    lines = path.read_bytes().split(b"\n")
    for n, line in enumerate(lines):
        if not line:
            continue
        try:
            obj = orjson.loads(line)
            if "a" in obj:
                for seq in obj["a"]:
                    entries.pop(int(seq), None)
                continue
            usage = dict(obj["g"])
            if usage:   # the usage record is dated when the request finished, not when it is replayed
                usage["created_at"] = datetime.fromtimestamp(float(obj["t"]), UTC)
            entries[int(obj["s"])] = Settlement(
                user_id=int(obj["u"]), request_id=str(obj["r"]), cost_nanos=int(obj["c"]),
                hold_nanos=int(obj["h"]), model=obj["m"], prompt_tokens=int(obj["p"]),
                completion_tokens=int(obj["o"]), usage=usage)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            where = "last line (torn by a crash)" if n >= len(lines) - 2 else f"line {n + 1}"
            log.warning("settlement journal %s: skipping unreadable %s", path.name, where)
    return list(entries.values())


def _try_lock(path: Path) -> int | None:
    """An fd holding the exclusive lock of `path`, or None when another process holds it (or it is gone)."""
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        # Replayed and removed by another process meanwhile: the name is no longer this file.
        if os.stat(path).st_ino != os.fstat(fd).st_ino:
            raise FileNotFoundError(path)
    except (BlockingIOError, FileNotFoundError):
        os.close(fd)
        return None
    return fd


class SettlementJournal:
    def __init__(self, directory: Path, fsync_ms: int) -> None:
        self.dir = directory
        self._interval = fsync_ms / 1000
        self._fd: int | None = None
        self._lock_fd: int | None = None
        self.path: Path | None = None
        self._lock_path: Path | None = None
        self._seq = 0
        self._outstanding: dict[int, bytes] = {}   # seq -> line, appended but not yet committed
        self._applied: list[int] = []               # committed, not yet marked in the file
        self._size = 0
        self._dirty = False
        self._task: asyncio.Task[None] | None = None

    # -- start: replay the dead, then open this process's own journal --

    async def replay(self, store: LedgerStore) -> Replayed:
        """Apply every journaled-but-unapplied settlement of dead processes, then remove their journals."""
        out = Replayed()
        if not self.dir.exists():
            return out
        for lock_path in sorted(self.dir.glob("settle-*.lock")):
            if lock_path == self._lock_path:
                continue
            fd = _try_lock(lock_path)
            if fd is None:
                continue   # a live process's journal
            try:
                journal = lock_path.with_suffix(".jsonl")
                items = read(journal) if journal.exists() else []
                for item in items:
                    out.charged += await store.settle_hold(item)
                out.journals += 1
                out.settlements += len(items)
                journal.unlink(missing_ok=True)
                lock_path.unlink(missing_ok=True)
            finally:
                os.close(fd)
        if out.settlements:
            log.warning("replayed %d journaled settlements of %d stopped processes (%d nanos charged)",
                        out.settlements, out.journals, out.charged)
        return out

    def open(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        name = f"settle-{os.getpid()}-{secrets.token_hex(4)}"
        # Locked under a name replay() ignores, then renamed: no other process can take it in between.
        tmp = self.dir / f".{name}.lock"
        lock_fd = os.open(tmp, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(lock_fd, fcntl.LOCK_EX)
        self._lock_path = self.dir / f"{name}.lock"
        os.replace(tmp, self._lock_path)
        self._lock_fd = lock_fd
        self.path = self.dir / f"{name}.jsonl"
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._sync_forever())

    # -- the hot path --

    def append(self, settlement: Settlement) -> int:
        """Write one settlement (one small write: it survives the process once this returns); its seq."""
        if self._fd is None:
            return 0
        self._seq += 1
        line = encode(self._seq, settlement)
        os.write(self._fd, line)
        self._outstanding[self._seq] = line
        self._size += len(line)
        self._dirty = True
        return self._seq

    def applied(self, seq: int) -> None:
        """The settlement's transaction committed: nothing to replay for it any more."""
        if self._fd is None or self._outstanding.pop(seq, None) is None:
            return
        if not self._outstanding:
            os.ftruncate(self._fd, 0)   # everything committed: start over (O_APPEND writes at the new end)
            self._applied.clear()
            self._size = 0
        else:
            self._applied.append(seq)

    @property
    def outstanding(self) -> int:
        return len(self._outstanding)

    # -- background: applied marks, fsync, compaction --

    async def _sync_forever(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.sync()
            except OSError:
                log.exception("settlement journal sync failed; trying again")

    async def sync(self) -> None:
        fd = self._fd
        if fd is None:
            return
        if self._applied:
            line = orjson.dumps({"a": self._applied}) + b"\n"
            self._applied = []
            os.write(fd, line)
            self._size += len(line)
            self._dirty = True
        if self._size > COMPACT_BYTES:
            self._compact()
            return
        if self._dirty:
            self._dirty = False
            await asyncio.to_thread(os.fsync, fd)

    def _compact(self) -> None:
        """Rewrite the journal with only its outstanding lines (durably: fsync, then rename over)."""
        assert self.path is not None and self._fd is not None
        tmp = self.path.with_suffix(".compact")
        data = b"".join(self._outstanding.values())
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o600)
        os.write(fd, data)
        os.fsync(fd)
        os.replace(tmp, self.path)
        os.close(self._fd)
        self._fd, self._size, self._dirty = fd, len(data), False

    async def close(self) -> None:
        """After the writer drained: remove the journal when everything was applied; else keep it (synced)
        for the next start to replay, and release its lock."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            await self.sync()
        os.close(self._fd)
        self._fd = None
        assert self.path is not None and self._lock_path is not None and self._lock_fd is not None
        if self._outstanding:
            log.error("%d settlements not written at shutdown stay in %s; the next start applies them",
                      len(self._outstanding), self.path)
        else:
            self.path.unlink(missing_ok=True)
            self._lock_path.unlink(missing_ok=True)
        os.close(self._lock_fd)
        self._lock_fd = None


def journal_dir(data_dir: Path) -> Path:
    return data_dir / "journal"
