"""Each segment's membership on its first evaluated date, as a sparse bitset over the stable customer index.

`segments.snapshots` holds, per segment and arm, the members as rows of `(pos, bits)`: a 64-customer word
with at least `DENSE` members is one row with `pos` its first index and `bits` its members (customer
`pos + i` for each bit i set, the most significant bit first); a word with fewer members is one row per
member, `pos` its index and `bits` null. Words without members are not stored, so a snapshot takes
O(members) bytes: ~1 bit per customer where segments are dense, a few bytes per member where sparse.

Why this shape (measured at 1M customers × 1,000 segments, docs/benchmarks.md): a `BIT` value per segment
wrote fastest, but a read of one segment fetched every segment's bits (~200 ms) and `get_bit` costs
~30 ns a customer; lists (`INTEGER[]`, `UTINYINT[]`) decompress the whole row group on every read (50 ms
for a segment of 3,000 members, 80 s for all); one row per member wrote 340M rows. Words are plain
integers that DuckDB skips by zone map and expands with vectorised shifts (a 190k-member segment in
~8 ms, every member of the 1,000 segments in ~3 s).

The changelog (`segments.changes`) builds on the snapshot: the members on day d are the snapshot's, if it
is dated on or before d, updated by each customer's latest change after it up to d (history.py).
"""

from __future__ import annotations

from collections.abc import Iterator

import duckdb
import numpy as np
import pyarrow as pa

SCHEMA = "segments"
TABLE = f"{SCHEMA}.snapshots"
WORD = 64
DENSE = 4  # a word with this many members or more is one row of bits; fewer: one row per member
DDL = f"""CREATE TABLE IF NOT EXISTS {TABLE} (
    segment_key VARCHAR NOT NULL, as_of DATE NOT NULL, arm VARCHAR, pos BIGINT NOT NULL, bits UBIGINT)"""
# The same columns, no rows: for reading a file that has no snapshots table yet.
EMPTY = """(SELECT NULL::VARCHAR AS segment_key, NULL::DATE AS as_of, NULL::VARCHAR AS arm, NULL::BIGINT AS pos,
    NULL::UBIGINT AS bits WHERE false)"""


def expand_sql(snapshots: str) -> str:
    """(segment_key, as_of, arm, idx): one row per member of the snapshot rows of the relation `snapshots`."""
    return f"""
        SELECT segment_key, as_of, arm, pos AS idx FROM {snapshots} WHERE bits IS NULL
        UNION ALL
        SELECT s.segment_key, s.as_of, s.arm, s.pos + b.i AS idx
        FROM (SELECT * FROM {snapshots} WHERE bits IS NOT NULL) s, range({WORD}) b(i)
        WHERE (s.bits >> ({WORD - 1} - b.i)::UTINYINT) & 1 = 1"""


