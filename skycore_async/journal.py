"""The write-ahead journal that makes a bulk run resumable without double sends.

An append-only file of orjson lines:

* ``{"t": "h", ...}``            header: what the run sends (checked on resume);
* ``{"t": "c", "i": 7, "to": ..}``  claim: written *before* recipient 7's request goes out;
* ``{"t": "d", "o": [7, ...]}``    done: recipient 7's final outcome (the Outcome's fields
  in order; version 1 journals wrote them as an object, which is still read);
* ``{"t": "a", "n": 500}``         ack: the first 500 done-lines were handed to the consumer;
* ``{"t": "r", "i": 7}``           release: recipient 7's claim is void (the API refused the
  call for a campaign-fatal reason, so nothing was sent): a resume sends it.

The ordering rules are the whole design:

1. A claim reaches the kernel (``os.write``) before the request is written to the socket, so
   a recipient whose request may have gone out is always claimed. Completions are buffered
   and ride along with the next write (group commit), and are flushed before any batch is
   handed out, so the checkpoint advances on completion, never on fetch.
2. On resume, a recipient that is *done* is never sent again; one that is *claimed but not
   done* may have been accepted, so it is reported ``unknown`` (and resent only when the
   caller asks); everything else is sent.
3. Done-lines after the last ack were never delivered to the consumer: they are replayed.

Survives ``kill -9`` at any point (writes are single ``write`` calls on an ``O_APPEND`` file;
a torn last line is ignored). Set ``fsync=True`` to survive power loss too, at a cost.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Final

import attrs
import orjson

from .outcomes import STATUSES, Outcome

__all__ = ["Journal", "JournalMismatchError", "ResumeState"]

FORMAT_VERSION: Final = 2
# Per-index states in ResumeState.status.
NEW: Final = 0
CLAIMED: Final = 1
FINAL: Final = 2  # sent, failed or skipped
UNKNOWN: Final = 3


class JournalMismatchError(ValueError):
    """The journal belongs to a different run (other message or input) than the one resumed."""


@attrs.define
class ResumeState:
    """What an existing journal says about a run (all O(1) per recipient: one byte each).

    Attributes:
        status: per input index, one of NEW, CLAIMED, FINAL, UNKNOWN.
        claimed_to: the number of each claimed-but-not-done index (to report as unknown).
        unacked: outcomes that were done but never handed to the consumer.
        counts: outcomes per status recorded so far.
        done_lines: how many done-lines the journal holds.
        acked: how many of them were delivered.
    """

    status: bytearray = attrs.field(factory=bytearray)
    claimed_to: dict[int, str] = attrs.field(factory=dict)
    unacked: list[Outcome] = attrs.field(factory=list)
    counts: dict[str, int] = attrs.field(factory=lambda: dict.fromkeys(STATUSES, 0))
    done_lines: int = 0
    acked: int = 0

    def state_of(self, index: int) -> int:
        """The recorded state of ``index`` (NEW when the journal never saw it)."""
        return self.status[index] if index < len(self.status) else NEW

    def _set(self, index: int, value: int) -> None:
        if index >= len(self.status):
            self.status.extend(bytes(index + 1 - len(self.status) + 4096))
        self.status[index] = value


class Journal:
    """Append-only write-ahead journal for one bulk run. Not thread-safe; one event loop.

    Use :meth:`open` to create or resume one.
    """

    def __init__(self, fd: int, path: Path, *, fsync: bool = False) -> None:
        self._fd = fd
        self._path = path
        self._fsync = fsync
        self._pending: list[bytes] = []
        self.done_lines = 0

    def __repr__(self) -> str:
        return f"<Journal {str(self._path)!r} done_lines={self.done_lines}>"

    @classmethod
    def open(
        cls, path: str | Path, header: Mapping[str, Any], *, resume: bool, fsync: bool = False
    ) -> tuple[Journal, ResumeState]:
        """Create a new journal, or (``resume=True``) read an existing one and append to it.

        Raises:
            FileExistsError: ``resume=False`` but the file exists (refusing to overwrite
                the record of a run that may have sent messages).
            JournalMismatchError: the journal's header does not match ``header``.
        """
        path = Path(path)
        state = ResumeState()
        if resume and path.exists():
            state = _read(path, header)
        elif path.exists() and path.stat().st_size > 0:
            raise FileExistsError(
                f"journal {path} exists: resume the run, or remove the file to start over"
            )
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        journal = cls(fd, path, fsync=fsync)
        journal.done_lines = state.done_lines
        if state.done_lines == 0 and not state.status:
            journal._write(_line({"t": "h", "v": FORMAT_VERSION, **header}))
        return journal, state

    def claim(self, index: int, to: str) -> None:
        """Record that ``index``'s request is about to go out; reaches the kernel at once."""
        line = b'{"t":"c","i":%d,"to":%b}\n' % (index, orjson.dumps(to))
        if self._pending:  # completions ride along with the claim (group commit)
            self._pending.append(line)
            line = b"".join(self._pending)
            self._pending = []
        self._write(line)

    def complete(self, outcome: Outcome) -> None:
        """Record ``outcome`` as final (buffered: written with the next claim or flush)."""
        self._pending.append(b'{"t":"d","o":%b}\n' % orjson.dumps(outcome[:]))
        self.done_lines += 1

    def release(self, index: int) -> None:
        """Void ``index``'s claim: it was certainly not sent (buffered like a completion).

        Until the line reaches the file the claim stands, so a crash in between errs on the
        safe side: the recipient is reported ``unknown`` rather than sent twice.
        """
        self._pending.append(b'{"t":"r","i":%d}\n' % index)

    def ack(self, delivered: int) -> None:
        """Record that the first ``delivered`` done-lines reached the consumer."""
        self._pending.append(b'{"t":"a","n":%d}\n' % delivered)

    def flush(self) -> None:
        """Write everything buffered in one ``write`` call."""
        if self._pending:
            data = b"".join(self._pending)
            self._pending = []
            self._write(data)

    def _write(self, data: bytes) -> None:
        written = os.write(self._fd, data)
        while written < len(data):  # a short write (rare on a regular file): finish it
            data = data[written:]
            written = os.write(self._fd, data)
        if self._fsync:
            os.fsync(self._fd)

    def close(self) -> None:
        """Flush and close; idempotent."""
        if self._fd >= 0:
            self.flush()
            os.close(self._fd)
            self._fd = -1


