"""The book's two toy seq2seq data sets: generate them, write them, load them.

Both tasks are plain text, one example per line, each line a fixed-width *question* followed by a
fixed-width *answer* that starts with ``_`` (the decoder's start symbol)::

    addition (7 + 5 characters)                 date (29 + 11 characters)
    16+75  _91                                  september 27, 1994           _1994-09-27
    52+607 _659                                 9/27/94                      _1994-09-27
    795+3  _798                                 TUESDAY, SEPTEMBER 27, 1994  _1994-09-27

*Addition*: the question ``a+b`` left-justified to 7 characters, then ``_`` and the sum, the
answer left-justified to 5 characters (``_1998`` is the longest). Each operand has 1-3 digits
(0..999, no leading zeros). No pair of operands appears twice, in either order
(``16+75`` excludes ``75+16``), as in the book's file.

*Date*: a day between 1970-01-01 and 2017-12-31 written in one of the four US-English formats of
the book's ``date.txt`` (see ``DATE_FORMATS``), the word formats in lower, title or upper case
(``DATE_CASES``); the question is left-justified to 29 characters, then ``_`` and the ISO date
``YYYY-MM-DD``. Lines are drawn independently, so some repeat, as in the book's file.

Loading follows the book's loader exactly, so ids and the train/test split (and hence trained
weights) are interchangeable with the book's: split every line at its first ``_``; give characters
ids in order of first appearance, scanning each line's question then answer, line by line;
permute rows with ``np.random.RandomState(seed).shuffle``; the last ``n // 10`` rows are the test
split.

Public API: ``generate_addition``, ``generate_dates``, ``format_date``, ``write_dataset``,
``load_data``, ``load_task``, ``check_task_lines``, ``Vocabulary``.
"""

from __future__ import annotations

import datetime
import operator
import os
import re
from collections.abc import Iterable, Sequence

import numpy as np

from ._files import atomic_write

__all__ = [
    "ADDITION_QUESTION_WIDTH",
    "ADDITION_ANSWER_WIDTH",
    "DATE_QUESTION_WIDTH",
    "DATE_ANSWER_WIDTH",
    "DATE_MIN",
    "DATE_MAX",
    "DATE_FORMATS",
    "DATE_CASES",
    "TASKS",
    "Vocabulary",
    "generate_addition",
    "generate_dates",
    "format_date",
    "write_dataset",
    "load_data",
    "load_task",
    "check_task_lines",
]

ADDITION_QUESTION_WIDTH = 7  # "999+999"
ADDITION_ANSWER_WIDTH = 5  # "_1998"
DATE_QUESTION_WIDTH = 29  # "wednesday, september 30, 2015"
DATE_ANSWER_WIDTH = 11  # "_2015-09-30"
DATE_MIN = datetime.date(1970, 1, 1)
DATE_MAX = datetime.date(2017, 12, 31)  # the book's file spans 1970-01-01 .. 2017-07-24

# Format name -> example for 1994-09-27. These are the only formats in the book's date.txt.
DATE_FORMATS = {
    "numeric": "9/27/94",  # M/D/YY, no padding; letter case does not apply
    "medium": "Sep 27, 1994",  # three-letter month, D, YYYY
    "long": "September 27, 1994",  # full month, D, YYYY
    "full": "Tuesday, September 27, 1994",  # weekday, full month, D, YYYY
}
DATE_CASES = ("lower", "title", "upper")
TASKS = ("addition", "date")

# Hard-coded rather than taken from `calendar`/`strftime`, whose names follow the C locale.
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
           "September", "October", "November", "December")
_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")

# (format, case) of every rendering of one day, and its weight as in the book's file: each format
# about 1/4 of the lines; title case about twice as common as lower or upper case.
_DATE_VARIANTS = (("numeric", None),) + tuple(
    (fmt, case) for fmt in ("medium", "long", "full") for case in DATE_CASES
)
_DATE_VARIANT_WEIGHTS = tuple(
    4 if fmt == "numeric" else 2 if case == "title" else 1 for fmt, case in _DATE_VARIANTS
)

