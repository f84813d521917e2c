"""Shared pytest set-up: integration tests are marked by their folder."""

from __future__ import annotations

from pathlib import Path

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if Path(str(item.fspath)).parts[-2] == "integration" or "/integration/" in str(
            item.fspath
        ):
            item.add_marker(pytest.mark.integration)
