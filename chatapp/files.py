"""Files attached to messages: uploaded over HTTP (``POST /api/rooms/{room}/files``, a
multipart form), kept on local disk under their SHA-256 (one copy however often sent),
read back through ``GET /files/{id}/{name}`` and ``GET /files/{id}/thumb`` by those who
may read the room.

An upload is a message: its caption (or the file's name) is the text and it carries the
file as ``file``. Images (PNG, JPEG, GIF, WebP, recognised by their content, never by
the name or the type the client claims) get a thumbnail and are shown inline; every
other file is served as ``application/octet-stream`` to download, so nothing uploaded
ever runs as a page (no SVG or HTML inline) or is sniffed into something else.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import logging
import os
import secrets
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from aiohttp import BodyPartReader, web
from PIL import Image, ImageOps, UnidentifiedImageError

from . import protocol
from .budget import MAX_COST
from .keys import handlers_key, settings_key, sign_ins_key, store_key
from .origins import client_ip
from .private_rooms import NOT_A_MEMBER
from .protocol import ProtocolError
from .signin import COOKIE_NAME
from .store import Attachment, MessageStore
from .views import over_budget, reader_of

if TYPE_CHECKING:
    from .settings import Settings

log = logging.getLogger(__name__)

#: Images shown inline (Pillow's format name -> the type they are served as).
IMAGE_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg", "GIF": "image/gif", "WEBP": "image/webp"}
#: Every other file is served as this, to download.
DOWNLOAD_TYPE = "application/octet-stream"
#: The last part of a thumbnail's address, ``/files/<id>/thumb``: no file is named so.
THUMB_ROUTE = "thumb"
#: The most pixels an image may have (a decompression bomb has far more): past it the
#: upload is refused before a pixel is decoded.
MAX_PIXELS = 25_000_000
#: A thumbnail's largest width and height.
THUMB_SIZE = (480, 480)
#: A file name's longest, in characters (longer ones are cut, keeping the extension).
MAX_NAME = 120
#: How long an upload quota counts back.
QUOTA_WINDOW_MS = 86_400_000
#: Blobs younger than this are never collected (their message may be being committed).
COLLECT_AFTER = 3600.0
CHUNK = 64 * 1024
#: The most of a refused upload read (and dropped) before answering.
DRAIN = 1024 * 1024
#: Fields of the upload form before the file, and the longest one, in bytes.
FIELDS = ("text", "client_id", "reply_to", "name", "key")
MAX_FIELD = 16 * 1024


class Refused(Exception):
    """An upload that cannot be taken: ``status`` and ``str(exc)`` for the answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class Image_:
    """What an image upload is: its type, size and thumbnail (bytes, WebP)."""

    type: str
    width: int
    height: int
    thumb: bytes


def default_dir(db: str) -> Path:
    """Where files go without ``--files-dir``: next to a SQLite database, else here."""
    if db.startswith(("postgresql://", "postgres://")):
        return Path("chatapp-files").resolve()
    path = Path(db.removeprefix("sqlite:///")).resolve()
    return path.with_name(path.name + "-files")


