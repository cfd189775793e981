"""Files: an upload (``POST /api/rooms/{room}/files``) is a message carrying the file; an
image gets a thumbnail and is shown inline, anything else downloads; only those who may
read the room read its files; a deletion or expiry takes the bytes off the disk; and
every bad upload gets a clear error while nothing else is disturbed."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path
from typing import Any

import aiohttp
from PIL import Image

from chatapp.store import Attachment, Message, open_store
from chatapp.store.base import now_ms

from .support import Client, Server
from .test_bots import add_bot
from .test_deleting import ANN_KEY, tombstone_of
from .test_export import chatapp
from .test_mentions import accounts
from .test_sign_in import cookie


def png(width: int = 64, height: int = 48, color: str = "red") -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), color).save(out, "PNG")
    return out.getvalue()


async def upload(
    server: Server,
    room: str,
    data: bytes,
    filename: str = "photo.png",
    *,
    headers: dict[str, str] | None = None,
    content_type: str = "image/png",
    **fields: str,
) -> tuple[int, dict[str, Any]]:
    form = aiohttp.FormData()
    for name, value in fields.items():
        form.add_field(name, value)
    form.add_field("file", data, filename=filename, content_type=content_type)
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{server.url}/api/rooms/{room}/files", data=form, headers=headers) as resp,
    ):
        return resp.status, await resp.json()


async def fetch(
    server: Server, path: str, headers: dict[str, str] | None = None
) -> tuple[int, bytes, Any]:
    async with aiohttp.ClientSession() as http, http.get(server.url + path, headers=headers) as r:
        return r.status, await r.read(), r.headers


def blobs(server: Server) -> list[Path]:
    root = Path(server.db + "-files")
    return [p for p in root.rglob("*") if p.is_file() and p.parent.name != "tmp"]


async def test_an_image_is_a_message_with_a_thumbnail_shown_inline(
    start_server, make_client
) -> None:
    server: Server = await start_server()
    watcher: Client = make_client()
    await watcher.connect(server.url, room="team", name="wes")
    data = png(1200, 900)
    status, body = await upload(
        server, "team", data, "holiday.png", name="ann", key=ANN_KEY, text="look!", client_id="u1"
    )
    assert status == 201, body
    msg = body["message"]
    assert msg["text"] == "look!" and msg["name"] == "ann"
    file = msg["file"]
    assert file == {
        "id": file["id"],
        "name": "holiday.png",
        "type": "image/png",
        "size": len(data),
        "width": 1200,
        "height": 900,
        "thumb": True,
    }
    assert await watcher.wait_for("message") == msg
    status, got, headers = await fetch(server, f"/files/{file['id']}/holiday.png")
    assert status == 200 and got == data
    assert headers["Content-Type"] == "image/png"
    assert headers["Content-Disposition"].startswith("inline")
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in headers["Content-Security-Policy"]
    status, thumb, headers = await fetch(server, f"/files/{file['id']}/thumb")
    assert status == 200 and headers["Content-Type"] == "image/webp"
    with Image.open(io.BytesIO(thumb)) as small:
        assert small.format == "WEBP" and max(small.size) <= 480
    # History carries it; one copy on disk per content, however often sent (a retry too).
    assert (await watcher.call("history", {}))["messages"] == [msg]
    again = await upload(
        server, "team", data, "holiday.png", name="ann", key=ANN_KEY, client_id="u1"
    )
    assert again == (200, body)
    await upload(server, "team", data, "same.png", name="ann", key=ANN_KEY)
    assert sorted(p.name for p in blobs(server)) == sorted(
        {hashlib.sha256(data).hexdigest(), hashlib.sha256(thumb).hexdigest()}
    )


async def test_other_files_download_whatever_they_claim_to_be(start_server) -> None:
    server: Server = await start_server()
    cases = [
        ("page.html", b"<html><script>alert(1)</script></html>", "text/html"),
        (
            "logo.svg",
            b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>',
            "image/svg+xml",
        ),
        ("lie.png", b"<script>alert(1)</script>", "image/png"),  # a MIME lie
        ("notes.txt", "plain words, ünïcode".encode(), "text/plain"),
    ]
    for name, data, claimed in cases:
        status, body = await upload(
            server, "team", data, name, content_type=claimed, name="ann", key=ANN_KEY
        )
        assert status == 201, body
        file = body["message"]["file"]
        assert file["type"] == "application/octet-stream" and "thumb" not in file
        assert body["message"]["text"] == name  # no caption: the file's name
        status, got, headers = await fetch(server, f"/files/{file['id']}/{name}")
        assert status == 200 and got == data
        assert headers["Content-Type"] == "application/octet-stream"
        assert headers["Content-Disposition"].startswith("attachment; filename*=UTF-8''")
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert (await fetch(server, f"/files/{file['id']}/thumb"))[0] == 404


async def raw_upload(server: Server, room: str, filename: str, data: bytes) -> dict[str, Any]:
    """An upload whose file name goes as a browser sends it: raw, in quotes."""
    boundary = "----chatapp-test-boundary"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="name"\r\n\r\nann\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="key"\r\n\r\n{ANN_KEY}\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
            f'filename="{filename}"\r\nContent-Type: application/octet-stream\r\n\r\n'
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{server.url}/api/rooms/{room}/files", data=body, headers=headers) as resp,
    ):
        assert resp.status == 201, await resp.text()
        answer: dict[str, Any] = await resp.json()
        return answer


async def test_a_path_in_the_name_is_only_a_name(start_server) -> None:
    server: Server = await start_server()
    for raw, shown in [
        ("../../etc/passwd", "passwd"),
        ("..\\..\\boot.ini", "boot.ini"),
        ("..", "file"),
        ("/", "file"),
        ("a\tb\u202ec.txt", "abc.txt"),
        ("x" * 300 + ".tar.gz", "x" * 117 + ".gz"),
        ("résumé 2026.pdf", "résumé 2026.pdf"),
    ]:
        body = await raw_upload(server, "team", raw, b"data")
        assert body["message"]["file"]["name"] == shown, raw
    assert not (Path(server.db).parent.parent / "etc").exists()
    assert all(len(p.name) == 64 for p in blobs(server))


async def test_bad_uploads_get_a_clear_error_and_leave_nothing(start_server, make_client) -> None:
    server: Server = await start_server(
        "--upload-max-bytes", "8192", "--upload-quota-bytes", "9000"
    )
    watcher: Client = make_client()
    await watcher.connect(server.url, room="team", name="wes")
    guest = {"name": "ann", "key": ANN_KEY}
    assert await upload(server, "team", b"x" * 8193, "big.bin", **guest) == (
        413,
        {"error": "file too large: at most 8192 bytes"},
    )
    assert await upload(server, "team", b"", "empty.txt", **guest) == (
        400,
        {"error": "the file is empty"},
    )
    bomb = io.BytesIO()
    Image.new("1", (6000, 6000)).save(bomb, "PNG")  # 36 megapixels in a few kilobytes
    assert len(bomb.getvalue()) < 8192
    assert await upload(server, "team", bomb.getvalue(), "bomb.png", **guest) == (
        413,
        {"error": "image too large: at most 25000000 pixels"},
    )
    truncated = png(200, 200)[:300]
    status, body = await upload(server, "team", truncated, "broken.png", **guest)
    assert status == 201 and body["message"]["file"]["type"] == "application/octet-stream"
    assert (await upload(server, "team", b"ok" * 1000, "two.txt", **guest))[0] == 201
    quota = await upload(server, "team", b"z" * 7000, "three.txt", **guest)
    assert quota[0] == 413
    assert quota[1]["error"] == "upload quota reached: 9000 bytes a day (2300 used)"
    for name, value in {"name": "", "key": "short"}.items():
        status, body = await upload(server, "team", b"a", "a.txt", **{**guest, name: value})
        assert status == 400 and body["error"].startswith(f"invalid {name}"), body
    assert (await upload(server, "no%20room", b"a", "a.txt", **guest))[0] == 404
    assert (await upload(server, "team", b"a", "a.txt", text=" ", **guest))[1] == {
        "error": "invalid text: must be 1-2000 characters"
    }
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{server.url}/api/rooms/team/files", data=b"raw bytes") as resp,
    ):
        assert resp.status == 400
        assert (await resp.json())["error"] == "send a multipart/form-data form with a file field"
    form = aiohttp.FormData(default_to_multipart=True)
    form.add_field("text", "no file here")
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{server.url}/api/rooms/team/files", data=form) as resp,
    ):
        assert (resp.status, await resp.json()) == (
            400,
            {"error": "no file: send it in the form's file field"},
        )
    # Only the accepted uploads became messages, and only their bytes are on disk.
    history = (await watcher.call("history", {}))["messages"]
    assert [m["text"] for m in history] == ["broken.png", "two.txt"]
    assert len(blobs(server)) == 2
    assert list((Path(server.db + "-files") / "tmp").iterdir()) == []
    # And the server goes on serving.
    assert (await watcher.send("still here"))["ok"] is True


async def test_uploads_can_be_turned_off_and_need_a_sign_in_without_guests(start_server) -> None:
    off: Server = await start_server("--upload-max-bytes", "0")
    assert await upload(off, "team", b"a", "a.txt", name="ann") == (
        403,
        {"error": "uploads are off on this server"},
    )
    closed: Server = await start_server("--no-guests")
    assert await upload(closed, "team", b"a", "a.txt", name="ann") == (
        401,
        {"error": "sign in to upload files"},
    )


async def test_a_private_conversations_files_are_its_peoples_only(
    start_server, make_client, db: str
) -> None:
    server: Server = await start_server("--db", db)
    tokens = await accounts(server, db)
    ann = make_client(headers=cookie(tokens["ann"]))
    await ann.connect(server.url, room="lobby")
    room = (await ann.call("dm", {"with": ["bob"]}))["room"]
    status, body = await upload(server, room, png(), headers=cookie(tokens["ann"]))
    assert status == 201, body
    file = body["message"]["file"]
    assert body["message"]["handle"] == "ann"
    for token in (tokens["ann"], tokens["bob"]):
        assert (await fetch(server, f"/files/{file['id']}/photo.png", cookie(token)))[0] == 200
        assert (await fetch(server, f"/files/{file['id']}/thumb", cookie(token)))[0] == 200
    for headers in (cookie(tokens["boss"]), None):
        assert (await fetch(server, f"/files/{file['id']}/photo.png", headers))[0] == 404
        assert (await fetch(server, f"/files/{file['id']}/thumb", headers))[0] == 404
    # Nor can a third person post a file into it.
    assert (await upload(server, room, png(), headers=cookie(tokens["boss"])))[0] == 404
    assert (await fetch(server, "/files/no-such-file/x.png"))[0] == 404


async def test_a_bot_uploads_with_its_token(start_server) -> None:
    server: Server = await start_server()
    token = await add_bot(server, "ci-bot", "--display-name", "CI")
    status, body = await upload(
        server, "builds", b"build log", "build.log", headers={"Authorization": f"Bearer {token}"}
    )
    assert status == 201 and body["message"]["bot"] is True and body["message"]["name"] == "CI"
    bad = await upload(server, "builds", b"x", "x.log", headers={"Authorization": "Bearer nope"})
    assert bad == (401, {"error": "invalid bot token"})


async def test_deleting_the_message_deletes_its_file(start_server, make_client) -> None:
    server: Server = await start_server()
    ann: Client = make_client()
    await ann.connect(server.url, room="team", name="ann", key=ANN_KEY)
    _, body = await upload(server, "team", png(color="blue"), name="ann", key=ANN_KEY)
    kept = await upload(server, "team", png(color="green"), name="ann", key=ANN_KEY)
    file = body["message"]["file"]
    assert len(blobs(server)) == 4  # two images, two thumbnails
    gone = await tombstone_of(await ann.call("delete", {"id": body["message"]["id"]}))
    assert "file" not in gone
    assert (await fetch(server, f"/files/{file['id']}/photo.png"))[0] == 404
    assert len(blobs(server)) == 2
    assert (await fetch(server, f"/files/{kept[1]['message']['file']['id']}/photo.png"))[0] == 200


async def test_expired_messages_take_their_files_at_the_next_sweep(
    start_server, tmp_path: Path
) -> None:
    db = str(tmp_path / "chat.db")
    data = b"an old report"
    digest = hashlib.sha256(data).hexdigest()
    blob = Path(db + "-files") / digest[:2] / digest
    blob.parent.mkdir(parents=True)
    blob.write_bytes(data)
    orphan = blob.parent / ("0" * 64)  # an upload that never became a message
    orphan.write_bytes(b"half")
    for path in (blob, orphan):
        os.utime(path, (1_000_000_000, 1_000_000_000))
    store = open_store(db)
    await store.open()
    try:
        old = now_ms() - 90 * 86_400_000
        attachment = Attachment("f1", "report.txt", "application/octet-stream", 13, digest)
        await store.restore(
            "team", [Message(1, "team", "Ann", "report.txt", old, "g:ann", attachment=attachment)]
        )
    finally:
        await store.close()
    server: Server = await start_server("--db", db, "--retention-days", "30")
    assert not blob.exists() and not orphan.exists()
    assert "files: removed 2 no message has any more" in server.log()


async def test_an_export_carries_the_files_description_and_where_its_bytes_are(
    start_server, tmp_path: Path
) -> None:
    server: Server = await start_server()
    _, body = await upload(server, "team", png(), "a.png", name="ann", key=ANN_KEY)
    file = body["message"]["file"]
    export = chatapp("export", "--db", server.db).stdout
    copy = str(tmp_path / "copy.db")
    assert chatapp("import", "-", "--db", copy, stdin=export).returncode == 0
    store = open_store(copy)
    await store.open()
    try:
        (restored,) = (await store.recent("team", 10)).messages
        assert restored.to_dict() == body["message"]
        room, attachment = await store.file(file["id"]) or ("", None)
        assert room == "team" and attachment is not None
        assert attachment.sha256 == hashlib.sha256(png()).hexdigest()
    finally:
        await store.close()


async def test_files_on_several_processes_sharing_a_files_directory(
    cluster, make_client, tmp_path: Path
) -> None:
    """Processes behind one address share the files directory (docs/deploy.md): a file
    sent to one is read from another, and a deletion on another takes its bytes away."""
    shared = tmp_path / "files"
    one, two = await cluster(2, "--files-dir", str(shared))
    watcher: Client = make_client()
    await watcher.connect(two.url, room="team", name="wes")
    data = png(900, 600, "blue")
    status, body = await upload(one, "team", data, "plan.png", name="ann", key=ANN_KEY)
    assert status == 201, body
    msg = body["message"]
    assert await watcher.wait_for("message") == msg
    ident = msg["file"]["id"]
    status, got, _ = await fetch(two, f"/files/{ident}/plan.png")
    assert status == 200 and got == data
    status, _, headers = await fetch(two, f"/files/{ident}/thumb")
    assert status == 200 and headers["Content-Type"] == "image/webp"
    stored = [p for p in shared.rglob("*") if p.is_file() and p.parent.name != "tmp"]
    assert len(stored) == 2  # the image and its thumbnail

    ann: Client = make_client()
    await ann.connect(two.url, room="team", name="ann", key=ANN_KEY)
    await tombstone_of(await ann.call("delete", {"id": msg["id"]}))
    for server in (one, two):
        status, _, _ = await fetch(server, f"/files/{ident}/plan.png")
        assert status == 404
    assert [p for p in shared.rglob("*") if p.is_file() and p.parent.name != "tmp"] == []


async def test_a_file_named_thumb_keeps_its_own_address(start_server) -> None:
    """``/files/<id>/thumb`` is the thumbnail's address, so a file named exactly ``thumb``
    is given an extension, and its own address stays distinct."""
    server: Server = await start_server()
    status, body = await upload(server, "team", png(), "thumb", name="ann", key=ANN_KEY)
    assert status == 201, body
    image = body["message"]["file"]
    assert image["name"] == "thumb.png"
    status, got, headers = await fetch(server, f"/files/{image['id']}/thumb.png")
    assert status == 200 and headers["Content-Type"] == "image/png" and got == png()
    status, body = await upload(
        server, "team", b"notes", "thumb", name="ann", key=ANN_KEY, content_type="text/plain"
    )
    assert status == 201, body
    other = body["message"]["file"]
    assert other["name"] == "thumb.bin"
    status, got, _ = await fetch(server, f"/files/{other['id']}/thumb.bin")
    assert status == 200 and got == b"notes"
