"""Fleets: a device's NIs from etcd v3, its status back to etcd, offline first.

    etcd.py     the etcd client (our own gRPC stubs, TLS, failover, watch, leases)
    keys.py     the key layout under the fleet prefix, and names (pure)
    follow.py   follow a prefix: list, watch, resume, relist (over etcd.py)
    report.py   the status documents a device writes (pure)
    source.py   FleetSource: drives the supervisor from its device's prefix
    rbac.py     roles and users: a device reads its desired state, writes its status
    wiring.py   the Target over a Supervisor, and start_source() for the daemon
"""
