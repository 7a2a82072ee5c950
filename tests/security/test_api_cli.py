"""The API and CLI over a moto-served account: roles by any path, bad input as 4xx or one
line, `--json` lists as `{"items": [...]}`."""

from __future__ import annotations

import json
from typing import Any

from click.testing import CliRunner

from popcorn.cli import cli
from popcorn.security.cli import group

cli.add_command(group)


def run(*args: str) -> Any:
    return CliRunner().invoke(cli, ["security", *args], catch_exceptions=False)


def test_api_accounts_items_issues_and_roles(api: Any, sandbox: Any) -> None:
    ec2 = sandbox.client("ec2")
    sg = ec2.create_security_group(GroupName="web", Description="web")["GroupId"]
    ec2.authorize_security_group_ingress(
        GroupId=sg,
        IpPermissions=[
            {
                "IpProtocol": "tcp",
                "FromPort": 80,
                "ToPort": 80,
                "IpRanges": [{"CidrIp": "0.0.0.0/0"}],
            }
        ],
    )
    spec = sandbox.account_spec(watchers=["ec2_security_group"], secret_access_key="")
    assert api.post("/api/v1/security/accounts", json=spec, role="operator").status_code == 403
    bad = api.post("/api/v1/security/accounts", json={**spec, "role_arn": "arn:nope"}, role="admin")
    assert bad.status_code == 422 and bad.json["error"]["code"]
    blocked = api.post(
        "/api/v1/security/accounts",
        json={**spec, "endpoint_url": "http://10.9.9.9:5000"},
        role="admin",
    )
    assert blocked.status_code == 403
    created = api.post("/api/v1/security/accounts", json=spec, role="admin")
    assert created.status_code == 201, created.json

    polled = run("poll", "prod", "--json")
    assert polled.exit_code == 0, polled.output
    assert json.loads(polled.output)["items"][0]["status"] == "ok"

    items = api.get("/api/v1/security/items?watcher=ec2_security_group&name=web").json["items"]
    assert items[0]["score"] == 10
    issue = api.get(f"/api/v1/security/issues?item_id={items[0]['id']}").json["items"][0]
    assert issue["title"] == "ingress tcp/80 open to the internet (0.0.0.0/0)"
    assert (
        api.post(
            f"/api/v1/security/issues/{issue['id']}/justify",
            json={"reason": "public web"},
            role="viewer",
        ).status_code
        == 403
    )
    justified = api.post(
        f"/api/v1/security/issues/{issue['id']}/justify",
        json={"reason": "public web"},
        role="operator",
    )
    assert justified.json["status"] == "justified" and justified.json["justified_by"]
    assert api.get("/api/v1/security/accounts/prod/report").json["total_score"] == 0
    assert api.get("/api/v1/security/items/999999/diff").status_code == 404
    revisions = api.get(f"/api/v1/security/items/{items[0]['id']}/revisions").json
    assert revisions["count"] == 1
    missing = api.post("/api/v1/security/accounts/prod/roles/ghost/plan", json={}, role="operator")
    assert missing.status_code == 422 and "ghost" in missing.json["error"]["message"]
    states = api.get("/api/v1/security/accounts/prod/watchers").json["items"]
    assert states[0]["watcher"] == "ec2_security_group" and states[0]["status"] == "ok"


def test_cli_lists_json_and_errors(sandbox: Any) -> None:
    added = run(
        "add-account",
        "dev",
        "--role-arn",
        sandbox.role_arn,
        "--endpoint-url",
        sandbox.endpoint,
        "--watcher",
        "s3_bucket",
        "--json",
    )
    assert added.exit_code == 0, added.output
    sandbox.client("s3").create_bucket(Bucket=f"b-{sandbox.account_id}")
    assert run("poll", "dev").exit_code == 0
    listed = json.loads(run("items", "--account", "dev", "--json").output)
    assert [i["name"] for i in listed["items"]] == [f"b-{sandbox.account_id}"]
    found = json.loads(run("issues", "--account", "dev", "--json").output)["items"]
    assert {i["title"] for i in found} == {
        "bucket has no default encryption",
        "public access is not blocked",
    }
    assert json.loads(run("accounts", "--json").output)["items"][0]["name"] == "dev"
    assert "dev" in run().output
    bad = run("poll", "nope")
    assert (
        bad.exit_code == 1
        and bad.output.startswith("Error: no account")
        and "Traceback" not in bad.output
    )
    bad = run("add-account", "x", "--role-arn", "arn:nope")
    assert bad.exit_code == 1 and "invalid input" in bad.output


def test_a_poll_runs_as_a_job_on_a_real_worker(api: Any, sandbox: Any, processes: Any) -> None:
    from popcorn.jobs import wait_for

    sandbox.client("sqs").create_queue(QueueName="jobs")
    spec = sandbox.account_spec(watchers=["sqs_queue"])
    assert api.post("/api/v1/security/accounts", json=spec, role="admin").status_code == 201
    queued = api.post("/api/v1/security/accounts/prod/poll", json={}, role="operator")
    assert queued.status_code == 202
    processes.start("worker", "--burst")
    job = wait_for(queued.json["details"]["job_id"], timeout=180)
    assert job.status == "finished", job.error
    assert job.result["sqs_queue"]["status"] == "ok" and job.result["sqs_queue"]["items"] == 1
    names = [i["name"] for i in api.get("/api/v1/security/items?watcher=sqs_queue").json["items"]]
    assert names == ["jobs"]
