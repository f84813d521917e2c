"""The lab: a private containerd and network namespaces for tests, demo and benchmarks.

Nothing here touches the machine's own network namespace or its containerd.
"""
