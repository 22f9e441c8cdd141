"""The model server's errors, and the one place they map to gRPC status codes."""

from __future__ import annotations

import grpc


class ModelServerError(Exception):
    """Base class: an error a client caused, with a message safe to send back."""

    code = grpc.StatusCode.INTERNAL


class ModelNotFound(ModelServerError):
    """No model with that name, or that model has no such version."""

    code = grpc.StatusCode.NOT_FOUND


class InvalidInput(ModelServerError):
    """The request's tensors do not fit the model's signature."""

    code = grpc.StatusCode.INVALID_ARGUMENT


def status_for(error: ModelServerError) -> grpc.StatusCode:
    return error.code
