"""Caption filters: exact Data-Juicer statistics, closed-interval keep rule, recipe order and attribution."""

from __future__ import annotations

import random
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from synthvlm.steps.filters import (
    FILTERS,
    RECIPES,
    AlphanumericFilter,
    CharacterRepetitionFilter,
    FlaggedWordsFilter,
    SpecialCharactersFilter,
    TextFilter,
    WordRepetitionFilter,
    WordsNumFilter,
    apply_filters,
    build_filter,
    dj_words,
    flagged_words,
    flagged_words_filter,
    kernels,
)
from synthvlm.steps.filters.base import lower_bound, upper_bound

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


def flickr_captions() -> list[str]:
    path = DATA / "flickr8k" / "Flickr8k.token.txt"
    if not path.exists():
        pytest.skip("shared/data/flickr8k is absent")
    lines = path.read_text(encoding="utf-8").splitlines()
    # `<image>#<n>\t<caption>`; three lines of the file use a space instead of the tab.
    return [line.split("\t", 1)[1] if "\t" in line else line.split(None, 1)[1] for line in lines]


def test_alphanumeric_values() -> None:
    f = AlphanumericFilter()
    values = f.compute(["ab1 !", "café ½", "", "!!!"])
    # "ab1 !": a, b, 1 of 5 chars -> 3/5; "café ½": c, a, f, é, ½ (isnumeric) of 6 -> 5/6; "" -> 0.0 as DJ
    assert values.tolist() == [3 / 5, 5 / 6, 0.0, 0.0]
    assert values.dtype == np.float64


def test_special_characters_values() -> None:
    f = SpecialCharactersFilter()
    values = f.compute(["a, b!", "“hi” 😀", "\U0001f1fa\U0001f1f8", "a\u00a0b", ""])
    # "a, b!": ",", " ", "!" of 5 -> 3/5; "“hi” 😀": “, ”, " ", 😀 of 6 -> 4/6;
    # the flag is two regional-indicator code points, neither a special char alone -> 0/2;
    # NO-BREAK SPACE is not in string.whitespace nor DJ's extra list -> 0/3; "" -> 0.0
    assert values.tolist() == [3 / 5, 4 / 6, 0.0, 0.0, 0.0]


def test_character_repetition_values() -> None:
    f = CharacterRepetitionFilter(rep_len=3)
    values = f.compute(["aaaaa", "abcabc", "abcd", "ab", ""])
    # "aaaaa": aaa x3, 1 distinct, 0 singletons, top min(isqrt(1)=1, 1) -> 3/3
    # "abcabc": abc x2, bca, cab: 3 distinct, 2 singletons, top min(isqrt(3)=1, 1) -> 2/4
    # "abcd": abc, bcd all distinct -> top 0 -> 0.0; "ab" and "" have no 3-gram -> 0.0
    assert values.tolist() == [1.0, 0.5, 0.0, 0.0, 0.0]
    # "aaaabbbb", 2-grams: aa x3, ab x1, bb x3; top min(isqrt(3)=1, 2 repeated) = 1 -> 3/7
    assert CharacterRepetitionFilter(rep_len=2).compute(["aaaabbbb"]).tolist() == [3 / 7]


def test_flagged_words_values() -> None:
    f = FlaggedWordsFilter()
    values = f.compute(["What the fuck, man", "FUCK!", "ass1 glass", "fuckfuck", "Ass café", "", "!!"])
    # words after lower + strip of specials (digits included):
    # [what, the, fuck, man] -> 1/4; [fuck] -> 1/1; [ass, glass] -> 1/2; [fuckfuck] -> 0/1;
    # [ass, café] -> 1/2 (non-ASCII row, Python path); no words -> 0.0
    assert values.tolist() == [0.25, 1.0, 0.5, 0.0, 0.5, 0.0, 0.0]


