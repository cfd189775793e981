// The sidebar's "My rooms": a link to each (the shown one marked; a direct conversation
// by its people's names, after the rooms), its unread count and, apart, how many of those
// mention the reader, and a button to leave it. Entries are updated in place, so that a count going up never takes
// the keyboard focus away from a link or button of the list.

import { el } from "./dom.js";
import { roomPath } from "./rooms.js";

const byName = (a, b) => (a < b ? -1 : a > b ? 1 : 0);
/** Rooms by name, then direct conversations by their people's names. */
const byPlace = (a, b) => Number(a.dm) - Number(b.dm) || byName(a.label, b.label) || byName(a.name, b.name);

export class MyRoomsView {
  /** `onLeave(room)`: the reader pressed a room's Leave button; `icon` is its picture. */
  constructor(list, icon, onLeave) {
    this.list = list;
    this.icon = icon;
    this.onLeave = onLeave;
    this.entries = new Map(); // room -> {li, link, label, badge, mentionBadge, leave}
    this.order = [];
  }

  /**
   * The rooms to list ({name, label, dm, unread, mentions, problem}), `current` the shown
   * one's name. Leaving is offered while there is another room to show.
   */
  render(rooms, current) {
    const names = [...rooms].sort(byPlace).map((r) => r.name);
    const same = names.length === this.order.length && names.every((n, i) => this.order[i] === n);
    if (!same) {
      for (const name of [...this.entries.keys()]) if (!names.includes(name)) this.entries.delete(name);
      this.list.replaceChildren(...names.map((name) => (this.entries.get(name) ?? this.#add(name)).li));
      this.order = names;
    }
    for (const room of rooms) {
      const entry = this.entries.get(room.name);
      this.#setLabel(entry, room);
      this.#setMentions(entry, room.mentions ?? 0);
      if (room.name === current) entry.link.setAttribute("aria-current", "page");
      else entry.link.removeAttribute("aria-current");
      entry.leave.hidden = rooms.length < 2;
      // A muted room keeps quiet: no count of what came, only its mentions (if any) show.
      this.#setUnread(entry, room.muted ? 0 : room.unread);
      entry.li.classList.toggle("muted", Boolean(room.muted));
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
    const mentionBadge = el("span", "mention-count");
    mentionBadge.hidden = true;
    const hash = el("span", "room-hash", "#");
    const label = el("span", "room-name", name);
    link.append(hash, label, mentionBadge, badge);
    const leave = el("button", "icon-btn room-leave");
    leave.type = "button";
    leave.append(this.icon.cloneNode(true));
    leave.addEventListener("click", () => this.onLeave(name));
    li.append(link, leave);
    const entry = { li, link, hash, label, badge, mentionBadge, leave, unread: 0, mentions: 0, shown: null };
    this.entries.set(name, entry);
    return entry;
  }

  /** "#room", or a direct conversation's people ("@" marks it, as it does a person). */
  #setLabel(entry, room) {
    const shown = `${room.dm ? "@" : "#"}${room.label}`;
    if (entry.shown === shown) return;
    entry.shown = shown;
    entry.hash.textContent = room.dm ? "@" : "#";
    entry.label.textContent = room.label;
    entry.li.classList.toggle("dm", Boolean(room.dm));
    const leave = room.dm ? `Leave the conversation with ${room.label}` : `Leave #${room.label}`;
    entry.leave.setAttribute("aria-label", leave);
    entry.leave.title = leave;
  }

  #setMentions(entry, mentions) {
    if (entry.mentions === mentions) return;
    entry.mentions = mentions;
    entry.mentionBadge.hidden = mentions === 0;
    // Seen as "@2", heard as "@2 mentioning you".
    entry.mentionBadge.replaceChildren(`@${mentions}`, el("span", "visually-hidden", " mentioning you"));
  }

  #setUnread(entry, unread) {
    if (entry.unread === unread) return;
    entry.unread = unread;
    entry.badge.hidden = unread === 0;
    // Seen as a number, heard as "3 unread".
    entry.badge.replaceChildren(String(unread), el("span", "visually-hidden", " unread"));
  }
}
