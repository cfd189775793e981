// The sidebar's "My rooms": a link to each (the shown one marked), its unread count, and
// a button to leave it. Entries are updated in place, so that a count going up never takes
// the keyboard focus away from a link or button of the list.

import { el } from "./dom.js";
import { roomPath } from "./rooms.js";

const byName = (a, b) => (a < b ? -1 : a > b ? 1 : 0);

export class MyRoomsView {
  /** `onLeave(room)`: the reader pressed a room's Leave button; `icon` is its picture. */
  constructor(list, icon, onLeave) {
    this.list = list;
    this.icon = icon;
    this.onLeave = onLeave;
    this.entries = new Map(); // room -> {li, link, badge, leave}
  }

  /**
   * The rooms to list ({name, unread, problem}), `current` the shown one's name. Leaving
   * is offered while there is another room to show.
   */
  render(rooms, current) {
    const names = rooms.map((r) => r.name).sort(byName);
    const same = names.length === this.entries.size && names.every((n) => this.entries.has(n));
    if (!same) {
      for (const name of [...this.entries.keys()]) if (!names.includes(name)) this.entries.delete(name);
      this.list.replaceChildren(...names.map((name) => (this.entries.get(name) ?? this.#add(name)).li));
    }
    for (const room of rooms) {
      const entry = this.entries.get(room.name);
      if (room.name === current) entry.link.setAttribute("aria-current", "page");
      else entry.link.removeAttribute("aria-current");
      entry.leave.hidden = rooms.length < 2;
      this.#setUnread(entry, room.unread);
      entry.li.classList.toggle("refused", Boolean(room.problem));
      if (room.problem) entry.link.title = room.problem;
      else entry.link.removeAttribute("title");
    }
  }

  #add(name) {
    const li = el("li", "my-room");
    const link = el("a", "room-link");
    link.href = roomPath(name);
    link.dataset.room = name;
    const badge = el("span", "unread");
    badge.hidden = true;
    link.append(el("span", "room-hash", "#"), el("span", "room-name", name), badge);
    const leave = el("button", "icon-btn room-leave");
    leave.type = "button";
    leave.setAttribute("aria-label", `Leave #${name}`);
    leave.title = `Leave #${name}`;
    leave.append(this.icon.cloneNode(true));
    leave.addEventListener("click", () => this.onLeave(name));
    li.append(link, leave);
    const entry = { li, link, badge, leave, unread: 0 };
    this.entries.set(name, entry);
    return entry;
  }

  #setUnread(entry, unread) {
    if (entry.unread === unread) return;
    entry.unread = unread;
    entry.badge.hidden = unread === 0;
    // Seen as a number, heard as "3 unread".
    entry.badge.replaceChildren(String(unread), el("span", "visually-hidden", " unread"));
  }
}
