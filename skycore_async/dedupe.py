"""An exact set of phone numbers in about 8 bytes each, for de-duplicating bulk input.

A Python ``set`` of a million numbers costs ~60 MB (int objects plus the hash table); this
keeps numbers as int64 in sorted ``array`` runs (a small log-structured merge), with a fixed
bitmap in front so that most lookups of a new number never search the runs. Runs are merged
geometrically up to a size cap, so no merge needs more than a couple of MB of memory; a merge
runs a block at a time, in C.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from typing import Final

__all__ = ["NumberSet"]

_BUFFER: Final = 4096
_RUN_CAP: Final = 1 << 17
_MAX_DIGITS: Final = 17
_ZERO: Final = array("q", [0])


class NumberSet:
    """Remembers which numbers were seen. ``add`` says whether a number is new.

    Args:
        bitmap_bits: size of the prefilter bitmap (a power of two); the default, 2**25 bits
            (4 MB), keeps false hits below ~3 % for a million numbers.
    """

    def __init__(self, bitmap_bits: int = 1 << 25) -> None:
        if bitmap_bits & (bitmap_bits - 1) or bitmap_bits < 8:
            raise ValueError("bitmap_bits must be a power of two >= 8")
        self._bits = bytearray(bitmap_bits >> 3)
        self._mask = bitmap_bits - 1
        self._buffer: set[str] = set()  # new numbers as given; int keys at flush
        self._runs: list[array[int]] = []
        self._overflow: set[str] = set()  # not 1-17 ASCII digits (never a valid number)
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def __repr__(self) -> str:
        return f"<NumberSet size={self._count} runs={len(self._runs)}>"

    def __contains__(self, number: str) -> bool:
        if len(number) > _MAX_DIGITS or not (number.isascii() and number.isdigit()):
            return number in self._overflow
        slot = hash(number) & self._mask
        return bool(self._bits[slot >> 3] & (1 << (slot & 7))) and self._holds(number)

    def add(self, number: str) -> bool:
        """Add ``number`` (digits); True when it was not in the set before."""
        if len(number) > _MAX_DIGITS or not (number.isascii() and number.isdigit()):
            return self._add_overflow(number)
        # The bitmap is per process, so Python's salted string hash is a fine slot function
        # (and already cached on the str). This runs once per recipient, so it stays inline
        # and the buffer keeps the str: int keys are made in one C pass at flush.
        slot = hash(number) & self._mask
        byte = slot >> 3
        bit = 1 << (slot & 7)
        bits = self._bits
        if bits[byte] & bit and self._holds(number):
            return False
        bits[byte] |= bit
        buffer = self._buffer
        buffer.add(number)
        self._count += 1
        if len(buffer) >= _BUFFER:
            self._flush()
        return True

    def _add_overflow(self, number: str) -> bool:
        if number in self._overflow:
            return False
        self._overflow.add(number)
        self._count += 1
        return True

    def _holds(self, number: str) -> bool:
        if number in self._buffer:
            return True
        key = _key(number)
        for run in self._runs:
            i = bisect_left(run, key)
            if i < len(run) and run[i] == key:
                return True
        return False

    def _flush(self) -> None:
        # The int keys of _key, made in C: no Python call per number.
        keys = map(int, map("1".__add__, self._buffer))
        self._runs.append(array("q", sorted(keys)))
        self._buffer.clear()
        runs = self._runs
        while (
            len(runs) >= 2
            and len(runs[-1]) >= len(runs[-2])
            and len(runs[-2]) + len(runs[-1]) <= _RUN_CAP
        ):
            newer, older = runs.pop(), runs.pop()
            runs.append(_merge(older, newer))


def _merge(a: array[int], b: array[int]) -> array[int]:
    """Merge two sorted runs a block at a time, so C does the per-number work.

    Each block is a slice of one run plus the part of the other that sorts before the
    slice's last key, so everything emitted sorts before everything left. Scratch memory
    stays within two blocks (a ``heapq.merge`` costs ~4k instructions per number).
    """
    out = _ZERO * (len(a) + len(b))  # exact size: extend() would over-allocate by ~6 %
    i = j = k = 0
    while i < len(a) and j < len(b):
        i_end = min(i + _BUFFER, len(a))
        j_end = bisect_left(b, a[i_end - 1], j)
        if j_end - j > _BUFFER:  # b is denser here: cut the block on b's side instead
            j_end = j + _BUFFER
            i_end = bisect_left(a, b[j_end - 1], i)
        block = array("q", sorted(a[i:i_end] + b[j:j_end]))
        out[k : k + len(block)] = block
        i, j, k = i_end, j_end, k + len(block)
    rest = a[i:] if i < len(a) else b[j:]
    out[k:] = rest
    return out


def _key(number: str) -> int:
    # A leading "1" keeps leading zeros distinct ("0123" != "123"); 17 digits fit in int64.
    return int("1" + number)
