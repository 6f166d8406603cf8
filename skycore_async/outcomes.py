"""Values a bulk run produces: per-recipient outcomes, result batches, progress snapshots. Pure."""

from __future__ import annotations

from typing import Any, Final, Literal, NamedTuple

import attrs

__all__ = ["Outcome", "Progress", "ResultBatch", "Status"]

Status = Literal["sent", "failed", "unknown", "skipped"]
STATUSES: Final = ("sent", "failed", "unknown", "skipped")


class Outcome(NamedTuple):
    """What happened to one recipient.

    A NamedTuple rather than an attrs class: one is built per send on the bulk hot path, and
    a tuple is built in C (a frozen attrs class sets each field through ``object.__setattr__``).

    Attributes:
        index: the recipient's 0-based position in the input (the resume and join key).
        to: the number (normalised when it could be).
        status: ``sent`` (accepted, has a tracking id), ``failed`` (rejected or invalid, not
            sent), ``unknown`` (the request may have been accepted; not resent unless asked),
            ``skipped`` (a duplicate number, not sent again).
        tracking_id: Skycore's id for the send; postbacks refer to it.
        error_code: the E-code, or a local code (``DUPLICATE``, ``ROW``, ``TIMEOUT``...).
        error_info: a human-readable reason.
        attempts: HTTP attempts made for this recipient.
        client_reference: the recipient's client reference, if any.
    """

    index: int  # type: ignore[assignment]  # shadows tuple.index(), which nobody needs here
    to: str
    status: Status
    tracking_id: str | None = None
    error_code: str | None = None
    error_info: str | None = None
    attempts: int = 0
    client_reference: str | None = None

    def to_record(self) -> dict[str, Any]:
        """A plain dict for JSON output (the ``results.jsonl`` fields)."""
        return dict(zip(self._fields, self, strict=True))

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Outcome:
        """Rebuild from :meth:`to_record` output."""
        status = record.get("status")
        if status not in STATUSES:
            raise ValueError(f"unknown outcome status {status!r}")
        return cls(
            index=int(record["index"]),
            to=str(record["to"]),
            status=status,
            tracking_id=record.get("tracking_id"),
            error_code=record.get("error_code"),
            error_info=record.get("error_info"),
            attempts=int(record.get("attempts") or 0),
            client_reference=record.get("client_reference"),
        )


@attrs.frozen
class ResultBatch:
    """Up to ``batch_size`` outcomes, in completion order.

    Attributes:
        number: 0-based sequence number of the batch within this run.
        outcomes: the outcomes.
        replayed: True for outcomes recovered from the journal on resume (they completed
            before a crash but had not been handed to the consumer).
    """

    number: int
    outcomes: tuple[Outcome, ...]
    replayed: bool = False

    def __len__(self) -> int:
        return len(self.outcomes)

    def count(self, status: Status) -> int:
        """How many outcomes in this batch have ``status``."""
        return sum(1 for outcome in self.outcomes if outcome.status == status)


@attrs.frozen
class Progress:
    """A snapshot of a bulk run, handed to the progress hook at a steady cadence.

    Attributes:
        done: recipients with a final outcome (this run and, on resume, earlier runs).
        sent, failed, unknown, skipped: ``done`` broken down by status.
        in_flight: requests under way now.
        total: recipients in the input, when known.
        rate: sends completed per second over the last few seconds.
        elapsed: seconds since the run started.
        eta: estimated seconds to finish, when ``total`` and ``rate`` allow.
    """

    done: int
    sent: int
    failed: int
    unknown: int
    skipped: int
    in_flight: int
    total: int | None
    rate: float
    elapsed: float
    eta: float | None

    @property
    def fraction(self) -> float | None:
        """Share of the input done, when the total is known."""
        if not self.total:
            return None
        return min(1.0, self.done / self.total)
