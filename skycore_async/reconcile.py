"""Delivery reconciliation: join postback notifications to bulk results, one row per recipient.

Pure: no aiohttp, no asyncio. Feed a :class:`Reconciler` the ``results.jsonl`` records of one
or more bulk runs (one campaign per file) and the notifications the receiver stored, in any
order, then call :meth:`Reconciler.report`. :func:`reconcile_files` does it from paths.

Joining. A notification joins the result row with its tracking id. One without a tracking id,
or whose tracking id no row has, joins by client reference the row that has that reference
and no tracking id of its own (an ``unknown`` send) -- only when exactly one row carries the
reference. A legacy N202 whose tracking id is the ``SMSID`` of an N102 joins that N102's
message. Notifications whose row never appears are reported as *unmatched* messages, grouped
by MMS id. Notifications that are not about a sent message (N003, MO, subscriptions, passes)
are counted as ignored.

The status rule is monotone and order-independent. Each notification is evidence of one state,
ranked ``sending < failed < delivered_as_sms < delivered``; a recipient's state is its
highest-ranked evidence (ties: the latest timestamp, then the code). So a late N101 never
undoes a delivery, duplicates change nothing, and an N102 after an E102 (or before it) means
delivered: a delivery receipt proves the handset got the message, a failure does not prove it
did not. Being a maximum, the result is the same for any arrival or feeding order.

Per-recipient states: accepted sends are ``delivered``, ``delivered_as_sms`` (N202, or N102
sent as SMS), ``failed`` (E101, E102, ... or an N102 that reports a failure; the reason is the
code, status and status details), ``sending`` (only interim notifications: N101, or the DDM
codes N501/N502/E501/E502, after which the content still goes out) or ``no_report_yet``; the
counts' ``accepted`` is their sum. Sends that did not happen keep the results' status:
``send_failed``, ``send_unknown``, ``skipped`` (unless a notification proves otherwise, e.g.
for an ``unknown`` send with a client reference).
"""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal

import attrs
import orjson

from .notifications import Notification
from .outcomes import STATUSES

__all__ = [
    "ACCEPTED_STATES",
    "NOT_SENT_STATES",
    "STATES",
    "CampaignCounts",
    "RecipientRow",
    "Reconciler",
    "Report",
    "State",
    "notification_from_record",
    "notification_record",
    "read_jsonl",
    "read_notifications",
    "reconcile",
    "reconcile_files",
    "render_text",
    "write_csv",
    "write_jsonl",
]

State = Literal[
    "delivered",
    "delivered_as_sms",
    "failed",
    "sending",
    "no_report_yet",
    "send_failed",
    "send_unknown",
    "skipped",
]
ACCEPTED_STATES: Final[tuple[State, ...]] = (
    "delivered",
    "delivered_as_sms",
    "failed",
    "sending",
    "no_report_yet",
)
NOT_SENT_STATES: Final[tuple[State, ...]] = ("send_failed", "send_unknown", "skipped")
STATES: Final = ACCEPTED_STATES + NOT_SENT_STATES

_RANK: Final[dict[State, int]] = {"sending": 1, "failed": 2, "delivered_as_sms": 3, "delivered": 4}
_NOT_SENT: Final[dict[str, State]] = {
    "sent": "no_report_yet",
    "failed": "send_failed",
    "unknown": "send_unknown",
    "skipped": "skipped",
}
# Codes that never describe a sent message: templates, MO traffic, subscriptions, passes.
_NOT_ABOUT_A_SEND: Final = frozenset(
    {"N003", "N013", "E001", "E002", "E003", "E011", "N211", "N401"}
    | {"N301", "N302", "N303", "N304", "N801", "N802", "N803", "N811"}
)
_DDM_CODES: Final = frozenset({"N501", "N502", "E501", "E502"})
_EPOCH: Final = datetime.min.replace(tzinfo=UTC)
UNMATCHED: Final = "unmatched"

# --------------------------------------------------------------------------- the record format

