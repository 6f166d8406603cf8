"""Reconciliation: joins, the monotone status rule, unmatched notifications, output formats."""

from __future__ import annotations

import csv
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from skycore_async.notifications import Notification, decode_notifications
from skycore_async.reconcile import (
    ACCEPTED_STATES,
    Reconciler,
    Report,
    notification_from_record,
    notification_record,
    read_notifications,
    reconcile,
    reconcile_files,
    render_text,
    write_csv,
    write_jsonl,
)

FIXTURES = Path(__file__).parent / "fixtures" / "postbacks"
STATUS = {
    "N101": "Message Sent",
    "N102": "Message Sent/Delivered",
    "N202": "Message Sent/Delivered",
    "E101": "Message Failed",
    "E102": "Message Sent/Rejected",
}


def note(
    code: str, tracking_id: str | None = "T1", seconds: int = 0, **fields: Any
) -> Notification:
    """An MMS_MT notification ``seconds`` after a fixed time."""
    options: dict[str, Any] = {
        "origin": "MMS_MT",
        "code": code,
        "status": STATUS.get(code),
        "tracking_id": tracking_id,
        "to": "16501112222",
        "mms_id": None if code == "N202" else "35674",
        "timestamp": datetime(2024, 6, 7, 12, 0, tzinfo=UTC) + timedelta(seconds=seconds),
    }
    return Notification(**(options | fields))


def result(index: int, status: str = "sent", **fields: Any) -> dict[str, Any]:
    """A results.jsonl record."""
    record = {"index": index, "to": f"1650000000{index}", "status": status, "attempts": 1}
    tracking = {"tracking_id": f"T{index}"} if status == "sent" else {}
    return record | tracking | fields


def state_of(report: Report, index: int) -> str:
    """The state of the results row with ``index``."""
    return next(row.state for row in report.rows if row.index == index)


def one(notifications: list[Notification], results: list[dict[str, Any]] | None = None) -> Report:
    """Reconcile against one campaign named c."""
    return reconcile({"c": results if results is not None else [result(1)]}, notifications)


# --------------------------------------------------------------------------- golden files

RESULTS = [
    result(0),
    result(1),
    result(2),
    result(3),
    result(4),
    result(5, "failed", error_code="E114", error_info="Phone number is blacklisted"),
    result(6, "unknown", client_reference="ref-6", error_code="TIMEOUT"),
    result(7, "skipped", error_code="DUPLICATE"),
]
NOTIFICATIONS = [
    note("N102", "T0", 5, handset="motol7c"),
    note("N101", "T0", 0),
    note("N102", "T0", 5, handset="motol7c"),  # a redelivery
    note("N101", "T1", 0, sent_as="SMS", status_details="Handset setting: mms via xHTML"),
    note("N202", "T1", 9, sent_as="SMS"),
    note("N101", "T2", 0),
    note("E102", "T2", 7, status_details="Recipient blocked by mobile operator"),
    note("N101", "T3", 0),
    note("N102", "T99", 3, client_reference="ref-6"),  # the unknown send did go out
    note("N102", "T42", 3),  # nobody in the results sent it
    Notification(origin="MMS_MT", code="N003", mms_id="35674"),
]
GOLDEN = """\
results.jsonl: 8 recipients
       6  accepted
       2    delivered
       1    delivered as SMS link
       1    failed
       1      E102 Message Sent/Rejected: Recipient blocked by mobile operator
       1    sending (no receipt yet)
       1    no report yet
       2  not sent
       1    send failed
       1      E114: Phone number is blacklisted
       0    send outcome unknown
       1    skipped (duplicate)
unmatched mms_id 35674: 1 messages without a results row
       1  accepted
       1    delivered
       0    delivered as SMS link
       0    failed
       0    sending (no receipt yet)
       0    no report yet
notifications: 10 distinct, 1 duplicates dropped, 1 unmatched messages, 1 not about a send (N003 1)
"""


def write_inputs(tmp_path: Path) -> tuple[Path, Path]:
    """The golden inputs as files, as the bulk CLI and the receiver write them."""
    results, postbacks = tmp_path / "results.jsonl", tmp_path / "notifications.jsonl"
    results.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in RESULTS))
    now = datetime(2024, 6, 7, 12, 1, tzinfo=UTC)
    lines = [orjson.dumps(notification_record(n, now)) + b"\n" for n in NOTIFICATIONS]
    postbacks.write_bytes(b"".join(lines))
    return results, postbacks