_EXAMPLE = {"addition": "16+75  _91  ", "date": "september 27, 1994           _1994-09-27"}
# What a line of each task looks like (widths are checked by the loader): an addition question
# is 'a+b' in digits, its answer the digits of a number; a date question is any non-blank text
# without '_', its answer an ISO date. Trailing spaces pad both parts.
_LINE_PATTERNS = {
    "addition": re.compile(r"[0-9]+\+[0-9]+ *_[0-9]+ *"),
    "date": re.compile(r"[^_]*[^_ ][^_]*_[0-9]{4}-[0-9]{2}-[0-9]{2} *"),
}


# --------------------------------------------------------------------------------------------
# Vocabulary
# --------------------------------------------------------------------------------------------


class Vocabulary:
    """Characters <-> integer ids; id ``i`` is the ``i``-th character first seen in the data.

    ``char_to_id`` and ``id_to_char`` are the book's two dicts (``id_to_char`` is what the book's
    ``eval_seq2seq`` takes). ``to_dict()`` / ``Vocabulary.from_dict`` round-trip through JSON.
    """

    __slots__ = ("char_to_id", "id_to_char")

    def __init__(self, chars: Iterable[str]):
        chars = list(chars)
        for c in chars:
            if not isinstance(c, str) or len(c) != 1:
                raise ValueError(f"Vocabulary: every entry must be a single character, got {c!r}")
        if len(set(chars)) != len(chars):
            dup = sorted({c for c in chars if chars.count(c) > 1})
            raise ValueError(f"Vocabulary: characters must be distinct, repeated: {dup!r}")
        self.char_to_id = {c: i for i, c in enumerate(chars)}
        self.id_to_char = dict(enumerate(chars))

    @property
    def chars(self) -> list[str]:
        """The characters in id order."""
        return [self.id_to_char[i] for i in range(len(self.id_to_char))]

    def __len__(self) -> int:
        return len(self.char_to_id)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Vocabulary):
            return NotImplemented
        return self.id_to_char == other.id_to_char

    def __repr__(self) -> str:
        return f"Vocabulary({''.join(self.chars)!r})"

    def encode(self, text: str) -> np.ndarray:
        """``text`` -> int64 ids, shape ``(len(text),)``."""
        try:
            return np.array([self.char_to_id[c] for c in text], dtype=np.int64)
        except KeyError as e:
            raise ValueError(
                f"Vocabulary.encode: character {e.args[0]!r} is not in the vocabulary "
                f"{''.join(self.chars)!r}"
            ) from None

    def decode(self, ids: Iterable[int]) -> str:
        """Ids (any iterable of ints, e.g. a row of ``x_train``) -> string."""
        out = []
        for i in np.asarray(ids).ravel().tolist():
            if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < len(self):
                raise ValueError(f"Vocabulary.decode: id {i!r} is not in [0, {len(self)})")
            out.append(self.id_to_char[i])
        return "".join(out)

    def to_dict(self) -> dict:
        """JSON-able form: ``{"chars": [...]}`` in id order."""
        return {"chars": self.chars}

    @classmethod
    def from_dict(cls, d: dict) -> Vocabulary:
        """Inverse of ``to_dict``."""
        if not isinstance(d, dict) or not isinstance(d.get("chars"), list):
            raise ValueError(
                "Vocabulary.from_dict: expected {'chars': [...]} as written by "
                f"Vocabulary.to_dict(), got {type(d).__name__}"
                + (f" with keys {list(d)}" if isinstance(d, dict) else "")
            )
        return cls(d["chars"])


# --------------------------------------------------------------------------------------------
# Generators
# --------------------------------------------------------------------------------------------


def _check_n_seed(fn: str, n, seed, capacity: int | None = None) -> tuple[int, int]:
    """``n`` and ``seed`` as ints; ``n`` in ``[1, capacity]`` (no upper bound when None)."""
    try:
        n = operator.index(n)
        seed = operator.index(seed)
    except TypeError:
        raise TypeError(f"{fn}: n and seed must be integers, got n={n!r}, seed={seed!r}") from None
    if capacity is None and n < 1:
        raise ValueError(f"{fn}: n must be >= 1, got {n}")
    if capacity is not None and not 1 <= n <= capacity:
        raise ValueError(f"{fn}: n must be in [1, {capacity}] (distinct questions), got {n}")
    if seed < 0:
        raise ValueError(f"{fn}: seed must be >= 0, got {seed}")
    return n, seed


