"""A throwaway certificate authority for lab etcd clusters (openssl, EC P-256, 2 days).

    ca = LabCA(Path("/run/nrl1/pki")); ca.create()
    member = ca.issue("m1", "m1", ips=["198.18.0.11"])     # server + peer + client
    device = ca.issue("dev-a", "device-a", server=False)   # CN = the etcd user

Keys are written 0600; the directory is the lab's and is removed with it.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

DAYS = "2"
_EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


@dataclass(frozen=True)
class CertFiles:
    cert: str
    key: str


def _openssl(*args: str) -> None:
    res = subprocess.run(["openssl", *args], capture_output=True, text=True, timeout=30)
    if res.returncode != 0:
        raise RuntimeError(f"openssl {args[0]}: {res.stderr.strip()}")


@dataclass(frozen=True)
class LabCA:
    dir: Path

    @property
    def ca(self) -> str:
        return str(self.dir / "ca.pem")

    def create(self, name: str = "nirunner lab CA") -> None:
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        _openssl("req", "-x509", "-new", *_EC, "-keyout", str(self.dir / "ca.key"),
                 "-out", self.ca, "-days", DAYS, "-subj", f"/CN={name}",
                 "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        os.chmod(self.dir / "ca.key", 0o600)

    def issue(self, name: str, cn: str, ips: Sequence[str] = (), dns: Sequence[str] = (),
              server: bool = True) -> CertFiles:
        """A certificate for `cn` signed by the CA; server ones carry the given SANs."""
        key, csr = self.dir / f"{name}.key", self.dir / f"{name}.csr"
        cert, ext = self.dir / f"{name}.pem", self.dir / f"{name}.ext"
        _openssl("req", "-new", *_EC, "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={cn}")
        os.chmod(key, 0o600)
        usage = "serverAuth,clientAuth" if server else "clientAuth"
        lines = ["basicConstraints=CA:FALSE", "keyUsage=critical,digitalSignature",
                 f"extendedKeyUsage={usage}"]
        sans = [f"IP:{ip}" for ip in ips] + [f"DNS:{d}" for d in dns]
        if sans:
            lines.append("subjectAltName=" + ",".join(sans))
        ext.write_text("\n".join(lines) + "\n")
        _openssl("x509", "-req", "-in", str(csr), "-CA", self.ca,
                 "-CAkey", str(self.dir / "ca.key"), "-CAcreateserial", "-out", str(cert),
                 "-days", DAYS, "-extfile", str(ext))
        csr.unlink()
        ext.unlink()
        return CertFiles(str(cert), str(key))
