"""Golden files: rendered text is compared byte for byte with tests/unit/render/golden/.

After an intended change, regenerate them with
    NIRUNNER_UPDATE_GOLDEN=1 .venv/bin/pytest tests/unit/render
and review the diff.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

GOLDEN = Path(__file__).parent / "golden"


@pytest.fixture
def golden() -> Callable[[str, str], None]:
    def check(name: str, text: str) -> None:
        path = GOLDEN / name
        if os.environ.get("NIRUNNER_UPDATE_GOLDEN") == "1":
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        assert path.exists(), f"{path} is missing; run with NIRUNNER_UPDATE_GOLDEN=1"
        assert text == path.read_text(), f"{name} differs from its golden file"

    return check
