"""The store interfaces: history (what the handlers and views need) and accounts."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from .reactions import Reactions

if TYPE_CHECKING:
    from ..search import Query


class StoreError(RuntimeError):
    """The store cannot be opened or reached; the message says why, for an operator."""


@dataclass(frozen=True, slots=True)
class Attachment:
    """A file a message carries. Clients see its ``id`` (its URL's), ``name``, media
    ``type``, ``size`` in bytes, an image's ``width`` and ``height`` and whether it has a
    thumbnail; the server also keeps where its bytes are (``sha256``, ``thumb``: the
    thumbnail's) and whose upload quota it counts against (``uploader``)."""

    id: str
    name: str
    type: str
    size: int
    sha256: str
    width: int | None = None
    height: int | None = None
    thumb: str | None = None
    uploader: str = ""

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"id": self.id, "name": self.name, "type": self.type}
        data["size"] = self.size
        if self.width is not None and self.height is not None:
            data["width"], data["height"] = self.width, self.height
        if self.thumb is not None:
            data["thumb"] = True
        return data

    def encode(self) -> str:
        """The column value (everything but the uploader, which the files table keeps)."""
        return orjson.dumps(
            [
                self.id,
                self.name,
                self.type,
                self.size,
                self.sha256,
                self.width,
                self.height,
                self.thumb,
            ]
        ).decode()

    @staticmethod
    def decode(value: str | None) -> Attachment | None:
        return None if not value else Attachment(*orjson.loads(value))


@dataclass(frozen=True, slots=True)
class Message:
    """A stored chat message. ``id`` counts 1, 2, 3... within its room."""

    id: int
    room: str
    name: str
    text: str
    ts: int  # epoch milliseconds, set by the server
    #: Who sent it (an account's id, or ``protocol.user_id_for``); None for messages
    #: stored before ids existed.
    user_id: str | None = None
    #: The account's handle when an account sent it; None from a guest.
    handle: str | None = None
    #: Whether a bot sent it.
    bot: bool = False
    #: The room's change number (see ``MessageStore.changes``) of the message's newest
    #: change; 0 for a message never changed since it was sent.
    rev: int = 0
    #: Deleted: a tombstone that keeps its place (id, sender, time) without its text.
    deleted: bool = False
    #: The accounts it mentions (``@handle``), by id, as resolved when it was stored.
    mentions: tuple[str, ...] = ()
    #: "room" or "here" when it mentions everyone in the room (``@room``, ``@here``).
    mention_all: str | None = None
    #: When its text was last edited (epoch milliseconds); None if it never was.
    edited: int | None = None
    #: Its reactions: each emoji with who reacted with it.
    reactions: Reactions = ()
    #: The id of the message (in the same room) it replies to.
    reply_to: int | None = None
    #: The file it carries.
    attachment: Attachment | None = None

    def to_dict(self) -> dict[str, Any]:
        data = {
            "id": self.id,
            "room": self.room,
            "name": self.name,
            "text": self.text,
            "ts": self.ts,
            "user_id": self.user_id,
        }
        # Only an account's message says more (every message is sent to every member: a
        # guest's carries no fields that say "nothing").
        if self.handle is not None:
            data["handle"] = self.handle
            if self.bot:
                data["bot"] = True
        if self.rev:
            data["rev"] = self.rev
        if self.deleted:
            data["deleted"] = True
        if self.mentions:
            data["mentions"] = list(self.mentions)
        if self.mention_all is not None:
            data["mention_all"] = self.mention_all
        if self.edited is not None:
            data["edited"] = self.edited
        if self.reactions:
            data["reactions"] = [
                {"emoji": emoji, "count": len(users), "users": list(users)}
                for emoji, users in self.reactions
            ]
        if self.reply_to is not None:
            data["reply_to"] = self.reply_to
        if self.attachment is not None:
            data["file"] = self.attachment.to_dict()
        return data


@dataclass(frozen=True, slots=True)
class Edit:
    """A text a message had until an edit replaced it at ``ts`` (epoch milliseconds)."""

    ts: int
    text: str

    def to_dict(self) -> dict[str, Any]:
        return {"ts": self.ts, "text": self.text}


@dataclass(frozen=True, slots=True)
class RoomState:
    """One of an account's rooms: the newest message it has read there, the room's newest
    id, and how many messages after the read one mention it (``@`` it, ``@room`` or
    ``@here``, by someone else)."""

    room: str
    last_read: int
    last_id: int
    mentions: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "room": self.room,
            "last_read": self.last_read,
            "last_id": self.last_id,
            "unread": max(0, self.last_id - self.last_read),
            "mentions": self.mentions,
        }


@dataclass(frozen=True, slots=True)
class Page:
    """Messages oldest first; ``has_more`` is true when older ones exist before the first."""

    messages: list[Message]
    has_more: bool


