"""Open Inference Protocol (KServe V2) tensors over HTTP: JSON data and the binary tensor data
extension, as Triton and tritonclient speak them.

A request body is a JSON header, optionally followed by raw tensor bytes; the header's length is
given by the ``Inference-Header-Content-Length`` HTTP header. An input whose
``parameters.binary_data_size`` is set takes that many bytes from the binary part, in input
order. Outputs are returned as binary when the request asks (per output
``parameters.binary_data`` or request ``parameters.binary_data_output``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr

from ntm.serving import jsondoc
from ntm.serving.errors import BadRequest
from ntm.contract import metadata as meta
from ntm.serving.runtime import ModelRuntime
from ntm.serving.schema import validate

HEADER_LENGTH = "Inference-Header-Content-Length"
VERSION = "1"  # the one version of each model served
# every output a model may have, in order (a model without memory: probabilities alone;
# ``ModelRuntime.parts.outputs`` says which)
OUTPUT_NAMES = (meta.PROBABILITIES, meta.ATTENTION)

# V2 datatype <-> NumPy dtype (little-endian, as the protocol's binary data is).
DATATYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype(bool), "UINT8": np.dtype("<u1"), "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"), "UINT64": np.dtype("<u8"), "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"), "INT32": np.dtype("<i4"), "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"), "FP32": np.dtype("<f4"), "FP64": np.dtype("<f8"),
}
NUMPY_TO_V2 = {v: k for k, v in DATATYPES.items()}


# -- the request body, as the OpenAPI document declares it ---------------------------------
Datatype = Literal[tuple(DATATYPES)]  # type: ignore[valid-type]
Count = Annotated[StrictInt, Field(ge=0)]


class TensorParameters(BaseModel):
    model_config = ConfigDict(extra="allow")
    binary_data_size: Count | None = Field(
        None, description="bytes of this tensor in the binary part of the body")


class InputTensor(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str
    shape: list[Count] = Field(description="a list of non-negative integers")
    datatype: Datatype
    data: Any = Field(None, description="the values, row-major (nested lists allowed); "
                                        "absent when parameters.binary_data_size is set")
    parameters: TensorParameters | None = None


class OutputParameters(BaseModel):
    model_config = ConfigDict(extra="allow")
    binary_data: bool | None = None


class RequestedOutput(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str
    parameters: OutputParameters | None = None


class InferParameters(BaseModel):
    model_config = ConfigDict(extra="allow")
    binary_data_output: bool | None = Field(
        None, description="every output in binary unless the output says otherwise")
    sequence_id: StrictInt | StrictStr | None = Field(
        None, description="an unsigned integer or a string: the sequence of a stateful model "
                          "this request belongs to (Triton's sequence protocol; requests with "
                          "one id share the model's memory; 0 or \"\": none)")
    sequence_start: StrictBool | None = Field(
        None, description="true or false (true: begin the sequence afresh)")
    sequence_end: StrictBool | None = Field(
        None, description="true or false (true: the sequence's last request; its state is freed)")


class InferRequestBody(BaseModel):
    """The JSON header of an infer request (the whole body without binary data)."""

    model_config = ConfigDict(extra="allow")
    id: str | None = None
    parameters: InferParameters | None = None
    inputs: list[InputTensor] = Field(
        min_length=1, description="a non-empty list of tensors (name, shape, datatype, data)")
    outputs: list[RequestedOutput] | None = None


@dataclass(frozen=True)
class SequenceFlags:
    """A request's place in a sequence: its id, and whether it starts or ends it."""

    id: int | str
    start: bool = False
    end: bool = False


@dataclass(frozen=True)
class InferRequest:
    id: str | None
    inputs: dict[str, np.ndarray]
    outputs: list[tuple[str, bool]] | None  # requested (name, binary); None = all
    binary_default: bool
    sequence: SequenceFlags | None = None  # None: a request on its own