_DATETIMES: Final = frozenset({"timestamp", "created"})
_SKIPPED_FIELDS: Final = frozenset({"raw"})


def _json_name(attribute: str) -> str:
    return "from" if attribute == "from_" else attribute


def notification_record(n: Notification, received_at: datetime | None = None) -> dict[str, Any]:
    """``n`` as a JSON-ready dict: the receiver's stored record of a notification.

    Every field but ``raw`` (``from_`` is written ``from``), datetimes in ISO 8601, plus
    ``key`` (:meth:`Notification.dedupe_key`) and ``received_at`` when given.
    """
    record: dict[str, Any] = {}
    if received_at is not None:
        record["received_at"] = received_at.isoformat()
    record["key"] = n.dedupe_key()
    for field in attrs.fields(Notification):
        if field.name in _SKIPPED_FIELDS:
            continue
        value = getattr(n, field.name)
        if isinstance(value, datetime):
            value = value.isoformat()
        elif isinstance(value, Mapping):
            value = dict(value)
        record[_json_name(field.name)] = value
    return record


def notification_from_record(record: Mapping[str, Any]) -> Notification:
    """Rebuild a :class:`Notification` from :func:`notification_record` output.

    Raises ValueError when ``code`` is missing or a field has the wrong type.
    """
    kwargs: dict[str, Any] = {"origin": ""}
    for field in attrs.fields(Notification):
        value = record.get(_json_name(field.name))
        if field.name in _SKIPPED_FIELDS or value is None:
            continue
        kwargs[field.name] = _field_value(field.name, value)
    if not kwargs.get("code"):
        raise ValueError("notification record has no code")
    return Notification(**kwargs)


def _field_value(name: str, value: Any) -> Any:
    if name in _DATETIMES:
        if not isinstance(value, str):
            raise ValueError(f"{name} must be an ISO 8601 string")
        return datetime.fromisoformat(value)
    if name in {"status_attributes", "extra"}:
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise ValueError(f"{name} must map names to strings")
        return value
    if not isinstance(value, str):
        raise ValueError(f"{_json_name(name)} must be a string")
    return value


def read_jsonl(path: str | Path, problems: list[str] | None = None) -> Iterator[dict[str, Any]]:
    """The JSON objects of a JSONL file, one per line.

    An unterminated last line (a write in progress, or torn by a crash before it was
    acknowledged) is skipped silently; other unreadable lines are skipped and described in
    ``problems`` (``path:line: reason``) when a list is given.
    """
    with open(path, "rb") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.endswith(b"\n"):
                return
            if not line.strip():
                continue
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                _problem(problems, f"{path}:{number}: not JSON ({exc})")
                continue
            if isinstance(record, dict):
                yield record
            else:
                _problem(problems, f"{path}:{number}: not a JSON object")


def read_notifications(
    path: str | Path, problems: list[str] | None = None
) -> Iterator[Notification]:
    """The notifications a receiver stored in ``path`` (see :func:`read_jsonl` for errors)."""
    for number, record in enumerate(read_jsonl(path, problems), start=1):
        try:
            yield notification_from_record(record)
        except (TypeError, ValueError) as exc:
            _problem(problems, f"{path}: record {number}: {exc}")


def _problem(problems: list[str] | None, text: str) -> None:
    if problems is not None:
        problems.append(text)


# --------------------------------------------------------------------------- evidence


def _evidence_state(n: Notification) -> State:
    """The state one notification is evidence of."""
    if n.code in _DDM_CODES:
        return "sending"  # the device discovery message; the content still goes out
    if n.is_delivered:
        return "delivered_as_sms" if n.delivered_as_sms else "delivered"
    if n.is_failure:
        return "failed"
    return "sending"


def _order(n: Notification) -> tuple[int, datetime, str, str]:
    """Total order of evidence: rank, then the latest time, then code and key."""
    when = n.timestamp or n.created or _EPOCH
    return _RANK[_evidence_state(n)], when, n.code, n.dedupe_key()


def _first(a: str | None, b: str | None) -> str | None:
    """The smaller of two optional texts (an order-independent pick)."""
    if a is None or b is None:
        return a if b is None else b
    return min(a, b)


