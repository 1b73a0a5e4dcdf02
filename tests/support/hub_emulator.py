"""A small Hugging Face Hub emulator for tests (stdlib only, in-memory).

It answers the request shapes that huggingface_hub 2.4, datasets 5.2, transformers 5 and evaluate 0.4.6
send, for models, datasets and Spaces: repo create (200/409), repo info (with and without a revision),
preupload (``lfs`` for binary files, remote ``oid`` for unchanged files), the git-LFS batch API and the
PUT it points at, NDJSON commits (``file``, ``lfsFile``, ``deletedFile``, ``deletedFolder``),
``validate-yaml``, tree listings, ``HEAD``/``GET .../resolve/{rev}/{path}``, ``paths-info``, refs,
commits and ``whoami-v2``. Every commit makes a new sha and history is kept, so a sha resolves the files
as they were at that commit. ``evaluate.load("<ns>/<name>")`` asks
``/spaces/<ns>/<name>/resolve/v0.4.6/<name>.py`` first (404 here: no tags) and then ``.../resolve/main/...``.

Test hooks (use them from the process that runs the server):

* ``server.log``: every request as ``Request(method, path, query, headers, body, status)`` (header
  names lower-cased).
* ``server.inject_fault(pattern, status=503, count=1, method=None)``: the next ``count`` requests whose
  path matches the regex ``pattern`` get ``status`` (``status=0`` drops the connection instead).
* ``server.lfs_uploads(repo_id="")``: the successful LFS ``PUT`` requests; ``server.reset_log()``.
* ``server.committed_paths()``: every path sent in a successful commit; ``server.files(type, id, rev)``.

Run standalone: ``python tests/support/hub_emulator.py --port 8765`` then ``HF_ENDPOINT=http://127.0.0.1:8765``,
``HF_TOKEN=hf_anything``, ``HF_HUB_DISABLE_XET=1`` (and no ``HF_HUB_OFFLINE``).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

PREFIX = {"models": "", "datasets": "datasets/", "spaces": "spaces/"}
TYPE_OF = {"model": "models", "dataset": "datasets", "space": "spaces", None: "models"}
GITATTRIBUTES = b"*.parquet filter=lfs diff=lfs merge=lfs -text\n*.safetensors filter=lfs diff=lfs merge=lfs -text\n"
TEXT_SUFFIXES = (".md", ".txt", ".json", ".yaml", ".yml", ".py", ".jinja", ".j2", ".gitattributes", ".csv", ".jsonl")


def git_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass(frozen=True)
class Blob:
    """One stored file version: content plus the ids the Hub reports for it."""

    data: bytes
    lfs: bool

    @property
    def sha1(self) -> str:
        return git_sha1(self.data)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def etag(self) -> str:
        return self.sha256 if self.lfs else self.sha1

    def tree_entry(self, path: str) -> dict:
        entry = {"type": "file", "oid": self.sha1, "size": len(self.data), "path": path}
        if self.lfs:
            entry["lfs"] = {"oid": self.sha256, "size": len(self.data), "pointerSize": 134}
        return entry


@dataclass
class Commit:
    sha: str
    parent: str | None
    title: str
    date: str
    files: dict[str, Blob]


@dataclass
class Repo:
    type: str  # models | datasets | spaces
    repo_id: str
    private: bool
    sdk: str | None
    commits: list[Commit] = field(default_factory=list)
    lfs: dict[str, bytes] = field(default_factory=dict)  # LFS objects by sha256, per repo as on the Hub

    @property
    def head(self) -> Commit:
        return self.commits[-1]

    def at(self, rev: str) -> Commit | None:
        if rev in ("main", "refs/heads/main"):
            return self.head
        return next((c for c in self.commits if c.sha == rev), None)


@dataclass
class Request:
    method: str
    path: str
    query: str
    headers: dict
    body: bytes
    status: int = 0


@dataclass
class Fault:
    pattern: re.Pattern
    status: int
    count: int
    method: str | None


class HubEmulator(ThreadingHTTPServer):
    """The server. ``HubEmulator(("127.0.0.1", 0))`` then ``start()``; ``endpoint`` is the base URL."""

    daemon_threads = True

    def __init__(self, address=("127.0.0.1", 0), user: str = "user"):
        super().__init__(address, _Handler)
        self.user = user
        self.repos: dict[tuple[str, str], Repo] = {}
        self.log: list[Request] = []
        self.faults: list[Fault] = []
        self.lock = threading.RLock()
        self._counter = 0
        self._thread: threading.Thread | None = None

    @property
    def endpoint(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "HubEmulator":
        self._thread = threading.Thread(target=self.serve_forever, name="hub-emulator", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()

    # ---- test hooks -------------------------------------------------------------------------
    def inject_fault(self, pattern: str, status: int = 503, count: int = 1, method: str | None = None) -> None:
        """Answer the next ``count`` requests whose path matches ``pattern`` with ``status`` (0: drop)."""
        with self.lock:
            self.faults.append(Fault(re.compile(pattern), status, count, method))

    def clear_faults(self) -> None:
        with self.lock:
            self.faults.clear()

    def reset_log(self) -> None:
        with self.lock:
            self.log.clear()

    def requests(self, method: str | None = None, pattern: str = "") -> list[Request]:
        with self.lock:
            return [r for r in self.log if (method is None or r.method == method) and re.search(pattern, r.path)]

    def lfs_uploads(self, repo_id: str = "") -> list[Request]:
        """Successful LFS content uploads (the bytes actually sent), optionally for one repo."""
        return [r for r in self.requests("PUT", rf"^/lfs-upload/[a-z]+/{re.escape(repo_id)}") if r.status == 200]

    def committed_paths(self, repo_id: str = "") -> list[str]:
        """Every path sent in a successful commit (``file`` / ``lfsFile`` lines), in order, optionally for one repo."""
        paths = []
        for r in self.requests("POST", rf"^/api/[a-z]+/{re.escape(repo_id)}.*/commit/"):
            if r.status != 200:
                continue
            for line in r.body.splitlines():
                item = json.loads(line)
                if item["key"] in ("file", "lfsFile"):
                    paths.append(item["value"]["path"])
        return paths

    def files(self, repo_type: str, repo_id: str, rev: str = "main") -> dict[str, bytes]:
        repo = self.repos[(TYPE_OF.get(repo_type, repo_type), repo_id)]
        return {p: b.data for p, b in repo.at(rev).files.items()}

    def take_fault(self, method: str, path: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.count > 0 and fault.pattern.search(path) and fault.method in (None, method):
                    fault.count -= 1
                    return fault
        return None

    # ---- store ------------------------------------------------------------------------------
    def new_commit(self, repo: Repo, title: str, files: dict[str, Blob]) -> Commit:
        with self.lock:
            self._counter += 1
            seed = f"{repo.type}/{repo.repo_id}/{self._counter}/{time.time_ns()}/{title}"
            parent = repo.commits[-1].sha if repo.commits else None
            commit = Commit(hashlib.sha1(seed.encode()).hexdigest(), parent, title,
                            datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z"), files)
            repo.commits.append(commit)
            return commit


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: HubEmulator

    def log_message(self, *args) -> None:  # quiet: the request log is in server.log
        pass

    # ---- plumbing ---------------------------------------------------------------------------
    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, body: bytes | dict | list = b"", headers: dict | None = None,
              content_type: str = "application/json") -> None:
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        self._record.status = status
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _error(self, status: int, code: str, message: str, headers: dict | None = None) -> None:
        self._send(status, {"error": message}, {"X-Error-Code": code, "X-Error-Message": message, **(headers or {})})

    def _handle(self) -> None:
        split = urlsplit(self.path)
        path, query = split.path, split.query
        body = self._read_body() if self.command in ("POST", "PUT") else b""
        self._record = Request(self.command, path, query, {k.lower(): v for k, v in self.headers.items()}, body)
        with self.server.lock:
            self.server.log.append(self._record)
        fault = self.server.take_fault(self.command, path)
        if fault is not None:
            if fault.status == 0:
                self._record.status = -1
                self.close_connection = True
                self.connection.close()
                return
            return self._error(fault.status, "InjectedFault", f"injected fault {fault.status}")
        try:
            self._route(path, parse_qs(query), body)
        except Exception as err:  # noqa: BLE001 - an emulator bug must be visible to the client as a 500
            self._error(500, "EmulatorError", f"{type(err).__name__}: {err}")

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = _handle

    # ---- routing ----------------------------------------------------------------------------
    def _route(self, path: str, q: dict, body: bytes) -> None:
        m, cmd = None, self.command
        if path == "/api/repos/create" and cmd == "POST":
            return self._create(json.loads(body or b"{}"))
        if path == "/api/validate-yaml" and cmd == "POST":
            return self._send(200, {"errors": [], "warnings": []})
        if path == "/api/whoami-v2":
            if not self._token():
                return self._error(401, "Unauthorized", "Invalid credentials in Authorization header")
            return self._send(200, {"type": "user", "id": "0" * 24, "name": self.server.user,
                                    "fullname": self.server.user, "orgs": [], "isPro": False,
                                    "auth": {"type": "access_token",
                                             "accessToken": {"displayName": "emulator", "role": "write"}}})
        if (m := re.fullmatch(r"/lfs-upload/(models|datasets|spaces)/([^/]+/[^/]+)/([0-9a-f]{64})", path)) and cmd == "PUT":
            repo = self.server.repos.get((m.group(1), m.group(2)))
            if repo is None:
                return self._error(404, "RepoNotFound", "no such repo")
            if hashlib.sha256(body).hexdigest() != m.group(3):
                return self._error(400, "BadRequest", "sha256 mismatch")
            with self.server.lock:
                repo.lfs[m.group(3)] = body
            return self._send(200, b"")
        if m := re.fullmatch(r"/api/(models|datasets|spaces)/([^/]+/[^/]+)(?:/(.*))?", path):
            return self._api(m.group(1), m.group(2), m.group(3) or "", q, body)
        if m := re.fullmatch(r"/(datasets/|spaces/)?([^/]+/[^/]+)\.git/info/lfs/objects/batch", path):
            return self._lfs_batch(TYPE_OF_PREFIX[m.group(1) or ""], m.group(2), json.loads(body))
        if m := re.fullmatch(r"/(datasets/|spaces/)?([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path):
            return self._resolve(TYPE_OF_PREFIX[m.group(1) or ""], m.group(2), unquote(m.group(3)), unquote(m.group(4)))
        return self._error(404, "NotFound", f"no route for {cmd} {path}")

    def _token(self) -> str | None:
        auth = self.headers.get("Authorization", "")
        return auth[7:] if auth.startswith("Bearer ") and len(auth) > 7 else None

    def _repo(self, t: str, repo_id: str) -> Repo | None:
        repo = self.server.repos.get((t, repo_id))
        if repo is None or (repo.private and not self._token()):
            self._error(404, "RepoNotFound", f"Repository not found: {repo_id}")
            return None
        return repo

    def _commit_at(self, repo: Repo, rev: str) -> Commit | None:
        commit = repo.at(rev)
        if commit is None:
            self._error(404, "RevisionNotFound", f"Invalid rev id: {rev}")
        return commit

    def _create(self, payload: dict) -> None:
        if not self._token():
            return self._error(401, "Unauthorized", "You must be logged in")
        t = TYPE_OF.get(payload.get("type"), "models")
        repo_id = f"{payload.get('organization') or self.server.user}/{payload['name']}"
        url = f"{self.server.endpoint}/{PREFIX[t]}{repo_id}"
        with self.server.lock:
            if (t, repo_id) in self.server.repos:
                return self._send(409, {"error": "You already created this repo", "url": url},
                                  {"X-Error-Code": "RepoExists", "X-Error-Message": "You already created this repo"})
            private = payload.get("private") is True or payload.get("visibility") == "private"
            repo = Repo(t, repo_id, private, payload.get("sdk"))
            self.server.new_commit(repo, "initial commit", {".gitattributes": Blob(GITATTRIBUTES, False)})
            self.server.repos[(t, repo_id)] = repo
        self._send(200, {"url": url, "name": repo_id, "id": "0" * 24})

    def _api(self, t: str, repo_id: str, rest: str, q: dict, body: bytes) -> None:
        repo = self._repo(t, repo_id)
        if repo is None:
            return
        if rest == "" or rest.startswith("revision/"):
            rev = unquote(rest[len("revision/"):]) if rest else "main"
            commit = self._commit_at(repo, rev)
            return commit and self._send(200, self._info(repo, commit))
        if m := re.fullmatch(r"(preupload|commit|tree|paths-info|commits)/([^/]+)(?:/(.*))?", rest):
            kind, rev, sub = m.group(1), unquote(m.group(2)), unquote(m.group(3) or "")
            if kind in ("preupload", "commit") and not self._token():
                return self._error(401, "Unauthorized", "You must be logged in to write")
            commit = self._commit_at(repo, rev)
            if commit is None:
                return
            if kind == "preupload":
                return self._preupload(commit, json.loads(body))
            if kind == "commit":
                return self._commit(repo, commit, body)
            if kind == "tree":
                return self._tree(commit, sub.strip("/"), q.get("recursive", ["false"])[0].lower() in ("1", "true"),
                                  q.get("expand", ["false"])[0].lower() in ("1", "true"))
            if kind == "paths-info":
                return self._paths_info(commit, parse_qs(body.decode()).get("paths", []))
            return self._send(200, [self._commit_json(c) for c in reversed(repo.commits[:repo.commits.index(commit) + 1])])
        if rest == "refs":
            return self._send(200, {"branches": [{"name": "main", "ref": "refs/heads/main",
                                                  "targetCommit": repo.head.sha}], "tags": [], "converts": []})
        return self._error(404, "NotFound", f"no route for {self.command} /api/{t}/{repo_id}/{rest}")

    def _info(self, repo: Repo, commit: Commit) -> dict:
        info = {"id": repo.repo_id, "_id": "0" * 24, "author": repo.repo_id.split("/")[0], "sha": commit.sha,
                "private": repo.private, "disabled": False, "gated": False, "downloads": 0, "likes": 0,
                "lastModified": commit.date, "createdAt": repo.commits[0].date, "tags": [],
                "siblings": [{"rfilename": p} for p in sorted(commit.files)]}
        if repo.type == "spaces":
            info["sdk"] = repo.sdk
        return info

    def _commit_json(self, c: Commit) -> dict:
        return {"id": c.sha, "title": c.title, "message": "", "authors": [{"user": self.server.user}], "date": c.date}

    def _preupload(self, commit: Commit, payload: dict) -> None:
        files = []
        for item in payload.get("files", []):
            sample = base64.b64decode(item.get("sample", ""))
            binary = b"\0" in sample or not item["path"].endswith(TEXT_SUFFIXES) or item.get("size", 0) > 10_000_000
            mode = "lfs" if binary else "regular"
            old = commit.files.get(item["path"])
            oid = (old.sha256 if mode == "lfs" else old.sha1) if old is not None and old.lfs == binary else None
            files.append({"path": item["path"], "uploadMode": mode, "shouldIgnore": False, "oid": oid})
        self._send(200, {"files": files, "commitOid": commit.sha})

    def _lfs_batch(self, t: str, repo_id: str, payload: dict) -> None:
        repo = self._repo(t, repo_id)
        if repo is None:
            return
        if not self._token():
            return self._error(401, "Unauthorized", "You must be logged in to upload")
        objects = []
        for obj in payload.get("objects", []):
            out = {"oid": obj["oid"], "size": obj["size"], "authenticated": True}
            if obj["oid"] not in repo.lfs:
                href = f"{self.server.endpoint}/lfs-upload/{t}/{repo_id}/{obj['oid']}"
                out["actions"] = {"upload": {"href": href, "header": {}}}
            objects.append(out)
        self._send(200, {"transfer": "basic", "objects": objects, "hash_algo": "sha256"},
                   content_type="application/vnd.git-lfs+json")

    def _commit(self, repo: Repo, base: Commit, body: bytes) -> None:
        if base is not repo.head:
            return self._error(412, "PreconditionFailed", "commits are only accepted on the branch head")
        files = dict(repo.head.files)
        title = "commit"
        for line in body.splitlines():
            if not line.strip():
                continue
            item = json.loads(line)
            key, value = item["key"], item["value"]
            if key == "header":
                title = value.get("summary") or title
                parent = value.get("parentCommit")
                if parent and parent != repo.head.sha:
                    return self._error(412, "PreconditionFailed", "parentCommit is not the branch head")
            elif key == "file":
                files[value["path"]] = Blob(base64.b64decode(value["content"]), False)
            elif key == "lfsFile":
                data = repo.lfs.get(value["oid"])
                if data is None:
                    return self._error(400, "BadRequest", f"LFS object {value['oid']} was never uploaded")
                files[value["path"]] = Blob(data, True)
            elif key == "deletedFile":
                if files.pop(value["path"], None) is None:
                    return self._error(404, "EntryNotFound", f"{value['path']} does not exist")
            elif key == "deletedFolder":
                prefix = value["path"].rstrip("/") + "/"
                for p in [p for p in files if p.startswith(prefix)]:
                    del files[p]
        commit = self.server.new_commit(repo, title, files)
        self._send(200, {"commitUrl": f"{self.server.endpoint}/{PREFIX[repo.type]}{repo.repo_id}/commit/{commit.sha}",
                         "commitOid": commit.sha, "pullRequestUrl": None, "success": True})

    def _entries(self, commit: Commit, folder: str, recursive: bool) -> list[dict] | None:
        prefix = folder + "/" if folder else ""
        entries, dirs = [], set()
        found = folder == ""
        for p in sorted(commit.files):
            if not p.startswith(prefix):
                continue
            found = True
            rest = p[len(prefix):].split("/")
            for i in range(1, len(rest) if recursive else min(len(rest), 2)):
                dirs.add(prefix + "/".join(rest[:i]))
            if recursive or len(rest) == 1:
                entries.append(commit.files[p].tree_entry(p))
        if not found:
            return None
        folders = [{"type": "directory", "oid": hashlib.sha1(d.encode()).hexdigest(), "size": 0, "path": d}
                   for d in sorted(dirs)]
        return folders + entries

    def _tree(self, commit: Commit, folder: str, recursive: bool, expand: bool) -> None:
        entries = self._entries(commit, folder, recursive)
        if entries is None:
            return self._error(404, "EntryNotFound", f"{folder} does not exist on revision {commit.sha}")
        if expand:
            for e in entries:
                e["lastCommit"] = {"id": commit.sha, "title": commit.title, "date": commit.date}
        self._send(200, entries)

    def _paths_info(self, commit: Commit, paths: list[str]) -> None:
        out = []
        for p in paths:
            p = p.strip("/")
            if p in commit.files:
                out.append(commit.files[p].tree_entry(p))
            elif any(f.startswith(p + "/") for f in commit.files):
                out.append({"type": "directory", "oid": hashlib.sha1(p.encode()).hexdigest(), "size": 0, "path": p})
        self._send(200, out)

    def _resolve(self, t: str, repo_id: str, rev: str, file: str) -> None:
        repo = self._repo(t, repo_id)
        if repo is None:
            return
        commit = self._commit_at(repo, rev)
        if commit is None:
            return
        blob = commit.files.get(file)
        if blob is None:
            return self._error(404, "EntryNotFound", f"{file} does not exist on {rev}", {"X-Repo-Commit": commit.sha})
        data, status, headers = blob.data, 200, {"X-Repo-Commit": commit.sha, "ETag": f'"{blob.etag}"',
                                                 "Accept-Ranges": "bytes"}
        if blob.lfs:
            headers["X-Linked-Etag"] = f'"{blob.etag}"'
            headers["X-Linked-Size"] = str(len(data))
        rng = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
        if rng and self.command == "GET":
            start = int(rng.group(1))
            end = int(rng.group(2)) if rng.group(2) else len(data) - 1
            headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
            data, status = data[start:end + 1], 206
        self._send(status, data, headers, content_type="application/octet-stream")


TYPE_OF_PREFIX = {"": "models", "datasets/": "datasets", "spaces/": "spaces"}


def main() -> None:
    parser = argparse.ArgumentParser(description="Local Hugging Face Hub emulator for tests.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--user", default="user", help="the user name whoami-v2 reports")
    args = parser.parse_args()
    server = HubEmulator((args.host, args.port), user=args.user)
    print(f"Hub emulator on {server.endpoint} (HF_ENDPOINT={server.endpoint} HF_HUB_DISABLE_XET=1)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
