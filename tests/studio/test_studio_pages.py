"""Studio console pages: status board, a shot's tasks and versions, a playlist with notes."""

from __future__ import annotations

from typing import Any

from console_kit import Console, text_of  # type: ignore[import-not-found]


def test_status_board_shot_and_playlist_pages(
    app: Any, tokens: dict[str, str], studio: Any, show: dict[str, Any]
) -> None:
    proj = show["proj"]
    shot = show["shots"][0]
    studio.call(
        "update",
        {
            "entity_type": "Task",
            "entity_id": show["tasks"][0]["id"],
            "data": {"sg_status_list": "ip"},
        },
    )
    version = studio.create(
        "Version",
        {
            "project": proj,
            "code": "SEQ010_0010_anim_v001",
            "entity": {"type": "Shot", "id": shot["id"]},
            "sg_first_frame": 1001,
            "sg_last_frame": 1010,
            "user": "ana",
        },
    )
    vref = {"type": "Version", "id": version["id"]}
    playlist = studio.create(
        "Playlist", {"project": proj, "code": "dailies-0412", "versions": [vref]}
    )
    note = studio.create(
        "Note",
        {
            "project": proj,
            "subject": "arm pop",
            "content": "fix the arm pop at 1005",
            "user": "sup",
            "addressings_to": ["ana"],
            "note_links": [vref],
        },
    )
    studio.create(
        "Note",
        {
            "project": proj,
            "content": "fixed in v002",
            "user": "ana",
            "reply_to": {"type": "Note", "id": note["id"]},
        },
    )
    console = Console(app.test_client(), tokens["viewer"])

    index = text_of(console.page("/ui/studio"))
    assert "Popcorn Show" in index and "dailies-0412" in index
    board = text_of(console.page(f"/ui/studio/projects/{proj['id']}"))
    assert (
        "Status board" in board
        and "Animation" in board
        and "Comp" in board
        and "SEQ020_0030" in board
    )
    shot_page = text_of(console.page(f"/ui/studio/shots/{shot['id']}"))
    assert "SEQ010_0010_anim_v001" in shot_page and "1001-1010" in shot_page and "ana" in shot_page
    playlist_page = text_of(console.page(f"/ui/studio/playlists/{playlist['id']}"))
    for text in (
        "dailies-0412",
        "SEQ010_0010_anim_v001",
        "fix the arm pop at 1005",
        "fixed in v002",
    ):
        assert text in playlist_page
    assert "not found" in text_of(console.page("/ui/studio/playlists/999999", status=404))
    overview = text_of(console.page("/ui/"))
    assert "Studio" in overview and "status board" in overview


def test_empty_studio_says_how_to_start(app: Any, tokens: dict[str, str]) -> None:
    page = text_of(Console(app.test_client(), tokens["viewer"]).page("/ui/studio"))
    assert "No projects yet" in page


def test_the_demo_show_has_a_review_playlist(app: Any, tokens: dict[str, str]) -> None:
    from popcorn.demo import studio as studio_demo

    built = studio_demo.build()
    assert built["shots"] == 24 and built["tasks"] == 96 and built["versions"] == 8
    console = Console(app.test_client(), tokens["viewer"])
    playlist = text_of(console.page(f"/ui/studio/playlists/{built['playlist_id']}"))
    assert "anim-dailies" in playlist and "arm pops at frame 1012" in playlist
    assert "Fixed, v003 is rendering" in playlist
    board = text_of(console.page(f"/ui/studio/projects/{built['project_id']}"))
    assert "Layout" in board and "Comp" in board