@attrs.frozen
class _Evidence:
    """What the notifications of one message say, merged (a commutative, idempotent max)."""

    best: Notification
    count: int = 1
    client_reference: str | None = None
    to: str | None = None
    mms_id: str | None = None

    @classmethod
    def of(cls, n: Notification) -> _Evidence:
        return cls(n, 1, n.client_reference, n.to, n.mms_id)

    def merge(self, other: _Evidence) -> _Evidence:
        return _Evidence(
            best=max(self.best, other.best, key=_order),
            count=self.count + other.count,
            client_reference=_first(self.client_reference, other.client_reference),
            to=_first(self.to, other.to),
            mms_id=_first(self.mms_id, other.mms_id),
        )


def _merge(a: _Evidence | None, b: _Evidence) -> _Evidence:
    return b if a is None else a.merge(b)


# --------------------------------------------------------------------------- rows and report


@attrs.frozen(kw_only=True)
class RecipientRow:
    """The reconciled state of one recipient (or of one unmatched message).

    Attributes:
        campaign: the results file it came from; for a message no results row has,
            ``"unmatched mms_id <id>"`` (or ``"unmatched"``).
        index: its index in the results (None when unmatched).
        to: the number.
        send_status: the results' status (sent, failed, unknown, skipped) or ``"unmatched"``.
        state: see the module docstring.
        reason: why it failed or was not sent (postback code/status/details, or E-code/info).
        code, status, sent_as, updated_at: of the notification that decided the state.
        tracking_id, client_reference, mms_id: identifiers.
        notifications: distinct notifications joined to it (duplicates not counted).
    """

    campaign: str
    index: int | None
    to: str | None
    send_status: str
    state: State
    reason: str | None = None
    code: str | None = None
    status: str | None = None
    sent_as: str | None = None
    updated_at: datetime | None = None
    tracking_id: str | None = None
    client_reference: str | None = None
    mms_id: str | None = None
    notifications: int = 0

    def to_record(self) -> dict[str, Any]:
        """A plain dict for JSON/CSV output (datetimes in ISO 8601)."""
        record = attrs.asdict(self)
        if self.updated_at is not None:
            record["updated_at"] = self.updated_at.isoformat()
        return record


ROW_FIELDS: Final = tuple(field.name for field in attrs.fields(RecipientRow))


@attrs.frozen(kw_only=True)
class CampaignCounts:
    """Counts for one campaign (a results file, or the unmatched messages of one MMS id).

    Attributes:
        campaign: its name.
        recipients: rows in it.
        states: rows per state (every state present, zeros included).
        failure_reasons: ``failed`` rows per reason.
        not_sent_reasons: ``send_failed`` rows per reason.
    """

    campaign: str
    recipients: int
    states: Mapping[str, int]
    failure_reasons: Mapping[str, int]
    not_sent_reasons: Mapping[str, int]

    @property
    def accepted(self) -> int:
        """Rows whose send Skycore accepted (the sum of the accepted states)."""
        return sum(self.states[state] for state in ACCEPTED_STATES)

    @property
    def not_sent(self) -> int:
        """Rows that were not sent, or whose send is in doubt."""
        return sum(self.states[state] for state in NOT_SENT_STATES)


@attrs.frozen(kw_only=True)
class Report:
    """The result of a reconciliation.

    Attributes:
        campaigns: counts per campaign, results files first (in the order given).
        rows: one per results row (in order), then one per unmatched message.
        notifications: distinct notifications read.
        duplicates: notifications dropped because an equal one was already read.
        ignored: notifications not about a sent message, per code.
        problems: unreadable input lines (``path:line: reason``).
    """

    campaigns: tuple[CampaignCounts, ...]
    rows: tuple[RecipientRow, ...]
    notifications: int = 0
    duplicates: int = 0
    ignored: Mapping[str, int] = attrs.field(factory=dict)
    problems: tuple[str, ...] = ()

    @property
    def unmatched(self) -> int:
        """Messages that have notifications but no results row."""
        return sum(1 for row in self.rows if row.send_status == UNMATCHED)


