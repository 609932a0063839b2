"""Tests for fastseq.datasets: the book's files load to the book's ids and split; the generators
write the book's formats, deterministically; the loader validates its input."""

import collections
import datetime
import gzip
import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from fastseq import datasets as ds

DATA = Path(__file__).parent / "data"  # gzipped copies of the book's addition.txt and date.txt
N_SMALL = 3000  # generated lines for the format tests: enough to hit every variant

ADDITION_LINE = re.compile(r"(?=[0-9+]+ *_[0-9]+ *$)(.{7})(_.{4})")
DATE_LINE = re.compile(r"([^_]{29})(_\d{4}-\d{2}-\d{2})")

MONTHS = ("january february march april may june july august september october november "
          "december").split()
WEEKDAYS = "monday tuesday wednesday thursday friday saturday sunday".split()
ALL_VARIANTS = {("numeric", None)} | {
    (fmt, case) for fmt in ("medium", "long", "full") for case in ("lower", "title", "upper")
}


# ----------------------------------------------------------------------------------------------
# Independent oracles
# ----------------------------------------------------------------------------------------------


def naive_load(path, seed):
    """The book's loading procedure, written as plain loops: returns x, t (shuffled, not split)
    and the id_to_char dict."""
    char_to_id = {}
    questions, answers = [], []
    with open(path, newline="") as f:
        for raw in f:
            line = raw.rstrip("\n").rstrip("\r")
            cut = line.index("_")
            questions.append(line[:cut])
            answers.append(line[cut:])
    for q, a in zip(questions, answers):
        for ch in q + a:
            if ch not in char_to_id:
                char_to_id[ch] = len(char_to_id)
    x = np.array([[char_to_id[ch] for ch in q] for q in questions])
    t = np.array([[char_to_id[ch] for ch in a] for a in answers])
    order = np.arange(len(x))
    np.random.RandomState(seed).shuffle(order)
    return x[order], t[order], {i: ch for ch, i in char_to_id.items()}


def parse_date_question(question):
    """Question text -> (date, format, case), from the text alone (no fastseq code)."""
    s = question.rstrip(" ")
    m = re.fullmatch(r"(1[0-2]|[1-9])/(3[01]|[12][0-9]|[1-9])/([0-9]{2})", s)
    if m:
        yy = int(m[3])
        year = 1900 + yy if yy >= 70 else 2000 + yy
        return datetime.date(year, int(m[1]), int(m[2])), "numeric", None
    m = re.fullmatch(r"(?:([A-Za-z]+), )?([A-Za-z]+) (3[01]|[12][0-9]|[1-9]), ([0-9]{4})", s)
    assert m, f"unrecognised date question {question!r}"
    words = re.findall(r"[A-Za-z]+", s)
    if all(w.islower() for w in words):
        case = "lower"
    elif all(w.isupper() for w in words):
        case = "upper"
    else:
        assert all(w[0].isupper() and (w[1:].islower() or len(w) == 1) for w in words), s
        case = "title"
    weekday, month = (m[1] or "").lower(), m[2].lower()
    if month in MONTHS:  # includes 'may', which is also its own abbreviation
        fmt, month_number = "long", MONTHS.index(month) + 1
    else:
        month_number = [name[:3] for name in MONTHS].index(month) + 1
        fmt = "medium"
    day = datetime.date(int(m[4]), month_number, int(m[3]))
    if weekday:
        assert fmt == "long", s
        assert weekday == WEEKDAYS[day.weekday()], f"{s!r}: wrong weekday"
        fmt = "full"
    return day, fmt, case


# ----------------------------------------------------------------------------------------------
# Fixtures
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def book_files(tmp_path_factory):
    """The book's two files, decompressed into a temporary folder."""
    folder = tmp_path_factory.mktemp("book")
    paths = {}
    for name in ("addition", "date"):
        paths[name] = folder / f"{name}.txt"
        with gzip.open(DATA / f"{name}.txt.gz", "rb") as src, open(paths[name], "wb") as dst:
            shutil.copyfileobj(src, dst)
    return paths


@pytest.fixture(scope="module")
def addition_lines():
    return ds.generate_addition(N_SMALL, seed=7)


@pytest.fixture(scope="module")
def date_lines():
    return ds.generate_dates(N_SMALL, seed=7)


def write_text(path, text, newline="\n"):
    path.write_bytes(text.replace("\n", newline).encode())
    return path


# ----------------------------------------------------------------------------------------------
# The book's files
# ----------------------------------------------------------------------------------------------