def test_golden_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The small golden campaign gives the expected per-recipient states and text."""
    monkeypatch.chdir(tmp_path)
    write_inputs(tmp_path)
    report = reconcile_files(["results.jsonl"], ["notifications.jsonl"])
    states = [(row.index, row.send_status, row.state) for row in report.rows]
    assert states == [
        (0, "sent", "delivered"),
        (1, "sent", "delivered_as_sms"),
        (2, "sent", "failed"),
        (3, "sent", "sending"),
        (4, "sent", "no_report_yet"),
        (5, "failed", "send_failed"),
        (6, "unknown", "delivered"),
        (7, "skipped", "skipped"),
        (None, "unmatched", "delivered"),
    ]
    assert render_text(report) == GOLDEN
    assert report.rows[0].notifications == 2  # the redelivery is not counted
    assert (
        report.rows[2].reason == "E102 Message Sent/Rejected: Recipient blocked by mobile operator"
    )
    assert report.rows[8].tracking_id == "T42"


def test_table_outputs(tmp_path: Path) -> None:
    """CSV and JSONL tables hold one row per recipient with every column."""
    results, postbacks = write_inputs(tmp_path)
    report = reconcile_files([results], [postbacks])
    write_csv(report.rows, tmp_path / "t.csv")
    write_jsonl(report.rows, tmp_path / "t.jsonl")
    with open(tmp_path / "t.csv", newline="", encoding="utf-8") as handle:
        table = list(csv.DictReader(handle))
    jsonl = [orjson.loads(line) for line in (tmp_path / "t.jsonl").read_bytes().splitlines()]
    assert (
        [r["state"] for r in table] == [r["state"] for r in jsonl] == [r.state for r in report.rows]
    )
    assert table[0]["updated_at"] == jsonl[0]["updated_at"] == "2024-06-07T12:00:05+00:00"
    assert (table[4]["code"], jsonl[4]["code"]) == ("", None)


# --------------------------------------------------------------------------- the status rule


def test_n102_before_n101_is_delivered() -> None:
    """Out of order: the final N102 arrives first, the interim N101 later."""
    assert state_of(one([note("N102", "T1", 5), note("N101", "T1", 0)]), 1) == "delivered"


def test_late_n101_never_undoes_delivery() -> None:
    """An N101 after an N102, even with a later timestamp, leaves it delivered."""
    report = one([note("N101", "T1", 0), note("N102", "T1", 5), note("N101", "T1", 60)])
    assert state_of(report, 1) == "delivered"
    assert report.rows[0].code == "N102"


@pytest.mark.parametrize("order", [("E102", "N102"), ("N102", "E102")])
def test_delivered_beats_failed_in_either_order(order: tuple[str, str]) -> None:
    """An N102 and an E102 for one message: delivered, whichever came first."""
    notifications = [note(code, "T1", seconds) for seconds, code in enumerate(order)]
    assert state_of(one(notifications), 1) == "delivered"


def test_failure_reasons_and_n102_failures() -> None:
    """E-codes and N102s that report a failure are failed, with code, status and details."""
    report = one(
        [
            note("E101", "T1", status_details="Error fetching dynamic content"),
            note("N102", "T2", status="Message Sent/Expired"),
        ],
        [result(1), result(2)],
    )
    assert [row.reason for row in report.rows] == [
        "E101 Message Failed: Error fetching dynamic content",
        "N102 Message Sent/Expired",
    ]
    assert report.campaigns[0].failure_reasons == {
        "E101 Message Failed: Error fetching dynamic content": 1,
        "N102 Message Sent/Expired": 1,
    }


def test_ddm_failure_is_not_a_message_failure() -> None:
    """E501 (device discovery message failed) leaves the content sending."""
    assert state_of(one([note("E501", "T1")]), 1) == "sending"


def test_legacy_sms_link_receipt_joins_through_smsid() -> None:
    """Legacy xHTML flow: the N202 carries the SMSID of the N102 as its tracking id."""
    notifications = decode_notifications((FIXTURES / "legacy_xhtml_batch.legacy.xml").read_bytes())
    report = one(notifications[::-1], [result(0, tracking_id="MMS_12400")])
    assert (report.rows[0].state, report.rows[0].notifications, report.unmatched) == (
        "delivered_as_sms",
        3,
        0,
    )


STEPS = st.lists(
    st.tuples(st.sampled_from(["N101", "N102", "N202", "E101", "E102", "N501"]), st.integers(0, 9)),
    min_size=1,
    max_size=8,
)


@settings(max_examples=200, deadline=None)
@given(steps=STEPS)
def test_state_never_moves_backwards(steps: list[tuple[str, int]]) -> None:
    """Each extra notification leaves the state the same or higher in the ranking."""
    rank = {"sending": 1, "failed": 2, "delivered_as_sms": 3, "delivered": 4}
    reconciler = Reconciler()
    reconciler.add_result(result(1), "c")
    seen = []
    for code, seconds in steps:
        reconciler.add_notification(
            note(code, "T1", seconds, sent_as="SMS" if code == "N202" else "MMS")
        )
        seen.append(rank[reconciler.report().rows[0].state])
    assert seen == sorted(seen)


@settings(max_examples=100, deadline=None)
@given(order=st.permutations(range(len(RESULTS) + len(NOTIFICATIONS))))
def test_any_feeding_order_gives_the_same_report(order: list[int]) -> None:
    """Results and notifications interleaved in any order: the same report as the golden one."""
    items: list[dict[str, Any] | Notification] = [*RESULTS, *NOTIFICATIONS]
    reconciler = Reconciler()
    for position in order:
        item = items[position]
        if isinstance(item, Notification):
            reconciler.add_notification(item)
        else:
            reconciler.add_result(item, "results.jsonl")
    assert render_text(reconciler.report()) == GOLDEN


# --------------------------------------------------------------------------- joins


def test_notification_before_its_result_is_joined() -> None:
    """A notification read before the results row exists joins it once it appears."""
    reconciler = Reconciler()
    reconciler.add_notification(note("N102", "T1"))
    assert reconciler.report().unmatched == 1
    reconciler.add_result(result(1), "c")
    report = reconciler.report()
    assert (report.unmatched, state_of(report, 1)) == (0, "delivered")


def test_unmatched_notifications_are_reported() -> None:
    """Notifications for sends no results row has become unmatched rows, by MMS id."""
    report = one([note("N101", "T7"), note("N102", "T7", 1), note("E102", "T8", mms_id=None)])
    assert [(r.campaign, r.tracking_id, r.state) for r in report.rows[1:]] == [
        ("unmatched mms_id 35674", "T7", "delivered"),
        ("unmatched", "T8", "failed"),
    ]
    assert (report.unmatched, state_of(report, 1)) == (2, "no_report_yet")


def test_client_reference_joins_only_unique_untracked_rows() -> None:
    """A client reference joins an untracked row it names alone; never a tracked or shared one."""
    results = [
        result(1, client_reference="tracked"),
        result(2, "unknown", client_reference="alone"),
        result(3, "unknown", client_reference="shared"),
        result(4, "unknown", client_reference="shared"),
    ]
    notifications = [
        note("N102", "X1", client_reference="tracked"),  # another send with that reference
        note("N102", None, client_reference="alone"),  # no tracking id at all
        note("E102", "X3", client_reference="shared"),
    ]
    report = one(notifications, results)
    assert [state_of(report, i) for i in (1, 2, 3, 4)] == [
        "no_report_yet",
        "delivered",
        "send_unknown",
        "send_unknown",
    ]
    assert report.unmatched == 2


def test_counts_add_up_per_campaign() -> None:
    """Each campaign's states sum to its recipients; accepted is the sum of accepted states."""
    report = reconcile(
        {"a": [result(1), result(2, "failed")], "b": [result(3), result(4, "skipped")]},
        [note("N102", "T1"), note("N101", "T3")],
    )
    assert [(c.campaign, c.recipients, c.accepted, c.not_sent) for c in report.campaigns] == [
        ("a", 2, 1, 1),
        ("b", 2, 1, 1),
    ]
    for campaign in report.campaigns:
        assert sum(campaign.states.values()) == campaign.recipients
        assert campaign.accepted == sum(campaign.states[s] for s in ACCEPTED_STATES)