def test_word_repetition_values() -> None:
    f = WordRepetitionFilter(rep_len=2)
    values = f.compute(["a b a b", "A b, a B!", "a b c d", "a", ""])
    # [a, b, a, b] bigrams: "a b" x2, "b a" x1 -> repeated occurrences 2 of 3 -> 2/3;
    # lower-casing and stripping make the second caption the same; all-distinct bigrams -> 0.0;
    # fewer words than rep_len -> no n-gram -> 0.0
    assert values.tolist() == [2 / 3, 2 / 3, 0.0, 0.0, 0.0]
    # default rep_len 10: 20 words, the 10-gram "one ... ten" repeats; 11 windows, windows 0 and 10 equal
    ten = "one two three four five six seven eight nine ten"
    assert WordRepetitionFilter().compute([f"{ten} {ten}"]).tolist() == [2 / 11]


def test_words_num_values() -> None:
    f = WordsNumFilter()
    values = f.compute(["Hello, world !! 42", "a\u00a0b", "a\rb c", "\r", "Г", ""])
    # tokens split on space/newline/tab only; "!!" and "42" strip to nothing -> 2;
    # NBSP and CR do not split -> 1 and 2; "\r" and the Cyrillic capital Ge are special -> 0; "" -> 0
    assert values.tolist() == [2.0, 1.0, 2.0, 0.0, 0.0, 0.0]


def test_dj_words_lowercase_before_strip() -> None:
    # DJ lower-cases before stripping: capital Ge is special, its lower case is not
    assert dj_words("Г", lower=True) == ["г"]
    assert dj_words("Г", lower=False) == []
    # Python's str.lower: final sigma in context, dotted capital I expands to two code points
    assert dj_words("ΟΔΟΣ İs", lower=True) == ["οδος", "i\u0307s"]
    assert dj_words(" (a-b) \t\n«c» ", lower=False) == ["a-b", "c"]


def test_keep_bounds_are_inclusive() -> None:
    f = AlphanumericFilter(min_ratio=0.6, max_ratio=0.8)
    assert f.keep(np.array([0.5999999, 0.6, 0.7, 0.8, 0.8000001])).tolist() == [
        False,
        True,
        True,
        True,
        False,
    ]
    n = WordsNumFilter(min_num=2, max_num=3)
    assert n.keep(np.array([1.0, 2.0, 3.0, 4.0])).tolist() == [False, True, True, False]
    # flagged words with the paper's max_ratio 0.0 keeps exactly the captions without a flagged word
    assert FlaggedWordsFilter(max_ratio=0.0).keep(np.array([0.0, 0.01])).tolist() == [True, False]


def test_empty_caption_decisions_match_dj() -> None:
    # every statistic of "" is 0 (DJ's guards); the paper recipe drops it via alphanumeric (0.0 < 0.60)
    filters = [build_filter(n, p) for n, p in RECIPES["synthvlm"]]
    assert [f.compute([""]).tolist() for f in filters] == [[0.0]] * 5
    keep, drops = apply_filters(filters, [""])
    assert keep.tolist() == [False]
    assert drops == [(0, "alphanumeric_filter", 0.0)]


@pytest.mark.parametrize("name", sorted(FILTERS))
def test_vectorised_equals_reference_on_random_text(name: str) -> None:
    rng = random.Random(0)
    alphabet = "ab cA!\t\n1Г𝔘éİΣ😀\u00a0-’"
    texts = ["".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 40))) for _ in range(400)]
    texts += ["ass " * k + "x" for k in range(4)] + [" ".join(["a b"] * k) for k in range(12)]
    for params in ({}, {"rep_len": 1}, {"rep_len": 2}, {"rep_len": 3}) if "repetition" in name else ({},):
        f = FILTERS[name](**params)
        assert f.compute(texts).tolist() == [f._stat_one(t) for t in texts]


