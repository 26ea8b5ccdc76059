"""Exact n-gram counting over many rows at once: polynomial hashes to group, element-wise checks to confirm.

Hashes only group candidates: every pair of windows (or word and flagged word) a hash puts together is
compared element by element, so the counts are exact, or a row is reported unsure (a hash collision) for
the caller to settle with its per-caption reference.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import numpy as np

_HASH_P = np.uint64(0x9E3779B97F4A7C15)  # odd, so invertible modulo 2**64
# An odd multiplier applied to every hash: without it, a change in a slice's first values moves only the low
# bits of the polynomial sum, and sort keys drop the low bits (they hold the window position).
_HASH_MIX = 0xD6E8FEB86659FD93


def _bits(value: int) -> int:
    """Bits that hold every integer in ``0..value`` (at least one)."""
    return max(int(value).bit_length(), 1)


def ragged(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For ``counts[i]`` items owned by i, laid out owner after owner: each item's owner and rank in it."""
    owner = np.repeat(np.arange(counts.size, dtype=np.int64), counts)
    first = np.cumsum(counts) - counts
    return owner, np.arange(owner.size, dtype=np.int64) - np.repeat(first, counts)


_POWERS: list[np.ndarray] = []


def _powers(size: int) -> tuple[np.ndarray, np.ndarray]:
    """P**k and MIX * P**-k modulo 2**64 for k < size, computed once and reused across chunks."""
    if not _POWERS or _POWERS[0].size < size:
        grown = max(size, 1 << 20)
        powers = np.full(grown, _HASH_P, dtype=np.uint64)
        inverse = np.full(grown, np.uint64(pow(int(_HASH_P), -1, 1 << 64)), dtype=np.uint64)
        powers[0], inverse[0] = 1, _HASH_MIX
        _POWERS[:] = [np.cumprod(powers), np.cumprod(inverse)]
    return _POWERS[0][:size], _POWERS[1][:size]


