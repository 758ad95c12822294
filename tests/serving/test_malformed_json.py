"""Malformed JSON of every kind gets a 400 (or ``ntm predict`` exits 1) with one message naming
the problem, on the v1 and V2 surfaces of a real ``ntm serve`` process; the server stays up.
Hypothesis fuzzes the decoder and the server with JSON-like bytes."""

from __future__ import annotations

import json

import httpx
import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ntm.cli.main import cli
from ntm.serving import jsondoc
from ntm.serving.errors import BadRequest
from tests.serving.conftest import ServerProcess, metric

# A valid request to the copy model with one number written as LITERAL, per surface.
V1 = b'{"instances": [{"sequence": [[LITERAL, 0, 1, 0, 0, 1, 1, 0]]}]}'
V2 = (b'{"inputs": [{"name": "inputs", "shape": [1, 1, 9], "datatype": "FP32",'
      b' "data": [LITERAL, 0, 1, 0, 0, 1, 1, 0, 0]}]}')  # copy: 8 bits and a delimiter channel
DEEP = b"[" * 100_000

# (id, LITERAL in a valid request, message)
BAD_VALUES = [
    ("nan", b"NaN", "NaN is not JSON"),
    ("infinity", b"Infinity", "Infinity is not JSON"),
    ("minus-infinity", b"-Infinity", "-Infinity is not JSON"),
    ("float-overflow", b"1e999999", "number 1e999999 is out of range"),
    ("negative-overflow", b"-1E+400", "number -1E+400 is out of range"),
    ("100k-digit-integer", b"1" * 100_000, "(100000 characters) is out of range"),
    ("integer-beyond-float", b"9" * 310, "(310 characters) is out of range"),
    ("duplicate-key", b'{"a": 1, "a": 2}', "duplicate key 'a'"),
    ("invalid-utf8", b'"\xff"', "not valid UTF-8 (byte 0xff"),
    ("deep-nesting", DEEP, "nested deeper than 64 levels"),
]
# (id, whole body, message)
BAD_BODIES = [
    ("deep-arrays", DEEP, "nested deeper than 64 levels"),
    ("deep-objects", b'{"a": ' * 100_000, "nested deeper than 64 levels"),
    ("number", b"42", "must be a JSON object or array, got a number"),
    ("string", b'"text"', "must be a JSON object or array, got a string"),
    ("null", b"null", "must be a JSON object or array, got null"),
    ("true", b"true", "must be a JSON object or array, got true"),
    ("utf16", '{"instances": []}'.encode("utf-16"), "not valid UTF-8 (byte 0xff at offset 0)"),
    ("syntax", b'{"instances": [', "not valid JSON (Expecting value"),
    ("duplicate-envelope", b'{"instances": [], "instances": [{}]}', "duplicate key 'instances'"),
]
CASES = [pytest.param(template.replace(b"LITERAL", literal), message, id=f"{name}-{surface}")
         for name, literal, message in BAD_VALUES
         for surface, template in (("v1", V1), ("v2", V2))] + \
    [pytest.param(body, message, id=name) for name, body, message in BAD_BODIES]


def test_the_templates_are_valid_requests():
    for template in (V1, V2):
        assert jsondoc.loads(template.replace(b"LITERAL", b"1")) == \
            json.loads(template.replace(b"LITERAL", b"1"))


@pytest.mark.parametrize("body, message", CASES)
def test_the_decoder_names_the_problem(body, message):
    with pytest.raises(BadRequest) as caught:
        jsondoc.loads(body, "request")
    assert caught.value.message.startswith("request: ") and message in caught.value.message
    assert "\n" not in caught.value.message


# -- a real server --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def server(bundled):
    process = ServerProcess(["--model", "copy"])
    yield process
    assert process.stop() == 0


def surfaces(body: bytes) -> list[str]:
    """Where a body goes: a V2 tensor request to V2, a task request to v1, a bare body to both."""
    if body.startswith(b'{"inputs"'):
        return ["/v2/models/copy/infer"]
    if body.startswith(b'{"instances": [{"sequence"'):
        return ["/v1/models/copy:predict"]
    return ["/v1/models/copy:predict", "/v2/models/copy/infer"]


