"""The Jupyter server extension: a notebook server talking to a Popcorn instance.

Enable it with
`jupyter server --ServerApp.jpserver_extensions='{"popcorn.notebooks.jupyter": true}'
--PopcornNotebooks.url=https://popcorn.example --PopcornNotebooks.token=<operator token>`
(or POPCORN_URL / POPCORN_TOKEN in the environment). Under `<base_url>/popcorn/` it adds,
behind the server's own authentication (token or cookie, with XSRF for browsers):

- `GET log?path=` the runs of jobs made from that notebook;
- `GET archive?path=` its archived versions (every save is archived by a post-save hook),
  `POST archive/restore {path, version}` writes a version back;
- `POST publish {path, version?, slug?}` a version to Popcorn's read-only published area;
- `POST clone {slug | path+version, target}` a published or archived version into the
  server's workspace (never over an existing file);
- `POST schedule {path, name, cron?, timezone?, parameters?, ...}` a job definition that
  runs the latest saved version of the notebook (an admin token's right, or an operator's
  when Popcorn runs kernels as `notebooks_run_as`; the refusal comes back as it is).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from typing import Any
from urllib.parse import urlencode

from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join
from tornado import web
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

log = logging.getLogger("popcorn.notebooks.jupyter")
API = "/api/v1/notebooks"
SCHEDULE_FIELDS = (
    "cron",
    "timezone",
    "parameters",
    "kernel",
    "timeout",
    "retries",
    "tags",
    "exclusive",
)


class Popcorn:
    """The Popcorn instance this server reports to (its URL and an operator token)."""

    def __init__(self, url: str, token: str) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.url = url.rstrip("/")
        self.token = token
        # saves are archived in order, one at a time, off the server's event loop
        self.archiver = ThreadPoolExecutor(max_workers=1, thread_name_prefix="popcorn-archive")

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"}

    async def call(
        self, method: str, path: str, *, params: dict[str, Any] | None = None, body: Any = None
    ) -> Any:
        if not self.url:
            raise web.HTTPError(503, "the Popcorn URL is not configured (PopcornNotebooks.url)")
        url = self.url + API + path + (f"?{urlencode(params)}" if params else "")
        request = HTTPRequest(
            url,
            method=method,
            headers=self._headers(),
            body=json.dumps(body) if body is not None else None,
            request_timeout=30,
        )
        try:
            answer = await AsyncHTTPClient().fetch(request)
        except HTTPClientError as exc:
            message = f"Popcorn answered {exc.code}"
            if exc.response is not None and exc.response.body:
                with contextlib.suppress(ValueError, KeyError, TypeError):
                    message = json.loads(exc.response.body)["error"]["message"]
            raise web.HTTPError(exc.code if 400 <= exc.code < 500 else 502, message) from None
        except OSError as exc:
            raise web.HTTPError(502, f"Popcorn is unreachable: {exc}") from None
        return json.loads(answer.body) if answer.body else None

    def archive_later(self, path: str, notebook: dict[str, Any]) -> None:
        """Archive a save in the background: a save never waits for Popcorn."""
        self.archiver.submit(self.archive_now, path, notebook)

    def archive_now(self, path: str, notebook: dict[str, Any]) -> None:
        """Archive a save (synchronous, never raising)."""
        import httpx

        try:
            httpx.post(
                self.url + API + "/versions",
                json={"path": path, "notebook": notebook},
                headers=self._headers(),
                timeout=60,
            ).raise_for_status()
        except Exception as exc:  # a save never fails because Popcorn is away
            log.warning("could not archive %s in Popcorn: %s", path, exc)


class Handler(APIHandler):
    popcorn: Popcorn

    def initialize(self, popcorn: Popcorn) -> None:
        self.popcorn = popcorn

    def body(self) -> dict[str, Any]:
        try:
            data = json.loads(self.request.body or b"{}")
        except ValueError:
            raise web.HTTPError(400, "the body is not JSON") from None
        if not isinstance(data, dict):
            raise web.HTTPError(400, "the body must be a JSON object")
        return data

    def path_arg(self, value: Any) -> str:
        if not isinstance(value, str) or not value.strip("/"):
            raise web.HTTPError(400, "a notebook path is required")
        return value.strip("/")

    async def read_notebook(self, path: str) -> dict[str, Any]:
        manager = self.contents_manager
        if not await _maybe(manager.file_exists(path)):
            raise web.HTTPError(404, f"no notebook {path}")
        model = await _maybe(manager.get(path, content=True, type="notebook"))
        content: dict[str, Any] = json.loads(json.dumps(model["content"]))
        return content

    async def write_notebook(self, path: str, notebook: dict[str, Any]) -> None:
        import nbformat

        node = nbformat.from_dict(notebook)
        await _maybe(
            self.contents_manager.save(
                {"type": "notebook", "format": "json", "content": node}, path
            )
        )

    def version_arg(self, value: Any) -> int | str:
        """A version number, or "" for the latest."""
        if value in (None, ""):
            return ""
        if isinstance(value, bool) or not isinstance(value, int | str) or not str(value).isdigit():
            raise web.HTTPError(400, "version must be a whole number")
        return int(value)

    def reply(self, data: Any, status: int = 200) -> None:
        self.set_status(status)
        self.finish(json.dumps(data))


async def _maybe(value: Any) -> Any:
    """Contents managers may be sync or async."""
    import inspect

    return await value if inspect.isawaitable(value) else value


class LogHandler(Handler):
    @web.authenticated
    async def get(self) -> None:
        path = self.path_arg(self.get_argument("path", ""))
        page = await self.popcorn.call("GET", "/runs", params={"origin": path, "limit": 200})
        self.reply({"path": path, "runs": page["items"]})


class ArchiveHandler(Handler):
    @web.authenticated
    async def get(self) -> None:
        path = self.path_arg(self.get_argument("path", ""))
        page = await self.popcorn.call("GET", "/versions", params={"path": path, "limit": 1000})
        self.reply({"path": path, "versions": page["items"]})


class RestoreHandler(Handler):
    @web.authenticated
    async def post(self) -> None:
        data = self.body()
        path = self.path_arg(data.get("path"))
        params = {"path": path, "version": self.version_arg(data.get("version"))}
        content = await self.popcorn.call("GET", "/versions/content", params=params)
        await self.write_notebook(path, content)  # archived again by the save hook
        self.reply({"path": path, "restored": params["version"]})


class PublishHandler(Handler):
    @web.authenticated
    async def post(self) -> None:
        data = self.body()
        path = self.path_arg(data.get("path"))
        if data.get("version") is None:  # publish what is saved now
            notebook = await self.read_notebook(path)
            await self.popcorn.call("POST", "/versions", body={"path": path, "notebook": notebook})
        body = {"path": path, "version": data.get("version"), "slug": data.get("slug")}
        published = await self.popcorn.call("POST", "/published", body=body)
        published["url"] = self.popcorn.url + published["link"]
        self.reply(published, 201)


class CloneHandler(Handler):
    @web.authenticated
    async def post(self) -> None:
        data = self.body()
        target = self.path_arg(data.get("target"))
        if not target.endswith(".ipynb"):
            raise web.HTTPError(400, "the target must be a .ipynb path")
        if await _maybe(self.contents_manager.file_exists(target)):
            raise web.HTTPError(409, f"{target} exists; choose another target")
        if data.get("slug"):
            content = await self.popcorn.call("GET", f"/published/{data['slug']}")
        else:
            path = self.path_arg(data.get("path"))
            params = {"path": path, "version": self.version_arg(data.get("version"))}
            content = await self.popcorn.call("GET", "/versions/content", params=params)
        await self.write_notebook(target, content)
        self.reply({"path": target}, 201)


class ScheduleHandler(Handler):
    @web.authenticated
    async def post(self) -> None:
        data = self.body()
        path = self.path_arg(data.get("path"))
        notebook = await self.read_notebook(path)
        await self.popcorn.call("POST", "/versions", body={"path": path, "notebook": notebook})
        body: dict[str, Any] = {
            "name": data.get("name") or os.path.basename(path).removesuffix(".ipynb"),
            "workspace_path": path,
            "origin": path,
        }
        body.update({k: data[k] for k in SCHEDULE_FIELDS if k in data})
        created = await self.popcorn.call("POST", "/definitions", body=body)
        self.reply(created, 201)


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "popcorn.notebooks.jupyter"}]


def _settings(serverapp: Any) -> Popcorn:
    section = serverapp.config.get("PopcornNotebooks", {})
    url = str(section.get("url") or os.environ.get("POPCORN_URL", ""))
    token = str(section.get("token") or os.environ.get("POPCORN_TOKEN", ""))
    return Popcorn(url, token)


def _load_jupyter_server_extension(serverapp: Any) -> None:
    popcorn = _settings(serverapp)
    manager = serverapp.contents_manager

    def archive_on_save(
        model: dict[str, Any], os_path: str, contents_manager: Any, **_: Any
    ) -> None:
        if model.get("type") != "notebook":
            return
        with open(os_path, encoding="utf-8") as handle:
            popcorn.archive_later(model["path"], json.load(handle))

    if hasattr(manager, "register_post_save_hook"):
        manager.register_post_save_hook(archive_on_save)
    else:  # older servers: one hook, so keep the one configured
        previous = manager.post_save_hook

        def chained(**kwargs: Any) -> None:
            if previous is not None:
                previous(**kwargs)
            archive_on_save(**kwargs)

        manager.post_save_hook = chained
    base = url_path_join(serverapp.web_app.settings["base_url"], "popcorn")
    routes: list[tuple[str, type[Handler]]] = [
        ("log", LogHandler),
        ("archive", ArchiveHandler),
        ("archive/restore", RestoreHandler),
        ("publish", PublishHandler),
        ("clone", CloneHandler),
        ("schedule", ScheduleHandler),
    ]
    serverapp.web_app.add_handlers(
        ".*$", [(url_path_join(base, route), cls, {"popcorn": popcorn}) for route, cls in routes]
    )
    serverapp.log.info("Popcorn notebooks extension: reporting to %s", popcorn.url or "(unset)")


# the names jupyter_server looks for, also under their older spelling
load_jupyter_server_extension = _load_jupyter_server_extension
