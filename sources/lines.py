"""Input read with bounded memory: no line (or JSON record) longer than ``CALLQA_MAX_EVENT_BYTES`` is held whole.

A file is read in pieces (``chunks``: 1 MiB — bytes, or characters of a text file — at a time), and
``bounded_lines`` cuts any pieces of a text (put together, they are the text: a file's chunks, or its lines
with their terminators) into lines with their terminators. A line whose size (UTF-8 bytes, without its terminator) is over the limit is not
held: once past the limit only its start is kept (``Oversized.prefix``: ``PAYLOAD_PREFIX_BYTES`` and a
margin), the rest is counted up to the next newline, and an ``Oversized`` stands in its place. It is one
dead letter: the reason says its real size (``schemas.too_large``: the ``too large`` kind), the payload
is its first 4 KiB (``Oversized.payload``; an adapter's is scrubbed of caller numbers first, with the
margin, then cut, so a number across the cut is hashed whole: ``callqa.ingest.ingest``). ``json_values`` does the same for the
records of a JSON document (an array of records, or records one after another): one record is held at
a time, and a record over the limit is an ``Oversized``.

Peak memory is then about the limit plus a piece, whatever the longest line of the file.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import IO

import schemas

CHUNK = 1 << 20  # bytes read at a time
SCRUB_MARGIN = 256  # kept past the payload's prefix so that a number across the cut is scrubbed whole
KEEP = schemas.PAYLOAD_PREFIX_BYTES + SCRUB_MARGIN  # of a line over the limit, this much of its start is held

_SPLIT = {str: re.compile(r"(\n)"), bytes: re.compile(rb"(\n)")}
_SPLIT_UNIVERSAL = {str: re.compile(r"(\r\n|\r|\n)"), bytes: re.compile(rb"(\r\n|\r|\n)")}  # as text files' newline="" splits


@dataclass(frozen=True)
class Oversized:
    """A line (or record) over the limit, not held: its start and its size in bytes (without its terminator)."""

    prefix: str | bytes  # at least PAYLOAD_PREFIX_BYTES + SCRUB_MARGIN of its start (when it has them)
    size: int

    @property
    def reason(self) -> str:
        return schemas.too_large(self.size, schemas.PAYLOAD_PREFIX_BYTES)

    def payload(self) -> str | bytes:
        """The dead letter's payload: its first ``PAYLOAD_PREFIX_BYTES`` (an adapter's unit is scrubbed of
        caller numbers before it is cut: ``callqa.ingest``)."""
        return schemas.payload_prefix(self.prefix)


def size_of(part: str | bytes) -> int:
    """Bytes of ``part`` (text: as UTF-8)."""
    return len(part) if isinstance(part, bytes) or part.isascii() else len(part.encode("utf-8", "surrogatepass"))


def chunks(handle: IO, size: int = CHUNK) -> Iterator:
    """A file's content in pieces of at most ``size``."""
    while piece := handle.read(size):
        yield piece


def _prefix(parts: list) -> str | bytes:
    kept, n = [], 0
    for part in parts:
        kept.append(part)
        n += len(part)
        if n >= KEEP:
            break
    return parts[0][:0].join(kept)[:KEEP]


def bounded_lines(pieces: Iterable, limit: int | None = None, universal: bool = False) -> Iterator:
    """The lines of ``pieces`` (str or bytes), each with its terminator (the last maybe without), or an
    ``Oversized`` for a line over ``limit`` bytes (default ``CALLQA_MAX_EVENT_BYTES``) without its
    terminator. Lines end at ``\\n`` (a ``\\r`` before it is no part of the line's size); with ``universal``
    also at a lone ``\\r`` (as a text file opened with ``newline=""`` reads them: CSV and queue_log). One
    line is held at a time: at most ``limit`` and a piece."""
    limit = schemas.MAX_EVENT_BYTES if limit is None else limit
    held: list = []  # the start of a line that began in an earlier piece, while it is within the limit
    over = None  # its prefix, once it is over
    size = 0  # the bytes of the held (or over) line so far
    length = 0  # its characters (bytes) so far
    cr = False  # the held line ends with "\r" so far
    for piece in _carrying_cr(pieces) if universal else pieces:
        if not piece:
            continue
        text = isinstance(piece, str)
        segments = (_SPLIT_UNIVERSAL if universal else _SPLIT)[type(piece)].split(piece)
        rest = segments.pop()  # after the piece's last terminator: a line that goes on in the next piece
        for k in range(0, len(segments), 2):
            line, ending = segments[k], segments[k + 1]
            if held or over is not None:  # the end of a held line
                cr = line[-1:] in ("\r", b"\r") if line else cr
                size += size_of(line)
                length += len(line)
                if over is None:
                    held.append(line)
                    line = held[0][:0].join(held)
                elif len(over) < KEEP:
                    over += line[:KEEP - len(over)]
                held = []
            else:
                cr = line[-1:] in ("\r", b"\r")
                size = len(line) if not text or line.isascii() else size_of(line)
                length = len(line)
            if cr and ending in ("\n", b"\n"):  # "\r\n": the "\r" is the terminator's, no part of the line
                size -= 1
                ending = "\r\n" if text else b"\r\n"
                if over is None:
                    line = line[:-1]
                elif length <= KEEP:  # the prefix is the whole line, with the "\r"
                    over = over[:-1]
            if over is None and size <= limit:
                yield line + ending
            else:
                yield Oversized(over if over is not None else _prefix([line]), size)
            over, size, length = None, 0, 0
        if rest:
            cr = rest[-1:] in ("\r", b"\r")
            size += size_of(rest)
            length += len(rest)
            if over is None:
                held.append(rest)
                if size > limit + 1:  # over, whatever its terminator ("\r\n": 1 more)
                    over, held = _prefix(held), []
            elif len(over) < KEEP:
                over += rest[:KEEP - len(over)]
    if held or over is not None:
        yield held[0][:0].join(held) if over is None and size <= limit else Oversized(
            over if over is not None else _prefix(held), size)


