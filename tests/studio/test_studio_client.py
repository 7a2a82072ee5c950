"""The popcorn_studio client: stdlib only, Python 3.7 syntax, shotgun_api3's signatures."""

from __future__ import annotations

import ast
import inspect
import json
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

CLIENT = Path(__file__).resolve().parents[2] / "clients" / "popcorn_studio"
sys.path.insert(0, str(CLIENT))

import popcorn_studio  # noqa: E402

# shotgun_api3.Shotgun's documented signatures (self omitted).
SHOTGUN_API3 = {
    "find": "(entity_type, filters, fields=None, order=None, filter_operator=None, limit=0, "
    "retired_only=False, page=0, include_archived_projects=True, "
    "additional_filter_presets=None)",
    "find_one": "(entity_type, filters, fields=None, order=None, filter_operator=None, "
    "retired_only=False, include_archived_projects=True, additional_filter_presets=None)",
    "create": "(entity_type, data, return_fields=None)",
    "update": "(entity_type, entity_id, data, multi_entity_update_modes=None)",
    "delete": "(entity_type, entity_id)",
    "revive": "(entity_type, entity_id)",
    "batch": "(requests)",
    "upload": "(entity_type, entity_id, path, field_name=None, display_name=None, tag_list=None)",
    "download_attachment": "(attachment=False, file_path=None, attachment_id=None)",
    "summarize": "(entity_type, filters, summary_fields, filter_operator=None, grouping=None, "
    "include_archived_projects=True)",
}


@pytest.mark.parametrize("name", sorted(SHOTGUN_API3))
def test_signatures_match_shotgun_api3(name: str) -> None:
    method = getattr(popcorn_studio.Popcorn, name)
    params = list(inspect.signature(method).parameters.values())[1:]
    assert str(inspect.Signature(params)) == SHOTGUN_API3[name]


def test_sources_parse_as_python_37() -> None:
    for path in sorted((CLIENT / "popcorn_studio").glob("*.py")):
        source = path.read_text()
        ast.parse(source, filename=str(path), feature_version=(3, 7))
        assert 'f"' not in source and "f'" not in source, f"{path.name}: f-strings (3.6+ only)"
        assert ":=" not in source, path.name


def test_unreachable_server_is_a_protocol_error_after_retries() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    sg = popcorn_studio.Popcorn(f"http://127.0.0.1:{port}", "t", timeout=1, retries=2, backoff=0.01)
    with pytest.raises(popcorn_studio.ProtocolError, match="3 attempts"):
        sg.create("Shot", {"code": "x"})


def test_a_silent_server_times_out_on_uploads_too(tmp_path: Path) -> None:
    """shotgun_api3's uploads hang forever on a server that never answers; ours time out."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    accepted: list[Any] = []

    def accept() -> None:
        while True:
            try:
                accepted.append(server.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    path = tmp_path / "plate.exr"
    path.write_bytes(b"x" * 1000)
    sg = popcorn_studio.Popcorn(
        f"http://127.0.0.1:{server.getsockname()[1]}", "t", timeout=0.5, retries=1, backoff=0.01
    )
    sg._limits = {"max_page_size": 10, "max_upload_bytes": 10_000}
    try:
        with pytest.raises(popcorn_studio.ProtocolError):
            sg.upload("Version", 1, str(path))
        assert len(accepted) == 2  # the first try and one retry
    finally:
        server.close()
        for conn in accepted:
            conn.close()


def test_version_up() -> None:
    assert popcorn_studio.version_up("/a/v2/shot.v009.nk") == "/a/v2/shot.v010.nk"
    assert popcorn_studio.version_up("comp_v1.nk") == "comp_v2.nk"
    with pytest.raises(ValueError):
        popcorn_studio.version_up("comp.nk")


@pytest.mark.slow
def test_a_pipeline_script_runs_with_no_site_packages(
    live_server: str, tokens: dict[str, str], tmp_path: Path
) -> None:
    script = Path(__file__).with_name("client_script.py")
    done = subprocess.run(
        [
            sys.executable,
            "-I",
            "-S",
            str(script),
            str(CLIENT),
            live_server,
            tokens["operator"],
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["site_packages"] == []
    assert out["batch"] == [f"SEQ010_{n:04d}" for n in range(10, 60, 10)]
    assert out["find"] == [
        {
            "type": "Shot",
            "id": out["find"][0]["id"],
            "code": "SEQ010_0010",
            "sg_sequence.Sequence.code": "SEQ010",
            "sg_cut_duration": 10,
        }
    ]
    assert out["any"] == ["SEQ010_0020", "SEQ010_0050"]
    assert out["find_one"]["sg_cut_out"] == 1030
    assert out["limit"] == 2 and len(out["page2"]) == 2
    assert out["latest"] == ["SEQ010_0010_comp_v003"]  # additional_filter_presets
    assert out["summary"]["summaries"] == {"id": 5}
    assert out["bad_operator"] == "sg_cut_in" and out["missing"] == 404
    assert out["publishes"] == [
        f"{tmp_path}/SEQ010/SEQ010_0010/comp/comp.v001.nk",
        f"{tmp_path}/SEQ010/SEQ010_0010/comp/comp.v002.nk",
    ]
    assert out["version_up"].endswith("comp.v003.nk")
    assert (
        out["version"]["sg_status_list"] == "rev" and out["version"]["frame_range"] == "1001-1010"
    )
    assert [v["id"] for v in out["playlist"]] == [out["version"]["id"]]
    assert out["published_version"]["version"]["id"] == out["version"]["id"]
    assert len(out["published_version"]["upstream_published_files"]) == 1
    assert out["download"] == "\xff\xd8 jpeg bytes" and out["download_path"] is True
    assert out["deleted"] == [True, True]
    assert out["thread_errors"] == []
