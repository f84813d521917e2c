"""Default addresses and names, apart from the clients that use them (no gRPC import)."""

CONTAINERD_ADDRESS = "/run/containerd/containerd.sock"
CONTAINERD_NAMESPACE = "nirunner"
API_SOCKET = "/run/nirunner/nirunner.sock"
