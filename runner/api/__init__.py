"""nirunner's own gRPC API: the supervisor serves it, the CLI calls it."""
