"""Recipients for bulk sends, and streaming readers for CSV and JSONL files.

Readers are plain generators: they hold one row at a time, so a file of any size streams with
flat memory. A row that cannot be used is not dropped and does not stop the run: it is yielded
as a :class:`RowError` in its place, and the bulk engine records it as a ``failed`` outcome at
that row's index.
"""

from __future__ import annotations

import codecs
import csv
import io
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Final

import attrs
import orjson

__all__ = ["Recipient", "RowError", "read_csv", "read_jsonl", "read_recipients"]

#: Column names (case-insensitive) that hold the number in a CSV file.
NUMBER_COLUMNS: Final = ("to", "phone", "number", "mobile", "msisdn")
#: Columns with a meaning of their own; every other column becomes a ``data`` merge tag.
_SPECIAL: Final = {"client_reference", "custom_subject", "custom_text"}
#: Longest line a reader accepts; longer rows become a RowError (and do not hold memory).
MAX_LINE_BYTES: Final = 64 * 1024
#: Byte-order marks of encodings whose lines cannot be split on b"\n" (UTF-32 first: its
#: little-endian mark starts with UTF-16's).
_WIDE_BOMS: Final = (
    (codecs.BOM_UTF32_LE, "UTF-32"),
    (codecs.BOM_UTF32_BE, "UTF-32"),
    (codecs.BOM_UTF16_LE, "UTF-16"),
    (codecs.BOM_UTF16_BE, "UTF-16"),
)


@attrs.frozen
class Recipient:
    """One recipient of a bulk send: a number plus optional personalisation.

    Attributes:
        to: the number; normalised (``+``, ``00``, ``011``, spaces, dashes stripped) before use.
        data: merge-tag values for this recipient (``{$first_name|there}`` in the template).
        custom_text: replacement text for slide 1 (a str) or per slide (a mapping).
        custom_subject: a subject for this recipient.
        client_reference: your own id for this send (at most 64 characters).
    """

    to: str
    data: Mapping[str, str] | None = None
    custom_text: str | Mapping[int, str] | None = None
    custom_subject: str | None = None
    client_reference: str | None = None

    @property
    def is_plain(self) -> bool:
        """True when nothing but the number varies (the engine's fastest path)."""
        return not (self.data or self.custom_text or self.custom_subject or self.client_reference)


@attrs.frozen
class RowError:
    """A row of an input file that could not be read (it becomes a ``failed`` outcome).

    Attributes:
        line: 1-based line number in the file.
        reason: what is wrong with it.
        to: the number, when one could be read.
    """

    line: int
    reason: str
    to: str | None = None


def read_recipients(path: str | Path) -> Iterator[Recipient | RowError]:
    """Stream a ``.csv`` or ``.jsonl``/``.ndjson`` file, chosen by its extension."""
    suffix = Path(path).suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        return read_jsonl(path)
    return read_csv(path)


def _lines(path: str | Path) -> Iterator[tuple[int, str | None]]:
    """(line number, text) per physical line; text is None for undecodable or huge lines."""
    with open(path, "rb") as handle:
        for number, raw in enumerate(_bounded_lines(handle), start=1):
            if raw is None:
                yield number, None
                continue
            if number == 1:
                raw = _strip_bom(raw, path)
            try:
                yield number, raw.decode("utf-8")
            except UnicodeDecodeError:
                yield number, None


def _strip_bom(first_line: bytes, path: str | Path) -> bytes:
    """The first line without a UTF-8 BOM; ValueError for a UTF-16/32 file (not line-based)."""
    for bom, encoding in _WIDE_BOMS:
        if first_line.startswith(bom):
            raise ValueError(f"{path} is {encoding}-encoded; save it as UTF-8")
    return first_line.removeprefix(codecs.BOM_UTF8)


def _bounded_lines(handle: io.BufferedReader) -> Iterator[bytes | None]:
    """Lines without their newline; None for a line over MAX_LINE_BYTES (skipped unread)."""
    while True:
        line = handle.readline(MAX_LINE_BYTES + 1)
        if not line:
            return
        if len(line) > MAX_LINE_BYTES and not line.endswith(b"\n"):
            while line and not line.endswith(b"\n"):  # drain the rest of the long line
                line = handle.readline(MAX_LINE_BYTES)
            yield None
            continue
        yield line.rstrip(b"\r\n")