@attrs.frozen
class _Result:
    campaign: str
    index: int
    to: str
    status: str
    tracking_id: str | None
    client_reference: str | None
    error_code: str | None
    error_info: str | None


def _result(record: Mapping[str, Any], campaign: str) -> _Result:
    status = record.get("status")
    if status not in STATUSES:
        raise ValueError(f"unknown result status {status!r}")
    index, to = record.get("index"), record.get("to")
    if not isinstance(index, int) or not isinstance(to, str):
        raise ValueError("a result needs an integer index and a string to")
    text = {
        name: value if isinstance(value := record.get(name), str) and value else None
        for name in ("tracking_id", "client_reference", "error_code", "error_info")
    }
    return _Result(campaign, index, to, str(status), **text)


class Reconciler:
    """Joins results and notifications fed in any order; :meth:`report` gives the outcome.

    Memory: the result rows, one merged evidence per message and the dedupe keys.
    """

    def __init__(self) -> None:
        self._results: list[_Result] = []
        self._by_tracking: dict[str, _Evidence] = {}
        self._by_reference: dict[str, _Evidence] = {}  # notifications without a tracking id
        self._aliases: dict[str, str] = {}  # legacy SMSID -> the MMS tracking id
        self._seen: set[str] = set()
        self._ignored: Counter[str] = Counter()
        self.duplicates = 0
        self.problems: list[str] = []

    def add_result(self, record: Mapping[str, Any], campaign: str) -> None:
        """Add one ``results.jsonl`` record of ``campaign``; ValueError if it is malformed."""
        self._results.append(_result(record, campaign))

    def add_results(self, records: Iterable[Mapping[str, Any]], campaign: str) -> None:
        """Add many records; malformed ones are described in :attr:`problems`."""
        for number, record in enumerate(records, start=1):
            try:
                self.add_result(record, campaign)
            except ValueError as exc:
                self.problems.append(f"{campaign}: record {number}: {exc}")

    def add_notification(self, n: Notification) -> None:
        """Add one notification; duplicates (equal :meth:`~Notification.dedupe_key`) are dropped."""
        key = n.dedupe_key()
        if key in self._seen:
            self.duplicates += 1
            return
        self._seen.add(key)
        if n.code in _NOT_ABOUT_A_SEND or not (n.tracking_id or n.client_reference):
            self._ignored[n.code] += 1
            return
        if n.sms_id and n.tracking_id:
            alias = _first(self._aliases.get(n.sms_id), n.tracking_id)
            self._aliases[n.sms_id] = alias or n.tracking_id
        groups = self._by_tracking if n.tracking_id else self._by_reference
        ident = n.tracking_id or n.client_reference or ""
        groups[ident] = _merge(groups.get(ident), _Evidence.of(n))

    def add_notifications(self, notifications: Iterable[Notification]) -> None:
        """Add many notifications."""
        for n in notifications:
            self.add_notification(n)

    def report(self) -> Report:
        """Join everything added so far and count per campaign."""
        joined, leftovers = self._join()
        rows = [_result_row(r, joined.get(i)) for i, r in enumerate(self._results)]
        rows += [_unmatched_row(tracking_id, e) for tracking_id, e in leftovers]
        return Report(
            campaigns=_count(rows),
            rows=tuple(rows),
            notifications=len(self._seen),
            duplicates=self.duplicates,
            ignored=dict(sorted(self._ignored.items())),
            problems=tuple(self.problems),
        )

    def _messages(self) -> dict[str, _Evidence]:
        """Evidence per tracking id, with legacy SMS-link receipts folded into their MMS."""
        messages = dict(self._by_tracking)
        for sms_id, tracking_id in sorted(self._aliases.items()):
            if sms_id != tracking_id and (sms := messages.pop(sms_id, None)) is not None:
                messages[tracking_id] = _merge(messages.get(tracking_id), sms)
        return messages

    def _join(self) -> tuple[dict[int, _Evidence], list[tuple[str | None, _Evidence]]]:
        """Evidence per results position, and what joined no row."""
        by_tracking: dict[str, int] = {}
        for place, result in enumerate(self._results):
            if result.tracking_id is not None:
                by_tracking.setdefault(result.tracking_id, place)
        references = self._unique_references()
        joined: dict[int, _Evidence] = {}
        leftovers: list[tuple[str | None, _Evidence]] = []
        for tracking_id, evidence in sorted(self._messages().items(), key=_first_item):
            target = by_tracking.get(tracking_id)
            if target is None:
                target = self._untracked(references.get(evidence.client_reference or ""))
            if target is None:
                leftovers.append((tracking_id, evidence))
            else:
                joined[target] = _merge(joined.get(target), evidence)
        for reference, evidence in sorted(self._by_reference.items(), key=_first_item):
            target = references.get(reference)
            if target is None:
                leftovers.append((None, evidence))
            else:
                joined[target] = _merge(joined.get(target), evidence)
        return joined, leftovers

    def _unique_references(self) -> dict[str, int]:
        """Client reference -> results position, for references exactly one row carries."""
        counts = Counter(r.client_reference for r in self._results if r.client_reference)
        return {
            r.client_reference: position
            for position, r in enumerate(self._results)
            if r.client_reference and counts[r.client_reference] == 1
        }

    def _untracked(self, place: int | None) -> int | None:
        """``place`` if that row has no tracking id (a client reference may then join it)."""
        return place if place is not None and self._results[place].tracking_id is None else None


