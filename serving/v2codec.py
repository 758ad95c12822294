"""Open Inference Protocol (KServe V2) tensors over HTTP: JSON data and the binary tensor data
extension, as Triton and tritonclient speak them.

A request body is a JSON header, optionally followed by raw tensor bytes; the header's length is
given by the ``Inference-Header-Content-Length`` HTTP header. An input whose
``parameters.binary_data_size`` is set takes that many bytes from the binary part, in input
order. Outputs are returned as binary when the request asks (per output
``parameters.binary_data`` or request ``parameters.binary_data_output``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from ntm.serving import jsondoc
from ntm.serving.errors import BadRequest

HEADER_LENGTH = "Inference-Header-Content-Length"

# V2 datatype <-> NumPy dtype (little-endian, as the protocol's binary data is).
DATATYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype(bool), "UINT8": np.dtype("<u1"), "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"), "UINT64": np.dtype("<u8"), "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"), "INT32": np.dtype("<i4"), "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"), "FP32": np.dtype("<f4"), "FP64": np.dtype("<f8"),
}
NUMPY_TO_V2 = {v: k for k, v in DATATYPES.items()}


@dataclass(frozen=True)
class InferRequest:
    id: str | None
    inputs: dict[str, np.ndarray]
    outputs: list[tuple[str, bool]] | None  # requested (name, binary); None = all
    binary_default: bool


def parse_request(body: bytes, header_length: str | None) -> InferRequest:
    """Decode an infer request body; BadRequest names the offending field."""
    if header_length is not None:
        try:
            n = int(header_length)
        except ValueError:
            raise BadRequest(f"{HEADER_LENGTH}: must be an integer, got {header_length!r}") \
                from None
        if not 0 < n <= len(body):
            raise BadRequest(f"{HEADER_LENGTH}: {n} is outside the body's {len(body)} bytes")
        head, binary = body[:n], body[n:]
    else:
        head, binary = body, b""
    doc = jsondoc.loads(head, "request")
    if not isinstance(doc, dict):
        raise BadRequest("request: must be a JSON object with 'inputs'")
    raw_inputs = doc.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise BadRequest("inputs: must be a non-empty list of tensors")
    inputs, offset = {}, 0
    for i, tensor in enumerate(raw_inputs):
        name, array, used = _parse_tensor(tensor, f"inputs[{i}]", binary, offset)
        inputs[name] = array
        offset += used
    if offset != len(binary):
        raise BadRequest(f"request: {len(binary) - offset} bytes of binary data are not claimed "
                         f"by any input's binary_data_size")
    params = doc.get("parameters") or {}
    if not isinstance(params, dict):
        raise BadRequest("parameters: must be an object")
    binary_default = bool(params.get("binary_data_output", False))
    outputs = None
    if doc.get("outputs") is not None:
        if not isinstance(doc["outputs"], list):
            raise BadRequest("outputs: must be a list")
        outputs = []
        for j, out in enumerate(doc["outputs"]):
            if not isinstance(out, dict) or not isinstance(out.get("name"), str):
                raise BadRequest(f"outputs[{j}]: must be an object with a 'name'")
            out_params = out.get("parameters") or {}
            outputs.append((out["name"], bool(out_params.get("binary_data", binary_default))))
    request_id = doc.get("id")
    return InferRequest(str(request_id) if request_id is not None else None, inputs, outputs,
                        binary_default)


def _parse_tensor(tensor: Any, where: str, binary: bytes, offset: int):
    if not isinstance(tensor, dict):
        raise BadRequest(f"{where}: must be an object with name, shape, datatype")
    name, shape, datatype = tensor.get("name"), tensor.get("shape"), tensor.get("datatype")
    if not isinstance(name, str):
        raise BadRequest(f"{where}.name: must be a string")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool)
                                              and d >= 0 for d in shape):
        raise BadRequest(f"{where}.shape: must be a list of non-negative integers")
    if datatype not in DATATYPES:
        raise BadRequest(f"{where}.datatype: {datatype!r} is not one of {sorted(DATATYPES)}")
    dtype = DATATYPES[datatype]
    count = int(np.prod(shape, dtype=np.int64)) if shape else 1
    params = tensor.get("parameters") or {}
    size = params.get("binary_data_size") if isinstance(params, dict) else None
    if size is not None:
        if not isinstance(size, int) or size < 0:
            raise BadRequest(f"{where}.parameters.binary_data_size: must be a non-negative integer")
        if offset + size > len(binary):
            raise BadRequest(f"{where}: binary_data_size {size} runs past the body's binary data")
        if size != count * dtype.itemsize:
            raise BadRequest(f"{where}: binary_data_size {size} does not match shape {shape} of "
                             f"{datatype} ({count * dtype.itemsize} bytes)")
        array = np.frombuffer(binary, dtype=dtype, count=count, offset=offset).reshape(shape)
        return name, array, size
    if "data" not in tensor:
        raise BadRequest(f"{where}: has neither 'data' nor parameters.binary_data_size")
    try:
        array = np.asarray(tensor["data"], dtype=dtype)
    except (TypeError, ValueError, OverflowError) as err:  # OverflowError: 300 as UINT8
        raise BadRequest(f"{where}.data: not {datatype} values ({err})") from None
    if array.size != count:
        raise BadRequest(f"{where}.data: {array.size} values do not fill shape {shape} "
                         f"({count} values)")
    return name, array.reshape(shape), 0


def encode_response(model_name: str, model_version: str, request_id: str | None,
                    outputs: list[tuple[str, np.ndarray, bool]],
                    parameters: dict[str, Any] | None = None) -> tuple[bytes, int | None]:
    """Build a response body: (body, header length for the binary case or None); response
    ``parameters`` when given."""
    doc: dict[str, Any] = {"model_name": model_name, "model_version": model_version,
                           "outputs": []}
    if request_id is not None:
        doc["id"] = request_id
    if parameters:
        doc["parameters"] = parameters
    blobs = []
    for name, array, binary in outputs:
        array = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
        entry: dict[str, Any] = {"name": name, "datatype": NUMPY_TO_V2[array.dtype],
                                 "shape": list(array.shape)}
        if binary:
            raw = array.tobytes()
            entry["parameters"] = {"binary_data_size": len(raw)}
            blobs.append(raw)
        else:
            entry["data"] = array.ravel().tolist()
        doc["outputs"].append(entry)
    head = json.dumps(doc).encode()
    if not blobs:
        return head, None
    return head + b"".join(blobs), len(head)