@pytest.mark.parametrize("body, message", CASES)
def test_the_server_answers_400_naming_the_problem(server, body, message):
    for path in surfaces(body):
        r = httpx.post(server.url + path, content=body, timeout=30,
                       headers={"Content-Type": "application/json"})
        assert r.status_code == 400, (path, r.status_code, r.text[:300])
        assert message in r.json()["error"], (path, r.text[:300])


def test_the_server_stays_up_after_deep_nesting(server):
    for _ in range(3):
        r = httpx.post(f"{server.url}/v1/models/copy:predict", content=DEEP, timeout=30)
        assert r.status_code == 400 and "nested deeper" in r.json()["error"]
    assert server.proc.poll() is None
    for template, path in ((V1, "/v1/models/copy:predict"), (V2, "/v2/models/copy/infer")):
        r = httpx.post(server.url + path, content=template.replace(b"LITERAL", b"1"), timeout=30)
        assert r.status_code == 200, r.text
    answer = httpx.post(f"{server.url}/v1/models/copy:predict",
                        content=V1.replace(b"LITERAL", b"1"), timeout=30).json()
    assert answer["predictions"][0]["output"] == [[1, 0, 1, 0, 0, 1, 1, 0]]
    text = httpx.get(f"{server.url}/metrics", timeout=30).text
    assert 'status="500"' not in text
    assert metric(text, "ntm_requests_total", 'model="copy",protocol="v1",status="400"') >= 3


JSONISH = st.lists(st.sampled_from([b"[", b"]", b"{", b"}", b'"', b":", b",", b"0", b"7",
                                    b"-", b"e", b"E", b"+", b".", b"1e999", b"NaN", b"Infinity",
                                    b"true", b"null", b'"a"', b'"\\u00e9"', b"\\", b"\xff",
                                    b"\xc3", b" ", b"\n", b'{"instances": ', b'{"inputs": ',
                                    b'{"sequence": ', DEEP[:70]]),
                   max_size=40).map(b"".join)


@given(JSONISH | st.binary(max_size=100))
@settings(max_examples=300, deadline=None)
def test_the_decoder_raises_only_bad_request(body):
    try:
        doc = jsondoc.loads(body, "request")
    except BadRequest as err:
        assert err.message.startswith("request: ") and "\n" not in err.message
    else:
        assert isinstance(doc, (dict, list)) and doc == json.loads(body)


VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=3), inner,
                                                                max_size=4),
    max_leaves=20)


@given(st.lists(VALUES, max_size=4) | st.dictionaries(st.text(max_size=3), VALUES, max_size=4))
@settings(max_examples=200, deadline=None)
def test_valid_json_decodes_as_json_does(value):
    text = json.dumps(value)
    assert jsondoc.loads(text.encode()) == json.loads(text)
    assert jsondoc.loads(text) == json.loads(text)


def strict_or_error(body: bytes):
    """What the strict decoder makes of ``body``, or None when it refuses it."""
    try:
        return jsondoc.strict(body.decode("utf-8"), body, "request")
    except (BadRequest, UnicodeDecodeError):
        return None


def same(a, b) -> bool:
    """Equal including the types of numbers (1 is not 1.0, -0.0 is not 0.0)."""
    return repr(a) == repr(b)


@given(JSONISH | st.binary(max_size=100))
@settings(max_examples=300, deadline=None)
def test_the_fast_decoder_gives_what_the_strict_one_gives_or_steps_aside(body):
    fast = jsondoc.fast(body)
    if fast is not None:
        assert same(fast, strict_or_error(body))


def objects_text(draw_pairs):
    return "{" + ", ".join(f"{json.dumps(k)}: {v}" for k, v in draw_pairs) + "}"