def _first_item(item: tuple[str, _Evidence]) -> str:
    return item[0]


def _reason(n: Notification) -> str:
    text = " ".join(part for part in (n.code, n.status) if part)
    return f"{text}: {n.status_details}" if n.status_details else text


def _not_sent_reason(result: _Result) -> str | None:
    parts = [part for part in (result.error_code, result.error_info) if part]
    return ": ".join(parts) or None


def _evidence_fields(evidence: _Evidence) -> dict[str, Any]:
    best = evidence.best
    state = _evidence_state(best)
    return {
        "state": state,
        "reason": _reason(best) if state == "failed" else None,
        "code": best.code,
        "status": best.status,
        "sent_as": best.sent_as,
        "updated_at": best.timestamp or best.created,
        "notifications": evidence.count,
        "mms_id": evidence.mms_id,
    }


def _result_row(result: _Result, evidence: _Evidence | None) -> RecipientRow:
    common: dict[str, Any] = {
        "campaign": result.campaign,
        "index": result.index,
        "to": result.to,
        "send_status": result.status,
        "tracking_id": result.tracking_id,
        "client_reference": result.client_reference,
    }
    if evidence is not None:
        return RecipientRow(**common, **_evidence_fields(evidence))
    state = _NOT_SENT[result.status]
    reason = _not_sent_reason(result) if state != "no_report_yet" else None
    return RecipientRow(**common, state=state, reason=reason)


def _unmatched_row(tracking_id: str | None, evidence: _Evidence) -> RecipientRow:
    fields = _evidence_fields(evidence)
    campaign = f"{UNMATCHED} mms_id {fields['mms_id']}" if fields["mms_id"] else UNMATCHED
    return RecipientRow(
        campaign=campaign,
        index=None,
        to=evidence.to,
        send_status=UNMATCHED,
        tracking_id=tracking_id,
        client_reference=evidence.client_reference,
        **fields,
    )


def _count(rows: Sequence[RecipientRow]) -> tuple[CampaignCounts, ...]:
    """Counts per campaign, in order of first appearance."""
    grouped: dict[str, list[RecipientRow]] = {}
    for row in rows:
        grouped.setdefault(row.campaign, []).append(row)
    return tuple(_campaign_counts(name, members) for name, members in grouped.items())