@dataclass(frozen=True, slots=True)
class RoomView:
    """What a joining client is shown of a room, read in this order: the room's newest
    change number, its newest page of messages, and the newest message id (the page's
    last, else the room's)."""

    rev: int
    page: Page
    last_id: int


@dataclass(frozen=True, slots=True)
class Room:
    """A room with history: its name and when its newest message was stored."""

    room: str
    last_ts: int


#: Account roles: an admin manages the server, a member chats, a bot posts with a token.
ROLES = ("admin", "member", "bot")


@dataclass(frozen=True, slots=True)
class Account:
    """A registered identity. ``id`` (``u:`` and hex) never changes and is never reused."""

    id: str
    handle: str
    display_name: str
    role: str
    created: int  # epoch milliseconds

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "handle": self.handle,
            "display_name": self.display_name,
            "role": self.role,
            "created": self.created,
        }


@dataclass(frozen=True, slots=True)
class SignIn:
    """A signed-in browser: a row the server can revoke. Its token is only in the cookie;
    the store keeps its digest (``token_hash``) and a public ``id`` to name it by."""

    id: str
    account_id: str
    created: int  # epoch milliseconds
    expires: int  # epoch milliseconds
    address: str  # where it signed in from
    agent: str  # the browser's User-Agent, cut short

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "created": self.created,
            "expires": self.expires,
            "address": self.address,
            "agent": self.agent,
        }


@dataclass(frozen=True, slots=True)
class Invite:
    """A single-use link to create an account with ``role``. Its token is only in the
    link; the store keeps its digest. A ``claim`` (the first admin's, printed at start-up)
    is good only while the server has no admin."""

    id: str
    role: str
    claim: bool
    created: int  # epoch milliseconds
    expires: int  # epoch milliseconds
    created_by: str | None  # the admin's account id; None from the command line

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "role": self.role,
            "created": self.created,
            "expires": self.expires,
        }


