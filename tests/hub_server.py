"""A small Hugging Face Hub-compatible HTTP server on 127.0.0.1, for tests.

It speaks the part of the Hub API that the real ``huggingface_hub`` client (2.x) uses to
publish and fetch a model repository, as read from the client's source (hf_api.py,
_commit_api.py, lfs.py, file_download.py):

* ``POST /api/repos/create``                         create_repo (409 when it exists)
* ``GET  /api/models/{repo}[/revision/{rev}]``       model_info / repo_info / resolve_revision
* ``POST /api/models/{repo}/branch/{branch}``        create_branch
* ``POST /api/validate-yaml``                        README.md metadata check before a commit
* ``POST /api/models/{repo}/preupload/{rev}``        upload mode per file ("regular" or "lfs"), remote oid
* ``POST /{repo}.git/info/lfs/objects/batch``        LFS batch API, "basic" transfer (single PUT + verify)
* ``PUT  /_lfs/{oid}``, ``POST /_lfs/verify``         LFS object upload (sha256-checked) and verification
* ``POST /api/models/{repo}/commit/{rev}``           NDJSON commit (file / lfsFile / deletedFile), create_pr
* ``HEAD|GET /{repo}/resolve/{rev}/{path}``           download with ETag, X-Repo-Commit, X-Linked-Etag/Size, Range

Errors carry the Hub's ``X-Error-Code`` header (RepoNotFound, RevisionNotFound, EntryNotFound)
so the client raises its typed errors. ``inject(status, match)`` makes matching requests fail
(404/500 tests); ``requests`` records what the client sent (method, path, user agent).

Xet: with ``hf_xet`` installed, the client uploads LFS-mode files through the Xet CAS protocol,
which this server does not emulate. Tests therefore set ``HF_HUB_DISABLE_XET=1`` (the classic
LFS path above), or run the server with ``lfs=False`` so that every file is "regular" (base64
inside the commit). Downloads never see an ``X-Xet-Hash`` header, so they use plain HTTP.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Dict, List, Optional, Tuple
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

_GITATTRIBUTES = b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n*.bin filter=lfs diff=lfs merge=lfs -text\n"


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class StoredFile:
    data: bytes
    lfs: bool

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def oid(self) -> str:  # what preupload reports: sha256 for LFS files, git sha1 otherwise
        return self.sha256 if self.lfs else git_blob_sha1(self.data)

    @property
    def etag(self) -> str:
        return self.oid


@dataclass
class Commit:
    oid: str
    files: Dict[str, StoredFile]
    message: str
    parent: Optional[str]


@dataclass
class Repo:
    repo_id: str
    private: bool
    commits: Dict[str, Commit] = field(default_factory=dict)
    refs: Dict[str, str] = field(default_factory=dict)  # branch / refs/pr/N -> commit oid
    num_prs: int = 0

    def resolve(self, rev: str) -> Optional[Commit]:
        if rev in self.refs:
            return self.commits[self.refs[rev]]
        if re.fullmatch(r"[0-9a-f]{40}", rev) and rev in self.commits:
            return self.commits[rev]
        return None


@dataclass
class Injection:
    status: int
    match: str
    methods: Tuple[str, ...]
    remaining: Optional[int]


class HubState:
    def __init__(self, base_url: str, lfs: bool = True, token: Optional[str] = None):
        self.base_url = base_url
        self.lfs = lfs
        self.token = token  # if set, writes (and reads of private repos) need "Bearer <token>"
        self.repos: Dict[str, Repo] = {}
        self.lfs_store: Dict[str, bytes] = {}
        self.injections: List[Injection] = []
        self.requests: List[Tuple[str, str, str]] = []
        self.lock = threading.RLock()

    def new_commit(self, repo: Repo, branch: str, files: Dict[str, StoredFile], message: str) -> Commit:
        parent = repo.refs.get(branch)
        oid = hashlib.sha1(f"{repo.repo_id}{time.time_ns()}{uuid.uuid4()}{message}".encode()).hexdigest()
        commit = Commit(oid=oid, files=files, message=message, parent=parent)
        repo.commits[oid] = commit
        repo.refs[branch] = oid
        return commit


class _Handler(BaseHTTPRequestHandler):
    server_version = "FakeHub/1.0"
    protocol_version = "HTTP/1.1"

    # -- plumbing ------------------------------------------------------------------------------
    @property
    def state(self) -> HubState:
        return self.server.state  # type: ignore[attr-defined]

    def log_message(self, fmt, *args):  # keep test output clean
        pass

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = bytearray()
            while True:
                size = int(self.rfile.readline().strip().split(b";")[0], 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(out)
                out += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _send(self, status: int, body: bytes = b"", headers: Optional[Dict[str, str]] = None, content_type="application/json"):
        self.send_response(status)
        headers = dict(headers or {})
        headers.setdefault("Content-Type", content_type)
        headers.setdefault("Content-Length", str(len(body)))
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)

    def _json(self, status: int, obj, headers=None):
        self._send(status, json.dumps(obj).encode(), headers)

    def _error(self, status: int, message: str, code: Optional[str] = None, headers=None):
        h = dict(headers or {})
        if code:
            h["X-Error-Code"] = code
        h["X-Error-Message"] = message
        self._json(status, {"error": message}, h)

    def _authorized(self) -> bool:
        tok = self.state.token
        return tok is None or self.headers.get("Authorization", "") == f"Bearer {tok}"

    def _injected(self) -> bool:
        with self.state.lock:
            for inj in self.state.injections:
                if inj.match in self.path and self.command in inj.methods and inj.remaining != 0:
                    if inj.remaining is not None:
                        inj.remaining -= 1
                    self._error(inj.status, f"injected HTTP {inj.status}", code="RepoNotFound" if inj.status == 404 else None)
                    return True
        return False

    def _dispatch(self):
        path = urlsplit(self.path).path
        self.state.requests.append((self.command, path, self.headers.get("User-Agent", "")))
        body = self._body() if self.command in ("POST", "PUT") else b""
        if self._injected():
            return
        routes = [
            ("POST", r"^/api/repos/create$", self.create_repo),
            ("POST", r"^/api/validate-yaml$", self.validate_yaml),
            ("GET", r"^/api/models/(?P<repo>[^/]+/[^/]+)(?:/revision/(?P<rev>.+))?$", self.model_info),
            ("POST", r"^/api/models/(?P<repo>[^/]+/[^/]+)/branch/(?P<rev>.+)$", self.create_branch),
            ("POST", r"^/api/models/(?P<repo>[^/]+/[^/]+)/preupload/(?P<rev>.+)$", self.preupload),
            ("POST", r"^/api/models/(?P<repo>[^/]+/[^/]+)/commit/(?P<rev>.+)$", self.commit),
            ("POST", r"^/(?P<repo>[^/]+/[^/]+)\.git/info/lfs/objects/batch$", self.lfs_batch),
            ("PUT", r"^/_lfs/(?P<oid>[0-9a-f]{64})$", self.lfs_put),
            ("POST", r"^/_lfs/verify$", self.lfs_verify),
            ("HEAD", r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<file>.+)$", self.resolve),
            ("GET", r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<file>.+)$", self.resolve),
        ]
        for method, pattern, fn in routes:
            m = re.match(pattern, path)
            if method == self.command and m:
                with self.state.lock:
                    return fn(body=body, **{k: unquote(v) if v else v for k, v in m.groupdict().items()})
        self._error(404, f"no route for {self.command} {path}")

    do_GET = do_HEAD = do_POST = do_PUT = _dispatch

    def _repo(self, repo_id: str, *, write: bool = False) -> Optional[Repo]:
        repo = self.state.repos.get(repo_id)
        if repo is None or (repo.private and not self._authorized()) or (write and not self._authorized()):
            if write and repo is not None:
                self._error(401, "Invalid credentials in Authorization header")
            else:
                self._error(404, "Repository not found", code="RepoNotFound")
            return None
        return repo

    # -- API -----------------------------------------------------------------------------------
    def create_repo(self, body: bytes):
        if not self._authorized():
            return self._error(401, "Invalid credentials in Authorization header")
        payload = json.loads(body)
        repo_id = f"{payload.get('organization') or 'user'}/{payload['name']}"
        url = f"{self.state.base_url}/{repo_id}"
        if repo_id in self.state.repos:
            return self._json(409, {"error": "You already created this model repo", "url": url})
        repo = Repo(repo_id, private=payload.get("visibility") == "private" or bool(payload.get("private")))
        self.state.repos[repo_id] = repo
        self.state.new_commit(repo, "main", {".gitattributes": StoredFile(_GITATTRIBUTES, lfs=False)}, "initial commit")
        self._json(200, {"url": url, "name": repo_id, "id": uuid.uuid4().hex})

    def validate_yaml(self, body: bytes):
        content = json.loads(body)["content"]
        m = re.match(r"^---\n(.*?)\n---\n", content, re.S)
        if not m:
            return self._json(200, {"errors": [], "warnings": [{"message": "empty or missing yaml metadata"}]})
        try:
            data = yaml.safe_load(m.group(1))
            if not isinstance(data, dict):
                raise ValueError("metadata is not a mapping")
        except Exception as e:  # noqa: BLE001
            return self._json(400, {"errors": [{"message": f"invalid YAML: {e}"}], "warnings": []})
        return self._json(200, {"errors": [], "warnings": []})

    def model_info(self, body: bytes, repo: str, rev: Optional[str] = None):
        r = self._repo(repo)
        if r is None:
            return
        commit = r.resolve(rev or "main")
        if commit is None:
            return self._error(404, f"Invalid rev id: {rev}", code="RevisionNotFound")
        self._json(200, {
            "id": repo, "modelId": repo, "sha": commit.oid, "private": r.private, "library_name": "mv2d3d",
            "siblings": [{"rfilename": p} for p in sorted(commit.files)], "tags": [],
        })

    def create_branch(self, body: bytes, repo: str, rev: str):
        r = self._repo(repo, write=True)
        if r is None:
            return
        if rev in r.refs:
            return self._error(409, f"Reference already exists: {rev}")
        payload = json.loads(body or b"{}")
        start = r.resolve(payload.get("startingPoint") or "main")
        r.refs[rev] = start.oid
        self._json(200, {})

    def preupload(self, body: bytes, repo: str, rev: str):
        r = self._repo(repo, write=True)
        if r is None:
            return
        commit = r.resolve(rev)
        files = []
        for f in json.loads(body)["files"]:
            sample = base64.b64decode(f["sample"])
            lfs = self.state.lfs and (f["path"].endswith((".safetensors", ".bin")) or b"\0" in sample or f["size"] > 10_000_000)
            existing = commit.files.get(f["path"]) if commit else None
            files.append({"path": f["path"], "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False,
                          "oid": existing.oid if existing is not None and existing.lfs == lfs else None})
        self._json(200, {"files": files, "commitOid": commit.oid if commit else None})

    def lfs_batch(self, body: bytes, repo: str):
        r = self._repo(repo, write=True)
        if r is None:
            return
        payload = json.loads(body)
        objects = []
        for obj in payload["objects"]:
            item = {"oid": obj["oid"], "size": obj["size"], "authenticated": True}
            if obj["oid"] not in self.state.lfs_store:  # already stored: no actions, the client skips it
                item["actions"] = {
                    "upload": {"href": f"{self.state.base_url}/_lfs/{obj['oid']}", "header": {}},
                    "verify": {"href": f"{self.state.base_url}/_lfs/verify", "header": {}},
                }
            objects.append(item)
        self._send(200, json.dumps({"transfer": "basic", "objects": objects}).encode(), content_type="application/vnd.git-lfs+json")

    def lfs_put(self, body: bytes, oid: str):
        if hashlib.sha256(body).hexdigest() != oid:
            return self._error(400, "sha256 of the uploaded object does not match its oid")
        self.state.lfs_store[oid] = body
        self._send(200, b"", content_type="text/plain")

    def lfs_verify(self, body: bytes):
        obj = json.loads(body)
        data = self.state.lfs_store.get(obj["oid"])
        if data is None or len(data) != obj["size"]:
            return self._error(404, "object not found or wrong size")
        self._json(200, {})

    def commit(self, body: bytes, repo: str, rev: str):
        r = self._repo(repo, write=True)
        if r is None:
            return
        qs = parse_qs(urlsplit(self.path).query)
        create_pr = qs.get("create_pr", ["0"])[0] == "1"
        base = r.resolve(rev)
        if base is None:
            return self._error(404, f"Invalid rev id: {rev}", code="RevisionNotFound")
        files = dict(base.files)
        summary = ""
        for line in body.splitlines():
            if not line.strip():
                continue
            item = json.loads(line)
            key, value = item["key"], item["value"]
            if key == "header":
                summary = value["summary"]
                parent = value.get("parentCommit")
                if parent and parent != base.oid:
                    return self._error(412, "parent commit is not the head of the branch")
            elif key == "file":
                files[value["path"]] = StoredFile(base64.b64decode(value["content"]), lfs=False)
            elif key == "lfsFile":
                data = self.state.lfs_store.get(value["oid"])
                if data is None:
                    return self._error(422, f"LFS object {value['oid']} was never uploaded")
                files[value["path"]] = StoredFile(data, lfs=True)
            elif key in ("deletedFile", "deletedFolder"):
                files = {p: f for p, f in files.items() if not (p == value["path"] or p.startswith(value["path"].rstrip("/") + "/"))}
            else:
                return self._error(400, f"unknown commit operation {key}")
        branch = rev
        pr_url = None
        if create_pr:
            r.num_prs += 1
            branch = f"refs/pr/{r.num_prs}"
            r.refs[branch] = base.oid
            pr_url = f"{self.state.base_url}/{repo}/discussions/{r.num_prs}"
        elif rev not in r.refs:
            branch = rev  # committing on top of a sha is refused by the real Hub too
            return self._error(400, "commits go to a branch, not to a commit sha")
        commit = self.state.new_commit(r, branch, files, summary)
        self._json(200, {"commitUrl": f"{self.state.base_url}/{repo}/commit/{commit.oid}", "commitOid": commit.oid,
                         "pullRequestUrl": pr_url, "success": True})

    def resolve(self, body: bytes, repo: str, rev: str, file: str):
        r = self._repo(repo)
        if r is None:
            return
        commit = r.resolve(rev)
        if commit is None:
            return self._error(404, f"Invalid rev id: {rev}", code="RevisionNotFound")
        stored = commit.files.get(file)
        if stored is None:
            return self._error(404, "Entry not found", code="EntryNotFound", headers={"X-Repo-Commit": commit.oid})
        headers = {"X-Repo-Commit": commit.oid, "ETag": f'"{stored.etag}"', "Accept-Ranges": "bytes"}
        if stored.lfs:
            headers["X-Linked-Etag"] = f'"{stored.sha256}"'
            headers["X-Linked-Size"] = str(len(stored.data))
        data = stored.data
        status = 200
        rng = self.headers.get("Range")
        if rng and self.command == "GET":
            m = re.fullmatch(r"bytes=(\d+)-(\d*)", rng.strip())
            if m:
                start = int(m.group(1))
                end = int(m.group(2)) if m.group(2) else len(data) - 1
                headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
                data = data[start:end + 1]
                status = 206
        self._send(status, data, headers, content_type="application/octet-stream")


class _Server(ThreadingHTTPServer):
    """Tracks open connections so that ``stop()`` really cuts the client off: the client keeps
    HTTP/1.1 connections alive, and a closed listening socket alone would leave them served."""

    daemon_threads = True

    def __init__(self, *a, **kw):
        self.open_sockets: set = set()
        super().__init__(*a, **kw)

    def process_request(self, request, client_address):
        self.open_sockets.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request):
        self.open_sockets.discard(request)
        super().shutdown_request(request)

    def cut_connections(self) -> None:
        import socket

        for sock in list(self.open_sockets):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
        self.open_sockets.clear()


class HubServer:
    """The server in a background thread. ``url`` is its endpoint (``http://127.0.0.1:PORT``).

    Args:
        lfs: answer "lfs" for binary files at preupload (else everything is "regular").
        token: if set, writes need ``Authorization: Bearer <token>``.
    """

    def __init__(self, lfs: bool = True, token: Optional[str] = None, port: int = 0):
        self.httpd = _Server(("127.0.0.1", port), _Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.state = HubState(self.url, lfs=lfs, token=token)
        self.httpd.state = self.state  # type: ignore[attr-defined]
        self._thread: Optional[threading.Thread] = None

    def start(self) -> "HubServer":
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="fake-hub", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is None:
            return
        self.httpd.shutdown()
        self.httpd.server_close()
        self.httpd.cut_connections()
        self._thread.join(timeout=5)
        self._thread = None

    def __enter__(self) -> "HubServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- test helpers --------------------------------------------------------------------------
    def inject(self, status: int, match: str = "", methods=("GET", "HEAD", "POST", "PUT"), times: Optional[int] = None) -> None:
        """Answer ``status`` to requests whose path contains ``match`` (``times`` None: always)."""
        with self.state.lock:
            self.state.injections.append(Injection(status, match, tuple(methods), times))

    def clear_injections(self) -> None:
        with self.state.lock:
            self.state.injections.clear()

    def file_bytes(self, repo_id: str, path: str, rev: str = "main") -> bytes:
        return self.state.repos[repo_id].resolve(rev).files[path].data

    def set_file_bytes(self, repo_id: str, path: str, data: bytes, rev: str = "main") -> None:
        """Replace a file's bytes in place (a tampered or corrupted upload), keeping the commit id."""
        with self.state.lock:
            commit = self.state.repos[repo_id].resolve(rev)
            commit.files[path] = StoredFile(data, lfs=commit.files[path].lfs)

    def head(self, repo_id: str, branch: str = "main") -> str:
        return self.state.repos[repo_id].refs[branch]

    def paths_requested(self, method: Optional[str] = None) -> List[str]:
        return [p for m, p, _ in self.state.requests if method is None or m == method]
