"""The Open Inference Protocol (KServe V2) over gRPC: thin handlers over the data plane.

The service is ``inference.GRPCInferenceService``, the one KServe's V2 protocol defines and
Triton serves, from the code tritonclient generates for it (``tritonclient.grpc.service_pb2``):
``tritonclient.grpc`` (sync and aio) talks to it unmodified. Implemented: ``ServerLive``,
``ServerReady``, ``ServerMetadata``, ``ModelReady``, ``ModelMetadata``, ``ModelConfig`` and
``ModelInfer`` (typed ``contents`` or ``raw_input_contents``; Triton's ``sequence_id``,
``sequence_start`` and ``sequence_end`` parameters); the rest answer UNIMPLEMENTED.

Every request goes through the same ``DataPlane`` as HTTP (batching, memory growth, sequences),
errors keep their HTTP meaning (``grpc_code``), the metrics count them under protocol
``grpc``, the access log has a line per ModelInfer call (its ``x-request-id`` metadata echoed
or made), the API key is read from the ``authorization: Bearer KEY`` or ``x-api-key``
metadata, and the server drains in-flight calls when the process is told to stop.
"""

from __future__ import annotations

import asyncio

from http import HTTPStatus
from typing import Any

import grpc
import numpy as np
from tritonclient.grpc import model_config_pb2 as config_pb
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pb_grpc

import ntm
from ntm.contract import metadata as meta
from ntm.contract.errors import NtmError
from ntm.serving.access import REQUEST_ID, AccessLog, key_matches, request_id
from ntm.serving.errors import BadRequest, NotFound, ServingError
from ntm.serving.plane import DataPlane
from ntm.serving.v2codec import (DATATYPES, NUMPY_TO_V2, VERSION, InferParameters,
                                 check_output_names, model_metadata, sequence_flags)

SERVICE = "inference.GRPCInferenceService"
PUBLIC_METHODS = (f"/{SERVICE}/ServerLive", f"/{SERVICE}/ServerReady")
INFER_METHOD = f"/{SERVICE}/ModelInfer"

# An error's HTTP status -> the gRPC status of the same meaning (google.rpc.Code's mapping).
GRPC_CODES = {
    HTTPStatus.BAD_REQUEST: grpc.StatusCode.INVALID_ARGUMENT,
    HTTPStatus.UNAUTHORIZED: grpc.StatusCode.UNAUTHENTICATED,
    HTTPStatus.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    HTTPStatus.REQUEST_ENTITY_TOO_LARGE: grpc.StatusCode.RESOURCE_EXHAUSTED,
    HTTPStatus.UNPROCESSABLE_ENTITY: grpc.StatusCode.OUT_OF_RANGE,
    HTTPStatus.TOO_MANY_REQUESTS: grpc.StatusCode.RESOURCE_EXHAUSTED,
    HTTPStatus.INTERNAL_SERVER_ERROR: grpc.StatusCode.INTERNAL,
    HTTPStatus.SERVICE_UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
}

# V2 datatype -> the typed-contents field holding its values (FP16 and BYTES: raw only).
CONTENTS = {"BOOL": "bool_contents", "INT8": "int_contents", "INT16": "int_contents",
            "INT32": "int_contents", "INT64": "int64_contents", "UINT8": "uint_contents",
            "UINT16": "uint_contents", "UINT32": "uint_contents", "UINT64": "uint64_contents",
            "FP32": "fp32_contents", "FP64": "fp64_contents"}


def grpc_code(err: NtmError) -> grpc.StatusCode:
    """The gRPC status of an error (a ServingError by its HTTP status; any other NtmError is
    the caller's mistake)."""
    status = err.status if isinstance(err, ServingError) else HTTPStatus.BAD_REQUEST
    return GRPC_CODES.get(HTTPStatus(status), grpc.StatusCode.UNKNOWN)


def http_status(code: grpc.StatusCode) -> int:
    """The HTTP status a gRPC status is counted as in the metrics."""
    if code == grpc.StatusCode.OK:
        return 200
    return next((int(s) for s, c in GRPC_CODES.items() if c == code), 500)