def _weighted_sample_without_replacement(
    rng: np.random.Generator, weights: np.ndarray, n: int
) -> np.ndarray:
    """``n`` distinct indices into ``weights``, in the order successive weighted draws without
    replacement would produce them (Efraimidis-Spirakis: smallest ``Exp(1) / w`` first)."""
    keys = rng.exponential(size=weights.shape[0]) / weights
    if n < keys.shape[0]:
        idx = np.argpartition(keys, n - 1)[:n]
    else:
        idx = np.arange(keys.shape[0])
    return idx[np.argsort(keys[idx], kind="stable")]


def generate_addition(n: int = 50000, seed: int = 0) -> list[str]:
    """``n`` distinct lines like ``'16+75  _91  '`` (no newline), deterministic in ``seed``.

    Each operand independently has 1, 2 or 3 digits with equal probability and is uniform among
    numbers with that many digits (0-9, 10-99, 100-999), as in the book's file. As there, a pair
    of operands appears at most once in either order (``16+75`` excludes ``75+16``), so at most
    500,500 lines.
    """
    n, seed = _check_n_seed("generate_addition", n, seed, 1000 * 1001 // 2)
    rng = np.random.default_rng(seed)
    digits = np.array([len(str(v)) for v in range(1000)])
    w = 1.0 / np.array([0, 10, 90, 900])[digits]  # P(a) up to the common factor 1/3
    a, b = np.triu_indices(1000)  # unordered pairs a <= b; a != b can come in either order
    pair_w = w[a] * w[b] * np.where(a == b, 1.0, 2.0)
    picked = _weighted_sample_without_replacement(rng, pair_w, n)
    swap = rng.random(n) < 0.5
    first = np.where(swap, b[picked], a[picked])
    second = np.where(swap, a[picked], b[picked])
    lines = []
    for x, y in zip(first.tolist(), second.tolist()):
        q = f"{x}+{y}".ljust(ADDITION_QUESTION_WIDTH)
        lines.append(q + f"_{x + y}".ljust(ADDITION_ANSWER_WIDTH))
    return lines


def format_date(day: datetime.date, fmt: str, case: str | None = "title") -> str:
    """Render ``day`` in one of ``DATE_FORMATS`` and ``DATE_CASES`` (case ignored for 'numeric').

    >>> format_date(datetime.date(1994, 9, 27), "full", "upper")
    'TUESDAY, SEPTEMBER 27, 1994'
    """
    month = _MONTHS[day.month - 1]
    if fmt == "numeric":
        return f"{day.month}/{day.day}/{day.year % 100:02d}"
    if fmt == "medium":
        text = f"{month[:3]} {day.day}, {day.year}"
    elif fmt == "long":
        text = f"{month} {day.day}, {day.year}"
    elif fmt == "full":
        text = f"{_WEEKDAYS[day.weekday()]}, {month} {day.day}, {day.year}"
    else:
        raise ValueError(f"format_date: unknown format {fmt!r}; valid: {list(DATE_FORMATS)}")
    if case == "lower":
        return text.lower()
    if case == "upper":
        return text.upper()
    if case == "title":
        return text
    raise ValueError(f"format_date: unknown case {case!r}; valid: {list(DATE_CASES)}")


def generate_dates(n: int = 50000, seed: int = 0) -> list[str]:
    """``n`` date lines such as ``'9/27/94  ...  _1994-09-27'``, deterministic in ``seed``.

    Every line is drawn on its own, as in the book's file: a day uniform in ``[DATE_MIN,
    DATE_MAX]``, rendered 'numeric' with probability 1/4, else in one of the three word formats
    (1/4 each) in title case (1/2), lower or upper case (1/4 each). So lines can repeat, as there:
    of 50,000 lines about 41,600 are distinct, and a repeated line can fall in both the training
    and the test split, as in the book's experiment.
    """
    n, seed = _check_n_seed("generate_dates", n, seed)
    rng = np.random.default_rng(seed)
    first = DATE_MIN.toordinal()
    n_days = DATE_MAX.toordinal() - first + 1
    weights = np.array(_DATE_VARIANT_WEIGHTS, dtype=np.float64)
    days = rng.integers(n_days, size=n)
    variants = rng.choice(len(_DATE_VARIANTS), size=n, p=weights / weights.sum())
    lines = []
    for d, v in zip(days.tolist(), variants.tolist()):
        day = datetime.date.fromordinal(first + d)
        q = format_date(day, *_DATE_VARIANTS[v])
        assert len(q) <= DATE_QUESTION_WIDTH, q
        lines.append(q.ljust(DATE_QUESTION_WIDTH) + "_" + day.isoformat())
    return lines


def write_dataset(lines: Sequence[str], path: str | os.PathLike) -> None:
    """Write ``lines`` to ``path``, one per row ending in ``'\\n'``, atomically.

    The text goes to a temporary file in the same folder, is flushed and fsync'ed, then
    ``os.replace``-d over ``path``: readers see the old file or the whole new one, never a part.
    """
    lines = list(lines)
    if not lines:
        raise ValueError(f"write_dataset: no lines to write to {os.fspath(path)!r}")
    for i, line in enumerate(lines, 1):
        if not isinstance(line, str) or "\n" in line or "\r" in line:
            raise ValueError(
                f"write_dataset: line {i} must be a str without newline characters, got {line!r}"
            )
    with atomic_write(path, "w", encoding="utf-8", newline="\n") as f:
        f.write("\n".join(lines))
        f.write("\n")


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------

Split = tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray], Vocabulary]


