"""The Access Advisor client against a local endpoint that answers
GenerateServiceLastAccessedDetails / GetServiceLastAccessedDetails as AWS documents them
(moto lacks them) and passes every other call on to the moto server."""

from __future__ import annotations

import json
import threading
import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from popcorn.db import session_scope
from popcorn.security import roles, service
from popcorn.security import schemas as s

NS = "https://iam.amazonaws.com/doc/2010-05-08/"


def _advisor_server(moto: str, services: list[tuple[str, datetime | None]]) -> ThreadingHTTPServer:
    polls: list[int] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            action = urllib.parse.parse_qs(body.decode()).get("Action", [""])[0]
            if action == "GenerateServiceLastAccessedDetails":
                self._xml(action, "<JobId>examplef-1305-c245-eba4-71fe298bcda7</JobId>")
            elif action == "GetServiceLastAccessedDetails":
                polls.append(1)
                if len(polls) == 1:  # the first answer: still running, as AWS may say
                    self._xml(
                        action,
                        "<JobStatus>IN_PROGRESS</JobStatus><JobCreationDate>2026-12-01T00:00:00Z</JobCreationDate><ServicesLastAccessed/>",
                    )
                    return
                members = "".join(
                    "<member><ServiceName>{0}</ServiceName><ServiceNamespace>{0}</ServiceNamespace>{1}"
                    "<TotalAuthenticatedEntities>{2}</TotalAuthenticatedEntities></member>".format(
                        ns,
                        f"<LastAuthenticated>{when.strftime('%Y-%m-%dT%H:%M:%SZ')}</LastAuthenticated>"
                        if when
                        else "",
                        1 if when else 0,
                    )
                    for ns, when in services
                )
                self._xml(
                    action,
                    "<JobStatus>COMPLETED</JobStatus><JobType>SERVICE_LEVEL</JobType>"
                    "<JobCreationDate>2026-12-01T00:00:00Z</JobCreationDate>"
                    "<JobCompletionDate>2026-12-01T00:00:01Z</JobCompletionDate>"
                    f"<IsTruncated>false</IsTruncated><ServicesLastAccessed>{members}</ServicesLastAccessed>",
                )
            else:  # everything else is moto's
                request = urllib.request.Request(
                    moto + self.path, data=body, method="POST", headers=dict(self.headers)
                )
                with urllib.request.urlopen(request) as answer:
                    data = answer.read()
                    self.send_response(answer.status)
                    self.send_header("Content-Type", answer.headers.get("Content-Type", "text/xml"))
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)

        def _xml(self, action: str, inner: str) -> None:
            data = (
                f'<{action}Response xmlns="{NS}"><{action}Result>{inner}</{action}Result>'
                f"<ResponseMetadata><RequestId>r-1</RequestId></ResponseMetadata></{action}Response>"
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/xml")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return ThreadingHTTPServer(("127.0.0.1", 0), Handler)


@pytest.fixture
def advisor(sandbox: Any) -> Iterator[str]:
    now = datetime.now(UTC)
    server = _advisor_server(sandbox.endpoint, [("sqs", now - timedelta(days=3)), ("sns", None)])
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_service_level_usage_from_access_advisor_drives_the_repo(
    sandbox: Any, advisor: str, tmp_path: Any
) -> None:
    iam = sandbox.client("iam")
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "lambda.amazonaws.com"},
                "Action": "sts:AssumeRole",
            }
        ],
    }
    iam.create_role(RoleName="notifier", AssumeRolePolicyDocument=json.dumps(trust))
    doc = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": ["sqs:SendMessage", "sns:Publish"], "Resource": "*"}
        ],
    }
    iam.put_role_policy(RoleName="notifier", PolicyName="notify", PolicyDocument=json.dumps(doc))
    with session_scope() as session:
        service.create_account(
            session=session,
            spec=s.AccountCreate.model_validate(sandbox.account_spec(watchers=["iam_role"])),
        )
        roles.plan(
            session=session, account_ref="prod", name="notifier", rules=s.RepoRules(min_age_days=0)
        )
        got = roles.import_usage(
            session=session,
            account_ref="prod",
            spec=s.UsageRequest(directory=str(tmp_path), access_advisor=True),
            advisor_endpoint=advisor,
        )
        assert got["advisor_roles"] == 1 and got["records"] == 0
        dry = roles.plan(
            session=session, account_ref="prod", name="notifier", rules=s.RepoRules(min_age_days=0)
        )
    assert dry["repoable"] == ["sns:publish"]
    assert dry["policies"]["inline"]["notify"]["Statement"][0]["Action"] == "sqs:SendMessage"
