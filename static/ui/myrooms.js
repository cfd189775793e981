// "My rooms": the rooms the reader keeps in the sidebar, every one of them followed on the
// page's one connection, and how far the reader has read each. A signed-in account's are
// kept by the server, so that they follow it to every device (docs/protocol.md: `read`,
// `GET`/`DELETE /api/me/rooms`); a guest's by this browser (localStorage). This module is
// the one place that loads and saves them.

const STORAGE = "chatapp.rooms";
const READ_STORAGE = "chatapp.read";

/** Without storage (some privacy modes) a guest's list lasts for this page only. */
const memory = { [STORAGE]: [], [READ_STORAGE]: {} };

function loadStored(key, valid) {
  try {
    const stored = JSON.parse(localStorage.getItem(key) ?? "null");
    if (valid(stored)) return stored;
  } catch {
    return memory[key]; // no storage; or not ours (then the next save replaces it)
  }
  return memory[key];
}

function saveStored(key, value) {
  memory[key] = value;
  try {
    localStorage.setItem(key, JSON.stringify(value));
  } catch {
    // As above: this page only.
  }
}

const loadList = () =>
  loadStored(STORAGE, Array.isArray).filter((room) => typeof room === "string");
const loadReads = () =>
  loadStored(READ_STORAGE, (v) => v !== null && typeof v === "object" && !Array.isArray(v));

export class MyRooms {
  /**
   * `signedIn`: the server keeps the list. `sendRead(room, id)` sends a `read` and resolves
   * to its answer (it is how an account's room joins its list, and how its mark moves).
   */
  constructor({ signedIn, sendRead }) {
    this.signedIn = signedIn;
    this.sendRead = sendRead;
    this.listed = new Set(); // an account's rooms the server is known to list
  }

  /**
   * The reader's rooms: [{room, last_read, dm?, last_id?, unread?, mentions?}] (the
   * server's counts for an account), or null when the server could not be asked.
   */
  async load() {
    if (!this.signedIn) {
      const reads = loadReads();
      return loadList().map((room) => ({
        room,
        last_read: Number.isInteger(reads[room]) ? reads[room] : null,
      }));
    }
    try {
      const response = await fetch("/api/me/rooms", { headers: { Accept: "application/json" } });
      if (!response.ok) return null;
      const { rooms } = await response.json();
      for (const entry of rooms) this.listed.add(entry.room);
      return rooms;
    } catch {
      return null;
    }
  }

  /** The server lists `room` for the account already (a direct conversation, say). */
  known(room) {
    if (this.signedIn) this.listed.add(room);
  }

  // A guest's changes are made to the list as stored now, not to the one this page
  // loaded: the rooms another tab added or left meanwhile stay as that tab left them.

  /** `room` is one of ours from now on; `lastRead` how far the reader has read it. */
  add(room, lastRead) {
    if (!this.signedIn) {
      const rooms = loadList();
      if (!rooms.includes(room)) saveStored(STORAGE, [...rooms, room]);
      return;
    }
    if (this.listed.has(room)) return;
    this.listed.add(room);
    this.#read(room, lastRead ?? 0);
  }

  /** Off the list. */
  remove(room) {
    if (!this.signedIn) {
      const rooms = loadList();
      if (rooms.includes(room)) saveStored(STORAGE, rooms.filter((r) => r !== room));
      const reads = loadReads();
      if (room in reads) {
        const { [room]: _, ...rest } = reads;
        saveStored(READ_STORAGE, rest);
      }
      return;
    }
    // Only what the server lists: asking about another room would be answered 404.
    if (!this.listed.delete(room)) return;
    fetch(`/api/me/rooms/${encodeURIComponent(room)}`, { method: "DELETE" }).catch(() => {});
  }

  /** The reader has read `room` up to message `id`. */
  markRead(room, id) {
    if (this.signedIn) {
      this.listed.add(room);
      this.#read(room, id);
      return;
    }
    const reads = loadReads();
    if ((reads[room] ?? -1) < id) saveStored(READ_STORAGE, { ...reads, [room]: id });
  }

  async #read(room, id) {
    try {
      const ack = await this.sendRead(room, id);
      // Not let in (yet): the server does not list it.
      if (!ack?.ok) this.listed.delete(room);
    } catch {
      this.listed.delete(room); // no answer: the next join asks again
    }
  }
}