@dataclass(frozen=True, slots=True)
class Ban:
    """An account (``kind`` "account", ``target`` its id) or a client address (``kind``
    "address") kept out until ``until`` (epoch milliseconds; 0: until lifted)."""

    id: str
    kind: str
    target: str
    until: int
    reason: str
    created: int
    created_by: str  # the admin's account id

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "target": self.target,
            "until": self.until or None,
            "reason": self.reason,
            "created": self.created,
            "created_by": self.created_by,
        }


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One line of the moderation log: who did what to whom, when."""

    ts: int
    actor: str  # the admin's handle
    action: str  # "ban", "unban", ...
    target: str  # a handle, an address, a ban id
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "ts": self.ts,
            "actor": self.actor,
            "action": self.action,
            "target": self.target,
            "detail": self.detail,
        }


class InviteInvalid(Exception):
    """The invite was used, expired, or (a claim) an admin exists already."""


class HandleTaken(Exception):
    """The handle, or one that looks like it, belongs to another account."""


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class MessageStore(Protocol):
    """Durable, per-room ordered history.

    Ids within a room are consecutive (1, 2, 3, ...) and a message is visible to readers
    only once committed, in id order: the fan-out relies on both to detect gaps.
    """

    async def open(self) -> None:
        """Connect and create or migrate the schema; raises StoreError with a clear reason."""

    async def close(self) -> None:
        """Finish in-flight writes, then release connections."""

    async def ping(self) -> None:
        """Raise if storage does not answer."""

    async def add(
        self,
        room: str,
        name: str,
        text: str,
        client_id: str | None = None,
        user_id: str | None = None,
        handle: str | None = None,
        bot: bool = False,
        mentions: tuple[str, ...] = (),
        mention_all: str | None = None,
        reply_to: int | None = None,
        attachment: Attachment | None = None,
        read_by: str | None = None,
    ) -> tuple[Message, bool]:
        """Commit a message from ``user_id`` under ``name`` (an account's: its ``handle``,
        and whether it is a bot), mentioning the accounts ``mentions`` and, with
        ``mention_all``, everyone, in reply to message ``reply_to`` of the room, carrying
        ``attachment``; return it and whether it is new.

        With ``read_by`` (an account id), the same transaction notes that the account has
        read the room up to the new message, as :meth:`set_read` does: whoever writes has
        read what they wrote, without a second commit.

        A ``client_id`` already used by the same sender in the same room (the same
        ``user_id``; without one, the same name) returns the stored message and ``False``
        (a client retry), creating nothing.
        """

    async def recent(self, room: str, limit: int, after: int | None = None) -> Page:
        """The newest ``limit`` messages (with ``id > after`` when given), oldest first."""

    async def before(self, room: str, before: int | None, limit: int) -> Page:
        """Up to ``limit`` messages with ``id < before`` (newest when None), oldest first."""

    async def range(self, room: str, after: int, upto: int) -> list[Message]:
        """Messages with ``after < id <= upto``, oldest first."""

    async def last_id(self, room: str) -> int:
        """The room's newest id, 0 when it has no messages."""

    async def view(self, room: str, limit: int, after: int | None = None) -> RoomView:
        """:meth:`last_rev`, then :meth:`recent`, then (for an empty page) :meth:`last_id`,
        in one round trip: a change committed meanwhile is after the change number."""

    async def active_rooms(self, limit: int, after: tuple[int, str] | None = None) -> list[Room]:
        """Up to ``limit`` rooms with history, the most recently active first.

        Ordered by the newest message's ``ts`` (descending), then by name; ``after`` is the
        ``(last_ts, room)`` of the last room of the previous page. Served by an index: the
        cost does not grow with the number of rooms.
        """

    async def last_message_times(self, rooms: Iterable[str]) -> dict[str, int]:
        """For each of ``rooms`` that has history, the ``ts`` of its newest message."""

    async def get(self, room: str, msg_id: int) -> Message | None:
        """One message (a tombstone if deleted), or None."""

    async def delete(self, room: str, msg_id: int) -> tuple[Message, bool] | None:
        """Delete a message's text for good (with its edit history, mentions and
        reactions), keeping a tombstone in its place; return the tombstone and whether
        this call deleted it (False: it was already), or None if the room has no such
        message.

        A deletion is a change: it takes the room's next change number (``rev``).
        """

    async def edit(
        self,
        room: str,
        msg_id: int,
        text: str,
        mentions: tuple[str, ...] = (),
        mention_all: str | None = None,
    ) -> tuple[Message, bool] | None:
        """Replace a message's text, and the mentions resolved from it, keeping the text it
        had in its edit history (:meth:`edits`); return it as it is now and whether this
        call changed it (False: it is deleted, or has that text already), or None if the
        room has no such message. An edit is a change: it takes the room's next ``rev``."""

    async def edits(self, room: str, msg_id: int) -> list[Edit]:
        """The texts a message had before its edits, oldest first (none once deleted)."""

    async def react(
        self, room: str, msg_id: int, emoji: str, user_id: str, add: bool | None
    ) -> tuple[Message, bool] | None:
        """Add (``add`` true), remove (false) or toggle (None) ``user_id``'s ``emoji`` on
        a message; return it as it is now and whether this call changed it (False: it is
        deleted, or it was so already), or None if the room has no such message.
        ``reactions.ReactionRefused`` past a message's caps. A change takes the next ``rev``."""

    async def file(self, file_id: str) -> tuple[str, Attachment] | None:
        """The room and the attachment of a file, by its id; None if there is none (or
        its message was deleted or expired)."""

    async def uploaded(self, uploader: str, since: int) -> int:
        """Bytes ``uploader`` attached to messages since ``since`` (epoch ms), still there."""

    async def referenced(self, digests: Sequence[str]) -> set[str]:
        """Those of ``digests`` (files' ``sha256`` or ``thumb``) an attachment still has."""

    async def index(self) -> int:
        """Bring the search index up to date with what was committed, a batch at a time
        (the server calls it every second; a search does it first): how many messages
        it covered, 0 when up to date or when the store indexes as it commits."""

    async def search(
        self, query: Query, account_id: str | None, limit: int, offset: int
    ) -> list[Message]:
        """The messages that match ``query`` in the rooms ``account_id`` may read (public
        rooms, and the private ones it is a member of; None: a guest, public rooms only),
        best first, then newest: ``limit`` of them after the first ``offset``. A deleted
        message matches nothing; an edited one, its text as it is now."""

    async def last_rev(self, room: str) -> int:
        """The room's newest change number, 0 when nothing in it was ever changed."""

    async def changes(self, room: str, after: int, upto: int, limit: int) -> list[Message]:
        """The messages whose newest change has a number in ``(after, upto]``, in change
        order, at most ``limit``: each as it is now.

        Change numbers count 1, 2, 3... within a room and are committed in order, like
        ids. A message changed twice is listed once, at its newest change: a number
        missing from the answer was overtaken by a later change of the same message.
        """

    async def expire(self, room: str, before_ts: int) -> int:
        """Delete ``room``'s messages stored before ``before_ts``; how many went. Ids are
        never reused: the room's counter stays."""

    async def restore(self, room: str, messages: Sequence[Message]) -> None:
        """Put back a room's history as exported (ids 1, 2, 3... and their ``ts``), in one
        transaction; StoreError if the room has history already."""


