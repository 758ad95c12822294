"""Strict JSON decoding of requests: one decoder for the v1 and V2 handlers and ``ntm predict``;
and the encoder of every answer (``dumps``). orjson decodes what it is sure to decode as the
strict decoder would (``fast``); the rest goes through Python's json with the hooks below.

Python's ``json.loads`` accepts some documents that are not JSON, silently changes others, and
fails on a few with errors that are not a bad request. Here each of them is a ``BadRequest``
naming the problem:

    deep nesting          [[[[...  more than MAX_DEPTH levels (json would raise RecursionError)
    NaN, Infinity         not JSON (RFC 8259 §6); json would decode them
    huge numbers          1e999 (json: inf), a 100k-digit integer (json: ValueError)
    duplicate keys        {"a": 1, "a": 2} is ambiguous; json keeps the last one
    bytes not UTF-8       json would guess UTF-16/32 from the first bytes
    a top-level scalar    every request is an object or an array
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import numpy as np
import orjson

from ntm.serving.errors import BadRequest

MAX_DEPTH = 64  # nesting levels; a V2 request of a rank-4 tensor needs 7
MAX_INT_CHARS = 320  # a longer integer is beyond any 64-bit float (max about 1.8e308)
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)
# digits -> d, what continues a decimal number (. e E) -> f, anything else -> a space
_INTEGER_SHAPES = bytes(ord("d") if b in b"0123456789" else ord("f") if b in b".eE"
                        else ord(" ") for b in range(256))
_LONG_RUN = b" " + b"d" * 19
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_NUMBER_SHAPES = bytes(ord("d") if b in b"0123456789" else ord("e") if b in b"eE"
                       else ord("s") if b in b"+-" else ord(".") for b in range(256))


def dumps(value: Any) -> bytes:
    """An answer as JSON bytes: orjson, NumPy arrays written directly (a float32 as its shortest
    float32 text). Answers hold finite numbers only; orjson would write NaN as null."""
    return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY)


class InvalidJSON(BadRequest):
    """The text is not JSON syntax at all (as opposed to JSON this server refuses)."""


def loads(data: bytes | str, what: str = "request") -> dict | list:
    """Decode a JSON object or array; ``what`` starts every error message ("request: ...").

    orjson decodes when it is sure to give what the strict decoder below gives (``fast``);
    anything else, every error included, goes through the strict decoder, which names the
    problem.
    """
    raw = data if isinstance(data, bytes) else data.encode("utf-8", "surrogatepass")
    if nesting_depth(raw) > MAX_DEPTH:
        raise BadRequest(f"{what}: JSON nested deeper than {MAX_DEPTH} levels")
    doc = fast(raw)  # refuses bytes that are not UTF-8: text_of names them below
    if doc is None:
        doc = strict(text_of(data, what), raw, what)
    if not isinstance(doc, (dict, list)):
        raise BadRequest(f"{what}: must be a JSON object or array, got {_kind(doc)}")
    return doc


def fast(raw: bytes) -> Any:
    """orjson's decoding of ``raw`` when it equals the strict decoder's, else None (with its
    checks, several times faster than ``strict``: docs/performance.md). orjson itself refuses NaN, Infinity, numbers beyond a float, bytes
    that are not UTF-8 and lone surrogates; left to the strict decoder are integers of 19 or
    more digits (orjson makes a float of one beyond 64 bits; json an int) and objects that
    repeat a key (orjson keeps the last one). A repeated key shows as fewer keys decoded than
    members written: each ':' outside strings is one member."""
    if has_long_integer(raw):
        return None
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return doc if holds_members(doc, _STRING.sub(b"", raw).count(b":")) else None


def has_long_integer(raw: bytes) -> bool:
    """Whether ``raw`` may hold an integer of 19 or more digits: a run of them after a
    character that is neither a digit nor a decimal point, and not followed by a fraction or an
    exponent (a string may give a false alarm). At C speed but for such runs (Python's re
    took milliseconds on a large V2 body)."""
    shapes = raw.translate(_INTEGER_SHAPES)
    at = shapes.find(_LONG_RUN)
    while at >= 0:
        end = at + len(_LONG_RUN)
        while shapes[end:end + 1] == b"d":
            end += 1
        if shapes[end:end + 1] != b"f":
            return True
        at = shapes.find(_LONG_RUN, end)
    return False


def holds_members(doc: Any, members: int) -> bool:
    """Whether the objects in ``doc`` hold ``members`` keys in all. Objects are counted before
    any array is scanned, and the count stops once reached, so the long arrays of numbers a
    request carries are rarely walked."""
    found, objects, arrays = 0, [doc], []
    while found < members and (objects or arrays):
        value = objects.pop() if objects else arrays.pop()
        children = value.values() if type(value) is dict else value
        if type(value) is dict:
            found += len(value)
        for child in children:
            kind = type(child)
            if kind is dict:
                objects.append(child)
            elif kind is list:
                arrays.append(child)
    return found >= members


def strict(text: str, raw: bytes, what: str) -> Any:
    """Python's json with hooks that refuse what is not JSON or is ambiguous (module doc)."""
    try:
        hooks = _Hooks(what)
        numbers = dict(parse_float=hooks.float, parse_int=hooks.int) if may_overflow(raw) else {}
        doc = json.loads(text, object_pairs_hook=hooks.object_pairs,
                         parse_constant=hooks.constant, **numbers)
    except json.JSONDecodeError as err:
        raise InvalidJSON(f"{what}: not valid JSON ({err.msg} at line {err.lineno} column "
                          f"{err.colno})") from None
    except RecursionError:  # the depth check makes this rare: a caller already deep in a stack
        raise BadRequest(f"{what}: JSON nested too deeply") from None
    return doc


