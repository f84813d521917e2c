"""Whether the kernel can do ESP itself (XFRM with esp4), for VPN NIs' `ipsecBackend: auto`."""

from __future__ import annotations

import functools
import subprocess

# An ESP state with throwaway keys, added in a network namespace of its own that
# vanishes with the command: the kernel refuses it ("Requested type not found")
# when it has XFRM but no ESP, as on kernels built without CONFIG_INET_ESP.
_PROBE = ["unshare", "--net", "ip", "xfrm", "state", "add", "src", "192.0.2.1",
          "dst", "192.0.2.2", "proto", "esp", "spi", "0x100", "mode", "tunnel",
          "enc", "cbc(aes)", "0x" + "00" * 16, "auth", "hmac(sha256)", "0x" + "00" * 32]


@functools.cache
def kernel_esp() -> bool:
    """True if this kernel accepts an ESP SA (checked once per process)."""
    try:
        done = subprocess.run(_PROBE, capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0