def test_character_repetition_ties_unicode_and_short_captions() -> None:
    one = CharacterRepetitionFilter(rep_len=1)
    # a2 b2 c2 d2: D=4, k=min(isqrt(4)=2, 4 repeated)=2, two of the tied counts -> 4/8;
    # a3 b3 c2: k=min(1, 3)=1 -> 3/8; "abcd": no repeat -> 0.0
    assert one.compute(["aabbccdd", "aaabbbcc", "abcd"]).tolist() == [0.5, 3 / 8, 0.0]
    three = CharacterRepetitionFilter(rep_len=3)
    # abc x2, xyz x2, bca, cab, cxy, yzx, zxy: D=7, k=min(isqrt(7)=2, 2) -> (2+2)/10
    assert three.compute(["abcabcxyzxyz", "", "ab", "abc"]).tolist() == [0.4, 0.0, 0.0, 0.0]
    # code points, not bytes or graphemes: four emoji -> 2-grams 😀😀 x3 -> 3/3; an astral 2-gram repeated
    # across a BMP one: 𝔘a x2, a𝔘 x1 -> D=2, k=1 -> 2/3
    two = CharacterRepetitionFilter(rep_len=2)
    assert two.compute(["😀😀😀😀", "𝔘a𝔘a"]).tolist() == [1.0, 2 / 3]


