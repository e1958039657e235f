"""Test-wide settings: offline, one torch thread per worker, checkpoints in a throwaway folder."""

from __future__ import annotations

import os

import pytest
import torch
from hypothesis import settings

# The property suite (tests/test_properties.py): reproducible and bounded in the normal run;
# HYPOTHESIS_PROFILE=fuzz draws ten times as many fresh random examples.
settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
settings.register_profile("fuzz", deadline=None, max_examples=1000, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

os.environ["RBL_OFFLINE"] = "1"  # never probe the network from tests
torch.set_num_threads(1)  # pytest-xdist runs one worker per core


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test sees no RBL_DATA and a session-wide temporary checkpoint folder."""
    monkeypatch.delenv("RBL_DATA", raising=False)
    monkeypatch.setenv("RBL_CHECKPOINTS", str(tmp_path_factory.getbasetemp() / "checkpoints"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.getbasetemp() / "cache"))
