"""Shared fixtures. Others may append theirs below.

Hub fixtures: ``hf_home`` isolates huggingface_hub (temporary HF_HOME, no token, no
telemetry, online); ``hub`` adds a Hub-compatible server on 127.0.0.1 (tests/hub_server.py)
and points ``HF_ENDPOINT`` at it.

huggingface_hub reads its environment variables once, at import time, into
``huggingface_hub.constants``; by the time a fixture runs it is usually imported already
(timm imports it). So the fixtures set both: the environment (read by mv2d3d at call time and
by subprocesses such as ``python -m mv2d3d push``) and the ``constants`` attributes the client
consults at call time (cache folder, offline flag, Xet switch, token path).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # tests/hub_server.py importable as `hub_server`
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_DISABLE_UPDATE_CHECK", "1")


@pytest.fixture
def hf_home(tmp_path, monkeypatch):
    """A fresh, empty huggingface_hub home; online, no token, classic (non-Xet) LFS uploads."""
    from huggingface_hub import constants

    home = tmp_path / "hf_home"
    home.mkdir()
    env = {
        "HF_HOME": str(home),
        "HF_HUB_CACHE": str(home / "hub"),
        "HF_HUB_DISABLE_XET": "1",  # the test server speaks LFS, not the Xet CAS protocol
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    for k in ("HF_TOKEN", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_ENDPOINT", "HUGGINGFACE_HUB_CACHE"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setattr(constants, "HF_HOME", str(home))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(home / "hub"))
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(home / "token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(home / "stored_tokens"))
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    # With telemetry on, building request headers looks up an "agent harness" registry at
    # constants.ENDPOINT (huggingface.co): keep it off so that no test ever leaves 127.0.0.1.
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_TELEMETRY", True)
    return home


def set_offline(monkeypatch, offline: bool = True) -> None:
    """Switch huggingface_hub's offline mode the way a user does (HF_HUB_OFFLINE) and in the
    already-imported client's constants."""
    from huggingface_hub import constants

    if offline:
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    else:
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", offline)


@pytest.fixture
def hub(hf_home, monkeypatch):
    """A running Hub-compatible server (LFS uploads on); HF_ENDPOINT points at it."""
    from hub_server import HubServer

    server = HubServer(lfs=True).start()
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    try:
        yield server
    finally:
        server.stop()