def _campaign_counts(name: str, rows: Sequence[RecipientRow]) -> CampaignCounts:
    states = Counter(row.state for row in rows)
    return CampaignCounts(
        campaign=name,
        recipients=len(rows),
        states={state: states[state] for state in STATES},
        failure_reasons=_reasons(rows, "failed"),
        not_sent_reasons=_reasons(rows, "send_failed"),
    )


def _reasons(rows: Iterable[RecipientRow], state: State) -> dict[str, int]:
    counts = Counter(row.reason or "(no reason given)" for row in rows if row.state == state)
    return dict(counts.most_common())


def reconcile(
    results: Mapping[str, Iterable[Mapping[str, Any]]], notifications: Iterable[Notification]
) -> Report:
    """Reconcile in one call: ``results`` maps each campaign name to its records."""
    reconciler = Reconciler()
    for campaign, records in results.items():
        reconciler.add_results(records, campaign)
    reconciler.add_notifications(notifications)
    return reconciler.report()


def reconcile_files(results: Sequence[str | Path], postbacks: Sequence[str | Path]) -> Report:
    """Reconcile ``results.jsonl`` files with stored notification files.

    Each results file is one campaign, named by its path as given. Unreadable lines are
    reported in :attr:`Report.problems`.
    """
    reconciler = Reconciler()
    for path in results:
        reconciler.add_results(read_jsonl(path, reconciler.problems), str(path))
    for path in postbacks:
        reconciler.add_notifications(read_notifications(path, reconciler.problems))
    return reconciler.report()


# --------------------------------------------------------------------------- output

_LABELS: Final[dict[str, str]] = {
    "delivered": "delivered",
    "delivered_as_sms": "delivered as SMS link",
    "failed": "failed",
    "sending": "sending (no receipt yet)",
    "no_report_yet": "no report yet",
    "send_failed": "send failed",
    "send_unknown": "send outcome unknown",
    "skipped": "skipped (duplicate)",
}


def render_text(report: Report) -> str:
    """A human-readable summary: per campaign, the counts by state and the failure reasons."""
    lines: list[str] = []
    for campaign in report.campaigns:
        lines += _campaign_lines(campaign)
    lines.append(_notification_line(report))
    if report.problems:
        lines.append(f"{len(report.problems)} unreadable input lines, first: {report.problems[0]}")
    return "\n".join(lines) + "\n"


def _campaign_lines(c: CampaignCounts) -> list[str]:
    unit = "messages without a results row" if c.campaign.startswith(UNMATCHED) else "recipients"
    lines = [f"{c.campaign}: {c.recipients} {unit}", _line(2, "accepted", c.accepted)]
    for state in ACCEPTED_STATES:
        lines.append(_line(4, _LABELS[state], c.states[state]))
        if state == "failed":
            lines += [_line(6, reason, n) for reason, n in c.failure_reasons.items()]
    if c.not_sent:
        lines.append(_line(2, "not sent", c.not_sent))
        for state in NOT_SENT_STATES:
            lines.append(_line(4, _LABELS[state], c.states[state]))
            if state == "send_failed":
                lines += [_line(6, reason, n) for reason, n in c.not_sent_reasons.items()]
    return lines


def _line(indent: int, label: str, count: int) -> str:
    return f"{count:>8}{' ' * indent}{label}"


def _notification_line(report: Report) -> str:
    ignored = ", ".join(f"{code} {n}" for code, n in report.ignored.items())
    return (
        f"notifications: {report.notifications} distinct, {report.duplicates} duplicates "
        f"dropped, {report.unmatched} unmatched messages, "
        f"{sum(report.ignored.values())} not about a send" + (f" ({ignored})" if ignored else "")
    )


def write_csv(rows: Iterable[RecipientRow], path: str | Path) -> None:
    """Write the per-recipient table as CSV (header row; empty cells for None)."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=ROW_FIELDS)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if v is None else v for k, v in row.to_record().items()})


def write_jsonl(rows: Iterable[RecipientRow], path: str | Path) -> None:
    """Write the per-recipient table as JSONL, one object per row."""
    with open(path, "wb") as handle:
        for row in rows:
            handle.write(orjson.dumps(row.to_record()) + b"\n")