def _line(record: Mapping[str, Any]) -> bytes:
    return orjson.dumps(record) + b"\n"


def _records(path: Path) -> Iterator[dict[str, Any]]:
    """Parsed lines; a torn (unterminated) last line from a crash is ignored."""
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.endswith(b"\n"):
                return  # torn write at the moment of a crash: never acted on
            try:
                yield orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                raise ValueError(f"{path}:{number}: corrupt journal line: {exc}") from None


def _read(path: Path, header: Mapping[str, Any]) -> ResumeState:
    state = ResumeState()
    done: list[tuple[int, Outcome]] = []  # only the unacked tail is kept
    for record in _records(path):
        kind = record.get("t")
        if kind == "h":
            _check_header(record, header)
        elif kind == "c":
            state._set(record["i"], CLAIMED)
            state.claimed_to[record["i"]] = record["to"]
        elif kind == "d":
            outcome = Outcome(*record["o"]) if "o" in record else Outcome.from_record(record)
            _apply_done(state, outcome)
            done.append((state.done_lines, outcome))
            state.done_lines += 1
        elif kind == "r":
            if state.state_of(record["i"]) == CLAIMED:
                state._set(record["i"], NEW)
                state.claimed_to.pop(record["i"], None)
        elif kind == "a":
            state.acked = max(state.acked, int(record["n"]))
            done = [(n, r) for n, r in done if n >= state.acked]
    state.unacked = [outcome for n, outcome in done if n >= state.acked]
    return state


def _apply_done(state: ResumeState, outcome: Outcome) -> None:
    state._set(outcome.index, UNKNOWN if outcome.status == "unknown" else FINAL)
    state.claimed_to.pop(outcome.index, None)
    state.counts[outcome.status] = state.counts.get(outcome.status, 0) + 1


def _check_header(record: Mapping[str, Any], header: Mapping[str, Any]) -> None:
    for key, value in header.items():
        if key in record and record[key] != value:
            raise JournalMismatchError(
                f"the journal was written for {key}={record[key]!r}, this run has {key}={value!r}; "
                "use the original settings, or a new journal"
            )