def _prefix_hashes(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Prefix sums of ``(values[k] + 1) * P**k`` (``size + 1`` of them) and the matching ``MIX * P**-k``.

    The hash of a slice ``[s, e)`` is ``(prefix[e] - prefix[s]) * unshift[s]``, i.e.
    ``MIX * sum((values[s + k] + 1) * P**k)``: equal slices hash alike wherever they sit; unequal ones may
    too, so callers confirm every hash match element by element.
    """
    powers, unshift = _powers(values.size)
    prefix = np.zeros(values.size + 1, dtype=np.uint64)
    np.multiply(values, powers, out=prefix[1:])
    prefix[1:] += powers
    np.cumsum(prefix, out=prefix)
    return prefix, unshift


def slice_hashes(values: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """The hash of every slice ``values[s:e]`` (see ``_prefix_hashes``)."""
    prefix, unshift = _prefix_hashes(values)
    return (prefix[ends] - prefix[starts]) * unshift[starts]


def window_hashes(values: np.ndarray, n: int) -> np.ndarray:
    """The hash of every window ``values[i:i + n]``, ``i = 0 .. size - n``, by contiguous array operations."""
    prefix, unshift = _prefix_hashes(values)
    hashes = prefix[n:] - prefix[:-n]
    hashes *= unshift[: hashes.size]
    return hashes


def equal_slices(
    a: np.ndarray, a_starts: np.ndarray, b: np.ndarray, b_starts: np.ndarray, lengths: np.ndarray
) -> np.ndarray:
    """Whether ``a[a_starts[i]:][:lengths[i]] == b[b_starts[i]:][:lengths[i]]``, element by element."""
    owner, rank = ragged(lengths)
    differ = a[np.repeat(a_starts, lengths) + rank] != b[np.repeat(b_starts, lengths) + rank]
    return np.bincount(owner[differ], minlength=lengths.size) == 0


def repeated_windows(
    values: np.ndarray,
    offsets: np.ndarray,
    n: int,
    equal: Callable[[np.ndarray, np.ndarray], np.ndarray],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every window of ``n`` consecutive values that occurs more than once inside its row, counted exactly.

    Row i holds ``values[offsets[i]:offsets[i + 1]]``. One sort of 64-bit keys (row | middle bits of the
    window hash | window position) lines up each row's equal windows; every pair of neighbours in a group
    is then compared value by value through ``equal(starts_a, starts_b)``, so a group is a set of truly
    equal windows, or its row comes back in ``unsure`` (a hash collision) for the caller to settle.

    Returns each repeated group's row (ascending) and count, the number of windows of every row, and the
    ``unsure`` row mask.
    """
    n_rows = offsets.size - 1
    windows = np.maximum(np.diff(offsets) - n + 1, 0)
    unsure = np.zeros(n_rows, dtype=bool)
    total = int(windows.sum())
    if total == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, windows, unsure
    row_bits, pos_bits = _bits(n_rows - 1), _bits(int(windows.max()) - 1)
    first = np.cumsum(windows) - windows  # index of each row's first window
    index = np.arange(total, dtype=np.int64)
    start = index + np.repeat(offsets[:-1] - first, windows)
    key = window_hashes(values, n)[start]
    key &= np.uint64(((1 << (64 - row_bits)) - 1) ^ ((1 << pos_bits) - 1))
    # row << (64 - row_bits) | position in the row, as index + (row << ... - first) in wrapping uint64
    row_base = (np.arange(n_rows, dtype=np.uint64) << np.uint64(64 - row_bits)) - first.astype(np.uint64)
    key |= np.repeat(row_base, windows) + index.view(np.uint64)
    key.sort()
    group = key >> np.uint64(pos_bits)
    same = np.flatnonzero(group[1:] == group[:-1])  # key[same + 1] is in the group of key[same]
    row = (key[same] >> np.uint64(64 - row_bits)).astype(np.int64)
    pos_mask = np.uint64((1 << pos_bits) - 1)
    base = offsets[row]
    ok = equal(
        base + (key[same] & pos_mask).astype(np.int64), base + (key[same + 1] & pos_mask).astype(np.int64)
    )
    unsure[row[~ok]] = True
    run = np.flatnonzero(np.diff(same, prepend=-2) != 1)
    counts = np.diff(run, append=same.size) + 1
    return row[run], counts, windows, unsure


def _word_offsets(n: int, per: int) -> list[int]:
    """Where the words of a window of ``n`` elements start, ``per`` elements a word: every ``per``-th
    element, and a last word ending with the window (it may overlap the one before); one word if n <= per."""
    return [*range(0, n - per, per), n - per] if n > per else [0]


def packed_words(block: np.ndarray, n: int, span: int) -> tuple[list[np.ndarray], np.uint64 | None]:
    """64-bit words that together hold every window of ``n`` elements of every row of ``block``, exactly.

    ``block`` is a C-contiguous ``(rows, width)`` array of 1- or 4-byte elements; a word is ``8 // itemsize``
    consecutive elements read as one unsigned 64-bit integer (an unaligned view: no copy). The words of
    window ``i`` are column ``i`` of every returned view, so two windows are equal exactly when all their
    words are. A window shorter than a word has one word, to be masked to its first ``n`` elements with
    the returned mask (None otherwise). Each view has ``span`` columns; the caller makes ``width`` large
    enough that they stay inside the row (``width >= span - 1 + max(n, 8 // itemsize)``).
    """
    rows, width = block.shape
    size = block.itemsize
    per = 8 // size
    view = np.ndarray((rows, width - per + 1), dtype=np.uint64, buffer=block, strides=(width * size, size))
    low = None
    if n < per:  # the word's first n elements: its low bytes on a little-endian machine, high ones else
        bits = 8 * size * n
        low = np.uint64((1 << bits) - 1 if sys.byteorder == "little" else ((1 << bits) - 1) << (64 - bits))
    return [view[:, o : o + span] for o in _word_offsets(n, per)], low


def row_window_hashes(words: list[np.ndarray], low: np.uint64 | None) -> np.ndarray:
    """A 64-bit hash of every window from its words (``packed_words``): one multiply-add per word.

    Multiplying by an odd constant after every add carries each word's low bits into the high bits, which
    are the ones sort keys keep.
    """
    h = (words[0] if low is None else words[0] & low) * np.uint64(_HASH_MIX)
    for word in words[1:]:
        h += word
        h *= np.uint64(_HASH_MIX)
    return h


def repeated_windows_by_row(
    block: np.ndarray, windows: np.ndarray, n: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every window of ``n`` elements that occurs more than once in its row of ``block``, counted exactly.

    Row r holds ``windows[r] >= 2`` windows (the rest of the row is padding, never counted). Each row's
    keys (high hash bits | window position) are sorted on their own (``sort(axis=1)``: short sorts, much
    cheaper than one sort of every key of the block); keys whose hash bits agree are neighbours, and
    every pair of neighbours is compared word by word, so a group is a set of truly equal windows or its
    row comes back in ``unsure`` (a hash collision) for the caller to settle. Rows of at most 256
    windows use 32-bit keys (24 or more hash bits), longer rows 64-bit ones.

    Returns each repeated group's row (ascending) and count, the number of neighbour pairs of every row
    (its windows minus its distinct windows) and the ``unsure`` row mask.
    """
    n_rows, width = block.shape
    span = int(windows.max())
    words, low = packed_words(block, n, span)
    h = row_window_hashes(words, low)
    pos_bits = _bits(span - 1)
    if pos_bits <= 8:
        high = h.view(np.uint32)[:, 1::2] if sys.byteorder == "little" else h.view(np.uint32)[:, ::2]
        pos = np.uint32((1 << pos_bits) - 1)
        key = high & ~pos
        key |= np.arange(span, dtype=np.uint32)
    else:
        pos = np.uint64((1 << pos_bits) - 1)
        key = h
        key &= ~pos
        key |= np.arange(span, dtype=np.uint64)
    key.sort(axis=1)
    same = np.flatnonzero((key[:, 1:] ^ key[:, :-1]) <= pos)  # pair (col, col + 1) of a row, row-major
    row = same // (span - 1)
    at = same + row  # key[row, col] in the flattened keys
    flat = key.ravel()
    a, b = (flat[at] & pos).astype(np.int64), (flat[at + 1] & pos).astype(np.int64)
    # Keys of one hash are sorted by position, so a row's padding windows come after its real ones (and
    # seldom pair at all: their zeros make them unlike each other).
    real = b < windows[row]
    if not real.all():
        at, row, a, b = at[real], row[real], a[real], b[real]
    size = block.itemsize
    every = np.ndarray((block.size - 8 // size + 1,), dtype=np.uint64, buffer=block, strides=(size,))
    base = row * width
    a += base
    b += base
    ok = None
    for o in _word_offsets(n, 8 // size):  # the words the hash was made of, compared exactly
        wa, wb = (every[a], every[b]) if o == 0 else (every[a + o], every[b + o])
        same_word = wa == wb if low is None else ((wa ^ wb) & low) == 0
        ok = same_word if ok is None else ok & same_word
    unsure = np.zeros(n_rows, dtype=bool)
    unsure[row[~ok]] = True
    start = np.flatnonzero(np.diff(at, prepend=-2) != 1)  # `at` is consecutive inside a group only
    counts = np.diff(start, append=at.size) + 1
    return row[start], counts, np.bincount(row, minlength=n_rows), unsure
