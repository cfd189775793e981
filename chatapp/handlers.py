"""Socket.IO event handlers: the protocol of ``docs/protocol.md`` on top of store and presence.

A message is received here (:meth:`ChatHandlers.on_message`), validated
(``protocol.parse_message``), stored (``store``), then published to its room
(``fanout.FeedManager.publish``), whence the feed of every process delivers it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import socketio

from . import protocol, search
from .access import AccessControl
from .accounts import AccountError, Accounts
from .announcer import Announcer
from .bots import is_bot_token
from .budget import EVENT_COST, AddressBudget, event_cost
from .dms import DirectMessages
from .fanout import FeedManager
from .feed import CHANGED_EVENT, RoomFeed
from .mentions import Mentions, read_mentions, resolve_mentions
from .metrics import Metrics
from .moderation import Moderation
from .paging import newest_within
from .presence import Presence, member, people, person
from .private_rooms import NOT_A_MEMBER, PrivateRooms
from .protocol import ProtocolError
from .ratelimit import TokenBucket
from .sessions import Sessions
from .settings import Settings
from .signin import SignIns, session_cookie
from .store import Account, Attachment, Message, Page, SignIn, Store
from .store.reactions import ReactionRefused

if TYPE_CHECKING:
    from .files import FileStore

log = logging.getLogger(__name__)

Ack = dict[str, Any]
#: While someone keeps typing, ``typing: true`` is repeated to the room at most this often,
#: so that clients can expire an indicator whose sender vanished.
TYPING_RENEW = 3.0
#: Seconds between checks that the sign-ins of open connections have not ended.
SIGN_IN_CHECK = 1.0
#: Why a connection whose sign-in ended (signed out, revoked, expired) is refused.
SIGNED_OUT = "signed out: sign in again, or reload the page to chat as a guest"


#: Bots whose API message rate is kept at once (far more than a team has).
MAX_BOT_BUCKETS = 10_000
#: Why a connection with a bot token that is not (or no longer) one is refused.
BOT_TOKEN_INVALID = "invalid bot token"
#: Why a connection without a sign-in is refused on a server without guests.
NO_GUESTS = "sign in to chat: this server has no guests"
NO_SUCH_MESSAGE = "no such message"
NO_REPLY_TARGET = "no such message to reply to"
MESSAGE_DELETED = "this message was deleted"
NOT_YOURS_TO_EDIT = "you can only edit your own messages"
#: Subscriptions one connection may make per second, after a burst of as many as it may
#: hold (``--max-rooms-per-connection``): a page opening with all its rooms.
SUBSCRIBE_RATE = 1.0
#: Prefixes a chat room's name to make the Socket.IO room of its subscribers (a name no
#: chat room has).
SUBSCRIBED = "+"
#: Prefixes an account's id to make the Socket.IO room of its connections.
ACCOUNT = "@"


def not_in(room: str) -> str:
    return f"not in #{room}: subscribe to it first"


NOT_YOURS = "you can only delete your own messages"


def handle_taken(name: str) -> str:
    return f"the name {name!r} belongs to an account: sign in to use it"


@dataclass(frozen=True, slots=True)
class _Join:
    """What a connection's welcome (or subscribe answer) for a room is made of, read while
    it joined."""

    room: str
    page: Page
    head: int  # the room's newest id at the read
    since: int | None  # the client's, or None when it starts over
    limit: int
    rev: int  # the room's newest change number, read before the page
    changed: list[dict[str, Any]] | None  # changes to the messages up to since
    reset: bool  # too much changed: the client starts over from the newest


@dataclass(eq=False, slots=True)
class Connection:
    """What the server knows about one Socket.IO connection."""

    sid: str
    room: str  # the room it connected to: events that name no room are for it
    name: str
    user_id: str  # who: an account's id, or see protocol.user_id_for
    keyed: bool  # the id comes from the client's key (else from its name, and follows it)
    #: The account's handle when signed in (its name is then the account's display name),
    #: and the sign-in it came with (its end disconnects the connection).
    handle: str | None
    sign_in: str | None
    bot: bool  # a bot account's connection
    admin: bool  # signed in as an admin (when it connected; checked again when it matters)
    bucket: TokenBucket  # messages
    events: TokenBucket  # every event, messages included
    ip: str
    #: Every room it is in: the one it connected to (until it unsubscribes) and those it
    #: subscribed to, including one whose subscription is under way.
    rooms: set[str] = field(default_factory=set)
    subscribes: TokenBucket | None = None  # made at its first subscribe
    #: In the room it connected to the way it did before subscriptions existed: its
    #: events there (typing) do not name the room, as before.
    home: bool = False
    limited: bool = False  # whether the event limit was hit (logged once per connection)
    joined: bool = False  # the welcome was sent: events may be handled
    # Made only for an event that arrives before the welcome (rare), to wait on.
    join_waiter: asyncio.Event | None = None
    typing_room: str | None = None  # where it types (one room at a time)
    typing_since: float | None = None  # when typing: true was last sent to the room
    typing_timer: asyncio.TimerHandle | None = None

    @property
    def account_id(self) -> str | None:
        """The account's id when signed in (a bot's too); None for a guest."""
        return self.user_id if self.handle is not None else None

    def member(self) -> str:
        """This connection's presence key: who it is, as the room is shown it."""
        return member(self.user_id, self.name, self.handle, self.bot)

    def identity(self) -> dict[str, Any]:
        """Who sends what this connection sends, as its typing events carry it: like a
        message's sender (``handle``, and ``bot: true``, only for an account's)."""
        who: dict[str, Any] = {"name": self.name, "user_id": self.user_id}
        if self.handle is not None:
            who["handle"] = self.handle
            if self.bot:
                who["bot"] = True
        return who

    def set_joined(self) -> None:
        self.joined = True
        if self.join_waiter is not None:
            self.join_waiter.set()