def sequence_flags(parameters: InferParameters | None) -> SequenceFlags | None:
    """The sequence parameters of a request (Triton's: ``sequence_id`` an unsigned integer or a
    string, 0 and "" meaning none; ``sequence_start``, ``sequence_end``), checked."""
    if parameters is None:
        return None
    sid = parameters.sequence_id
    start, end = bool(parameters.sequence_start), bool(parameters.sequence_end)
    if isinstance(sid, int) and not 0 <= sid < 2 ** 64:
        raise BadRequest(f"parameters.sequence_id: must be an unsigned 64-bit integer or a "
                         f"string, got {sid!r}")
    if isinstance(sid, str) and len(sid) > 256:
        raise BadRequest("parameters.sequence_id: a string id may hold at most 256 characters")
    if sid in (None, 0, ""):
        if start or end:
            raise BadRequest("parameters: sequence_start and sequence_end need a sequence_id")
        return None
    return SequenceFlags(sid, start, end)


def parse_request(body: bytes, header_length: str | None) -> InferRequest:
    """Decode an infer request body; BadRequest names the offending field."""
    head, binary = split_body(body, header_length)
    doc = validate(InferRequestBody, jsondoc.loads(head, "request"))
    inputs, offset = {}, 0
    for i, tensor in enumerate(doc.inputs):
        array, used = _tensor_array(tensor, f"inputs[{i}]", binary, offset)
        inputs[tensor.name] = array
        offset += used
    if offset != len(binary):
        raise BadRequest(f"request: {len(binary) - offset} bytes of binary data are not claimed "
                         f"by any input's binary_data_size")
    binary_default = bool(doc.parameters and doc.parameters.binary_data_output)
    outputs = None
    if doc.outputs is not None:
        outputs = []
        for out in doc.outputs:
            flag = out.parameters.binary_data if out.parameters else None
            outputs.append((out.name, binary_default if flag is None else flag))
    return InferRequest(doc.id, inputs, outputs, binary_default, sequence_flags(doc.parameters))


def split_body(body: bytes, header_length: str | None) -> tuple[bytes, bytes]:
    """(JSON header, binary data) of a body, as the header length says."""
    if header_length is None:
        return body, b""
    try:
        n = int(header_length)
    except ValueError:
        raise BadRequest(f"{HEADER_LENGTH}: must be an integer, got {header_length!r}") \
            from None
    if not 0 < n <= len(body):
        raise BadRequest(f"{HEADER_LENGTH}: {n} is outside the body's {len(body)} bytes")
    return body[:n], body[n:]


def _tensor_array(tensor: InputTensor, where: str, binary: bytes, offset: int
                  ) -> tuple[np.ndarray, int]:
    """(the tensor's values, bytes of binary data it used)."""
    shape, dtype = tensor.shape, DATATYPES[tensor.datatype]
    count = int(np.prod(shape, dtype=np.int64)) if shape else 1
    size = tensor.parameters.binary_data_size if tensor.parameters else None
    if size is not None:
        if offset + size > len(binary):
            raise BadRequest(f"{where}: binary_data_size {size} runs past the body's binary data")
        if size != count * dtype.itemsize:
            raise BadRequest(f"{where}: binary_data_size {size} does not match shape {shape} of "
                             f"{tensor.datatype} ({count * dtype.itemsize} bytes)")
        array = np.frombuffer(binary, dtype=dtype, count=count, offset=offset).reshape(shape)
        return array, size
    if "data" not in tensor.model_fields_set:
        raise BadRequest(f"{where}: has neither 'data' nor parameters.binary_data_size")
    try:
        array = np.asarray(tensor.data, dtype=dtype)
    except (TypeError, ValueError, OverflowError) as err:  # OverflowError: 300 as UINT8
        raise BadRequest(f"{where}.data: not {tensor.datatype} values ({err})") from None
    if array.size != count:
        raise BadRequest(f"{where}.data: {array.size} values do not fill shape {shape} "
                         f"({count} values)")
    return array.reshape(shape), 0


# -- the response body (JSON part), as the OpenAPI document declares it ---------------------
class OutputTensor(BaseModel):
    name: str
    datatype: Datatype
    shape: list[Count]
    data: list[Any] | None = Field(None, description="the values, flat, row-major; absent "
                                                     "when parameters.binary_data_size is set")
    parameters: TensorParameters | None = None


