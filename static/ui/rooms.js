// The active rooms (with their head counts), room addresses, and "copy link".

import { el } from "./dom.js";

export const LOBBY = "lobby";
const REFRESH_MS = 15000;

export function roomPath(room) {
  return room === LOBBY ? "/" : `/r/${room}`;
}

/** The room a chat page's address is for (the inverse of roomPath). */
export function roomOfPath(path) {
  const match = /^\/r\/([^/]+)$/.exec(path);
  return match ? decodeURIComponent(match[1]) : LOBBY;
}

/**
 * The server's reason for refusing a room name (its rule is not copied here), or "" when
 * it takes the name or cannot be asked (then the room's own address answers). For when
 * there is no connection to ask.
 */
export async function roomProblem(room) {
  try {
    const url = `/api/rooms/${encodeURIComponent(room)}/messages?limit=1`;
    const response = await fetch(url, { headers: { Accept: "application/json" } });
    if (response.status !== 404) return "";
    const body = await response.json();
    return typeof body.error === "string" ? body.error : "No such room.";
  } catch {
    return "";
  }
}

export class RoomsView {
  constructor(list, currentRoom) {
    this.list = list;
    this.room = currentRoom;
    this.liveCounts = new Map(); // room -> head count, for the rooms we are in
    this.rooms = [];
    this.stale = false;
  }

  start() {
    this.refresh();
    setInterval(() => {
      if (document.visibilityState === "visible") this.refresh();
    }, REFRESH_MS);
  }

  /**
   * While the connection is away the head counts are the last known ones: kept, marked,
   * and not polled (a restarted server counts nobody until they are back). Back from
   * stale, the list is fetched at once.
   */
  setStale(stale) {
    if (stale === this.stale) return;
    this.stale = stale;
    this.list.classList.toggle("stale", stale);
    this.render();
    if (!stale) this.refresh();
  }

  async refresh() {
    if (this.stale) return;
    try {
      const response = await fetch("/api/rooms", { headers: { Accept: "application/json" } });
      if (!response.ok) return;
      const rooms = await response.json();
      if (this.stale) return; // the connection went meanwhile: keep what it last showed
      this.rooms = rooms;
      this.render();
    } catch {
      // Unreachable: keep the last list; the connection status already says so.
    }
  }

  /** The head count of a room we are in is known live; don't wait for the next poll. */
  setLiveCount(room, count) {
    this.liveCounts.set(room, count);
    this.render();
  }

  /** A room we left: its count is the server's again. */
  forget(room) {
    this.liveCounts.delete(room);
    this.render();
  }

  /** Another room is shown. */
  setCurrent(room) {
    this.room = room;
    this.render();
  }

  render() {
    const rooms = this.rooms.map((r) => ({ ...r }));
    let own = rooms.find((r) => r.room === this.room);
    if (!own) {
      own = { room: this.room, users: 0 };
      rooms.unshift(own);
    }
    if (!rooms.some((r) => r.room === LOBBY)) rooms.push({ room: LOBBY, users: 0 });
    for (const r of rooms) if (this.liveCounts.has(r.room)) r.users = this.liveCounts.get(r.room);
    this.list.replaceChildren(
      ...rooms.slice(0, 30).map((r) => {
        const li = el("li");
        const a = el("a", "room-link");
        a.href = roomPath(r.room);
        a.dataset.room = r.room;
        if (r.room === this.room) a.setAttribute("aria-current", "page");
        a.append(el("span", "room-hash", "#"), el("span", "room-name", r.room));
        const count = el("span", `room-count${r.users ? " live" : ""}`, String(r.users));
        const online = `${r.users} online${this.stale ? " when last connected" : ""}`;
        count.title = online;
        count.setAttribute("aria-label", online);
        a.append(count);
        li.append(a);
        return li;
      }),
    );
  }
}

/** Copy `text` to the clipboard; plain-http LAN pages have no Clipboard API. */
export async function copyText(text) {
  if (navigator.clipboard && window.isSecureContext) {
    try {
      await navigator.clipboard.writeText(text);
      return true;
    } catch {
      // fall through to the legacy path
    }
  }
  const area = el("textarea", "offscreen");
  area.value = text;
  area.setAttribute("readonly", "");
  document.body.append(area);
  area.select();
  let ok = false;
  try {
    ok = document.execCommand("copy");
  } catch {
    ok = false;
  }
  area.remove();
  return ok;
}