@pytest.mark.parametrize("weak_hash", [False, True])
def test_character_repetition_blocks_long_rows_and_word_sizes(
    weak_hash: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Captions are laid out in blocks of similar length, ASCII ones a byte per character (8 to a 64-bit
    # word), the others 4 bytes (2 to a word); rows of more than 256 windows take 64-bit sort keys. Every
    # layout, every n around the word sizes, padding of mixed lengths, and (weak_hash) hash collisions in
    # both key widths must give the reference statistic.
    if weak_hash:
        real = kernels.row_window_hashes
        monkeypatch.setattr(
            kernels, "row_window_hashes", lambda *a: real(*a) % np.uint64(3) * np.uint64(0x0101010101010101)
        )
    rng = random.Random(2)
    texts = []
    for alphabet in ("ab", "abc d", "aΣ", "x😀 y"):
        for length in (0, 1, 7, 8, 9, 10, 11, 17, 40, 255, 256, 265, 266, 300, 700):
            texts += ["".join(rng.choice(alphabet) for _ in range(length)) for _ in range(3)]
    texts += ["ab" * 400, "abc" * 300 + "é", "the cat sat on the mat " * 20, "x" * 500]
    rng.shuffle(texts)
    for rep_len in (1, 2, 3, 4, 7, 8, 9, 10, 16, 17):
        f = CharacterRepetitionFilter(rep_len=rep_len)
        assert f.compute(texts).tolist() == [f._stat_one(t) for t in texts], rep_len


def test_lower_casing_of_sigma_and_dotted_capital_i() -> None:
    # İ lower-cases to two code points, so the captions after it shift; final sigma depends on context
    captions = ["FUCK İstanbul", "ΟΔΟΣ fuck", "ASS", "x İ a b a b", "a b a b", "ΣΑΣ ΣΑΣ ΣΑΣ σας"]
    assert FlaggedWordsFilter().compute(captions).tolist() == [0.5, 0.5, 1.0, 0.0, 0.0, 0.0]
    # [x, i̇, a, b, a, b]: "a b" x2 of 5 bigrams; [a, b, a, b]: 2 of 3; [σας] x4: 3 of 3 bigrams
    values = WordRepetitionFilter(rep_len=2).compute(captions)
    assert values.tolist() == [0.0, 0.0, 0.0, 2 / 5, 2 / 3, 1.0]
    assert values.tolist() == [WordRepetitionFilter(rep_len=2)._stat_one(c) for c in captions]


def test_only_dotted_capital_i_lower_cases_to_several_code_points() -> None:
    # the per-code-point lower-casing table relies on this (and handles U+0130 and final sigma apart)
    assert [c for c in range(sys.maxunicode + 1) if len(chr(c).lower()) != 1] == [0x130]


@pytest.mark.parametrize(
    "name", ["character_repetition_filter", "flagged_words_filter", "word_repetition_filter"]
)
def test_hash_collisions_are_settled_exactly(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # With hashes reduced to 5 values nearly every window and word collides with an unequal one; the
    # element-by-element checks must still give the reference statistic for every caption.
    def weak(real):
        return lambda *args: real(*args) % np.uint64(5) * np.uint64(0x0101010101010101)

    monkeypatch.setattr(kernels, "slice_hashes", weak(kernels.slice_hashes))
    monkeypatch.setattr(kernels, "window_hashes", weak(kernels.window_hashes))
    monkeypatch.setattr(kernels, "row_window_hashes", weak(kernels.row_window_hashes))
    flagged_words_filter._flagged_table.cache_clear()
    monkeypatch.setattr(
        flagged_words_filter, "_flagged_table", flagged_words_filter._flagged_table.__wrapped__
    )
    rng = random.Random(1)
    texts = ["".join(rng.choice("ab ab!Σ\tİ") for _ in range(rng.randrange(0, 30))) for _ in range(300)]
    texts += ["fuck ass anal", "Ass, ANUS!", "sas ssa", "a b a b a b c", "ab" * 12, "x"]
    cls, settled = FILTERS[name], []
    reference = cls._stat_one
    monkeypatch.setattr(cls, "_stat_one", lambda self, t: settled.append(t) or reference(self, t))
    for params in ({"rep_len": 1}, {"rep_len": 3}) if "repetition" in name else ({},):
        f = cls(**params)
        assert f.compute(texts).tolist() == [reference(f, t) for t in texts]
    if "repetition" in name:
        assert settled  # collisions were found and those captions went to the reference


def test_chunks_do_not_change_results(monkeypatch: pytest.MonkeyPatch) -> None:
    texts = ["abcabcabcabcabc", "", "x y z", "fuck it", "a b " * 12, "Σ"] * 3
    whole = {name: cls().compute(texts).tolist() for name, cls in FILTERS.items()}
    for cls in {TextFilter, *FILTERS.values()}:
        monkeypatch.setattr(cls, "chunk_rows", 4)
    assert {name: cls().compute(texts).tolist() for name, cls in FILTERS.items()} == whole


@dataclass(frozen=True, kw_only=True)
class _Spy(TextFilter):
    """Records what it was asked to compute; drops captions starting with 'x'."""

    name = "spy"
    seen: list[list[str]] = field(default_factory=list)
    min_value: float = lower_bound(0.0)
    max_value: float = upper_bound(0.0)

    def compute(self, captions):  # type: ignore[override]
        self.seen.append(list(captions))
        return np.array([float(c.startswith("x")) for c in captions])

    def _compute_chunk(self, chunk):  # type: ignore[override]
        raise NotImplementedError

    def _stat_one(self, text: str) -> float:
        raise NotImplementedError


def test_apply_filters_order_and_first_drop() -> None:
    captions = ["!!!", "hello", "hello world", "$$ a", "xyz abc"]
    spy = _Spy()
    filters = [AlphanumericFilter(min_ratio=0.5), WordsNumFilter(min_num=2), spy]
    keep, drops = apply_filters(filters, captions)
    assert keep.tolist() == [False, False, True, False, False]
    # "!!!": alnum 0/3; "hello": alnum 1.0 but 1 word; "$$ a": alnum 1/4 (words_num would drop it too,
    # the first filter gets it); "xyz abc": survives both, the spy drops it
    assert drops == [
        (0, "alphanumeric_filter", 0.0),
        (1, "words_num_filter", 1.0),
        (3, "alphanumeric_filter", 0.25),
        (4, "spy", 1.0),
    ]
    assert spy.seen == [["hello world", "xyz abc"]]


def test_apply_filters_edge_cases() -> None:
    keep, drops = apply_filters([], ["a", "b"])
    assert keep.tolist() == [True, True] and drops == []
    keep, drops = apply_filters([AlphanumericFilter()], [])
    assert keep.tolist() == [] and drops == []


def test_recipes() -> None:
    assert RECIPES["none"] == []
    assert RECIPES["synthvlm"] == [
        ("alphanumeric_filter", {"tokenization": False, "min_ratio": 0.60}),
        ("character_repetition_filter", {"rep_len": 10, "max_ratio": 0.09373663}),
        ("flagged_words_filter", {"lang": "en", "tokenization": False, "max_ratio": 0.0}),
        ("special_characters_filter", {"min_ratio": 0.16534802, "max_ratio": 0.42023757}),
        (
            "word_repetition_filter",
            {"lang": "en", "tokenization": False, "rep_len": 10, "max_ratio": 0.03085751},
        ),
    ]
    built = [build_filter(n, p) for n, p in RECIPES["synthvlm"]]
    assert built[1] == CharacterRepetitionFilter(rep_len=10, min_ratio=0.0, max_ratio=0.09373663)
    assert [f.name for f in built] == [n for n, _ in RECIPES["synthvlm"]]


def test_defaults_are_data_juicers() -> None:
    assert AlphanumericFilter() == AlphanumericFilter(min_ratio=0.25, max_ratio=sys.maxsize)
    assert CharacterRepetitionFilter() == CharacterRepetitionFilter(rep_len=10, min_ratio=0.0, max_ratio=0.5)
    assert FlaggedWordsFilter() == FlaggedWordsFilter(min_ratio=0.0, max_ratio=0.045)
    assert SpecialCharactersFilter() == SpecialCharactersFilter(min_ratio=0.0, max_ratio=0.25)
    assert WordRepetitionFilter() == WordRepetitionFilter(rep_len=10, min_ratio=0.0, max_ratio=0.5)
    # deliberately not DJ's min_num=10: one-word captions are legitimate, empty ones are not
    assert WordsNumFilter() == WordsNumFilter(min_num=1, max_num=sys.maxsize)


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        (
            "nope",
            {},
            "unknown filter 'nope'; valid filters: alphanumeric_filter, character_repetition_filter, "
            "flagged_words_filter, special_characters_filter, word_repetition_filter, words_num_filter",
        ),
        ("alphanumeric_filter", {"min_ration": 0.5}, "alphanumeric_filter: unknown parameter(s) min_ration"),
        (
            "alphanumeric_filter",
            {"min_ratio": 0.9, "max_ratio": 0.1},
            "alphanumeric_filter: min_ratio=0.9 exceeds",
        ),
        ("alphanumeric_filter", {"min_ratio": "0.5"}, "alphanumeric_filter: min_ratio must be a number"),
        ("alphanumeric_filter", {"tokenization": True}, "alphanumeric_filter: tokenization must be false"),
        (
            "character_repetition_filter",
            {"rep_len": 0},
            "character_repetition_filter: rep_len must be a positive",
        ),
        ("word_repetition_filter", {"rep_len": 2.5}, "word_repetition_filter: rep_len must be a positive"),
        ("flagged_words_filter", {"lang": "zh"}, "flagged_words_filter: lang must be 'en'"),
        ("words_num_filter", {"max_num": True}, "words_num_filter: max_num must be a number"),
    ],
)
def test_build_filter_errors(name: str, params: dict, message: str) -> None:
    with pytest.raises(ValueError) as err:
        build_filter(name, params)
    assert str(err.value).startswith(message)


def test_flagged_word_list() -> None:
    words = flagged_words()
    assert len(words) == 158
    # each entry must be a whole refined word: lower case, no separator, no special character at either end
    assert all(dj_words(w, lower=True) == [w] for w in words)


def test_synthvlm_recipe_on_flickr8k() -> None:
    captions = flickr_captions()
    assert len(captions) == 40460
    filters = [build_filter(n, p) for n, p in RECIPES["synthvlm"]]
    keep, drops = apply_filters(filters, captions)
    # The same counts as Data-Juicer 1.6.1's operators give on this file with this word list.
    assert int(keep.sum()) == 38683
    assert Counter(d[1] for d in drops) == {
        "special_characters_filter": 1442,
        "character_repetition_filter": 319,
        "flagged_words_filter": 15,
        "alphanumeric_filter": 1,
    }
    assert len(drops) + int(keep.sum()) == len(captions)


def test_vectorised_equals_reference_on_flickr8k() -> None:
    captions = flickr_captions()[:6000]
    for cls in FILTERS.values():
        f = cls()
        assert f.compute(captions).tolist() == [f._stat_one(c) for c in captions]