class InferResponseBody(BaseModel):
    """The JSON header of an infer response (followed by binary outputs when asked for)."""

    model_name: str
    model_version: str
    id: str | None = Field(None, description="the request's id, when it had one")
    parameters: dict[str, Any] | None = Field(
        None, description="within_training_range (judged by time steps) and memory_size (the "
                          "memory rows the batch ran with; absent for a model without memory)")
    outputs: list[OutputTensor]


# -- model metadata -------------------------------------------------------------------------
class TensorMetadata(BaseModel):
    name: str
    datatype: Datatype
    shape: list[int] = Field(description="dimensions; -1 where any size is accepted")


class ModelMetadata(BaseModel):
    """GET /v2/models/{name}: what the model takes and gives."""

    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]
    # The protocol's optional extension: what a client cannot see in the tensors (whether the
    # server keeps a sequence's memory between requests, the longest trained input).
    parameters: dict[str, Any] | None = None


def encode_response(model_name: str, model_version: str, request_id: str | None,
                    outputs: list[tuple[str, np.ndarray, bool]],
                    parameters: dict[str, Any] | None = None) -> tuple[bytes, int | None]:
    """Build a response body (an ``InferResponseBody``, then any binary outputs): (body, header
    length for the binary case or None); response ``parameters`` when given."""
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
        else:  # written by orjson straight from the array (float16 it cannot: as a list)
            flat = array.ravel()
            entry["data"] = flat.tolist() if array.dtype == np.float16 else flat
        doc["outputs"].append(entry)
    head = jsondoc.dumps(doc)
    if not blobs:
        return head, None
    return head + b"".join(blobs), len(head)


def model_metadata(runtime: ModelRuntime) -> dict[str, Any]:
    """The model's V2 metadata (``ModelMetadata``): its tensors' names, datatypes and shapes
    (-1: any size); the attention only where the model has memory."""
    t = runtime.fixed_length or -1
    rows = -1 if runtime.grows else runtime.fixed_memory_size
    shapes = {meta.PROBABILITIES: [-1, t, runtime.output_size],
              meta.ATTENTION: [-1, t, runtime.num_heads, rows]}
    return ModelMetadata(
        name=runtime.name, versions=[VERSION], platform="onnxruntime_onnx",
        inputs=[TensorMetadata(name=meta.INPUT_NAME, datatype="FP32",
                               shape=[-1, t, runtime.input_size])],
        outputs=[TensorMetadata(name=name, datatype="FP32", shape=shapes[name])
                 for name in runtime.parts.outputs],
        parameters=model_parameters(runtime),
    ).model_dump()


def model_parameters(runtime: ModelRuntime) -> dict[str, Any]:
    """The metadata's ``parameters``: ``stateful`` (requests may carry Triton's
    sequence_id/sequence_start/sequence_end and the server keeps the memory between them),
    ``memory`` (false: a model without memory, the LSTM baseline: no rows, no attention),
    ``memory_grows`` (the rows follow the input, or a ``memory_size`` input),
    ``max_trained_time_steps`` (longer inputs are answered, flagged outside the training
    range) and ``engine`` ("fused": the ntm_ops kernel; "standard": ONNX operators)."""
    return {"stateful": runtime.stateful, "memory": runtime.parts.memory,
            "memory_grows": runtime.grows,
            "max_trained_time_steps": runtime.task.max_trained_time_steps,
            "engine": runtime.engine}


def check_output_names(names: list[str], outputs: tuple[str, ...] = OUTPUT_NAMES) -> None:
    """BadRequest naming the first requested output not among ``outputs`` (a model's own:
    ``ModelRuntime.parts.outputs``; default: every output a model may have)."""
    unknown = [n for n in names if n not in outputs]
    if unknown:
        raise BadRequest(f"outputs: {unknown[0]!r} is not an output; outputs: "
                         f"{', '.join(outputs)}")