def test_book_addition_split(book_files):
    (x_train, t_train), (x_test, t_test), vocab = ds.load_data(book_files["addition"], seed=1984)
    assert x_train.shape == (45000, 7) and t_train.shape == (45000, 5)
    assert x_test.shape == (5000, 7) and t_test.shape == (5000, 5)
    assert np.issubdtype(x_train.dtype, np.integer) and np.issubdtype(t_train.dtype, np.integer)
    assert len(vocab) == 13
    assert x_train[0].tolist() == [3, 0, 2, 0, 0, 11, 5]
    assert t_train[0].tolist() == [6, 0, 11, 7, 5]
    assert vocab.decode(x_train[0]) == "71+118 "
    assert vocab.decode(t_train[0]) == "_189 "


def test_book_date_split(book_files):
    (x_train, t_train), (x_test, t_test), vocab = ds.load_data(book_files["date"])
    assert x_train.shape == (45000, 29) and t_train.shape == (45000, 11)
    assert x_test.shape == (5000, 29) and t_test.shape == (5000, 11)
    assert len(vocab) == 59
    assert vocab.decode(x_train[0]) == "2/7/72".ljust(29)
    assert vocab.decode(t_train[0]) == "_1972-02-07"


@pytest.mark.parametrize("name", ["addition", "date"])
@pytest.mark.parametrize("seed", [1984, 3])
def test_book_files_match_naive_loader(book_files, name, seed):
    x, t, id_to_char = naive_load(book_files[name], seed)
    (x_train, t_train), (x_test, t_test), vocab = ds.load_data(book_files[name], seed=seed)
    assert vocab.id_to_char == id_to_char
    np.testing.assert_array_equal(np.concatenate([x_train, x_test]), x)
    np.testing.assert_array_equal(np.concatenate([t_train, t_test]), t)
    assert len(x_test) == len(x) // 10


def test_book_date_file_uses_exactly_our_formats(book_files):
    """Every question in the book's date.txt is one of format_date's renderings of its answer,
    and every (format, case) occurs there."""
    seen = set()
    for line in book_files["date"].read_text().splitlines():
        question, answer = line[:29], line[29:]
        day = datetime.date.fromisoformat(answer[1:])
        assert ds.DATE_MIN <= day <= ds.DATE_MAX
        renderings = {
            ds.format_date(day, fmt, case): (fmt, case) for fmt, case in sorted(
                ALL_VARIANTS, key=lambda v: (v[0] != "medium", v))  # "May": long wins
        }
        assert question.rstrip(" ") in renderings, line
        seen.add(renderings[question.rstrip(" ")])
    assert seen == ALL_VARIANTS


def test_book_addition_file_format(book_files):
    for line in book_files["addition"].read_text().splitlines():
        assert ADDITION_LINE.fullmatch(line), line


# ----------------------------------------------------------------------------------------------
# Generators
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("generate", [ds.generate_addition, ds.generate_dates])
def test_generators_are_deterministic_and_seeded(generate):
    np.random.seed(123)
    state = np.random.get_state()[1].copy()
    first = generate(500, seed=11)
    np.random.seed(456)  # the global RNG must not matter
    again = generate(500, seed=11)
    other = generate(500, seed=12)
    assert first == again
    assert first != other
    assert len(set(first) & set(other)) < 250
    np.random.seed(123)
    generate(500, seed=11)
    np.testing.assert_array_equal(np.random.get_state()[1], state)  # global RNG untouched


@pytest.mark.parametrize("generate", [ds.generate_addition, ds.generate_dates])
@pytest.mark.parametrize("n", [0, -1])
def test_generators_reject_bad_n(generate, n):
    with pytest.raises(ValueError, match=f"n must be (in \\[1, 500500\\]|>= 1).* got {n}"):
        generate(n)


def test_addition_rejects_more_lines_than_distinct_pairs():
    with pytest.raises(ValueError, match=r"n must be in \[1, 500500\] \(distinct questions\)"):
        ds.generate_addition(500501)


def test_generators_reject_non_integer_seed():
    with pytest.raises(TypeError, match="seed"):
        ds.generate_addition(10, seed=None)


def test_addition_lines(addition_lines):
    pairs = []
    for line in addition_lines:
        assert len(line) == 12
        m = ADDITION_LINE.fullmatch(line)
        assert m, line
        question, answer = m[1].rstrip(" "), m[2].rstrip(" ")
        a_text, b_text = question.split("+")
        for operand in (a_text, b_text):
            assert re.fullmatch(r"0|[1-9][0-9]{0,2}", operand), line  # 1-3 digits, no leading 0
        a, b = int(a_text), int(b_text)
        assert 0 <= a <= 999 and 0 <= b <= 999
        assert int(answer[1:]) == a + b, line
        pairs.append((a, b))
    assert len(set(pairs)) == len(pairs) == N_SMALL