def text_of(data: bytes | str, what: str = "request") -> str:
    """``data`` as text: bytes must be UTF-8 (RFC 8259 §8.1)."""
    if isinstance(data, str):
        return data
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise BadRequest(f"{what}: not valid UTF-8 (byte 0x{data[err.start]:02x} at offset "
                         f"{err.start})") from None


def nesting_depth(raw: bytes) -> int:
    """The deepest nesting of arrays and objects in ``raw`` (brackets inside strings ignored).

    Runs at C speed (regex, bytes.translate, NumPy) before the recursive decoder sees the text.
    """
    if raw.count(b"[") + raw.count(b"{") <= MAX_DEPTH:
        return 0  # too few brackets to matter
    brackets = _STRING.sub(b"", raw).translate(None, delete=_NOT_BRACKETS)
    steps = np.frombuffer(brackets, np.uint8)
    depth = np.cumsum(np.where((steps == ord("[")) | (steps == ord("{")), 1, -1))
    return int(depth.max(initial=0))


def may_overflow(raw: bytes) -> bool:
    """Whether some number in ``raw`` might be beyond a 64-bit float, so that numbers must go
    through the (slower, per number) Python hooks: a run of 200 digits, or an exponent of three
    digits. Fewer digits are within range (below 1e299); strings may give false alarms."""
    shapes = raw.translate(_NUMBER_SHAPES)
    return b"d" * 200 in shapes or b"eddd" in shapes or b"esddd" in shapes


class _Hooks:
    """json.loads callbacks that raise BadRequest (prefixed with ``what``) instead of guessing."""

    def __init__(self, what: str):
        self.what = what

    def object_pairs(self, pairs: list[tuple[str, Any]]) -> dict:
        out = {}
        for key, value in pairs:
            if key in out:
                raise BadRequest(f"{self.what}: duplicate key {key!r} in an object (ambiguous)")
            out[key] = value
        return out

    def constant(self, name: str):
        raise BadRequest(f"{self.what}: {name} is not JSON (numbers must be finite)")

    def float(self, literal: str) -> float:
        value = float(literal)  # linear in the length; 1e999 gives inf
        if not math.isfinite(value):
            raise self._too_large(literal)
        return value

    def int(self, literal: str) -> int:
        if len(literal) > MAX_INT_CHARS:  # also keeps int() within its digit limit
            raise self._too_large(literal)
        value = int(literal)
        try:
            float(value)
        except OverflowError:
            raise self._too_large(literal) from None
        return value

    def _too_large(self, literal: str) -> BadRequest:
        shown = literal if len(literal) <= 24 else f"{literal[:12]}... ({len(literal)} characters)"
        return BadRequest(f"{self.what}: number {shown} is out of range (beyond a 64-bit float)")


def _kind(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    return "a string" if isinstance(value, str) else "a number"
