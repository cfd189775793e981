// Room navigation: the active rooms list, "go to a room", and "copy link".

import { el } from "./dom.js";

export const LOBBY = "lobby";
const REFRESH_MS = 15000;

export function roomPath(room) {
  return room === LOBBY ? "/" : `/r/${room}`;
}

/**
 * The server's reason for refusing a room name (its rule is not copied here), or "" when
 * it takes the name or cannot be asked (then the room's own address answers).
 */
async function roomProblem(room) {
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
  constructor({ list, form, input, error }, currentRoom) {
    this.list = list;
    this.room = currentRoom;
    this.localCount = null;
    this.rooms = [];
    this.stale = false;
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const room = input.value.trim().replace(/^#/, ""); // "#team" is how rooms are shown
      const problem = room ? await roomProblem(room) : "Please enter a room name.";
      if (problem) {
        error.textContent = problem;
        input.setAttribute("aria-invalid", "true");
        input.focus();
        return;
      }
      error.textContent = "";
      input.removeAttribute("aria-invalid");
      // The server answers with the room's one address (/r/Team -> /r/team).
      location.assign(`/r/${encodeURIComponent(room)}`);
    });
    input.addEventListener("input", () => {
      error.textContent = "";
      input.removeAttribute("aria-invalid");
    });
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

  /** Our own room's head count is known live; don't wait for the next poll. */
  setLocalCount(count) {
    this.localCount = count;
    this.render();
  }

  render() {
    const rooms = this.rooms.map((r) => ({ ...r }));
    let own = rooms.find((r) => r.room === this.room);
    if (!own) {
      own = { room: this.room, users: 0 };
      rooms.unshift(own);
    }
    if (this.localCount !== null) own.users = this.localCount;
    if (!rooms.some((r) => r.room === LOBBY)) rooms.push({ room: LOBBY, users: 0 });
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