class FileStore:
    """Blobs by SHA-256 under ``root`` (``ab/abcdef...``), written whole or not at all."""

    def __init__(self, root: Path) -> None:
        self.root = root
        #: Images are inspected one at a time (a large one takes a hundred megabytes).
        self.images = asyncio.Semaphore(1)

    def path(self, digest: str) -> Path:
        return self.root / digest[:2] / digest

    async def receive(self, part: BodyPartReader, limit: int) -> tuple[Path, str, int]:
        """Stream ``part`` into a temporary file: (its path, SHA-256, size); Refused past
        ``limit`` bytes (nothing is kept)."""
        tmp_dir = self.root / "tmp"
        await asyncio.to_thread(tmp_dir.mkdir, parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=tmp_dir)
        digest, size = hashlib.sha256(), 0
        try:
            with os.fdopen(fd, "wb") as out:
                while chunk := await part.read_chunk(CHUNK):
                    size += len(chunk)
                    if size > limit:
                        raise Refused(413, f"file too large: at most {limit} bytes")
                    digest.update(chunk)
                    out.write(chunk)
        except BaseException:
            os.unlink(name)
            raise
        return Path(name), digest.hexdigest(), size

    def keep(self, tmp: Path, digest: str) -> None:
        """Move a received file into place (or drop it: those bytes are there already)."""
        target = self.path(digest)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            tmp.unlink()
        else:
            os.replace(tmp, target)

    def put(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        target = self.path(digest)
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(dir=target.parent)
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            os.replace(name, target)
        return digest

    async def forget(self, store: MessageStore, file: Attachment) -> None:
        """Remove a file's bytes (and its thumbnail's) unless another message has them."""
        digests = [d for d in (file.sha256, file.thumb) if d is not None]
        used = await store.referenced(digests)
        for digest in digests:
            if digest not in used:
                await asyncio.to_thread(self.path(digest).unlink, missing_ok=True)

    async def collect(self, store: MessageStore) -> int:
        """Remove the blobs no message has any more (their messages expired, or an upload
        failed half-way), and stale temporary files; how many went."""
        cutoff = time.time() - COLLECT_AFTER
        paths = await asyncio.to_thread(self._old_files, cutoff)
        blobs = [p for p in paths if p.parent.name != "tmp"]
        gone = [p for p in paths if p.parent.name == "tmp"]
        for i in range(0, len(blobs), 500):
            chunk = blobs[i : i + 500]
            used = await store.referenced([p.name for p in chunk])
            gone += [p for p in chunk if p.name not in used]
        for path in gone:
            await asyncio.to_thread(path.unlink, missing_ok=True)
        if gone:
            log.info("files: removed %d no message has any more", len(gone))
        return len(gone)

    def _old_files(self, cutoff: float) -> list[Path]:
        if not self.root.is_dir():
            return []
        return [
            p
            for d in self.root.iterdir()
            if d.is_dir()
            for p in d.iterdir()
            if p.is_file() and p.stat().st_mtime < cutoff
        ]


#: EXIF orientations that turn an image a quarter: its width is its height.
_QUARTER_TURNS = (5, 6, 7, 8)


def inspect_image(path: Path) -> Image_ | None:
    """The image ``path`` holds, with its thumbnail; None if it is no image we show
    (another format, or one Pillow cannot read); Refused if it has too many pixels.
    Only the header is read before the pixel count is checked, and a JPEG is decoded
    straight at about the thumbnail's size."""
    try:
        with Image.open(path) as image:
            kind = IMAGE_TYPES.get(image.format or "")
            if kind is None:
                return None
            width, height = image.size
            if width * height > MAX_PIXELS:
                raise Refused(413, f"image too large: at most {MAX_PIXELS} pixels")
            if image.getexif().get(0x0112) in _QUARTER_TURNS:
                width, height = height, width
            image.draft("RGB", THUMB_SIZE)
            image.thumbnail(THUMB_SIZE)  # an animation's first frame
            shown = ImageOps.exif_transpose(image)
            if shown.mode not in ("RGB", "RGBA"):
                shown = shown.convert("RGBA")
            out = io.BytesIO()
            shown.save(out, "WEBP", quality=80)
            return Image_(kind, width, height, out.getvalue())
    except Refused:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError, ValueError):
        return None


