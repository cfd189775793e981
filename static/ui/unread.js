// How much of a room the reader has not read: the messages from others after the room's
// read mark, and those of them that mention the reader. What the page holds of the room is
// counted message by message; below it, an account's counts from the server
// (GET /api/me/rooms) stand for what the page never loaded.

/** A burst of messages read as they come is told to the server once per this many ms. */
const READ_EVERY = 1000;

/**
 * {unread, mentions} of `room` (its `lastRead`, `timeline` and, for an account, `server`:
 * {lastRead, lastId, unread, mentions} as last listed). `isMine(msg)`, `mentionsMe(msg)`.
 */
export function countUnread(room, isMine, mentionsMe) {
  const mark = room.lastRead;
  const server = room.server;
  if (!room.loaded) {
    // Nothing held yet: the server's counts, if they are about this very mark.
    if (server && server.lastRead === mark) return { unread: server.unread, mentions: server.mentions };
    return { unread: 0, mentions: 0 };
  }
  if (mark === null) return { unread: 0, mentions: 0 };
  const { ids, entries } = room.timeline;
  let unread = 0;
  let mentions = 0;
  let heldMentionsUpToServer = 0;
  for (let i = ids.length - 1; i >= 0 && ids[i] > mark; i -= 1) {
    const msg = entries.get(ids[i]).msg;
    if (isMine(msg)) continue;
    unread += 1;
    if (mentionsMe(msg)) {
      mentions += 1;
      if (server && msg.id <= server.lastId) heldMentionsUpToServer += 1;
    }
  }
  if (server && ids.length) {
    // Ids count 1, 2, 3...: those between the mark and the first one held were not loaded.
    const notHeld = Math.min(ids[0] - 1, server.lastId) - mark;
    if (notHeld > 0) {
      unread += notHeld;
      if (server.lastRead === mark) mentions += Math.max(0, server.mentions - heldMentionsUpToServer);
    }
  }
  return { unread, mentions };
}

/**
 * Tells `send(room, id)` how far the reader has read a room: at once, then at most once
 * per READ_EVERY while more is read (a burst of messages read as they come is one `read`).
 */
export class ReadSender {
  constructor(send) {
    this.send = send;
    this.rooms = new Map(); // room -> {timer, id (waiting to go, or null)}
  }

  mark(room, id) {
    const entry = this.rooms.get(room);
    if (entry) {
      entry.id = id;
      return;
    }
    this.send(room, id);
    const fresh = { id: null, timer: null };
    fresh.timer = setTimeout(() => this.#flush(room), READ_EVERY);
    this.rooms.set(room, fresh);
  }

  #flush(room) {
    const entry = this.rooms.get(room);
    this.rooms.delete(room);
    if (entry.id !== null) this.mark(room, entry.id);
  }
}