def test_addition_operand_lengths_match_the_book():
    # The book's file: 1-, 2- and 3-digit operands 9.7%, 32.6%, 57.6% (short pairs run out).
    book = gzip.open(DATA / "addition.txt.gz", "rt").read().splitlines()
    ours = ds.generate_addition(50000, seed=0)
    for lines in (book, ours):
        digits = collections.Counter(len(v) for line in lines
                                     for v in line.split("_")[0].strip().split("+"))
        shares = [digits[k] / 100000 for k in (1, 2, 3)]
        assert np.allclose(shares, [0.097, 0.326, 0.576], atol=0.01), shares


def test_addition_pairs_appear_in_one_order_only():
    # As in the book's file: 16+75 and 75+16 never both occur; both orders are used.
    lines = ds.generate_addition(20000, seed=0)
    pairs = [tuple(int(v) for v in line.split("_")[0].split("+")) for line in lines]
    unordered = {tuple(sorted(p)) for p in pairs}
    assert len(unordered) == len(pairs) == 20000
    assert 0.4 < sum(a < b for a, b in pairs) / sum(a != b for a, b in pairs) < 0.6
    assert sum(1 for a, b in pairs if a < 10 and b < 10) <= 55


def test_book_addition_file_has_no_pair_in_both_orders():
    lines = gzip.open(DATA / "addition.txt.gz", "rt").read().splitlines()
    pairs = [tuple(sorted(int(v) for v in line.split("_")[0].split("+"))) for line in lines]
    assert len(set(pairs)) == len(pairs) == 50000


def test_date_lines(date_lines):
    seen = collections.Counter()
    for line in date_lines:
        m = DATE_LINE.fullmatch(line)
        assert m, line
        assert len(line) == 40
        day, fmt, case = parse_date_question(m[1])
        assert m[2] == "_" + day.isoformat(), line
        assert ds.DATE_MIN <= day <= ds.DATE_MAX
        seen[fmt, case] += 1
    assert set(seen) == ALL_VARIANTS
    # Proportions like the book's file: each format ~1/4, title case ~2x lower or upper.
    per_format = collections.Counter()
    for (fmt, _), count in seen.items():
        per_format[fmt] += count
    for fmt in ("numeric", "medium", "long", "full"):
        assert 0.18 < per_format[fmt] / N_SMALL < 0.32, per_format
    years = {int(line[-10:-6]) for line in date_lines}
    assert min(years) == 1970 and max(years) == 2017


def test_date_statistics_match_the_book():
    """Lines are drawn independently as in the book's date.txt: about 83% of 50,000 distinct,
    each format about 1/4, title case half of the word formats, days uniform."""
    book = gzip.open(DATA / "date.txt.gz", "rt").read().splitlines()
    ours = ds.generate_dates(50000, seed=0)
    for lines in (book, ours):
        assert 0.82 < len(set(lines)) / 50000 < 0.84
        variants = collections.Counter(parse_date_question(line[:29])[1:] for line in lines)
        per_format = collections.Counter()
        for (fmt, _), count in variants.items():
            per_format[fmt] += count
        assert abs(per_format["numeric"] / 50000 - 0.25) < 0.01, per_format
        assert abs(per_format["full"] / 50000 - 0.25) < 0.01, per_format
        # 'May 27, 1994' is medium and long alike: only the two together are ~1/2.
        assert abs((per_format["medium"] + per_format["long"]) / 50000 - 0.5) < 0.01
        title = sum(c for (fmt, case), c in variants.items() if case == "title")
        assert abs(title / (50000 - per_format["numeric"]) - 0.5) < 0.015
        per_day = collections.Counter(line[-10:] for line in lines)
        assert 16000 < len(per_day) < 17000 and max(per_day.values()) < 20


def test_format_date_examples():
    day = datetime.date(1994, 9, 27)
    assert ds.format_date(day, "numeric", None) == "9/27/94"
    assert ds.format_date(day, "medium", "upper") == "SEP 27, 1994"
    assert ds.format_date(day, "long", "lower") == "september 27, 1994"
    assert ds.format_date(day, "full", "title") == "Tuesday, September 27, 1994"
    assert ds.format_date(datetime.date(2004, 8, 4), "numeric", "upper") == "8/4/04"
    longest = ds.format_date(datetime.date(2015, 9, 30), "full", "lower")
    assert len(longest) == ds.DATE_QUESTION_WIDTH
    with pytest.raises(ValueError, match="unknown format"):
        ds.format_date(day, "iso")
    with pytest.raises(ValueError, match="unknown case"):
        ds.format_date(day, "long", "camel")