def _carrying_cr(pieces: Iterable) -> Iterator:
    """``pieces`` with a final "\\r" moved to the start of the next piece: it may be the start of "\\r\\n"."""
    carry = None
    for piece in pieces:
        if carry is not None:
            piece, carry = carry + piece, None
        if piece[-1:] in ("\r", b"\r"):
            piece, carry = piece[:-1], piece[-1:]
        yield piece
    if carry is not None:
        yield carry


# ---- JSON documents ----------------------------------------------------------------------------------

_BETWEEN = re.compile(r"[^\s,]")  # the first character of what follows a record
_STRUCTURE = re.compile(r'["{}\[\]]')
_IN_STRING = re.compile(r'["\\]')
_SCALAR_END = re.compile(r'[\s,\[\]{}"]')


def json_values(pieces: Iterable[str], limit: int | None = None) -> Iterator[tuple[str | Oversized, bool]]:
    """The records of a JSON document given in pieces of text: the elements of a top-level array
    (``[r1, r2]``), and top-level values one after another (``{...} {...}``; one pretty-printed object):
    (its text, or an ``Oversized`` when over ``limit`` bytes; whether it is complete — False when the text
    ends inside it). Records are cut by the document's structure alone (strings and their escapes
    respected), one held at a time; each is parsed by the caller. A stray character between records is a
    record of its own (it will not parse)."""
    limit = schemas.MAX_EVENT_BYTES if limit is None else limit
    array = False  # inside the top-level array
    record = scalar = in_string = escaped = False
    depth = 0  # nesting of the current record's objects and arrays
    held: list[str] = []
    over = None
    size = 0
    for piece in pieces:
        i, n, start = 0, len(piece), 0  # start: where the current record's text begins in this piece
        while i < n:
            if not record:
                m = _BETWEEN.search(piece, i)
                if m is None:
                    break
                i = m.start()
                c = piece[i]
                if c == "[" and not array:
                    array, i = True, i + 1
                    continue
                if c == "]" and array:
                    array, i = False, i + 1
                    continue
                record, start, depth, i = True, i, 0, i + 1
                scalar, in_string = c not in '{["', c == '"'
                depth = 1 if c in "{[" else 0
                continue
            if scalar:  # a number, true, null, or stray text: to the next delimiter
                m = _SCALAR_END.search(piece, i)
                if m is None:
                    break
                i = m.start()
            elif in_string:
                if escaped:
                    escaped, i = False, i + 1
                    continue
                m = _IN_STRING.search(piece, i)
                if m is None:
                    break
                i = m.end()
                if m.group() == "\\":
                    escaped = True
                    continue
                in_string = False
                if depth:
                    continue
            else:
                m = _STRUCTURE.search(piece, i)
                if m is None:
                    break
                i = m.end()
                c = m.group()
                if c == '"':
                    in_string = True
                    continue
                depth += 1 if c in "{[" else -1
                if depth:
                    continue
            held, over, size = _hold(held, over, size, piece[start:i], limit)
            yield _record(held, over, size, limit), True
            held, over, size, record, scalar = [], None, 0, False, False
        if record:
            held, over, size = _hold(held, over, size, piece[start:], limit)
    if record:
        yield _record(held, over, size, limit), scalar  # a scalar ends with the text


def _hold(held: list, over, size: int, part: str, limit: int):
    """A part of the current record held (``held``), or its prefix (``over``) once it is over the limit."""
    size += size_of(part)
    if over is None:
        held.append(part)
        if size > limit:
            return [], _prefix(held), size
    elif len(over) < KEEP:
        over += part[:KEEP - len(over)]
    return held, over, size


def _record(held: list, over, size: int, limit: int):
    if over is None:
        return "".join(held)
    return Oversized(over, size)
