"""Label Studio's REST API over urllib, from LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY.

Plain REST rather than `label-studio-sdk`: the SDK (2.1.2) pulls numpy, opencv-python-headless, pandas, nltk and
pydantic pins of its own into the project's set, for the six calls wildtrain makes. Every failure is one line that
names the URL: a server that is down, a refused key, an error Label Studio returns.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

from wildtrain.errors import WildtrainError


@dataclass(frozen=True)
class Client:
    url: str
    api_key: str
    timeout: float = 60

    @classmethod
    def from_env(cls) -> "Client":
        url = (os.environ.get("LABEL_STUDIO_URL") or "").rstrip("/")
        key = os.environ.get("LABEL_STUDIO_API_KEY") or ""
        if not url or not key:
            missing = " and ".join(k for k, v in (("LABEL_STUDIO_URL", url), ("LABEL_STUDIO_API_KEY", key)) if not v)
            raise WildtrainError(f"annotate: set {missing} (`make labelstudio` prints both)")
        return cls(url, key)

    def call(self, method: str, path: str, body=None, query: dict | None = None):
        """One request; the decoded JSON answer (None when empty)."""
        full = f"{self.url}{path}" + (f"?{urllib.parse.urlencode(query)}" if query else "")
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(full, data=data, method=method, headers={
            "Authorization": f"Token {self.api_key}", "Content-Type": "application/json", "Accept": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as r:
                raw = r.read()
        except urllib.error.HTTPError as e:
            if e.code in (401, 403):
                raise WildtrainError(f"Label Studio at {self.url} refused the API key (HTTP {e.code}): check "
                                     f"LABEL_STUDIO_API_KEY (`make labelstudio` prints it)") from None
            detail = " ".join(e.read().decode(errors="replace").split())[:300]
            raise WildtrainError(f"Label Studio at {self.url}: {method} {path} failed (HTTP {e.code}: {detail})") \
                from None
        except (urllib.error.URLError, OSError) as e:
            why = getattr(e, "reason", e)
            raise WildtrainError(f"Label Studio at {self.url} is not reachable ({why}): start it with `make "
                                 f"labelstudio`, or set LABEL_STUDIO_URL") from None
        try:
            return json.loads(raw) if raw.strip() else None
        except ValueError:
            raise WildtrainError(f"Label Studio at {self.url}: {method} {path} answered something other than JSON "
                                 f"(is LABEL_STUDIO_URL a Label Studio server?)") from None

    def whoami(self) -> dict:
        """Checks the server and the key before anything is written."""
        return self.call("GET", "/api/current-user/whoami")

    def projects(self) -> list[dict]:
        out, page = [], 1
        while True:
            got = self.call("GET", "/api/projects/", query={"page": page, "page_size": 100})
            results = got.get("results", []) if isinstance(got, dict) else got or []
            out += results
            if not (isinstance(got, dict) and got.get("next")):
                return out
            page += 1

    def project(self, title: str) -> dict | None:
        found = [p for p in self.projects() if p.get("title") == title]
        return min(found, key=lambda p: p["id"]) if found else None

    def create_project(self, title: str, label_config: str, description: str) -> dict:
        return self.call("POST", "/api/projects/", {"title": title, "label_config": label_config,
                                                    "description": description})

    def update_project(self, pid: int, **fields) -> dict:
        return self.call("PATCH", f"/api/projects/{pid}/", fields)

    def local_storages(self, pid: int) -> list[dict]:
        return self.call("GET", "/api/storages/localfiles/", query={"project": pid}) or []

    def add_local_storage(self, pid: int, path: str, title: str) -> dict:
        """Local-files storage: lets the project's tasks show files under `path` (no sync: tasks are imported)."""
        return self.call("POST", "/api/storages/localfiles/", {"project": pid, "path": path, "title": title,
                                                                "use_blob_urls": True, "regex_filter": ""})

    def import_tasks(self, pid: int, tasks: list[dict]) -> dict:
        return self.call("POST", f"/api/projects/{pid}/import", tasks, query={"return_task_ids": "true"})

    def export(self, pid: int) -> list[dict]:
        """Every task that holds an annotation, in Label Studio's JSON export format."""
        return self.call("GET", f"/api/projects/{pid}/export", query={"exportType": "JSON",
                                                                      "download_all_tasks": "false"})

    def tasks(self, pid: int) -> list[dict]:
        out, page = [], 1
        while True:
            try:
                got = self.call("GET", "/api/tasks/", query={"project": pid, "page": page, "page_size": 100,
                                                              "fields": "all"})
            except WildtrainError as e:
                if "HTTP 404" in str(e):  # past the last page
                    return out
                raise
            tasks = got.get("tasks", []) if isinstance(got, dict) else got or []
            out += tasks
            if len(tasks) < 100:
                return out
            page += 1
