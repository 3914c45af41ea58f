"""The gRPC face of the agent: decode the request, check it, hand it to the agent, encode the result.

Every failure leaves as the status code the Edge Agent API documents: AgentError subclasses carry
theirs; anything unexpected is logged with its traceback and returned as INTERNAL.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from concurrent.futures import CancelledError
from typing import Any

import grpc
from google.protobuf import message_factory, unknown_fields
from google.protobuf.message import DecodeError

from edge_agent.agent import Agent
from edge_agent.errors import AgentError, InvalidArgument
from edge_agent.generated import edge_agent_pb2 as pb
from edge_agent.generated import edge_agent_pb2_grpc as pb_grpc
from edge_agent.models.results import Detection
from edge_agent.models.slot import ModelInfo
from edge_agent.serving.image_input import check_dimensions, image_from_bytes
from edge_agent.serving.peer_relay import Caller
from edge_agent.serving.shared_memory import SegmentRef, check_mask_target, read_image, write_mask

log = logging.getLogger(__name__)
# An AWS workshop copy of the proto puts AnomalyMaskParams.shared_memory_handle at tag 3 instead of 2.
ALTERNATE_MASK_HANDLE_TAG = 3
LENGTH_DELIMITED = 2
MASK_FIELD = "anomaly_mask_params.shared_memory_handle"
# Trailing metadata on every DetectAnomalies reply: milliseconds spent in the compiled model, so a client
# (benchmarks/) can tell the agent's own overhead from inference. AWS clients ignore unknown trailers.
INFERENCE_TIME_TRAILER = "lookout-edge-inference-ms"
LOGGED_MESSAGE_CHARS = 500  # a client's strings reach the log only this far (they can be megabytes long)
SERVER_FAULTS = ("INTERNAL", "UNKNOWN", "UNAVAILABLE")


def _rpc(method: Callable) -> Callable:
    @functools.wraps(method)
    def wrapper(self: EdgeAgentServicer, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return method(self, request, context)
        except AgentError as exc:
            code, message = grpc.StatusCode[exc.code], str(exc)
            log.log(
                logging.ERROR if exc.code in SERVER_FAULTS else logging.DEBUG,  # a client's mistake is its own
                "%s: %s: %s",
                method.__name__,
                exc.code,
                message[:LOGGED_MESSAGE_CHARS],
            )
        except CancelledError:
            code, message = grpc.StatusCode.CANCELLED, "the call was cancelled before the model ran it"
        except Exception as exc:
            log.exception("%s failed", method.__name__)
            code, message = grpc.StatusCode.INTERNAL, f"internal agent error: {type(exc).__name__}: {exc}"
        context.abort(code, message)

    return wrapper


def _segment(handle: pb.SharedMemoryHandle) -> SegmentRef:
    return SegmentRef(name=handle.name, size=handle.size, offset=handle.offset)


def _mask_handle(params: pb.AnomalyMaskParams) -> pb.SharedMemoryHandle | None:
    """The caller's mask segment, at tag 2 (AWS's documented proto) or tag 3 (the workshop proto)."""
    if params.HasField("shared_memory_handle"):
        return params.shared_memory_handle
    for field in unknown_fields.UnknownFieldSet(params):
        if field.field_number == ALTERNATE_MASK_HANDLE_TAG and field.wire_type == LENGTH_DELIMITED:
            try:
                return pb.SharedMemoryHandle.FromString(field.data)
            except DecodeError:
                raise InvalidArgument(
                    f"{MASK_FIELD} (tag {ALTERNATE_MASK_HANDLE_TAG}) is not a SharedMemoryHandle"
                ) from None
    return None


def _model_fields(info: ModelInfo) -> dict[str, Any]:
    return {
        "model_component": info.name,
        "lookout_vision_model_arn": info.model_arn,
        "status": int(info.status),
        "status_message": info.message,
    }


class EdgeAgentServicer(pb_grpc.EdgeAgentServicer):
    """`callers` names the process behind a call's peer (peer_relay.PeerRelay.caller): shared-memory segments
    are opened only as that caller could open them."""

    def __init__(self, agent: Agent, callers: Callable[[str], Caller | None] = lambda _: None) -> None:
        self.agent = agent
        self._callers = callers

    @_rpc
    def DetectAnomalies(self, request: pb.DetectAnomaliesRequest, context: grpc.ServicerContext):
        bitmap = request.bitmap
        caller = self._callers(context.peer())
        check_dimensions(bitmap.width, bitmap.height)
        source = bitmap.WhichOneof("data")
        if source is None:
            raise InvalidArgument("bitmap carries no image: set bitmap.byte_data or bitmap.shared_memory_handle")
        if source == "byte_data":
            image = image_from_bytes(bitmap.width, bitmap.height, bitmap.byte_data)
        else:
            image = read_image(
                _segment(bitmap.shared_memory_handle),
                "bitmap.shared_memory_handle",
                bitmap.width,
                bitmap.height,
                caller,
            )
        mask_handle = _mask_handle(request.anomaly_mask_params)
        if mask_handle is not None:
            check_mask_target(_segment(mask_handle), MASK_FIELD, bitmap.width, bitmap.height, caller)
        future = self.agent.submit(request.model_component, image, with_mask=True)
        context.add_callback(future.cancel)
        detection = future.result()
        result = self._result(detection)
        if detection.mask is not None:
            result.anomaly_mask.width, result.anomaly_mask.height = bitmap.width, bitmap.height
            if mask_handle is None:
                result.anomaly_mask.byte_data = detection.mask.tobytes()
            else:
                ref = _segment(mask_handle)
                write_mask(ref, MASK_FIELD, detection.mask, caller)
                result.anomaly_mask.shared_memory_handle.CopyFrom(
                    pb.SharedMemoryHandle(name=ref.name, size=detection.mask.nbytes, offset=ref.offset)
                )
        context.set_trailing_metadata(((INFERENCE_TIME_TRAILER, f"{detection.inference_ms:.3f}"),))
        return pb.DetectAnomaliesResponse(detect_anomaly_result=result)

    @staticmethod
    def _result(detection: Detection) -> pb.DetectAnomalyResult:
        return pb.DetectAnomalyResult(
            is_anomalous=detection.is_anomalous,
            confidence=detection.confidence,
            anomaly_score=detection.anomaly_score,
            anomaly_threshold=detection.anomaly_threshold,
            anomalies=[
                pb.Anomaly(
                    name=a.name, pixel_anomaly=pb.PixelAnomaly(total_percentage_area=a.fraction, hex_color=a.hex_color)
                )
                for a in detection.anomalies
            ],
        )

    @_rpc
    def StartModel(self, request: pb.StartModelRequest, context: grpc.ServicerContext):
        return pb.StartModelResponse(status=int(self.agent.start(request.model_component)))

    @_rpc
    def StopModel(self, request: pb.StopModelRequest, context: grpc.ServicerContext):
        return pb.StopModelResponse(status=int(self.agent.stop(request.model_component)))

    @_rpc
    def ListModels(self, request: pb.ListModelsRequest, context: grpc.ServicerContext):
        return pb.ListModelsResponse(models=[pb.ModelMetadata(**_model_fields(i)) for i in self.agent.list_models()])

    @_rpc
    def DescribeModel(self, request: pb.DescribeModelRequest, context: grpc.ServicerContext):
        info = self.agent.describe(request.model_component)
        return pb.DescribeModelResponse(model_description=pb.ModelDescription(**_model_fields(info)))


def _decoding(handler: Callable, request_type: type) -> Callable:
    def handle(raw: bytes, context: grpc.ServicerContext) -> Any:
        try:
            request = request_type.FromString(raw)
        except DecodeError as exc:
            log.debug("undecodable %s (%d bytes): %s", request_type.DESCRIPTOR.name, len(raw), exc)
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"the request is not a valid {request_type.DESCRIPTOR.full_name} message ({exc}); build it with "
                "stubs generated from edge-agent.proto",
            )
        return handler(request, context)

    return handle


def add_to_server(servicer: EdgeAgentServicer, server: grpc.Server) -> None:
    """Register the Edge Agent service, every method from the proto's service descriptor, with requests decoded
    here: bytes that are not the method's message get INVALID_ARGUMENT (gRPC's own decoding would answer
    INTERNAL and log a traceback for each)."""
    service = pb.DESCRIPTOR.services_by_name["EdgeAgent"]
    handlers = {
        method.name: grpc.unary_unary_rpc_method_handler(
            _decoding(getattr(servicer, method.name), message_factory.GetMessageClass(method.input_type)),
            request_deserializer=None,
            response_serializer=message_factory.GetMessageClass(method.output_type).SerializeToString,
        )
        for method in service.methods
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service.full_name, handlers),))
