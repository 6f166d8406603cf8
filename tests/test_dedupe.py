"""NumberSet, the bulk engine's de-duplication set, agrees with a plain ``set`` of strings."""

from __future__ import annotations

import random
from array import array
from unittest.mock import patch

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from skycore_async import dedupe
from skycore_async.dedupe import NumberSet

numbers = st.one_of(
    st.text("0123456789", min_size=1, max_size=20),  # over 17 digits: the overflow set
    st.sampled_from(["0", "00", "012", "12", "1", "99999999999999999"]),  # leading zeros
    st.sampled_from(["3", "\u0663", "2", "\u00b2"]),  # digits int() reads alike, or not at all
    st.text(max_size=5),  # not digits at all
)


@settings(max_examples=200)
@given(st.lists(numbers, max_size=300), st.sampled_from([8, 64, 1 << 12]))
def test_add_and_contains_agree_with_a_set(items: list[str], bitmap_bits: int) -> None:
    """Small bitmaps force false hits, so the runs and buffer are searched too."""
    seen = NumberSet(bitmap_bits)
    reference: set[str] = set()
    for item in items:
        assert (item in seen) == (item in reference)
        assert seen.add(item) == (item not in reference)
        reference.add(item)
        assert item in seen
    assert len(seen) == len(reference)


def test_many_numbers_across_flushes_and_merges() -> None:
    """Enough numbers to flush the buffer many times and merge runs; repeats are caught."""
    rng = random.Random(7)
    numbers = [str(rng.randrange(10**10, 2 * 10**10)) for _ in range(40_000)]
    seen = NumberSet(1 << 10)  # tiny bitmap: nearly every lookup searches the runs
    reference: set[str] = set()
    for number in numbers + numbers[:5000]:
        assert seen.add(number) == (number not in reference)
        reference.add(number)
    assert len(seen) == len(reference)
    assert "0" + numbers[0] not in seen  # a leading zero makes a different number
    assert all(number in seen for number in numbers[::97])
    assert "<NumberSet size=" in repr(seen)


def test_bitmap_size_must_be_a_power_of_two() -> None:
    for bad in (0, 3, 4, 100):
        with pytest.raises(ValueError, match="power of two"):
            NumberSet(bad)


@settings(max_examples=100)
@given(
    st.sets(st.integers(0, 10**6), max_size=3000),
    st.sets(st.integers(0, 10**6), max_size=3000),
    st.sampled_from([1, 7, 64]),
)
def test_block_merge_equals_sorting(left: set[int], right: set[int], block: int) -> None:
    """Runs merge into one sorted run of exact size, whichever side is denser where."""
    right -= left  # runs never share a key
    a, b = array("q", sorted(left)), array("q", sorted(right))
    with patch.object(dedupe, "_BUFFER", block):  # small blocks: many cuts on both sides
        merged = dedupe._merge(a, b)
    assert merged == array("q", sorted(left | right))
    assert merged.buffer_info()[1] == len(left) + len(right)