MEMBERS = st.recursive(
    st.sampled_from(["1", "-0.0", "2.5e3", "18446744073709551616", '"a:b"', '"\\":"', "[]"]),
    lambda inner: st.lists(inner, max_size=3).map(lambda xs: "[" + ", ".join(xs) + "]")
    | st.lists(st.tuples(st.sampled_from(["a", "b", "k:", 'q"']), inner), max_size=3)
    .map(objects_text),
    max_leaves=12)


@given(MEMBERS.filter(lambda t: t.startswith(("[", "{"))))
@settings(max_examples=300, deadline=None)
def test_repeated_keys_and_long_integers_are_left_to_the_strict_decoder(text):
    """Objects written with repeated keys (anywhere in the document), keys and strings holding
    ':' and escaped quotes, integers beyond 64 bits: loads answers as the strict decoder does,
    and the fast one never disagrees."""
    body = text.encode()
    expected = strict_or_error(body)
    fast = jsondoc.fast(body)
    assert fast is None or same(fast, expected)
    try:
        assert same(jsondoc.loads(body), expected)
    except BadRequest as err:
        assert expected is None and "duplicate key" in err.message


@pytest.mark.parametrize("body", [
    b'{"a": 1, "a": 2}', b'[{"x": [{"k": 1, "k": 1}]}]', b'{"a:": {"b": 1, "b": 2}}',
    b'[{"\\"": 1, "b": {"c": 1, "c": 2}}]', b'[18446744073709551616]', b'[-12345678901234567890]',
])
def test_the_fast_decoder_steps_aside_for(body):
    assert jsondoc.fast(body) is None


@pytest.mark.parametrize("body", [
    b'{"instances": [{"sequence": [[1, 0, 1, 0, 0, 1, 1, 0]]}]}', b'{"k:": "a:b", "z": [1.5e-300]}',
    b'[12345678901234567890.5, 1234567890123456789012e3, 0.00123456789012345678901]',
])
def test_the_fast_decoder_takes(body):
    assert same(jsondoc.fast(body), json.loads(body))


@given(JSONISH)
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
def test_the_server_never_answers_5xx_to_jsonish_bodies(server, body):
    for path in ("/v1/models/copy:predict", "/v2/models/copy/infer"):
        r = httpx.post(server.url + path, content=body, timeout=30)
        assert r.status_code < 500 and (r.status_code == 200 or "error" in r.json()), r.text


# -- ntm predict ----------------------------------------------------------------------------
@pytest.mark.parametrize("body, message", [c for c in CASES if not c.id.endswith("-v2")])
def test_ntm_predict_exits_1_with_one_line(tmp_path, bundled, body, message):
    path = tmp_path / "in.json"
    path.write_bytes(body)
    result = CliRunner().invoke(cli, ["predict", str(path), "--model", "copy"])
    assert result.exit_code == 1, result.output
    assert result.output.startswith("Error: input: ") and message in result.output
    assert result.output.count("\n") == 1, result.output


def test_answers_are_encoded_by_orjson_and_float32_tensors_round_trip_exactly():
    """``jsondoc.dumps`` writes NumPy arrays directly (a float32 as its shortest float32 text,
    so the V2 JSON of the attention tensor is half as long and ~30x faster to write than
    ``tolist()`` + ``json.dumps``), and reading it back gives the same float32 bits."""
    from ntm.serving.v2codec import encode_response

    rng = np.random.default_rng(0)
    values = np.concatenate([rng.random(500, dtype=np.float32),
                             np.array([0.0, 1.0, 1e-30, 3.4e38, 0.1], np.float32)])
    body, binary = encode_response("m", "1", "r", [("x", values.reshape(5, 101), False)])
    assert binary is None
    [out] = json.loads(body)["outputs"]
    assert out["shape"] == [5, 101] and out["datatype"] == "FP32"
    assert np.array_equal(np.array(out["data"], np.float32), values)
    assert jsondoc.dumps({"a": [1, 2.5], "b": "é"}) == '{"a":[1,2.5],"b":"é"}'.encode()
