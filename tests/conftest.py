"""Shared pytest setup: deterministic, single-threaded torch per worker, quiet progress bars."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("EGAIN_NO_PROGRESS", "1")
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