# ----------------------------------------------------------------------------------------------
# write_dataset / load_data round trips
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("task", ["addition", "date"])
def test_write_then_load_round_trip(tmp_path, task, addition_lines, date_lines):
    lines = addition_lines if task == "addition" else date_lines
    path = tmp_path / f"{task}.txt"
    ds.write_dataset(lines, path)
    assert path.read_bytes() == ("\n".join(lines) + "\n").encode()
    assert os.listdir(tmp_path) == [path.name]  # no temporary file left behind

    (x_train, t_train), (x_test, t_test), vocab = ds.load_data(path)
    x, t = np.concatenate([x_train, x_test]), np.concatenate([t_train, t_test])
    assert len(x_test) == N_SMALL // 10
    decoded = [vocab.decode(q) + vocab.decode(a) for q, a in zip(x, t)]
    order = np.arange(N_SMALL)
    np.random.RandomState(1984).shuffle(order)
    assert decoded == [lines[i] for i in order]

    # load_task generating the same lines in memory gives the same arrays.
    (gx_train, gt_train), (gx_test, gt_test), gvocab = ds.load_task(task, n=N_SMALL, seed=7)
    assert gvocab == vocab
    for ours, theirs in [(gx_train, x_train), (gt_train, t_train), (gx_test, x_test),
                         (gt_test, t_test)]:
        np.testing.assert_array_equal(ours, theirs)


def test_load_data_line_endings(tmp_path, addition_lines):
    text = "\n".join(addition_lines[:50]) + "\n"
    reference = ds.load_data(write_text(tmp_path / "lf.txt", text))
    variants = [
        write_text(tmp_path / "crlf.txt", text, "\r\n"),
        write_text(tmp_path / "no_final_newline.txt", text.rstrip("\n")),
        write_text(tmp_path / "crlf_no_final.txt", text.rstrip("\n"), "\r\n"),
    ]
    for path in variants:
        (x_train, t_train), (x_test, t_test), vocab = ds.load_data(path)
        assert vocab == reference[2], path
        np.testing.assert_array_equal(x_train, reference[0][0])
        np.testing.assert_array_equal(t_train, reference[0][1])
        np.testing.assert_array_equal(x_test, reference[1][0])
        assert t_train.shape[1] == 5


def test_load_data_reverse_and_seed(tmp_path, date_lines):
    path = tmp_path / "date.txt"
    ds.write_dataset(date_lines[:200], path)
    (x_train, t_train), (x_test, t_test), _ = ds.load_data(path)
    (rx_train, rt_train), (rx_test, rt_test), _ = ds.load_data(path, reverse=True)
    np.testing.assert_array_equal(rx_train, x_train[:, ::-1])
    np.testing.assert_array_equal(rx_test, x_test[:, ::-1])
    np.testing.assert_array_equal(rt_train, t_train)
    assert rx_train.flags.c_contiguous and rx_train.strides[1] > 0  # a copy, not a view

    (x_other, _), _, _ = ds.load_data(path, seed=5)
    assert not np.array_equal(x_other, x_train)
    (x_plain, t_plain), (x_last, _), vocab = ds.load_data(path, seed=None)
    assert vocab.decode(x_plain[0]) + vocab.decode(t_plain[0]) == date_lines[0]
    assert vocab.decode(x_last[-1]) == date_lines[199][:29]


def test_first_underscore_splits_and_vocab_order(tmp_path):
    path = write_text(tmp_path / "toy.txt", "ab_c_\nba_cc\n")
    (x, t), (x_test, t_test), vocab = ds.load_data(path, seed=None)
    assert vocab.chars == ["a", "b", "_", "c"]
    assert x.tolist() == [[0, 1], [1, 0]]
    assert t.tolist() == [[2, 3, 2], [2, 3, 3]]
    assert x_test.shape == (0, 2) and t_test.shape == (0, 3)


# ----------------------------------------------------------------------------------------------
# Validation
# ----------------------------------------------------------------------------------------------


def test_load_data_missing_file(tmp_path):
    path = tmp_path / "nope.txt"
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        ds.load_data(path)


