"""The data plane: a byte relay toward the model server with a passive HTTP/2 + gRPC tap."""
