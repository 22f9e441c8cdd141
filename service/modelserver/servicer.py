"""The OIP gRPC servicer: protobuf -> codec -> repository -> codec -> protobuf."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc

from service.modelserver.errors import InvalidInput, ModelServerError, status_for
from service.modelserver.repository import ModelDescription, ModelRepository
from service.oip import codec
from service.oip import grpc_inference_service_pb2_grpc as pb_grpc
from service.oip import open_inference_pb2 as pb

SERVER_NAME = "outrider-modelserver"
SERVER_EXTENSIONS = ("model_repository", "streaming")


def _metadata_response(description: ModelDescription) -> pb.ModelMetadataResponse:
    response = pb.ModelMetadataResponse(
        name=description.name, versions=description.versions, platform=description.platform
    )
    for spec in description.inputs:
        response.inputs.add(name=spec.name, datatype=spec.datatype, shape=spec.shape)
    for spec in description.outputs:
        response.outputs.add(name=spec.name, datatype=spec.datatype, shape=spec.shape)
    return response


class InferenceServicer(pb_grpc.GRPCInferenceServiceServicer):
    def __init__(self, repository: ModelRepository, *, server_version: str) -> None:
        self._repository = repository
        self._server_version = server_version

    async def ServerLive(  # noqa: N802 (gRPC method names)
        self, request: pb.ServerLiveRequest, context: grpc.aio.ServicerContext
    ) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(  # noqa: N802
        self, request: pb.ServerReadyRequest, context: grpc.aio.ServicerContext
    ) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=True)

    async def ModelReady(  # noqa: N802
        self, request: pb.ModelReadyRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelReadyResponse:
        return pb.ModelReadyResponse(ready=self._repository.is_ready(request.name, request.version))

    async def ServerMetadata(  # noqa: N802
        self, request: pb.ServerMetadataRequest, context: grpc.aio.ServicerContext
    ) -> pb.ServerMetadataResponse:
        return pb.ServerMetadataResponse(
            name=SERVER_NAME, version=self._server_version, extensions=SERVER_EXTENSIONS
        )

    async def ModelMetadata(  # noqa: N802
        self, request: pb.ModelMetadataRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelMetadataResponse:
        try:
            return _metadata_response(self._repository.describe(request.name, request.version))
        except ModelServerError as error:
            await context.abort(status_for(error), str(error))
            raise  # unreachable: abort raises

    async def ModelInfer(  # noqa: N802
        self, request: pb.ModelInferRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelInferResponse:
        try:
            return self._infer(request)
        except ModelServerError as error:
            await context.abort(status_for(error), str(error))
            raise

    async def ModelStreamInfer(  # noqa: N802
        self,
        request_iterator: AsyncIterator[pb.ModelInferRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[pb.ModelStreamInferResponse]:
        # Triton's convention: a failed request yields an error_message on the stream and
        # the stream goes on.
        async for request in request_iterator:
            try:
                yield pb.ModelStreamInferResponse(infer_response=self._infer(request))
            except ModelServerError as error:
                yield pb.ModelStreamInferResponse(error_message=str(error))

    def _infer(self, request: pb.ModelInferRequest) -> pb.ModelInferResponse:
        try:
            inputs = codec.decode_request_inputs(request)
        except codec.TensorError as error:
            raise InvalidInput(str(error)) from None
        requested = [output.name for output in request.outputs]
        outputs = self._repository.infer(
            request.model_name, request.model_version, inputs, requested
        )
        return codec.encode_response(
            self._repository.name,
            outputs,
            model_version=self._repository.version,
            request_id=request.id,
        )