@pytest.mark.parametrize(
    "text, match",
    [
        ("", r"empty\.txt.*no lines"),
        ("1+1    _2   \n2+2    _4   \n3+3     4   \n", r"line 3: no '_'"),
        ("1+1    _2   \n\n", r"line 2: no '_'"),
        ("1+1    _2   \n2+2   _4   \n", r"line 2: question has 6 characters but line 1's has 7"),
        ("1+1    _2   \n2+2    _4  \n", r"line 2: answer has 4 characters but line 1's has 5"),
    ],
    ids=["empty", "no-underscore", "blank-line", "question-length", "answer-length"],
)
def test_load_data_bad_content(tmp_path, text, match):
    path = write_text(tmp_path / "empty.txt", text)
    with pytest.raises(ValueError, match=match) as info:
        ds.load_data(path)
    assert "empty.txt" in str(info.value)


def test_load_task(tmp_path, addition_lines):
    (x_train, t_train), (x_test, _), vocab = ds.load_task("date", n=1000, seed=3)
    assert x_train.shape == (900, 29) and t_train.shape == (900, 11) and x_test.shape == (100, 29)
    assert set(vocab.chars) >= set("0123456789/-_, ")

    path = tmp_path / "add.txt"
    ds.write_dataset(addition_lines[:100], path)
    from_file = ds.load_task("addition", n=5, seed=99, data_path=path, reverse=True)
    direct = ds.load_data(path, reverse=True)
    np.testing.assert_array_equal(from_file[0][0], direct[0][0])
    assert from_file[0][0].shape == (90, 7)

    (rx, _), _, _ = ds.load_task("addition", n=100, seed=1, reverse=True, split_seed=2)
    (fx, _), _, _ = ds.load_task("addition", n=100, seed=1, split_seed=2)
    np.testing.assert_array_equal(rx, fx[:, ::-1])

    with pytest.raises(ValueError, match="valid tasks: addition, date"):
        ds.load_task("subtraction")
    # a file of the other task, or a line that is no example of the task, names the line
    with pytest.raises(ValueError, match=r"line 1: .* is not in the date format"):
        ds.load_task("date", data_path=path)
    ds.write_dataset(["16+75  _91  ", "1+2x   _3   "], path)
    with pytest.raises(ValueError, match=r"line 2: '1\+2x   _3   ' is not in the addition format"):
        ds.load_task("addition", data_path=path)


def test_write_dataset_validation_and_atomicity(tmp_path, monkeypatch):
    path = tmp_path / "data.txt"
    ds.write_dataset(["old_1"], path)
    with pytest.raises(ValueError, match="line 2"):
        ds.write_dataset(["a_1", "b\n_2"], path)
    with pytest.raises(ValueError, match="no lines"):
        ds.write_dataset([], path)

    def failing_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(ds.os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        ds.write_dataset(["new_1"], path)
    monkeypatch.undo()
    assert path.read_text() == "old_1\n"  # untouched
    assert os.listdir(tmp_path) == ["data.txt"]  # temporary file removed

    ds.write_dataset(["new_1"], str(path))  # overwrite in place, str path
    assert path.read_text() == "new_1\n"


# ----------------------------------------------------------------------------------------------
# Vocabulary
# ----------------------------------------------------------------------------------------------


def test_vocabulary_round_trip():
    vocab = ds.Vocabulary("12+_ ")
    assert len(vocab) == 5
    assert vocab.char_to_id == {"1": 0, "2": 1, "+": 2, "_": 3, " ": 4}
    assert vocab.id_to_char == {0: "1", 1: "2", 2: "+", 3: "_", 4: " "}
    ids = vocab.encode("21+12 ")
    assert ids.tolist() == [1, 0, 2, 0, 1, 4]
    assert vocab.decode(ids) == "21+12 "
    assert vocab.decode([3, 4]) == "_ "
    restored = ds.Vocabulary.from_dict(json.loads(json.dumps(vocab.to_dict())))
    assert restored == vocab and restored.id_to_char == vocab.id_to_char

    with pytest.raises(ValueError, match="'9' is not in the vocabulary"):
        vocab.encode("19")
    with pytest.raises(ValueError, match=r"id 5 is not in \[0, 5\)"):
        vocab.decode([0, 5])
    for bad in ([-1], [1.0], [True]):  # a bool is no id (it would decode as 0 or 1)
        with pytest.raises(ValueError, match=rf"id {bad[0]!r} is not in \[0, 5\)"):
            vocab.decode(bad)
    with pytest.raises(ValueError, match="distinct"):
        ds.Vocabulary("aba")
    with pytest.raises(ValueError, match="chars"):
        ds.Vocabulary.from_dict({"char_to_id": {}})