def ok(**fields: Any) -> Ack:
    return {"ok": True, **fields}


def error(message: str, **fields: Any) -> Ack:
    return {"ok": False, "error": message, **fields}


class ChatHandlers:
    """Registers the chat events on ``sio`` and keeps this process's connections."""

    def __init__(
        self,
        sio: socketio.AsyncServer,
        settings: Settings,
        store: Store,
        presence: Presence,
        feed: RoomFeed,
        fanout: FeedManager,
        sessions: Sessions[Any],
        access: AccessControl | None = None,
        budget: AddressBudget | None = None,
        *,
        accounts: Accounts,
        sign_ins: SignIns,
        moderation: Moderation,
        private_rooms: PrivateRooms,
        dms: DirectMessages,
        metrics: Metrics | None = None,
        files: FileStore | None = None,
    ) -> None:
        self.sio = sio
        #: Where uploaded files are (their bytes go with a deleted message).
        self.files = files
        self.metrics = metrics if metrics is not None else Metrics()
        self.dms = dms
        self.private_rooms = private_rooms
        self.accounts = accounts
        self.sign_ins = sign_ins
        self.moderation = moderation
        self.access = access if access is not None else AccessControl("")
        self.budget = (
            budget if budget is not None else AddressBudget(settings.ip_burst, settings.ip_rate)
        )
        self.settings = settings
        self.store = store
        self.presence = presence
        self.announcer = Announcer(presence, self._emit_presence)
        self.feed = feed
        self.fanout = fanout
        self.sessions = sessions
        self.connections: dict[str, Connection] = {}
        #: The message rate of each bot posting through the API (per bot, not per request).
        self._bot_buckets: dict[str, TokenBucket] = {}
        self.per_ip: Counter[str] = Counter()
        self._tasks: set[asyncio.Task[Any]] = set()
        # Set when the server stops: everyone is being disconnected at once.
        self._stopping = False

        sio.on("connect", self.on_connect)
        sio.on("disconnect", self.on_disconnect)
        for event, handler in {
            "message": self.on_message,
            "typing": self.on_typing,
            "history": self.on_history,
            "rename": self.on_rename,
            "delete": self.on_delete,
            "edit": self.on_edit,
            "edits": self.on_edits,
            "react": self.on_react,
            "search": self.on_search,
            "read": self.on_read,
            "dm": self.on_dm,
            "subscribe": self.on_subscribe,
            "unsubscribe": self.on_unsubscribe,
        }.items():
            sio.on(event, self._guarded(event, handler))
        sio.on("*", self.on_unknown)
        presence.on_change(self._presence_changed)

    # -- plumbing -------------------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _guarded(
        self, event: str, handler: Callable[[Connection, Any], Awaitable[Ack]]
    ) -> Callable[..., Awaitable[Ack]]:
        """Wrap a handler so that any bad input or failure becomes ``{ok: false, error}``."""

        async def guarded(sid: str, *args: Any) -> Ack:
            conn = self.connections.get(sid)
            if conn is None:
                return error("not connected")
            if not conn.joined:
                if conn.join_waiter is None:
                    conn.join_waiter = asyncio.Event()
                await conn.join_waiter.wait()
            limited = self._limit_events(conn, event) or self._limit_address(
                conn, event, event_cost(event, args)
            )
            if limited is not None:
                if event == "message":
                    self.metrics.refused(str(limited.get("error")))
                return limited
            try:
                if len(args) != 1:
                    raise ProtocolError("invalid payload: expected one object")
                answer = await handler(conn, args[0])
            except ProtocolError as exc:
                log.debug("%s from %s rejected: %s", event, sid, exc)
                answer = error(str(exc))
            except Exception:
                log.exception("%s from %s failed", event, sid)
                answer = error("server error, please retry")
            if event == "message" and not answer.get("ok"):
                self.metrics.refused(str(answer.get("error")))
            return answer

        return guarded

    def _limit_events(self, conn: Connection, event: str) -> Ack | None:
        wait = conn.events.take()
        if not wait:
            return None
        if not conn.limited:
            conn.limited = True
            log.info("%s from %s hit the event rate limit (%s)", conn.sid, conn.ip, event)
        return error("rate limited", retry_after=round(wait, 3))

    def _limit_address(self, conn: Connection, event: str, cost: int) -> Ack | None:
        """Charge the event to its client address's budget (``chatapp.budget``)."""
        wait = self.budget.spend(conn.ip, cost, event)
        if not wait:
            return None
        return error("rate limited", retry_after=round(wait, 3))

    async def on_unknown(self, *args: Any) -> Ack:
        # Normally (event, sid, *data); a client may also name its event "*" itself, and
        # then python-socketio passes (sid, *data).
        named = len(args) > 1 and isinstance(args[1], str) and args[1] in self.connections
        sid = args[1] if named else args[0] if args else None
        conn = self.connections.get(sid) if isinstance(sid, str) else None
        if conn is not None:
            limited = self._limit_events(conn, "unknown") or self._limit_address(
                conn, "unknown event", EVENT_COST
            )
            if limited is not None:
                return limited
        log.debug("unknown event %.64r from %s", args[0] if args else None, sid)
        return error("unknown event")

    def stopping(self) -> None:
        """The server is stopping and disconnects everyone: departures are not news.

        The clients reconnect to the next server (or another process), so telling the
        ones still connected that the others left would be untrue. With Redis, the
        departures are still announced: other processes' clients see these people go
        until they reconnect there.
        """
        self._stopping = True

    # -- connection lifecycle ---------------------------------------------------------------

    def _refuse(self, sid: str, ip: str, reason: str) -> socketio.exceptions.ConnectionRefusedError:
        log.info("connection %s from %s refused: %s", sid, ip, reason)
        return socketio.exceptions.ConnectionRefusedError(reason)

    async def on_connect(
        self, sid: str, environ: Any = None, auth: Any = None, *_: Any
    ) -> Ack | None:
        if environ is not self.sio.get_environ(sid):
            # A connected client sent an event named "connect": not a connection. (Whether
            # python-socketio counts the sid as connected yet differs between versions.)
            return error("unknown event")
        ip = str(environ.get("REMOTE_ADDR", "?"))
        refusal = self.access.refuse_connect(environ, auth)
        if refusal is not None:
            raise self._refuse(sid, ip, refusal)
        try:
            req = protocol.parse_connect(auth)
        except ProtocolError as exc:
            raise self._refuse(sid, ip, str(exc)) from None
        try:
            sign_in, signed_in = await self._identity(environ, auth, req.name)
        except ProtocolError as exc:
            raise self._refuse(sid, ip, str(exc)) from None
        banned = self.moderation.refusal(signed_in.id if signed_in else None, ip)
        if banned is not None:
            raise self._refuse(sid, ip, banned)
        if not await self.private_rooms.admits(req.room, signed_in.id if signed_in else None):
            raise self._refuse(sid, ip, NOT_A_MEMBER)
        # Counted and checked with no await between (identity lookups are above): many
        # connections at once from one address cannot all pass the check.
        limit = self.settings.max_connections_per_ip
        if limit and self.per_ip[ip] >= limit:
            log.warning(
                "refused a connection from %s: %d already open (--max-connections-per-ip)",
                ip,
                self.per_ip[ip],
            )
            raise socketio.exceptions.ConnectionRefusedError(
                f"too many connections from your address (the limit is {limit})"
            )
        # The request's headers were needed to admit the connection; python-socketio keeps
        # its environ for the connection's life, which may be months.
        for key in [k for k in environ if k.startswith("HTTP_")]:
            del environ[key]
        s = self.settings
        conn = Connection(
            sid=sid,
            room=req.room,
            name=signed_in.display_name if signed_in else req.name,
            user_id=signed_in.id if signed_in else protocol.user_id_for(req.key, req.name),
            keyed=signed_in is not None or req.key is not None,
            handle=signed_in.handle if signed_in else None,
            sign_in=sign_in.id if sign_in else None,
            bot=signed_in is not None and signed_in.role == "bot",
            admin=signed_in is not None and signed_in.role == "admin",
            bucket=TokenBucket(s.message_burst, s.message_rate),
            events=TokenBucket(s.event_burst, s.event_rate),
            ip=ip,
        )
        self.connections[sid] = conn
        self.per_ip[ip] += 1
        try:
            join, users, newly_online = await self._read_join(conn, req.room, req.since, req.rev)
        except Exception:
            log.exception("could not admit connection %s to room %s", sid, req.room)
            self._release(conn)
            raise socketio.exceptions.ConnectionRefusedError("server error, please retry") from None
        # The welcome may only be sent once Socket.IO has sent CONNECT, which happens right
        # after this handler returns, without yielding to the event loop.
        asyncio.get_running_loop().call_soon(self._finish_join, conn, join, users, 0)
        if newly_online:
            await self._announce(req.room, users, joined=conn.member())
        log.info("%s joined %s as %r from %s", sid, req.room, conn.handle or conn.name, ip)
        return None

    async def _read_join(
        self, conn: Connection, room: str, since: int | None, rev: int | None
    ) -> tuple[_Join, list[str], bool]:
        """Start ``conn``'s join of ``room`` and read what its welcome (or its subscribe
        answer) carries: the join, who is online, and whether ``conn`` is newly so.

        Undoes the join if a read fails (and raises).
        """
        sid, me = conn.sid, conn.member()
        conn.rooms.add(room)
        # Buffer the room's messages from now on, before history is read, so that
        # nothing committed meanwhile can fall between the welcome and the live stream.
        self.feed.begin_join(sid, room)
        try:
            newly_online = await self.presence.join(room, sid, me)
            users = await self.presence.users(room)
            # The change number first: the history read after it shows every change to it.
            asked = since
            limit = protocol.CATCH_UP_LIMIT if since is not None else protocol.WELCOME_HISTORY
            view = await self.store.view(room, limit, after=since)
            head_rev, page, head = view.rev, view.page, view.last_id
            changed = None
            if since is not None and rev is not None:
                changed = await self._changed(room, since, rev)
                if changed is None:
                    # Too much changed to send: the client starts over from the newest.
                    since, limit = None, protocol.WELCOME_HISTORY
                    page = await self.store.recent(room, limit)
                    head = page.messages[-1].id if page.messages else head
        except BaseException:
            conn.rooms.discard(room)
            self.feed.leave(sid, room)
            with contextlib.suppress(Exception):
                await self.presence.leave(room, sid, me)
            raise
        join = _Join(room, page, head, since, limit, head_rev, changed, reset=since != asked)
        return join, users, newly_online

    async def _changed(self, room: str, since: int, rev: int) -> list[dict[str, Any]] | None:
        """What changed after change ``rev`` in the messages up to ``since`` (a
        reconnecting client's), as they are now; None if more than one welcome carries."""
        found = await self.store.changes(
            room, rev, protocol.MAX_ID, protocol.CHANGES_CATCH_UP_LIMIT + 1
        )
        if len(found) > protocol.CHANGES_CATCH_UP_LIMIT:
            return None
        changed, cut = newest_within([m.to_dict() for m in found if m.id <= since])
        return None if cut else changed

    async def _identity(
        self, environ: dict[str, Any], auth: Any, name: str
    ) -> tuple[SignIn | None, Account | None]:
        """Who connects: a bot (its token), a signed-in browser (its cookie), or a guest
        (neither: ``(None, None)``); ProtocolError with the refusal otherwise."""
        token = auth.get("token") if isinstance(auth, dict) else None
        if is_bot_token(token):
            found = await self.sign_ins.bot(token)
            if found is None:
                raise ProtocolError(BOT_TOKEN_INVALID)
            return found
        cookie = session_cookie(environ.get("HTTP_COOKIE", ""))
        if cookie is not None:
            found = await self.sign_ins.find(cookie)
            if found is None:
                raise ProtocolError(SIGNED_OUT)
            return found
        if not self.settings.guests:
            raise ProtocolError(NO_GUESTS)
        named = isinstance(auth, dict) and auth.get("name") is not None
        if named and await self.accounts.owner_of(name) is not None:
            raise ProtocolError(handle_taken(name))
        return None, None

    async def watch_sign_ins(self) -> None:
        """Disconnect, within :data:`SIGN_IN_CHECK` seconds, every connection whose sign-in
        ended: signed out, revoked, its password changed or its account removed, by this
        process, another one, or the ``users`` command."""
        while True:
            await asyncio.sleep(SIGN_IN_CHECK)
            try:
                await self.moderation.refresh()
                await self.private_rooms.refresh()
                await self.accounts.refresh()
                ids = {c.sign_in for c in self.connections.values() if c.sign_in is not None}
                live = await self.sign_ins.live(ids) if ids else set()
            except Exception:
                log.exception("could not check the sign-ins and bans of open connections")
                continue
            self._drop_unwelcome(ids - live)

    def _drop_unwelcome(self, ended: set[str]) -> None:
        """Disconnect the connections whose sign-in is among ``ended``, that are banned, or
        that are in a room they may no longer be in. (Apart from the watching coroutine,
        so that its frame keeps no connection alive while it sleeps.) A connection that
        came while the sign-ins were being checked was not asked about: it stays."""
        for conn in list(self.connections.values()):
            if conn.sign_in is not None and conn.sign_in in ended:
                log.info("%s signed out: disconnecting %s", conn.handle, conn.sid)
            elif self.moderation.ban_of(conn.user_id, conn.ip) is not None:
                log.info("%s is banned: disconnecting %s", conn.handle or conn.ip, conn.sid)
            elif not all(self.private_rooms.allows(r, conn.account_id) for r in conn.rooms):
                log.info("%s may not be in a room: disconnecting %s", conn.name, conn.sid)
            else:
                continue
            conn.sign_in = None
            self._spawn(self.sio.disconnect(conn.sid))

    def _release(self, conn: Connection) -> bool:
        """Stop counting ``conn``; False if it was already released."""
        if self.connections.get(conn.sid) is not conn:
            return False
        del self.connections[conn.sid]
        self.per_ip[conn.ip] -= 1
        if self.per_ip[conn.ip] <= 0:
            del self.per_ip[conn.ip]
        return True

    def _finish_join(self, conn: Connection, join: _Join, users: list[str], attempt: int) -> None:
        if self.connections.get(conn.sid) is not conn:
            return  # disconnected before it finished joining
        if not self.sessions.is_connected(conn.sid) and attempt < 100:
            asyncio.get_running_loop().call_soon(self._finish_join, conn, join, users, attempt + 1)
            return
        if not self.sessions.is_open(conn.sid):
            # The transport closed while the connect handler ran. Socket.IO does not call
            # the disconnect handler for a connection it had not yet accepted, so clean up.
            self._spawn(self._drop_unjoined(conn))
            return
        room = self._complete_join(conn, join, users, subscribed=False)
        if room is None:
            return
        fields, changes = room
        welcome = {
            "room": conn.room,
            "name": conn.name,
            "user_id": conn.user_id,
            "handle": conn.handle,
            "guest": conn.handle is None,
            "bot": conn.bot,
            "admin": conn.admin,
            **fields,
        }
        eio_sid = self.sessions.eio_sid(conn.sid)
        if eio_sid is not None:
            self.sessions.put(eio_sid, self.sessions.packet("welcome", welcome))
            self._send_changes(eio_sid, changes)
        if conn.account_id is not None:
            self.sessions.enter_room(conn.sid, ACCOUNT + conn.account_id)
        conn.set_joined()

    def _complete_join(
        self, conn: Connection, join: _Join, users: list[str], subscribed: bool
    ) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
        """Make ``conn`` live in ``join.room``: what its welcome (or subscribe answer) says
        of the room, and the changes to send right after it; None if it left meanwhile.

        The caller must send the answer before its next ``await``: from here on the room's
        messages are delivered to ``conn``.
        """
        joined = self.feed.complete_join(
            conn.sid, join.room, join.page, join.head, join.since, join.limit, join.rev
        )
        if joined is None:
            return None
        history, has_more, changes = joined
        online = people(users)
        fields: dict[str, Any] = {
            "users": [p["name"] for p in online],
            "people": online,
            "history": history,
            "has_more": has_more,
            "rev": join.rev,
        }
        if join.reset:
            fields["reset"] = True
        elif join.changed is not None:
            fields["changed"] = join.changed
        # Room membership for presence and typing; synchronous for a local connection.
        self.sessions.enter_room(conn.sid, self._channel(join.room, subscribed))
        conn.home = conn.home or not subscribed
        return fields, changes

    @staticmethod
    def _channel(room: str, subscribed: bool) -> str:
        """The Socket.IO room of a chat room's members that joined it by connecting, or of
        those that subscribed (who get its events in their newer shape)."""
        return SUBSCRIBED + room if subscribed else room

    def _send_changes(self, eio_sid: str, changes: list[dict[str, Any]]) -> None:
        for change in changes:
            self.sessions.put(eio_sid, self.sessions.packet(CHANGED_EVENT, change))

    async def on_disconnect(self, sid: str, reason: Any = None, *_: Any) -> Ack | None:
        if self.sessions.is_connected(sid):
            # A connected client sent an event named "disconnect": not a disconnection.
            return error("unknown event")
        conn = self.connections.get(sid)
        if conn is not None and self._release(conn):
            await self._forget(conn, reason)
        return None

    async def _drop_unjoined(self, conn: Connection) -> None:
        if self._release(conn):
            await self._forget(conn, "closed while joining")
        await self.sessions.forget(conn.sid)

    async def _forget(self, conn: Connection, reason: Any) -> None:
        conn.set_joined()  # release any handler still waiting
        await self._stop_typing(conn)
        for room in list(conn.rooms):
            await self._leave(
                conn, room, announce=not (self._stopping and not self.settings.redis_url)
            )
        log.info("%s left %s (%s)", conn.sid, conn.room, reason)

    async def _leave(self, conn: Connection, room: str, announce: bool = True) -> None:
        """Take ``conn`` out of ``room``: its feed, its presence (telling the room if that
        was the person's last connection there)."""
        conn.rooms.discard(room)
        self.feed.leave(conn.sid, room)
        try:
            gone = await self.presence.leave(room, conn.sid, conn.member())
            if gone and announce:
                await self._announce(room, left=conn.member())
        except Exception:
            log.exception("presence update for %s leaving %s failed", conn.sid, room)

    async def _announce(
        self,
        room: str,
        users: list[str] | None = None,
        joined: str | None = None,
        left: str | None = None,
    ) -> None:
        """Tell ``room`` who is online now; ``joined``/``left`` are member keys."""
        await self.announcer.changed(room, joined, left, users)

    async def _emit_presence(self, room: str, event: dict[str, Any]) -> None:
        await self.sio.emit("presence", event, room=[room, SUBSCRIBED + room])

    async def _presence_changed(self, room: str, joined: str | None, left: str | None) -> None:
        await self._announce(room, joined=joined, left=left)

    # -- events -----------------------------------------------------------------------------

    @staticmethod
    def _room_in(conn: Connection, data: Any) -> str:
        """The room an event is for (its ``room``, else the connection's); ProtocolError
        unless the connection is in it."""
        named = data.get("room") if isinstance(data, dict) else None
        room = conn.room if named is None else protocol.parse_room(named)
        if room not in conn.rooms:
            raise ProtocolError(not_in(room))
        return room

    async def on_subscribe(self, conn: Connection, data: Any) -> Ack:
        req = protocol.parse_subscribe(data)
        if req.room in conn.rooms:
            return error(f"already in #{req.room}")
        limit = self.settings.max_rooms_per_connection
        if len(conn.rooms) >= limit:
            return error(f"too many rooms: a connection may be in {limit} (unsubscribe first)")
        if conn.subscribes is None:
            conn.subscribes = TokenBucket(limit, SUBSCRIBE_RATE)
        wait = conn.subscribes.take()
        if wait:
            return error("rate limited", retry_after=round(wait, 3))
        if not await self.private_rooms.admits(req.room, conn.account_id):
            return error(NOT_A_MEMBER)
        join, users, newly_online = await self._read_join(conn, req.room, req.since, req.rev)
        if self.connections.get(conn.sid) is not conn:
            # It disconnected meanwhile, maybe before its presence here was recorded.
            await self._leave(conn, req.room, announce=False)
            return error("not connected")
        room = self._complete_join(conn, join, users, subscribed=True)
        if room is None:
            return error("not connected")
        fields, changes = room
        eio_sid = self.sessions.eio_sid(conn.sid)
        if changes and eio_sid is not None:
            # After the answer, which python-socketio queues as this returns, unsuspended.
            asyncio.get_running_loop().call_soon(self._send_changes, eio_sid, changes)
        if newly_online:
            self._spawn(self._announce(req.room, joined=conn.member()))
        log.info("%s subscribed to %s", conn.sid, req.room)
        return ok(room=req.room, **fields)

    async def on_unsubscribe(self, conn: Connection, data: Any) -> Ack:
        room = protocol.parse_unsubscribe(data)
        if room not in conn.rooms:
            return error(not_in(room))
        await self._stop_typing(conn, room)
        home = conn.home and room == conn.room
        self.sessions.leave_room(conn.sid, self._channel(room, subscribed=not home))
        if home:
            conn.home = False
        await self._leave(conn, room)
        log.info("%s unsubscribed from %s", conn.sid, room)
        return ok(room=room)

    async def on_message(self, conn: Connection, data: Any) -> Ack:
        wait = conn.bucket.take()
        if wait:
            return error("rate limited", retry_after=round(wait, 3))
        req = protocol.parse_message(data)
        room = self._room_in(conn, data)
        msg, _ = await self.post(
            room,
            conn.name,
            conn.user_id,
            req,
            conn.handle,
            conn.bot,
            # The room hears the typing stop before the message it was typing.
            before_publish=lambda: self._stop_typing(conn, room),
            admin=conn.admin,
        )
        return ok(message=msg.to_dict())

    def bot_wait(self, account_id: str) -> float:
        """Charge one API message to bot ``account_id``'s rate (``--message-burst`` /
        ``--message-rate``, as a connection's): 0 if allowed, else the seconds to wait."""
        bucket = self._bot_buckets.get(account_id)
        if bucket is None:
            if len(self._bot_buckets) >= MAX_BOT_BUCKETS:
                self._bot_buckets.clear()  # revoked bots' buckets must not pile up
            bucket = TokenBucket(self.settings.message_burst, self.settings.message_rate)
            self._bot_buckets[account_id] = bucket
        return bucket.take()

    async def post(
        self,
        room: str,
        name: str,
        user_id: str,
        req: protocol.MessageRequest,
        handle: str | None = None,
        bot: bool = False,
        before_publish: Callable[[], Awaitable[None]] | None = None,
        admin: bool = False,
        attachment: Attachment | None = None,
    ) -> tuple[Message, bool]:
        """Resolve a validated message's mentions, store it, then publish it to its room
        (unless it is a retry of one stored before): the path of every message, from
        Socket.IO or the API. ProtocolError if it mentions everyone and its sender may not."""
        mentions = await self._mentions(req.text, handle, bot, admin)
        if req.reply_to is not None and await self.store.get(room, req.reply_to) is None:
            raise ProtocolError(NO_REPLY_TARGET)
        started = time.perf_counter()
        # Whoever writes has read the room up to what they wrote, on every device.
        reader = user_id if handle is not None and not bot else None
        msg, created = await self.store.add(
            room,
            name,
            req.text,
            req.client_id,
            user_id,
            handle,
            bot,
            mentions.user_ids,
            mentions.everyone,
            req.reply_to,
            attachment,
            read_by=reader,
        )
        if created:
            self.metrics.commit_seconds.observe(time.perf_counter() - started)
            self.metrics.messages.inc()
            if before_publish is not None:
                await before_publish()
            await self.fanout.publish(room, msg.to_dict())
            if reader is not None:
                await self._tell_read(reader, room, msg.id)
        return msg, created

    async def _mentions(self, text: str, handle: str | None, bot: bool, admin: bool) -> Mentions:
        """Whom ``text`` mentions; ProtocolError if it mentions everyone and its sender may
        not (``--mention-all``)."""
        named = read_mentions(text)
        accounts = await self.accounts.named(named.handles) if named.handles else {}
        mentions = resolve_mentions(named, accounts)
        if mentions.everyone is not None and not self._may_mention_all(handle, bot, admin):
            raise ProtocolError(
                f"only {self.settings.mention_all} may mention @{mentions.everyone} here"
            )
        return mentions

    def _may_mention_all(self, handle: str | None, bot: bool, admin: bool) -> bool:
        """Whether a sender may mention everyone in a room (``--mention-all``)."""
        who = self.settings.mention_all
        return who == "everyone" or admin or (who == "members" and handle is not None)

    async def on_read(self, conn: Connection, data: Any) -> Ack:
        msg_id = protocol.parse_read(data)
        room = self._room_in(conn, data)
        account_id = conn.account_id
        if account_id is None:
            return ok(room=room, last_read=msg_id)  # a guest's browser keeps its own
        last_read = await self._mark_read(account_id, room, msg_id, skip_sid=conn.sid)
        return ok(room=room, last_read=last_read)

    async def _mark_read(
        self, account_id: str, room: str, msg_id: int, skip_sid: str | None = None
    ) -> int:
        """Keep an account's read mark of ``room`` and tell its other connections, on every
        process: a read on the phone clears the badge on the laptop."""
        last_read = await self.store.set_read(account_id, room, msg_id)
        await self._tell_read(account_id, room, last_read, skip_sid)
        return last_read

    async def _tell_read(
        self, account_id: str, room: str, last_read: int, skip_sid: str | None = None
    ) -> None:
        """Tell an account's connections, on every process, how far it has read ``room``."""
        await self.sio.emit(
            "read",
            {"room": room, "last_read": last_read},
            room=ACCOUNT + account_id,
            skip_sid=skip_sid,
        )

    async def on_dm(self, conn: Connection, data: Any) -> Ack:
        handles = protocol.parse_dm(data)
        found = await self.accounts.find(conn.handle) if conn.handle is not None else None
        if found is None or found[0].id != conn.account_id:
            return error("sign in to send direct messages")
        try:
            room, people = await self.dms.open(found[0], handles)
        except AccountError as exc:
            return error(str(exc))
        event = {
            "room": room,
            "people": [
                person(member(a.id, a.display_name, a.handle, a.role == "bot")) for a in people
            ],
        }
        # Everyone in it hears of it, on every process, to subscribe (their rooms list it).
        for account in people:
            if account.id != conn.account_id:
                await self.sio.emit("dm", event, room=ACCOUNT + account.id)
        return ok(**event)

    async def on_typing(self, conn: Connection, data: Any) -> Ack:
        typing = protocol.parse_typing(data)
        room = self._room_in(conn, data)
        if not typing:
            await self._stop_typing(conn, room)
            return ok()
        if conn.typing_room != room:
            await self._stop_typing(conn)  # one room at a time: typing here ends it there
            conn.typing_room = room
        loop = asyncio.get_running_loop()
        if conn.typing_timer is not None:
            conn.typing_timer.cancel()
        conn.typing_timer = loop.call_later(
            self.settings.typing_timeout, lambda: self._spawn(self._stop_typing(conn))
        )
        now = time.monotonic()
        if conn.typing_since is None or now - conn.typing_since >= TYPING_RENEW:
            conn.typing_since = now
            await self._emit_typing(conn, room, True)
        return ok()

    async def _stop_typing(self, conn: Connection, room: str | None = None) -> None:
        """End ``conn``'s typing (only if it is in ``room``, when given)."""
        typing_room = conn.typing_room
        if typing_room is None or (room is not None and room != typing_room):
            return
        if conn.typing_timer is not None:
            conn.typing_timer.cancel()
            conn.typing_timer = None
        conn.typing_room = None
        if conn.typing_since is not None:
            conn.typing_since = None
            await self._emit_typing(conn, typing_room, False)

    async def _emit_typing(self, conn: Connection, room: str, typing: bool) -> None:
        who = conn.identity()
        # As before subscriptions existed to the connections that joined by connecting;
        # naming the room to those that subscribed.
        await self.sio.emit("typing", {**who, "typing": typing}, room=room, skip_sid=conn.sid)
        await self.sio.emit(
            "typing",
            {**who, "room": room, "typing": typing},
            room=SUBSCRIBED + room,
            skip_sid=conn.sid,
        )

    async def on_history(self, conn: Connection, data: Any) -> Ack:
        before, limit = protocol.parse_history(data)
        page = await self.store.before(self._room_in(conn, data), before, limit)
        messages, cut = newest_within([m.to_dict() for m in page.messages])
        return ok(messages=messages, has_more=page.has_more or cut)

    async def on_delete(self, conn: Connection, data: Any) -> Ack:
        msg_id = protocol.parse_delete(data)
        room = self._room_in(conn, data)
        found = await self.store.get(room, msg_id)
        if found is None:
            return error(NO_SUCH_MESSAGE)
        # A guest without a key shares its id with everyone of its name: not proof.
        mine = conn.keyed and found.user_id == conn.user_id
        if not mine and not await self.is_admin(conn.account_id, conn.handle):
            return error(NOT_YOURS)
        msg = await self.delete(room, found, conn.handle or conn.name, mine)
        return ok(message=msg.to_dict())

    async def on_edit(self, conn: Connection, data: Any) -> Ack:
        wait = conn.bucket.take()  # an edit is sent to the room as a message is
        if wait:
            return error("rate limited", retry_after=round(wait, 3))
        req = protocol.parse_edit(data)
        room = self._room_in(conn, data)
        found = await self.store.get(room, req.id)
        if found is None:
            return error(NO_SUCH_MESSAGE)
        if not (conn.keyed and found.user_id == conn.user_id):
            return error(NOT_YOURS_TO_EDIT)
        if found.deleted:
            return error(MESSAGE_DELETED)
        window = self.settings.edit_window
        if window and time.time() * 1000 - found.ts > window * 1000:
            return error(f"too late to edit: messages can be edited for {window:g} seconds")
        mentions = await self._mentions(req.text, conn.handle, conn.bot, conn.admin)
        edited = await self.store.edit(room, req.id, req.text, mentions.user_ids, mentions.everyone)
        if edited is None:
            return error(NO_SUCH_MESSAGE)  # expired meanwhile
        msg, changed = edited
        if msg.deleted:
            return error(MESSAGE_DELETED)  # deleted meanwhile
        if changed:
            await self.fanout.publish_change(room, msg.to_dict())
        return ok(message=msg.to_dict())

    async def on_edits(self, conn: Connection, data: Any) -> Ack:
        msg_id = protocol.parse_edits(data)
        room = self._room_in(conn, data)
        if not await self.is_admin(conn.account_id, conn.handle):
            return error("only admins may see what a message said before its edits")
        if await self.store.get(room, msg_id) is None:
            return error(NO_SUCH_MESSAGE)
        return ok(id=msg_id, edits=[e.to_dict() for e in await self.store.edits(room, msg_id)])

    async def on_react(self, conn: Connection, data: Any) -> Ack:
        req = protocol.parse_react(data)
        room = self._room_in(conn, data)
        try:
            reacted = await self.store.react(room, req.id, req.emoji, conn.user_id, req.add)
        except ReactionRefused as exc:
            return error(str(exc))
        if reacted is None:
            return error(NO_SUCH_MESSAGE)
        msg, changed = reacted
        if msg.deleted:
            return error(MESSAGE_DELETED)
        if changed:
            await self.fanout.publish_change(room, msg.to_dict())
        return ok(message=msg.to_dict())

    async def on_search(self, conn: Connection, data: Any) -> Ack:
        data = protocol.payload(data, "{q, room?, limit?, offset?}")
        answer = await search.search(
            self.store,
            conn.account_id,
            data.get("q"),
            data.get("room"),
            data.get("limit"),
            data.get("offset"),
        )
        return ok(**answer)

    async def is_admin(self, account_id: str | None, handle: str | None) -> bool:
        """Whether the account is an admin now (a demotion takes effect at once)."""
        if account_id is None or handle is None:
            return False
        found = await self.accounts.find(handle)
        return found is not None and found[0].id == account_id and found[0].role == "admin"

    async def delete(self, room: str, msg: Message, actor: str, mine: bool) -> Message:
        """Delete ``msg`` for everyone (its text gone from the store), then publish the
        tombstone to its room: the path of every deletion. An admin's deletion of
        someone else's message goes in the moderation log."""
        deleted = await self.store.delete(room, msg.id)
        if deleted is None:
            raise ProtocolError(NO_SUCH_MESSAGE)  # expired meanwhile
        tombstone, changed = deleted
        if changed:
            await self.fanout.publish_change(room, tombstone.to_dict())
            if msg.attachment is not None and self.files is not None:
                await self.files.forget(self.store, msg.attachment)
            if not mine:
                await self.moderation.record(
                    actor, "delete", f"#{room}/{msg.id}", f"a message from {msg.name}"
                )
            log.info("%s deleted message %d of #%s", actor, msg.id, room)
        return tombstone

    async def on_rename(self, conn: Connection, data: Any) -> Ack:
        name = protocol.parse_rename(data)
        if conn.handle is not None:
            return error("signed in: your name is your account's display name")
        if name == conn.name:
            return ok(name=name, user_id=conn.user_id)
        if await self.accounts.owner_of(name) is not None:
            return error(handle_taken(name))
        old = conn.name
        await self._stop_typing(conn)
        conn.name = name
        was = member(conn.user_id, old)
        if not conn.keyed:
            conn.user_id = protocol.user_id_for(None, name)
        now = member(conn.user_id, name)
        for room in list(conn.rooms):
            left = await self.presence.leave(room, conn.sid, was)
            joined = await self.presence.join(room, conn.sid, now)
            await self._announce(room, joined=now if joined else None, left=was if left else None)
        log.info("%s renamed %r -> %r", conn.sid, old, name)
        return ok(name=name, user_id=conn.user_id)