def words_from_bits(packed: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(pos, bits, is_word) of a packed bitset (numpy's bit order: index 0 is the first byte's high bit)."""
    pad = (-len(packed)) % 8
    words = np.concatenate([packed, np.zeros(pad, dtype=np.uint8)]) if pad else np.ascontiguousarray(packed)
    words = words.view(">u8")
    counts = np.bitwise_count(words)
    dense = np.flatnonzero(counts >= DENSE)
    sparse = np.flatnonzero((counts > 0) & (counts < DENSE))
    rows, cols = np.nonzero(np.unpackbits(words[sparse].view(np.uint8).reshape(-1, 8), axis=1))
    singles = sparse[rows].astype(np.int64) * WORD + cols
    return _rows(dense.astype(np.int64) * WORD, words[dense].astype(np.uint64), singles)


def words_from_positions(idx: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(pos, bits, is_word) of ascending customer indexes."""
    idx = np.asarray(idx, dtype=np.int64)
    if not len(idx):
        return _rows(np.zeros(0, np.int64), np.zeros(0, np.uint64), idx)
    word = idx // WORD
    starts = np.flatnonzero(np.concatenate([[True], word[1:] != word[:-1]]))
    counts = np.diff(np.append(starts, len(idx)))
    shifts = (WORD - 1 - (idx % WORD)).astype(np.uint64)
    bits = np.bitwise_or.reduceat(np.left_shift(np.uint64(1), shifts), starts)
    dense = counts >= DENSE
    singles = idx[np.repeat(~dense, counts)]
    return _rows(word[starts[dense]] * WORD, bits[dense], singles)


def _rows(word_pos: np.ndarray, word_bits: np.ndarray, singles: np.ndarray) -> tuple:
    pos = np.concatenate([word_pos, singles])
    bits = np.concatenate([word_bits, np.zeros(len(singles), dtype=np.uint64)])
    is_word = np.concatenate([np.ones(len(word_pos), dtype=bool), np.zeros(len(singles), dtype=bool)])
    return pos, bits, is_word


def arm_positions(codes: np.ndarray, names: list[str], members: np.ndarray) -> Iterator[tuple[str, np.ndarray]]:
    """(arm, ascending indexes) per arm of `members` (ascending), named as the changelog names them
    (`names[codes[i]]`)."""
    arms = np.array(names, dtype=object)[codes[members]]
    if not len(arms):
        return
    values, inverse = np.unique(arms.astype(str), return_inverse=True)
    order = np.argsort(inverse, kind="stable")  # by arm, then index
    bounds = np.flatnonzero(np.diff(inverse[order])) + 1
    for part in np.split(order, bounds):
        yield str(values[inverse[part[0]]]), members[part]


class Writer:
    """Snapshot rows of many segments, inserted in chunks (in the order added: add them by segment key, so
    that a read of one segment skips the row groups of the others)."""

    CHUNK = 5_000_000

    def __init__(self, con: duckdb.DuckDBPyConnection, as_of):
        self.con, self.as_of = con, as_of
        self.parts: list[tuple[str, str | None, tuple]] = []
        self.rows = 0

    def add(self, key: str, arm: str | None, words: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
        if len(words[0]):
            self.parts.append((key, arm, words))
            self.rows += len(words[0])
            if self.rows >= self.CHUNK:
                self.flush()

    def add_bits(self, key: str, packed: np.ndarray) -> None:
        self.add(key, None, words_from_bits(packed))

    def add_arms(self, key: str, packed: np.ndarray, names: list[str], codes: np.ndarray) -> None:
        members = np.flatnonzero(np.unpackbits(packed, count=min(len(codes), len(packed) * 8)))
        for arm, idx in arm_positions(codes, names, members):
            self.add(key, arm, words_from_positions(idx))

    def flush(self) -> None:
        if not self.parts:
            return
        lengths = [len(p[2][0]) for p in self.parts]
        which = np.repeat(np.arange(len(self.parts)), lengths).astype(np.int32)
        no_arm = np.repeat([p[1] is None for p in self.parts], lengths)
        rows = pa.table(  # noqa: F841 - read by DuckDB through the variable name
            {
                "segment_key": pa.DictionaryArray.from_arrays(pa.array(which), pa.array([p[0] for p in self.parts])),
                "arm": pa.DictionaryArray.from_arrays(
                    pa.array(which, mask=no_arm), pa.array([p[1] or "" for p in self.parts], pa.string())
                ),
                "pos": pa.array(np.concatenate([p[2][0] for p in self.parts]), pa.int64()),
                "bits": pa.array(
                    np.concatenate([p[2][1] for p in self.parts]),
                    pa.uint64(),
                    mask=~np.concatenate([p[2][2] for p in self.parts]),
                ),
            }
        )
        self.con.execute(
            f"INSERT INTO {TABLE} SELECT segment_key::VARCHAR, ?, arm::VARCHAR, pos, bits FROM rows", [self.as_of]
        )
        self.parts, self.rows = [], 0