def clean_name(raw: str | None) -> str:
    """A file name to show and to save as: no directories, no control characters, at
    most :data:`MAX_NAME` characters (keeping the extension)."""
    name = (raw or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(c for c in name if c.isprintable()).strip().lstrip(".")
    if not name:
        return "file"
    if len(name) > MAX_NAME:
        stem, dot, ext = name.rpartition(".")
        ext = ext[:16] if dot else ""
        name = (stem if dot else name)[: MAX_NAME - len(ext) - 1] + ("." + ext if ext else "")
    return name


@dataclass(frozen=True, slots=True)
class Uploader:
    """Who uploads: as the message's sender, and the key their quota is counted by."""

    name: str
    user_id: str
    handle: str | None
    bot: bool
    account_id: str | None
    admin: bool
    quota_key: str


async def _uploader(request: web.Request, fields: dict[str, str]) -> Uploader:
    """The sender of an upload: a signed-in account (its cookie), a bot (its token), or
    a guest (the form's ``name`` and ``key``, as a Socket.IO client's ``auth``)."""
    handlers = request.app[handlers_key]
    sign_ins = request.app[sign_ins_key]
    address = client_ip(request, request.app[settings_key].trust_proxy)
    cookie = request.cookies.get(COOKIE_NAME)
    found = await sign_ins.find(cookie) if cookie else None
    if found is None:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer":
            found = await sign_ins.bot(token.strip())
            if found is None:
                raise Refused(401, "invalid bot token")
    if found is not None:
        account = found[1]
        banned = handlers.moderation.refusal(account.id, address)
        if banned is not None:
            raise Refused(403, banned)
        return Uploader(
            account.display_name,
            account.id,
            account.handle,
            account.role == "bot",
            account.id,
            account.role == "admin",
            account.id,
        )
    if not request.app[settings_key].guests:
        raise Refused(401, "sign in to upload files")
    banned = handlers.moderation.refusal(None, address)
    if banned is not None:
        raise Refused(403, banned)
    try:
        name = protocol.parse_name(fields.get("name"))
        key = protocol.parse_key(fields.get("key")) if fields.get("key") else None
    except ProtocolError as exc:
        raise Refused(400, str(exc)) from None
    if await handlers.accounts.owner_of(name) is not None:
        raise Refused(403, f"the name {name!r} belongs to an account: sign in to use it")
    return Uploader(
        name, protocol.user_id_for(key, name), None, False, None, False, "ip:" + address
    )


async def _drain(request: web.Request) -> None:
    """Read what is left of a refused upload's body, up to :data:`DRAIN`, so that the
    client, still sending, gets to read the answer (past that the connection closes)."""
    left = DRAIN
    while left > 0:
        chunk = await request.content.readany()
        if not chunk:
            return
        left -= len(chunk)


def _answer(status: int, body: dict[str, Any]) -> web.Response:
    return web.json_response(body, status=status)


def setup_files(app: web.Application, files: FileStore, settings: Settings) -> None:
    """The upload and download routes."""

    async def upload(request: web.Request) -> web.Response:
        try:
            return await _upload(request)
        except Refused as exc:
            await _drain(request)
            return _answer(exc.status, {"error": str(exc)})

    async def _upload(request: web.Request) -> web.Response:
        if (limited := over_budget(request, MAX_COST)) is not None:
            return limited
        limit = settings.upload_max_bytes
        if not limit:
            raise Refused(403, "uploads are off on this server")
        try:
            room = protocol.parse_room(request.match_info["room"])
        except ProtocolError as exc:
            raise Refused(404, str(exc)) from None
        if request.content_length is not None and request.content_length > limit + MAX_FIELD * 4:
            raise Refused(413, f"file too large: at most {limit} bytes")
        try:
            reader = await request.multipart()
        except (ValueError, AssertionError):
            raise Refused(400, "send a multipart/form-data form with a file field") from None
        fields: dict[str, str] = {}
        store = request.app[store_key]
        handlers = request.app[handlers_key]
        while True:
            part = await reader.next()
            if part is None:
                raise Refused(400, "no file: send it in the form's file field")
            if not isinstance(part, BodyPartReader):
                raise Refused(400, "nested multipart forms are not supported")
            if part.name in FIELDS and part.filename is None:
                value = await part.read(decode=False)
                if len(value) > MAX_FIELD:
                    raise Refused(400, f"invalid {part.name}: too long")
                try:
                    fields[part.name] = value.decode()
                except UnicodeDecodeError:
                    raise Refused(400, f"invalid {part.name}: not UTF-8") from None
                continue
            if part.name != "file":
                raise Refused(400, f"unknown field {part.name!r}")
            break
        sender = await _uploader(request, fields)
        if not await handlers.private_rooms.admits(room, sender.account_id):
            raise Refused(404, NOT_A_MEMBER)
        name = clean_name(part.filename)
        reply_to = fields.get("reply_to")
        try:
            req = protocol.parse_message(
                {
                    "text": fields.get("text") or name,
                    "client_id": fields.get("client_id"),
                    "reply_to": int(reply_to) if reply_to and reply_to.isdecimal() else reply_to,
                }
            )
        except ProtocolError as exc:
            raise Refused(400, str(exc)) from None
        tmp, digest, size = await files.receive(part, limit)
        try:
            if size == 0:
                raise Refused(400, "the file is empty")
            used = await store.uploaded(sender.quota_key, _now_ms() - QUOTA_WINDOW_MS)
            if used + size > settings.upload_quota_bytes:
                raise Refused(
                    413,
                    f"upload quota reached: {settings.upload_quota_bytes} bytes a day "
                    f"({used} used)",
                )
            async with files.images:  # one at a time: decoding takes memory
                image = await asyncio.to_thread(inspect_image, tmp)
            thumb = await asyncio.to_thread(files.put, image.thumb) if image else None
            await asyncio.to_thread(files.keep, tmp, digest)
        except BaseException:
            await asyncio.to_thread(tmp.unlink, missing_ok=True)
            raise
        if name == THUMB_ROUTE:  # /files/<id>/thumb is the thumbnail's address
            name += "." + ((image.type.split("/")[1] if image else None) or "bin")
        attachment = Attachment(
            id=secrets.token_urlsafe(12),
            name=name,
            type=image.type if image else DOWNLOAD_TYPE,
            size=size,
            sha256=digest,
            width=image.width if image else None,
            height=image.height if image else None,
            thumb=thumb,
            uploader=sender.quota_key,
        )
        try:
            msg, created = await handlers.post(
                room,
                sender.name,
                sender.user_id,
                req,
                sender.handle,
                sender.bot,
                admin=sender.admin,
                attachment=attachment,
            )
        except ProtocolError as exc:
            raise Refused(400, str(exc)) from None
        log.info("%s attached %s (%d bytes) to #%s/%d", sender.user_id, name, size, room, msg.id)
        return _answer(201 if created else 200, {"ok": True, "message": msg.to_dict()})

    async def download(request: web.Request) -> web.StreamResponse:
        return await _send(request, thumb=False)

    async def thumbnail(request: web.Request) -> web.StreamResponse:
        return await _send(request, thumb=True)

    async def _send(request: web.Request, thumb: bool) -> web.StreamResponse:
        found = await request.app[store_key].file(request.match_info["id"])
        handlers = request.app[handlers_key]
        reader = await reader_of(request)
        if found is None or not await handlers.private_rooms.admits(found[0], reader):
            return _answer(404, {"error": "no such file"})
        file = found[1]
        digest = file.thumb if thumb else file.sha256
        path = files.path(digest) if digest is not None else None
        if path is None or not path.is_file():
            return _answer(404, {"error": "no such file"})
        inline = thumb or file.type in IMAGE_TYPES.values()
        disposition = "inline" if inline else "attachment"
        headers = {
            "Content-Type": "image/webp" if thumb else file.type,
            "Content-Disposition": f"{disposition}; filename*=UTF-8''{quote(file.name)}",
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "default-src 'none'; sandbox",
            "Cache-Control": "private, max-age=86400, immutable",
        }
        return web.FileResponse(path, headers=headers)

    app.router.add_post("/api/rooms/{room}/files", upload)
    app.router.add_get("/files/{id}/" + THUMB_ROUTE, thumbnail)
    app.router.add_get("/files/{id}/{name}", download)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000