def read_csv(path: str | Path) -> Iterator[Recipient | RowError]:
    """Stream recipients from a CSV file with a header row.

    The number comes from a ``to``/``phone``/``number``/``mobile``/``msisdn`` column;
    ``client_reference``, ``custom_subject`` and ``custom_text`` columns are used as such;
    every other non-empty column becomes a ``data`` merge tag. Blank lines are skipped (they
    are not recipients); every other unusable row is yielded as a :class:`RowError`. Each
    line is one row: a line whose quoted field does not close on it is a RowError (the line
    that continues it is read as a row of its own).

    Raises:
        ValueError: the file is empty, UTF-16/32-encoded, or its header is unusable.
    """
    lines = _lines(path)
    header, number_column = _read_header(lines)
    for line_number, text in lines:
        if text is None:
            yield RowError(line_number, "line is not UTF-8 or is too long")
        elif text.strip():
            yield _csv_row(line_number, text, header, number_column)


def _read_header(lines: Iterator[tuple[int, str | None]]) -> tuple[list[str], int]:
    for line_number, text in lines:
        if text is None:
            raise ValueError(f"line {line_number}: the CSV header is not UTF-8 or is too long")
        if not text.strip():
            continue
        try:
            header = [name.strip().lower() for name in next(csv.reader([text]))]
        except csv.Error as exc:  # e.g. a CR-only line ending inside the "line"
            raise ValueError(f"line {line_number}: unreadable CSV header: {exc}") from None
        for candidate in NUMBER_COLUMNS:
            if candidate in header:
                return header, header.index(candidate)
        raise ValueError(
            f"the CSV header has no number column (one of {', '.join(NUMBER_COLUMNS)})"
        )
    raise ValueError("the CSV file is empty")


def _csv_row(
    line_number: int, text: str, header: list[str], number_column: int
) -> Recipient | RowError:
    try:
        values = _csv_values(text)
    except csv.Error as exc:
        return RowError(line_number, f"unreadable CSV row: {exc}")
    if len(values) <= number_column or not values[number_column].strip():
        return RowError(line_number, f"no value in the '{header[number_column]}' column")
    row = {name: value for name, value in zip(header, values, strict=False) if name}
    to = values[number_column].strip()
    data = {
        k: v for k, v in row.items() if k not in _SPECIAL and k != header[number_column] and v != ""
    }
    return Recipient(
        to=to,
        data=data or None,
        custom_text=row.get("custom_text") or None,
        custom_subject=row.get("custom_subject") or None,
        client_reference=row.get("client_reference") or None,
    )


def _csv_values(text: str) -> list[str]:
    """One line's fields; an unclosed quote is an error (rows are never joined across lines).

    Otherwise as lenient as the csv module's default (``a,"b"c`` reads as ``a``, ``bc``).
    """
    try:
        return next(csv.reader([text], strict=True))
    except csv.Error as exc:
        if "unexpected end of data" in str(exc):
            raise csv.Error(
                "a quoted field is not closed on this line (line breaks inside fields "
                "are not supported)"
            ) from None
    return next(csv.reader([text]))


def read_jsonl(path: str | Path) -> Iterator[Recipient | RowError]:
    """Stream recipients from a JSON-lines file: one object (or bare number string) per line.

    Objects take the keys ``to`` (or ``phone``), ``data`` (an object), ``custom_text``,
    ``custom_subject`` and ``client_reference``.

    Raises:
        ValueError: the file is UTF-16/32-encoded (on the first ``next()``).
    """
    for line_number, text in _lines(path):
        if text is None:
            yield RowError(line_number, "line is not UTF-8 or is too long")
        elif text.strip():
            yield _json_row(line_number, text)


def _json_row(line_number: int, text: str) -> Recipient | RowError:
    try:
        value: Any = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        return RowError(line_number, f"invalid JSON: {exc}")
    if _is_number(value):
        bare = str(value).strip()
        return Recipient(to=bare) if bare else RowError(line_number, "empty number")
    if not isinstance(value, dict):
        return RowError(line_number, "expected an object or a number")
    to = value.get("to", value.get("phone"))
    if not _is_number(to) or not str(to).strip():
        return RowError(line_number, "no 'to' field")
    try:
        return Recipient(
            to=str(to).strip(),
            data=_str_map(value.get("data")),
            custom_text=_custom_text(value.get("custom_text")),
            custom_subject=_opt_str(value.get("custom_subject")),
            client_reference=_opt_str(value.get("client_reference")),
        )
    except (TypeError, ValueError) as exc:
        return RowError(line_number, str(exc), to=str(to))


def _is_number(value: Any) -> bool:
    """A number as JSON may give it: a string or an integer (``true`` is not one)."""
    return isinstance(value, str | int) and not isinstance(value, bool)


def _opt_str(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str | int | float):
        raise TypeError(f"expected a string, got {type(value).__name__}")
    return str(value)


def _str_map(value: Any) -> dict[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise TypeError("'data' must be an object")
    return {str(k): str(v) for k, v in value.items() if v is not None}


def _custom_text(value: Any) -> str | dict[int, str] | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, dict):
        return {int(k): str(v) for k, v in value.items()}
    raise TypeError("'custom_text' must be a string or an object of slide -> text")
