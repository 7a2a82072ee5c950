"""The Popcorn class: shotgun_api3's method names and argument shapes over Popcorn's JSON API.

Written for old interpreters (Python 3.7, as embedded in DCC applications) and for the
standard library only. Every request has a timeout and is retried with exponential
backoff on network errors and on 429/502/503/504 answers, uploads included. The object
holds no per-request state, so threads may share one.
"""

import json
import mimetypes
import os
import random
import socket
import threading
import time
import uuid
from typing import Any, Dict, List, Optional  # noqa: F401  (type comments)
from urllib import error as urlerror
from urllib import parse as urlparse
from urllib import request as urlrequest

RETRY_STATUSES = (429, 502, 503, 504)


class Fault(Exception):
    """Any error answered by Popcorn (shotgun_api3 scripts catch `Fault`)."""

    def __init__(self, message, status=None, code="", details=None):
        # type: (str, Optional[int], str, Optional[Dict[str, Any]]) -> None
        Exception.__init__(self, message)
        self.message = message
        self.status = status
        self.code = code
        self.details = details or {}

    @property
    def field(self):
        # type: () -> Optional[str]
        """The field the server named as the cause, when it named one."""
        return self.details.get("field")


class AuthenticationFault(Fault):
    """The token is missing, wrong, revoked, or lacks the role the call needs."""


class NotFound(Fault):
    """The entity (or route) does not exist."""


class ValidationFault(Fault):
    """The request names an unknown field, a wrong operator, a status outside the workflow..."""


class ProtocolError(Fault):
    """No usable answer after every retry (network down, timeouts, server unavailable)."""


def _fault(status, body):
    # type: (int, bytes) -> Fault
    try:
        error = json.loads(body.decode("utf-8"))["error"]
        message, code, details = error["message"], error["code"], error.get("details") or {}
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        message, code, details = body[:300].decode("utf-8", "replace") or str(status), "", {}
    kind = Fault
    if status in (401, 403):
        kind = AuthenticationFault
    elif status == 404:
        kind = NotFound
    elif status in (400, 409, 413, 422):
        kind = ValidationFault
    return kind("%s (HTTP %d)" % (message, status), status=status, code=code, details=details)


