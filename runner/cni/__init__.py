"""nirunner-cni: the CNI plugin that joins a container runtime's workloads to an NI.

The plugin is a thin client: it parses the runtime's request (environment and
stdin, `spec`), asks the supervisor (`api`), and prints the CNI result or error
(`plugin`). The supervisor does the plugging, the DHCP lease and the port maps.
"""