# -- requests -------------------------------------------------------------------------------
def decode_inputs(request: pb.ModelInferRequest) -> dict[str, np.ndarray]:
    """{name: array} of a ModelInfer request; BadRequest naming the input (``inputs[i]``)."""
    if not request.inputs:
        raise BadRequest("inputs: a non-empty list of tensors is required")
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise BadRequest(f"raw_input_contents: {len(raw)} entries for {len(request.inputs)} "
                         f"inputs (one per input, in order)")
    arrays: dict[str, np.ndarray] = {}
    for i, tensor in enumerate(request.inputs):
        where = f"inputs[{i}]"
        if tensor.datatype not in DATATYPES:
            raise BadRequest(f"{where}.datatype: {tensor.datatype!r} is not a V2 datatype; "
                             f"one of {', '.join(DATATYPES)}")
        if any(d < 0 for d in tensor.shape):
            raise BadRequest(f"{where}.shape: dimensions must be >= 0, got {list(tensor.shape)}")
        if tensor.name in arrays:
            raise BadRequest(f"{where}.name: {tensor.name!r} is given twice")
        dtype, shape = DATATYPES[tensor.datatype], list(tensor.shape)
        count = int(np.prod(shape, dtype=np.int64)) if shape else 1
        if raw:
            if len(raw[i]) != count * dtype.itemsize:
                raise BadRequest(f"raw_input_contents[{i}]: {len(raw[i])} bytes do not match "
                                 f"{where}'s shape {shape} of {tensor.datatype} "
                                 f"({count * dtype.itemsize} bytes)")
            arrays[tensor.name] = np.frombuffer(raw[i], dtype=dtype).reshape(shape)
            continue
        field = CONTENTS.get(tensor.datatype)
        if field is None:
            raise BadRequest(f"{where}: {tensor.datatype} values travel in raw_input_contents")
        values = getattr(tensor.contents, field)
        if len(values) != count:
            raise BadRequest(f"{where}.contents.{field}: {len(values)} values do not fill "
                             f"shape {shape} ({count} values)")
        arrays[tensor.name] = np.asarray(values, dtype=dtype).reshape(shape)
    return arrays


def request_parameters(request: pb.ModelInferRequest) -> InferParameters:
    """Triton's sequence parameters of a request (``sequence_id`` an integer or a string,
    ``sequence_start`` and ``sequence_end`` bools), for the checks HTTP requests get too."""
    values: dict[str, Any] = {}
    for name, value in request.parameters.items():
        kind = value.WhichOneof("parameter_choice")
        values[name] = None if kind is None else getattr(value, kind)
    for flag in ("sequence_start", "sequence_end"):
        if values.get(flag) is not None and not isinstance(values[flag], bool):
            raise BadRequest(f"parameters.{flag}: must be a bool_param, got {values[flag]!r}")
    sid = values.get("sequence_id")
    if sid is not None and (isinstance(sid, (bool, float)) or not isinstance(sid, (int, str))):
        raise BadRequest(f"parameters.sequence_id: must be an integer or a string, got {sid!r}")
    return InferParameters.model_construct(sequence_id=sid,
                                           sequence_start=values.get("sequence_start"),
                                           sequence_end=values.get("sequence_end"))


def parameter(value: Any) -> pb.InferParameter:
    if isinstance(value, bool):
        return pb.InferParameter(bool_param=value)
    if isinstance(value, (int, np.integer)):
        return pb.InferParameter(int64_param=int(value))
    return pb.InferParameter(string_param=str(value))


# -- the service ----------------------------------------------------------------------------
class InferenceService(pb_grpc.GRPCInferenceServiceServicer):
    """``inference.GRPCInferenceService`` over ``plane`` (coroutines: grpc.aio)."""

    def __init__(self, plane: DataPlane):
        self.plane = plane
        self.log = AccessLog(plane.settings.access_log)

    async def _answer(self, context, work):
        """``work()``'s answer, or the call aborted with the error's gRPC status."""
        try:
            return work()
        except NtmError as err:
            await context.abort(grpc_code(err), str(err))

    async def ServerLive(self, request, context):
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request, context):
        return pb.ServerReadyResponse(ready=self.plane.ready)

    async def ServerMetadata(self, request, context):
        return pb.ServerMetadataResponse(name="ntm", version=ntm.__version__, extensions=[])

    def _runtime(self, name: str, version: str):
        runtime = self.plane.get(name)
        if version not in ("", VERSION):
            raise NotFound(f"version {version!r} of model {name!r} is not served; versions: "
                           f"{VERSION}")
        return runtime

    async def ModelReady(self, request, context):
        def ready():
            self._runtime(request.name, request.version)
            return pb.ModelReadyResponse(ready=self.plane.ready)
        return await self._answer(context, ready)

    async def ModelMetadata(self, request, context):
        def metadata():
            doc = model_metadata(self._runtime(request.name, request.version))
            tensors = lambda items: [pb.ModelMetadataResponse.TensorMetadata(  # noqa: E731
                name=t["name"], datatype=t["datatype"], shape=t["shape"]) for t in items]
            return pb.ModelMetadataResponse(
                name=doc["name"], versions=doc["versions"], platform=doc["platform"],
                inputs=tensors(doc["inputs"]), outputs=tensors(doc["outputs"]))
        return await self._answer(context, metadata)

    async def ModelConfig(self, request, context):
        def config():
            runtime = self._runtime(request.name, request.version)
            doc = model_metadata(runtime)

            def tensors(items, kind):
                return [kind(name=t["name"], dims=t["shape"][1:],  # without the batch axis
                             data_type=config_pb.DataType.Value("TYPE_" + t["datatype"]))
                        for t in items]

            return pb.ModelConfigResponse(config=config_pb.ModelConfig(
                name=runtime.name, platform=doc["platform"], backend="onnxruntime",
                max_batch_size=self.plane.settings.max_batch_size,
                input=tensors(doc["inputs"], config_pb.ModelInput),
                output=tensors(doc["outputs"], config_pb.ModelOutput)))
        return await self._answer(context, config)

    async def ModelInfer(self, request, context):
        name = request.model_name
        rid = request_id(next((v for k, v in context.invocation_metadata() or ()
                               if k == REQUEST_ID), None))
        # with the status, not as a header of its own: no extra write per call
        context.set_trailing_metadata(((REQUEST_ID, rid),))
        answered = None
        try:
            with self.plane.counting(name, "grpc") as answered:
                try:
                    response = await self._infer(request)
                except NtmError as err:
                    code = grpc_code(err)
                    answered.status = http_status(code)
                    await context.abort(code, str(err))
                answered.status = 200
                return response
        finally:
            if answered is not None:
                self.log.write("gRPC", INFER_METHOD, answered.status,
                               answered.seconds, rid, model=name)

    async def _infer(self, request) -> pb.ModelInferResponse:
        runtime = self._runtime(request.model_name, request.model_version)
        inputs = decode_inputs(request)
        sequence = sequence_flags(request_parameters(request))
        # none named: the model's own (the LSTM baseline has no attention)
        wanted = [o.name for o in request.outputs] or list(runtime.parts.outputs)
        check_output_names(wanted)
        tensors, parameters = await self.plane.infer(runtime.name, inputs, sequence,
                                                     attention=meta.ATTENTION in wanted)
        response = pb.ModelInferResponse(model_name=runtime.name, model_version=VERSION,
                                         id=request.id)
        for key, value in parameters.items():
            response.parameters[key].CopyFrom(parameter(value))
        for n in wanted:
            array = np.ascontiguousarray(tensors[n], dtype=tensors[n].dtype.newbyteorder("<"))
            response.outputs.add(name=n, datatype=NUMPY_TO_V2[array.dtype], shape=array.shape)
            response.raw_output_contents.append(array.tobytes())
        return response