class Popcorn(object):
    """A connection to Popcorn's studio API; share it freely across threads."""

    def __init__(self, base_url, token, timeout=30.0, retries=3, backoff=0.5):
        # type: (str, str, float, int, float) -> None
        if not base_url.startswith(("http://", "https://")):
            raise ValueError("base_url must start with http:// or https://")
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = float(timeout)
        self.retries = max(0, int(retries))
        self.backoff = float(backoff)
        self._limits = None  # type: Optional[Dict[str, int]]
        self._lock = threading.Lock()

    # ------------------------------------------------------------ transport

    def _request(self, method, path, body=None, content_type="application/json"):
        # type: (str, str, Optional[bytes], str) -> bytes
        url = self.base_url + "/api/v1/studio" + path
        headers = {
            "Authorization": "Bearer " + self.token,
            "Accept": "application/json",
            "User-Agent": "popcorn-studio/0.1",
        }
        if body is not None:
            headers["Content-Type"] = content_type
        attempt = 0
        while True:
            req = urlrequest.Request(url, data=body, headers=headers, method=method)
            delay = self.backoff * (2**attempt) * (0.5 + random.random())
            try:
                with urlrequest.urlopen(req, timeout=self.timeout) as response:
                    return response.read()
            except urlerror.HTTPError as exc:
                payload = exc.read()
                if exc.code not in RETRY_STATUSES or attempt >= self.retries:
                    raise _fault(exc.code, payload) from None
                after = exc.headers.get("Retry-After") if exc.headers else None
                if after and after.isdigit():
                    delay = max(delay, min(float(after), 60.0))
            except (urlerror.URLError, socket.timeout, ConnectionError) as exc:
                if attempt >= self.retries:
                    reason = getattr(exc, "reason", exc)
                    raise ProtocolError(
                        "%s %s failed after %d attempts: %s" % (method, path, attempt + 1, reason)
                    ) from exc
            attempt += 1
            time.sleep(min(delay, 30.0))

    def _call(self, route, payload):
        # type: (str, Dict[str, Any]) -> Any
        body = json.dumps(payload).encode("utf-8")
        return json.loads(self._request("POST", "/" + route, body).decode("utf-8"))

    def _get(self, path):
        # type: (str) -> Any
        return json.loads(self._request("GET", path).decode("utf-8"))

    def limits(self):
        # type: () -> Dict[str, int]
        """The server's published limits (page size, batch size, upload size), read once."""
        with self._lock:
            if self._limits is None:
                self._limits = self._get("/limits")
            return dict(self._limits)

    def schema_read(self):
        # type: () -> Dict[str, Any]
        return self._get("/schema")["entities"]

    # ------------------------------------------------------------ reads

    def find(
        self,
        entity_type,
        filters,
        fields=None,
        order=None,
        filter_operator=None,
        limit=0,
        retired_only=False,
        page=0,
        include_archived_projects=True,
        additional_filter_presets=None,
    ):
        # type: (str, List[Any], Optional[List[str]], Optional[List[Dict[str, str]]], Optional[str], int, bool, int, bool, Optional[List[Dict[str, Any]]]) -> List[Dict[str, Any]]
        """Entities matching `filters`; every page is fetched unless `limit` or `page` says otherwise."""
        if isinstance(filters, dict):  # shotgun_api3 also takes {"filter_operator", "filters"}
            filter_operator = filters.get("filter_operator", filter_operator)
            filters = filters.get("filters", [])
        size = self.limits()["max_page_size"]
        body = {
            "entity_type": entity_type,
            "filters": filters,
            "fields": list(fields) if fields else ["id"],
            "order": order,
            "filter_operator": filter_operator,
            "retired_only": retired_only,
            "include_archived_projects": include_archived_projects,
            "additional_filter_presets": additional_filter_presets or None,
        }  # type: Dict[str, Any]
        if page:
            body.update(limit=min(limit or size, size), page=page)
            return list(self._call("find", body)["items"])
        found = []  # type: List[Dict[str, Any]]
        cursor = None
        while True:
            want = size if not limit else min(size, limit - len(found))
            body.update(limit=want, cursor=cursor)
            answer = self._call("find", body)
            found.extend(answer["items"])
            cursor = answer.get("next")
            if cursor is None or (limit and len(found) >= limit):
                return found

    def find_one(
        self,
        entity_type,
        filters,
        fields=None,
        order=None,
        filter_operator=None,
        retired_only=False,
        include_archived_projects=True,
        additional_filter_presets=None,
    ):
        # type: (str, List[Any], Optional[List[str]], Optional[List[Dict[str, str]]], Optional[str], bool, bool, Optional[List[Dict[str, Any]]]) -> Optional[Dict[str, Any]]
        found = self.find(
            entity_type,
            filters,
            fields,
            order,
            filter_operator,
            1,
            retired_only,
            0,
            include_archived_projects,
            additional_filter_presets,
        )
        return found[0] if found else None

    def summarize(
        self,
        entity_type,
        filters,
        summary_fields,
        filter_operator=None,
        grouping=None,
        include_archived_projects=True,
    ):
        # type: (str, List[Any], List[Dict[str, str]], Optional[str], Optional[List[Dict[str, str]]], bool) -> Dict[str, Any]
        return self._call(
            "summarize",
            {
                "entity_type": entity_type,
                "filters": filters,
                "summary_fields": summary_fields,
                "filter_operator": filter_operator,
                "grouping": grouping,
                "include_archived_projects": include_archived_projects,
            },
        )

    # ------------------------------------------------------------ writes

    def create(self, entity_type, data, return_fields=None):
        # type: (str, Dict[str, Any], Optional[List[str]]) -> Dict[str, Any]
        body = {"entity_type": entity_type, "data": data, "return_fields": return_fields}
        return self._call("create", body)

    def update(self, entity_type, entity_id, data, multi_entity_update_modes=None):
        # type: (str, int, Dict[str, Any], Optional[Dict[str, str]]) -> Dict[str, Any]
        body = {
            "entity_type": entity_type,
            "entity_id": entity_id,
            "data": data,
            "multi_entity_update_modes": multi_entity_update_modes,
        }
        return self._call("update", body)

    def delete(self, entity_type, entity_id):
        # type: (str, int) -> bool
        body = {"entity_type": entity_type, "entity_id": entity_id}
        return bool(self._call("delete", body)["result"])

    def revive(self, entity_type, entity_id):
        # type: (str, int) -> bool
        body = {"entity_type": entity_type, "entity_id": entity_id}
        return bool(self._call("revive", body)["result"])

    def batch(self, requests):
        # type: (List[Dict[str, Any]]) -> List[Any]
        """All the requests in one transaction: every one applies, or none does."""
        return list(self._call("batch", {"requests": list(requests)})["results"])

    # ------------------------------------------------------------ files

    def upload(
        self, entity_type, entity_id, path, field_name=None, display_name=None, tag_list=None
    ):
        # type: (str, int, str, Optional[str], Optional[str], Optional[str]) -> int
        """Attach a file to an entity (or to one of its fields); returns the attachment id."""
        with open(path, "rb") as handle:
            content = handle.read()
        limit = self.limits().get("max_upload_bytes")
        if limit and len(content) > limit:
            raise ValidationFault(
                "%s is %d bytes, over the server's %d-byte upload limit"
                % (path, len(content), limit),
                status=413,
                code="payload_too_large",
                details={"field": "file", "max_upload_bytes": limit},
            )
        fields = {"entity_type": entity_type, "entity_id": str(entity_id)}
        for key, value in (
            ("field_name", field_name),
            ("display_name", display_name),
            ("tag_list", tag_list),
        ):
            if value:
                fields[key] = value if isinstance(value, str) else ",".join(value)
        body, content_type = _multipart(fields, os.path.basename(path), content)
        answer = json.loads(self._request("POST", "/upload", body, content_type).decode("utf-8"))
        return int(answer["id"])

    def upload_thumbnail(self, entity_type, entity_id, path):
        # type: (str, int, str) -> int
        return self.upload(entity_type, entity_id, path, field_name="image")

    def download_attachment(self, attachment=False, file_path=None, attachment_id=None):
        # type: (Any, Optional[str], Optional[int]) -> Any
        """The attachment's bytes, or written to `file_path` (which is then returned)."""
        ident = attachment_id
        if ident is None and isinstance(attachment, dict):
            ident = attachment.get("id")
            url = attachment.get("url") or ""
            if ident is None and "/attachments/" in url:
                ident = int(url.split("/attachments/")[1].split("/")[0])
        elif ident is None and isinstance(attachment, int) and not isinstance(attachment, bool):
            ident = attachment
        if ident is None:
            raise ValidationFault("name the attachment: a dict with an id, or attachment_id")
        data = self._request("GET", "/attachments/%d/download" % int(ident))
        if file_path:
            with open(file_path, "wb") as out:
                out.write(data)
            return file_path
        return data

    def get_attachment_download_url(self, attachment):
        # type: (Any) -> str
        ident = attachment.get("id") if isinstance(attachment, dict) else attachment
        return "%s/api/v1/studio/attachments/%d/download" % (self.base_url, int(ident))


def _multipart(fields, filename, content):
    # type: (Dict[str, str], str, bytes) -> Any
    boundary = "----popcorn" + uuid.uuid4().hex
    parts = []
    for key, value in fields.items():
        parts.append(
            (
                '--%s\r\nContent-Disposition: form-data; name="%s"\r\n\r\n%s\r\n'
                % (boundary, key, value)
            ).encode("utf-8")
        )
    mime = mimetypes.guess_type(filename)[0] or "application/octet-stream"
    safe = urlparse.quote(filename, safe=" ._-")
    parts.append(
        (
            '--%s\r\nContent-Disposition: form-data; name="file"; filename="%s"\r\n'
            "Content-Type: %s\r\n\r\n" % (boundary, safe, mime)
        ).encode("utf-8")
        + content
        + b"\r\n"
    )
    parts.append(("--%s--\r\n" % boundary).encode("utf-8"))
    return b"".join(parts), "multipart/form-data; boundary=" + boundary