class AccountStore(Protocol):
    """Accounts and the keys their handles are known by (``handles.handle_keys``): a key
    belongs to one account at most, which is what makes a handle (and its look-alikes)
    one person's."""

    async def add_account(
        self, account: Account, keys: Sequence[str], password_hash: str | None
    ) -> None:
        """Store a new account; HandleTaken if any of ``keys`` is another account's."""

    async def find_account(self, key: str) -> tuple[Account, str | None] | None:
        """The account a handle key belongs to, with its password hash (None: it has none)."""

    async def find_accounts(self, keys: Sequence[str]) -> list[Account]:
        """The accounts any of ``keys`` belongs to, in one query, in no particular order."""

    async def list_accounts(self) -> list[Account]:
        """Every account, by handle."""

    async def set_password(self, account_id: str, password_hash: str | None) -> bool:
        """Replace the account's password hash; False if there is no such account."""

    async def set_role(self, account_id: str, role: str) -> bool:
        """Change the account's role; False if there is no such account."""

    async def remove_account(self, account_id: str) -> bool:
        """Delete the account, its sign-ins, and free its handle; False if there was none.
        Its messages stay, under the id and name they were sent with."""

    async def add_sign_in(self, sign_in: SignIn, token_hash: str) -> None:
        """Store a new sign-in of an existing account (StoreError if it is gone)."""

    async def find_sign_in(self, token_hash: str, now: int) -> tuple[SignIn, Account] | None:
        """The unexpired sign-in with this token digest, and its account."""

    async def list_sign_ins(self, account_id: str, now: int) -> list[SignIn]:
        """The account's unexpired sign-ins, newest first."""

    async def has_admin(self) -> bool:
        """Whether any account is an admin."""

    async def add_invite(self, invite: Invite, token_hash: str) -> None:
        """Store a new invite."""

    async def find_invite(self, token_hash: str, now: int) -> Invite | None:
        """The invite with this token digest, if it can still be used."""

    async def redeem_invite(
        self,
        token_hash: str,
        now: int,
        account: Account,
        keys: Sequence[str],
        password_hash: str | None,
    ) -> None:
        """Create ``account`` (with the invite's role: the caller set it) and use the
        invite up, together or not at all: InviteInvalid if it cannot be used,
        HandleTaken if a key is another account's."""

    async def add_ban(self, ban: Ban, entry: LogEntry) -> None:
        """Store a ban, and its line of the moderation log, together."""

    async def remove_ban(self, ban_id: str, entry: LogEntry) -> bool:
        """Lift a ban (and log it); False if there was no such ban."""

    async def log_action(self, entry: LogEntry) -> None:
        """Write a line of the moderation log."""

    async def bans(self, now: int) -> list[Ban]:
        """The bans in force at ``now``, newest first."""

    async def mod_log(self, limit: int, before: int | None = None) -> list[LogEntry]:
        """The newest ``limit`` log lines (older than ``before``, a ``ts``), newest first."""

    async def set_private(
        self,
        room: str,
        private: bool,
        entry: LogEntry,
        members: Sequence[tuple[str, LogEntry]] = (),
    ) -> bool:
        """Make ``room`` private (or public again; its member list is dropped) and log it;
        False if it already was. ``members`` (account ids, each with its log entry) join
        it in the same transaction, so no process ever sees it private without them."""

    async def set_member(self, room: str, account_id: str, member: bool, entry: LogEntry) -> bool:
        """Add the account to a private room's members (or remove it) and log it; False if
        nothing changed."""

    async def add_dm(self, room: str, account_ids: Sequence[str]) -> bool:
        """Make ``room`` a direct conversation of ``account_ids``: private, with them as
        its members and as one of each one's rooms, unlogged; False if it existed."""

    async def private_rooms(self) -> dict[str, set[str]]:
        """Every private room, with the ids of its members."""

    async def retention(self) -> dict[str, float]:
        """The rooms with a retention of their own: days (0: all history kept)."""

    async def set_retention(self, room: str, days: float | None, entry: LogEntry) -> None:
        """Give ``room`` a retention of its own (None: the server's again), and log it."""

    async def set_read(self, account_id: str, room: str, msg_id: int) -> int:
        """Note that the account has read ``room`` up to ``msg_id`` (never back, never past
        the room's newest id) and make the room one of its rooms; the id read up to now."""

    async def room_states(self, account_id: str) -> list[RoomState]:
        """The account's rooms, by name, with their read state."""

    async def remove_room_state(self, account_id: str, room: str) -> bool:
        """Take ``room`` off the account's rooms; False if it was not one."""

    async def live_sign_ins(self, ids: Sequence[str], now: int) -> set[str]:
        """Which of the sign-ins ``ids`` have not ended."""

    async def remove_sign_ins(
        self, account_id: str, ids: Sequence[str] | None = None, now: int = 0
    ) -> int:
        """Revoke the account's sign-ins named by ``ids`` (all when None), and delete
        every sign-in that expired before ``now``; how many of the account's went."""


class Store(MessageStore, AccountStore, Protocol):
    """Everything one database holds."""