class ApiKeyInterceptor(grpc.aio.ServerInterceptor):
    """Every method but the health checks needs the key, in the ``authorization: Bearer KEY``
    or ``x-api-key: KEY`` metadata (compared in constant time), as on HTTP."""

    def __init__(self, api_key: str):
        self.key = api_key.encode()

    async def intercept_service(self, continuation, details):
        if details.method in PUBLIC_METHODS:
            return await continuation(details)
        metadata = {k.lower(): v for k, v in (details.invocation_metadata or ())}
        if key_matches(self.key, metadata.get("x-api-key"), metadata.get("authorization")):
            return await continuation(details)

        async def refuse(request, context):
            await context.abort(grpc.StatusCode.UNAUTHENTICATED,
                                "missing or wrong API key: send the metadata "
                                "'authorization: Bearer KEY' or 'x-api-key: KEY'")
        return grpc.unary_unary_rpc_method_handler(refuse)


LINGER_S = 0.5  # after the gRPC server stops, before the process may exit (GrpcServer.stop)


class GrpcServer:
    """The gRPC endpoint of one server process, on the event loop that runs the HTTP app."""

    def __init__(self, plane: DataPlane, host: str, port: int):
        settings = plane.settings
        interceptors = [ApiKeyInterceptor(settings.api_key)] if settings.api_key else []
        limit = settings.max_body_bytes
        self.server = grpc.aio.server(interceptors=interceptors, options=[
            ("grpc.max_receive_message_length", limit),
            ("grpc.max_send_message_length", -1),
            ("grpc.so_reuseport", 1)])  # --workers: every process listens on the port
        pb_grpc.add_GRPCInferenceServiceServicer_to_server(InferenceService(plane), self.server)
        shown = f"[{host}]" if ":" in host else host
        self.address = f"{shown}:{port}"
        try:
            self.port = self.server.add_insecure_port(self.address)
        except RuntimeError as err:
            raise ServingError(f"cannot bind gRPC {self.address}: {err}",
                               HTTPStatus.INTERNAL_SERVER_ERROR) from None
        if not self.port:
            raise ServingError(f"cannot bind gRPC {self.address}",
                               HTTPStatus.INTERNAL_SERVER_ERROR)

    async def start(self) -> None:
        await self.server.start()

    async def stop(self, grace: float) -> None:
        """Refuse new calls; give those in flight ``grace`` seconds to finish; then linger a
        moment before the process may exit. The last answers can still be in flight on the
        connection when the server stops: closing the socket then, with the client's frames
        (its GOAWAY reply, window updates) unread, makes the kernel reset the connection, and
        the client loses an answer it was sent."""
        await self.server.stop(grace)
        await asyncio.sleep(LINGER_S)
