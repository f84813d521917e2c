"""The supervisor: desired state on disk, reconcile, NI task restarts, the API."""
