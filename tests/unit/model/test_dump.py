from __future__ import annotations

from pathlib import Path

import yaml

from runner.model.dump import to_manifest
from runner.model.manifest import load_documents, load_paths

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


def test_examples_round_trip() -> None:
    for ni in load_paths([str(EXAMPLES), str(EXAMPLES / "apps")]):
        again = load_documents(yaml.safe_dump(to_manifest(ni)))
        assert again == [ni]


def test_minimal_round_trip_keeps_defaults() -> None:
    text = """
apiVersion: nirunner/v1
kind: NetworkInstance
metadata: {name: quiet}
spec: {type: local, subnet: 10.9.0.0/24, dhcp: {leaseTime: 150s}}
"""
    (ni,) = load_documents(text)
    assert load_documents(yaml.safe_dump(to_manifest(ni))) == [ni]
    assert to_manifest(ni)["spec"]["dhcp"]["leaseTime"] == "150s"
    assert "uplink" not in to_manifest(ni)["spec"]
