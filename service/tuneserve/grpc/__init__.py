"""The gRPC transport: servicers (thin), converters (protobuf <-> typed records) and the interceptor that maps
errors to status codes and records RPC metrics."""