# --------------------------------------------------------------------------- the stored format


@pytest.mark.parametrize("path", sorted(FIXTURES.glob("*.xml")), ids=lambda p: p.name)
def test_record_round_trip(path: Path) -> None:
    """Every golden postback survives the receiver's JSONL record unchanged."""
    for n in decode_notifications(path.read_bytes()):
        record = orjson.loads(orjson.dumps(notification_record(n, datetime.now(UTC))))
        assert notification_from_record(record) == n
        assert record["key"] == n.dedupe_key()


def test_unreadable_lines_are_reported_and_a_torn_tail_skipped(tmp_path: Path) -> None:
    """Corrupt lines become problems; an unterminated last line is skipped silently."""
    good = orjson.dumps(notification_record(note("N102"))) + b"\n"
    path = tmp_path / "n.jsonl"
    path.write_bytes(good + b"{oops\n" + b"[1]\n" + b'{"origin": "MMS_MT"}\n' + b'{"code": "N1')
    problems: list[str] = []
    assert [n.code for n in read_notifications(path, problems)] == ["N102"]
    assert [p.split(": ", 1)[0].rsplit(":", 1)[-1] for p in problems[:2]] == ["2", "3"]
    assert len(problems) == 3
    report = reconcile_files([], [path])
    assert (len(report.problems), report.unmatched) == (3, 1)
    assert "3 unreadable input lines" in render_text(report)


def test_malformed_results_are_problems(tmp_path: Path) -> None:
    """A results line without a valid status or index is reported, the rest still counted."""
    path = tmp_path / "results.jsonl"
    lines = [result(1), {"index": 2, "to": "1", "status": "lost"}, {"to": "1", "status": "sent"}]
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in lines))
    report = reconcile_files([path], [])
    assert (len(report.rows), len(report.problems)) == (1, 2)