def _read_lines(path: str | os.PathLike) -> list[str]:
    """Lines of a text file without their line endings ('\\n', '\\r\\n' or '\\r')."""
    try:
        with open(path, encoding="utf-8") as f:  # universal newlines: '\r\n' -> '\n'
            text = f.read()
    except FileNotFoundError:
        raise FileNotFoundError(
            f"data file not found: {os.fspath(path)!r}; pass the path of an existing file, or "
            "call load_task(task) without data_path to generate the data in memory"
        ) from None
    except UnicodeDecodeError as e:
        raise ValueError(f"{os.fspath(path)!r} is not UTF-8 text ({e})") from None
    lines = text.split("\n")
    if lines[-1] == "":  # the file ends with a newline
        lines.pop()
    return lines


def _split_lines(
    lines: Sequence[str], source: str, seed: int | None, reverse: bool,
    vocab: Vocabulary | None = None,
) -> Split:
    """Questions/answers -> ids -> shuffled train/test split, exactly as the book's loader.
    With ``vocab``, characters get its ids instead of ids in order of first appearance."""
    if not lines:
        raise ValueError(
            f"{source}: no lines; expected one example per line, like {_EXAMPLE['addition']!r} -- "
            "pass a non-empty file, or write one with write_dataset(generate_addition(), path)"
        )
    q_len = a_len = -1
    for i, line in enumerate(lines, 1):
        sep = line.find("_")
        if sep < 0:
            raise ValueError(
                f"{source}, line {i}: no '_' in {line!r}; every line must be a question followed "
                f"by '_' and the answer, like {_EXAMPLE['date']!r}"
            )
        if i == 1:
            q_len, a_len = sep, len(line) - sep
        elif sep != q_len or len(line) - sep != a_len:
            part, got, want = (
                ("question", sep, q_len) if sep != q_len else ("answer", len(line) - sep, a_len)
            )
            raise ValueError(
                f"{source}, line {i}: {part} has {got} characters but line 1's has {want}; all "
                "questions (and all answers) must have the same length -- pad them with spaces "
                "to a fixed width (str.ljust)"
            )

    # Question + answer is the line itself, so first appearance in the concatenated lines is the
    # book's order (question then answer, line by line).
    joined = "".join(lines)
    if vocab is None:
        vocab = Vocabulary(dict.fromkeys(joined))
    elif not isinstance(vocab, Vocabulary):
        raise TypeError(f"vocab must be a Vocabulary (e.g. Vocabulary.from_dict(saved)), got "
                        f"{type(vocab).__name__}")
    codes = np.frombuffer(joined.encode("utf-32-le"), dtype=np.uint32)
    vocab_codes = np.array([ord(c) for c in vocab.chars], dtype=np.uint32)
    order = np.argsort(vocab_codes)
    pos = np.minimum(np.searchsorted(vocab_codes[order], codes), len(order) - 1)
    unknown = vocab_codes[order][pos] != codes
    if unknown.any():
        k = int(np.argmax(unknown))
        row, col = divmod(k, q_len + a_len)
        raise ValueError(
            f"{source}, line {row + 1}: character {joined[k]!r} (column {col + 1}) is not in the "
            f"vocabulary {''.join(vocab.chars)!r}; the data must use only the characters the "
            "model was trained on"
        )
    ids = order[pos].astype(np.int64)
    ids = ids.reshape(len(lines), q_len + a_len)
    x, t = ids[:, :q_len], ids[:, q_len:]

    indices = np.arange(len(lines))
    if seed is not None:
        np.random.RandomState(seed).shuffle(indices)
    x, t = x[indices], t[indices]  # fancy indexing: C-contiguous copies
    if reverse:
        x = x[:, ::-1].copy()
    split_at = len(lines) - len(lines) // 10
    return (x[:split_at], t[:split_at]), (x[split_at:], t[split_at:]), vocab


