"""Fixtures: grid files written into the test's temporary folder."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from helpers import TINY_GRID


@pytest.fixture
def write_grid(tmp_path: Path):
    """write_grid(text) -> path of a grid file holding that YAML (dedented)."""

    def write(text: str, name: str = "grid.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text))
        return path

    return write


@pytest.fixture
def tiny_grid(write_grid) -> Path:
    return write_grid(TINY_GRID)
