"""The console: accounts with watcher states, an account's report, an item's history and
diff, issues, and roles with their repo state."""

from __future__ import annotations

from typing import Any

from popcorn.db import session_scope
from popcorn.listing import ListParams
from popcorn.security import schemas as s
from popcorn.security import service


def test_console_pages(app: Any, tokens: dict[str, str], sandbox: Any) -> None:
    from console_kit import Console, text_of

    ec2 = sandbox.client("ec2")
    sg = ec2.create_security_group(GroupName="db", Description="db")["GroupId"]
    rule = [
        {
            "IpProtocol": "tcp",
            "FromPort": 5432,
            "ToPort": 5432,
            "IpRanges": [{"CidrIp": "0.0.0.0/0"}],
        }
    ]
    with session_scope() as session:
        account = service.create_account(
            session=session,
            spec=s.AccountCreate.model_validate(
                sandbox.account_spec(watchers=["ec2_security_group"])
            ),
        ).id
    service.poll(account)
    ec2.authorize_security_group_ingress(GroupId=sg, IpPermissions=rule)
    service.poll(account)
    with session_scope(readonly=True) as session:
        [item] = [
            i
            for i in service.list_items(session=session, params=ListParams()).items
            if i.name == "db"
        ]
        item_id = item.id
    viewer = Console(app.test_client(), tokens["viewer"])
    index = text_of(viewer.page("/ui/security"))
    assert "prod" in index and "ec2_security_group" in index and "db" in index
    report = text_of(viewer.page("/ui/security/accounts/prod"))
    assert "ingress tcp/5432 open to the internet (0.0.0.0/0) (10)" in report
    page = viewer.page(f"/ui/security/items/{item_id}")
    assert "Revision 1 → 2" in page and "+" in page and "0.0.0.0/0" in page
    same = text_of(viewer.page(f"/ui/security/items/{item_id}?before=2&after=2"))
    assert "no difference" in same
    assert "open to the internet" in text_of(viewer.page("/ui/security/issues"))
    assert "No role usage yet" in text_of(viewer.page("/ui/security/roles"))
    viewer.page("/ui/security/items/99999999", status=404)
    viewer.page("/ui/security/accounts/nosuch", status=404)