def load_data(
    path: str | os.PathLike,
    seed: int | None = 1984,
    reverse: bool = False,
    vocab: Vocabulary | None = None,
) -> Split:
    """Load a file in the book's format -> ``(x_train, t_train), (x_test, t_test), vocab``.

    Same ids and split as the book's ``sequence.load_data(file_name, seed)``. ``x`` is int64
    (lines, question length), ``t`` is int64 (lines, answer length, starting with the id of
    ``_``); the last ``lines // 10`` shuffled rows are the test split. ``seed=None`` keeps the
    file's order. ``reverse=True`` returns the questions reversed along time (the book's
    ``x[:, ::-1]``), as a contiguous copy. ``vocab`` (e.g. the one a model was trained with)
    encodes the file with its ids instead of building a vocabulary from the file; a character
    it lacks is a ValueError naming the line. The returned vocab is then ``vocab`` itself.
    """
    return _split_lines(_read_lines(path), repr(os.fspath(path)), seed, reverse, vocab)


def check_task_lines(task: str, lines: Sequence[str], source: str = "data") -> None:
    """ValueError naming the first line that is not an example of ``task`` (see the module
    docstring for the two formats); the loader checks the widths."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; valid tasks: {', '.join(TASKS)}")
    pattern = _LINE_PATTERNS[task]
    for i, line in enumerate(lines, 1):
        if not pattern.fullmatch(line):
            shown = line if len(line) <= 60 else line[:57] + "..."
            raise ValueError(
                f"{source}, line {i}: {shown!r} is not in the {task} format; expected lines like "
                f"{_EXAMPLE[task]!r}"
            )


def load_task(
    task: str,
    n: int = 50000,
    seed: int = 0,
    split_seed: int | None = 1984,
    reverse: bool = False,
    data_path: str | os.PathLike | None = None,
) -> Split:
    """``load_data`` for a task by name: from ``data_path`` if given (then ``n`` and ``seed`` are
    unused; every line must be in the task's format), else from ``n`` lines generated in memory
    with ``seed``, split with ``split_seed``."""
    if task not in TASKS:
        raise ValueError(f"load_task: unknown task {task!r}; valid tasks: {', '.join(TASKS)}")
    if data_path is not None:
        lines, source = _read_lines(data_path), repr(os.fspath(data_path))
        check_task_lines(task, lines, source)
        return _split_lines(lines, source, split_seed, reverse)
    generate = generate_addition if task == "addition" else generate_dates
    return _split_lines(generate(n, seed), f"generated {task} data", split_seed, reverse)
