"""Publishing and fetching through the real huggingface_hub client against tests/hub_server.py
(127.0.0.1, temporary HF_HOME; nothing touches the internet)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import mv2d3d
from mv2d3d.errors import HubError, OfflineCacheMissError, UnknownModelError, WeightsIntegrityError
from mv2d3d.hub import push_to_hub, registry, save_pretrained
from mv2d3d.hub.registry import ZooEntry

from conftest import set_offline
from test_hub_local import TINY, assert_same_state, cloud, tiny_classifier, tiny_encoder

# huggingface_hub's own LFS upload (PUT with a file object) triggers this httpx2 deprecation.
pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=<...>' to upload raw bytes:DeprecationWarning")


def _outputs_equal(a, b) -> None:
    with torch.inference_mode():
        x, y = a(cloud()), b(cloud())
    assert torch.equal(x.global_features, y.global_features)
    assert torch.equal(x.patch_features, y.patch_features)


@pytest.mark.parametrize("lfs", [True, False], ids=["lfs-upload", "regular-upload"])
def test_push_then_load_from_empty_cache_bit_identical(hub, hf_home, lfs):
    hub.state.lfs = lfs
    enc = tiny_encoder(11)
    url = push_to_hub(enc, "user/enc", commit_message="first")
    assert url.endswith(hub.head("user/enc")) and url.startswith(hub.url)
    # one commit on top of the repo's initial commit, holding the three files
    files = hub.state.repos["user/enc"].resolve("main").files
    assert set(files) == {".gitattributes", "config.json", "model.safetensors", "README.md"}
    assert files["model.safetensors"].lfs is lfs
    commits = [m for m, p, _ in hub.state.requests if p.endswith("/commit/main")]
    assert len(commits) == 1
    if lfs:
        assert any(p.startswith("/_lfs/") for p in hub.paths_requested("PUT"))
    assert not (hf_home / "hub" / "models--user--enc").exists()  # the cache starts empty

    back = mv2d3d.load("user/enc")
    assert isinstance(back, mv2d3d.PointEncoder) and not back.training
    assert_same_state(enc, back)
    _outputs_equal(enc, back)
    # config.json is fetched before the weights; every call says it is mv2d3d
    gets = [p for p in hub.paths_requested("GET") if "/resolve/" in p]
    assert gets[0].endswith("/config.json") and gets[1].endswith("/model.safetensors")
    # every Hub call (API, resolve) says it is mv2d3d; only the raw LFS object PUTs carry no headers
    uas = [(p, ua) for _, p, ua in hub.state.requests if not p.startswith("/_lfs/")]
    assert uas and all(f"mv2d3d/{mv2d3d.__version__}" in ua for _, ua in uas), uas
    card = hub.file_bytes("user/enc", "README.md").decode()
    assert 'mv2d3d.load("user/enc")' in card and "library_name: mv2d3d" in card


def test_pinned_revision_after_newer_push(hub):
    v1, v2 = tiny_encoder(1), tiny_encoder(2)
    push_to_hub(v1, "user/enc")
    sha1 = hub.head("user/enc")
    push_to_hub(v2, "user/enc")
    assert hub.head("user/enc") != sha1
    assert_same_state(v1, mv2d3d.load("user/enc", revision=sha1))
    assert_same_state(v2, mv2d3d.load("user/enc"))
    # a branch works as a revision too
    push_to_hub(v1, "user/enc", revision="v1-branch")
    assert_same_state(v1, mv2d3d.load("user/enc", revision="v1-branch"))
    assert_same_state(v2, mv2d3d.load("user/enc", revision="main"))


def test_offline_with_warm_cache_loads_without_server(hub, monkeypatch):
    enc = tiny_encoder(3)
    push_to_hub(enc, "user/enc")
    folder = mv2d3d.download("user/enc")
    assert sorted(os.listdir(folder)) == ["config.json", "model.safetensors"]
    hub.stop()  # the server is gone
    set_offline(monkeypatch)
    back = mv2d3d.load("user/enc")
    assert_same_state(enc, back)
    set_offline(monkeypatch, False)
    # local_files_only works the same, and an unreachable Hub falls back to the cache as well
    assert_same_state(enc, mv2d3d.load("user/enc", local_files_only=True))
    assert_same_state(enc, mv2d3d.load("user/enc"))


def test_offline_with_cold_cache_is_actionable(hub, monkeypatch):
    push_to_hub(tiny_encoder(), "user/enc")
    set_offline(monkeypatch)
    with pytest.raises(OfflineCacheMissError) as e:
        mv2d3d.load("user/enc")
    msg = str(e.value)
    for needle in ("HF_HUB_OFFLINE", "local_files_only", "cache_dir", "mv2d3d.download('user/enc')"):
        assert needle in msg, needle
    set_offline(monkeypatch, False)
    with pytest.raises(OfflineCacheMissError, match="local_files_only"):
        mv2d3d.load("user/enc", local_files_only=True)
    assert isinstance(e.value, FileNotFoundError)


def test_unreachable_hub_with_cold_cache(hub, monkeypatch):
    push_to_hub(tiny_encoder(), "user/enc")
    hub.stop()
    with pytest.raises(HubError) as e:
        mv2d3d.load("user/enc")
    msg = str(e.value)
    assert "could not be reached" in msg and "HF_HUB_OFFLINE" in msg and "download" in msg


def test_server_404_and_500(hub):
    push_to_hub(tiny_encoder(), "user/enc")
    with pytest.raises(UnknownModelError, match="no repository 'user/missing'"):
        mv2d3d.load("user/missing")
    with pytest.raises(HubError, match="Revision 'v9' does not exist"):
        mv2d3d.load("user/enc", revision="v9")
    hub.inject(500, match="/api/models/user/enc")
    with pytest.raises(HubError, match="HTTP 500") as e:
        mv2d3d.load("user/enc")
    assert "try again later" in str(e.value)
    hub.clear_injections()
    hub.inject(404, match="/api/models/user/enc")
    with pytest.raises(UnknownModelError):
        mv2d3d.load("user/enc")


def test_repo_without_model_files(hub):
    from huggingface_hub import HfApi

    HfApi(endpoint=hub.url).create_repo("user/empty")
    with pytest.raises(HubError, match="no config.json"):
        mv2d3d.load("user/empty")


def test_corrupted_hub_file_is_caught(hub):
    push_to_hub(tiny_encoder(), "user/enc")
    data = hub.file_bytes("user/enc", "model.safetensors")
    hub.set_file_bytes("user/enc", "model.safetensors", data[: len(data) // 3])
    with pytest.raises(WeightsIntegrityError, match="truncated or corrupt"):
        mv2d3d.load("user/enc")


@pytest.fixture
def zoo_on_hub(hub, monkeypatch):
    """A zoo entry (monkeypatched into the registry) whose weights live on the loopback Hub."""
    enc = tiny_encoder(21)
    push_to_hub(enc, "mv2d3d/test-zoo", template="mv-m3ae-tiny")
    commit = hub.head("mv2d3d/test-zoo")
    pins = {n: hashlib.sha256(hub.file_bytes("mv2d3d/test-zoo", n)).hexdigest() for n in ("config.json", "model.safetensors")}
    entry = ZooEntry(name="test-hub-zoo", config=TINY, repo_id="mv2d3d/test-zoo", revision=commit, sha256=pins)
    monkeypatch.setitem(registry._ZOO, entry.name, entry)
    return enc, entry


def test_zoo_entry_from_hub_verified(zoo_on_hub, hub):
    enc, entry = zoo_on_hub
    push_to_hub(tiny_encoder(99), "mv2d3d/test-zoo")  # a newer push does not change the pinned entry
    assert_same_state(enc, mv2d3d.load(entry.name))
    card = hub.file_bytes("mv2d3d/test-zoo", "README.md", rev=entry.revision).decode()
    assert "mv-m3ae-tiny" in card  # the entry's own template


def test_zoo_entry_tampered_on_server_fails_hash_check(zoo_on_hub, hub):
    enc, entry = zoo_on_hub
    other = tiny_encoder(22)
    with __import__("tempfile").TemporaryDirectory() as tmp:
        save_pretrained(other, Path(tmp) / "x")
        evil = (Path(tmp) / "x" / "model.safetensors").read_bytes()
    hub.set_file_bytes("mv2d3d/test-zoo", "model.safetensors", evil, rev=entry.revision)
    with pytest.raises(WeightsIntegrityError, match="sha256"):
        mv2d3d.load(entry.name)


def test_zoo_entry_tampered_in_cache_fails_hash_check(zoo_on_hub):
    enc, entry = zoo_on_hub
    folder = Path(mv2d3d.download(entry.name))
    blob = (folder / "model.safetensors").resolve()
    data = bytearray(blob.read_bytes())
    data[-1] ^= 0xFF  # flip bits in the last tensor value: still a valid safetensors file
    blob.write_bytes(bytes(data))
    with pytest.raises(WeightsIntegrityError, match="sha256"):
        mv2d3d.load(entry.name)


def test_classifier_push_and_from_pretrained(hub, caplog):
    clf = tiny_classifier(5)
    push_to_hub(clf, "user/clf", base_model="user/enc")
    back = mv2d3d.PointClassifier.from_pretrained("user/clf")
    assert_same_state(clf, back)
    assert back.class_names == list(clf.config.class_names)
    card = hub.file_bytes("user/clf", "README.md").decode()
    assert "base_model: user/enc" in card and "classification" in card
    # a new classifier on the encoder of a Hub encoder
    push_to_hub(tiny_encoder(6), "user/enc")
    new = mv2d3d.PointClassifier.from_pretrained("user/enc", num_classes=2)
    assert new.config.base_model == "user/enc"


def _cli(args, env_extra, cwd):
    env = {k: v for k, v in os.environ.items()}
    env.update(env_extra)
    env["OMP_NUM_THREADS"] = "1"
    return subprocess.run([sys.executable, "-m", "mv2d3d", *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=300)


def test_cli_push_subprocess(hub, hf_home, tmp_path):
    """`python -m mv2d3d push` in a real subprocess, configured only through the environment."""
    clf = tiny_classifier(8)
    save_pretrained(clf, tmp_path / "my-clf")
    hub.state.token = "s3cret"
    env = {"HF_ENDPOINT": hub.url, "HF_HOME": str(hf_home), "HF_HUB_DISABLE_XET": "1"}
    r = _cli(["push", "my-clf", "user/cli-clf", "--message", "from the shell", "--token", "s3cret", "--private"], env, tmp_path)
    assert r.returncode == 0, r.stderr
    assert "user/cli-clf" in r.stdout
    repo = hub.state.repos["user/cli-clf"]
    assert repo.private and repo.resolve("main").message == "from the shell"
    card = hub.file_bytes("user/cli-clf", "README.md").decode()
    assert 'PointClassifier.from_pretrained("user/cli-clf")' in card  # snippet re-pointed at the repo
    back = mv2d3d.PointClassifier.from_pretrained("user/cli-clf", token="s3cret")
    assert_same_state(clf, back)


def test_cli_push_refusals_and_download(hub, tmp_path, monkeypatch, capsys):
    """The same verbs in-process (cheaper than more subprocesses): no token, broken folder, download."""
    from safetensors.torch import load_file, save_file

    from mv2d3d.cli import main

    save_pretrained(tiny_classifier(8), tmp_path / "my-clf")
    hub.state.token = "s3cret"
    assert main(["push", str(tmp_path / "my-clf"), "user/cli-clf"]) == 1
    err = capsys.readouterr().err
    assert "401" in err and "token" in err

    w = tmp_path / "my-clf" / "model.safetensors"
    t = load_file(str(w))
    t.pop("head.8.weight")
    save_file(t, str(w))
    n_before = len(hub.state.requests)
    assert main(["push", str(tmp_path / "my-clf"), "user/broken", "--token", "s3cret"]) == 1
    err = capsys.readouterr().err
    assert "head.8.weight" in err and "missing" in err
    assert len(hub.state.requests) == n_before and "user/broken" not in hub.state.repos

    hub.state.token = None
    push_to_hub(tiny_encoder(4), "user/enc")
    assert main(["download", "user/enc"]) == 0
    folder = Path(capsys.readouterr().out.strip().splitlines()[-1])
    assert (folder / "model.safetensors").is_file()
    set_offline(monkeypatch)
    assert_same_state(tiny_encoder(4), mv2d3d.load("user/enc"))


def test_create_pr_leaves_main_untouched(hub):
    push_to_hub(tiny_encoder(1), "user/enc")
    main_before = hub.head("user/enc")
    url = push_to_hub(tiny_encoder(2), "user/enc", create_pr=True)
    assert url == f"{hub.url}/user/enc/discussions/1"
    assert hub.head("user/enc") == main_before
    assert_same_state(tiny_encoder(2), mv2d3d.load("user/enc", revision="refs/pr/1"))
    assert_same_state(tiny_encoder(1), mv2d3d.load("user/enc"))


def test_corrupted_cache_blob_of_plain_repo_is_caught(hub):
    # Not a zoo entry (no pins): the cached LFS blob is checked against its own sha256 name.
    push_to_hub(tiny_encoder(), "user/enc")
    folder = Path(mv2d3d.download("user/enc"))
    blob = (folder / "model.safetensors").resolve()
    assert blob.name == hashlib.sha256(blob.read_bytes()).hexdigest()
    data = bytearray(blob.read_bytes())
    data[-1] ^= 0xFF
    blob.write_bytes(bytes(data))
    with pytest.raises(WeightsIntegrityError, match="corrupted after download"):
        mv2d3d.load("user/enc")


def test_hub_architecture_only(hub):
    push_to_hub(tiny_classifier(3), "user/clf")
    model = mv2d3d.PointClassifier.from_pretrained("user/clf", pretrained=False)
    assert model.config.num_classes == 4 and not model.training
    gets = [p for p in hub.paths_requested("GET") if "/resolve/" in p]
    assert gets and all(p.endswith("config.json") for p in gets)  # the weights were not fetched


def test_environment_read_at_call_time(hub, tmp_path, monkeypatch):
    # huggingface_hub froze its constants at import; variables set afterwards still apply to mv2d3d.
    push_to_hub(tiny_encoder(5), "user/enc")
    new_home = tmp_path / "later_home"
    monkeypatch.setenv("HF_HOME", str(new_home))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    folder = mv2d3d.download("user/enc")
    assert Path(folder).is_relative_to(new_home / "hub")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # environment only, not huggingface_hub.constants
    assert_same_state(tiny_encoder(5), mv2d3d.load("user/enc"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "cold_home"))
    with pytest.raises(OfflineCacheMissError, match="HF_HUB_OFFLINE"):
        mv2d3d.load("user/enc")
