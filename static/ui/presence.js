// Who is online in this room, and who is typing.

import { avatar } from "./avatar.js";
import { el } from "./dom.js";

/** An indicator not renewed within this time is dropped (the server renews every 3 s). */
const TYPING_TTL = 6000;

/**
 * A departure is shown this much later. A server going down disconnects everyone at once,
 * and the departures it announces reach us just before our own disconnection: the list
 * then stays as it was, marked stale. (A reload, leaving and coming back within it, does
 * not flicker either.)
 */
const LEAVE_GRACE = 2000;

export class PeopleView {
  /** `onChange(users)` is told the list shown, e.g. for the room's head count. */
  constructor({ list, count, headerCount }, onChange = () => {}) {
    this.list = list;
    this.count = count;
    this.headerCount = headerCount;
    this.onChange = onChange;
    this.users = []; // shown
    this.latest = []; // as the server last said
    this.me = null;
    this.leaving = null; // timer of a departure in its grace
  }

  /** The list of a welcome: shown at once. */
  show(users, me) {
    this.latest = users;
    this.me = me;
    clearTimeout(this.leaving);
    this.#render(users);
  }

  /**
   * The list of a `presence` event. Every connection in the room is listed, ours too: a
   * list without us is the end of our own connection, announced before it happens, and is
   * not shown. A departure (`left` without `joined`) shows after LEAVE_GRACE.
   */
  update(users, me, { departure = false } = {}) {
    this.latest = users;
    this.me = me;
    if (!users.includes(me)) return;
    clearTimeout(this.leaving);
    const going = departure ? this.users.filter((name) => !users.includes(name)) : [];
    if (!going.length) {
      this.#render(users);
      return;
    }
    this.#render([...users, ...going]);
    this.leaving = setTimeout(() => this.#render(users), LEAVE_GRACE);
  }

  /** Our name changed (the rename's answer): the list naming us by it can be shown now. */
  rename(me) {
    this.me = me;
    if (this.rendered && !this.stale && this.latest.includes(me)) this.show(this.latest, me);
  }

  /**
   * Between a lost connection and the next welcome the list is the last known one, not a
   * live one: it stays as shown (departures still in their grace included), and says so.
   */
  setStale(stale) {
    this.stale = stale;
    if (stale) clearTimeout(this.leaving);
    this.list.classList.toggle("stale", stale);
    this.count.classList.toggle("stale", stale);
    if (!this.rendered) return;
    const online = `${this.users.length} online`;
    this.headerCount.textContent = stale ? `${online} (last known)` : online;
    this.count.title = stale ? `${online} when last connected` : "";
  }

  #render(users) {
    const me = this.me;
    this.rendered = true;
    this.users = users;
    if (this.stale) this.setStale(false);
    const sorted = [...users].sort((a, b) =>
      a === me ? -1 : b === me ? 1 : a.localeCompare(b, undefined, { sensitivity: "base" }),
    );
    this.list.replaceChildren(
      ...sorted.map((name) => {
        const li = el("li", "person");
        li.append(avatar(name, "avatar-small"), el("span", "person-name", name));
        if (name === me) li.append(el("span", "you-tag", "you"));
        return li;
      }),
    );
    this.count.textContent = String(users.length);
    this.headerCount.textContent = `${users.length} online`;
    this.onChange(users);
  }
}

export class TypingView {
  constructor(node) {
    this.node = node;
    this.expiry = new Map(); // name -> ms timestamp
    this.timer = null;
  }

  /** A `typing {name, typing}` event from the server. */
  update(name, typing) {
    if (typing) this.expiry.set(name, Date.now() + TYPING_TTL);
    else this.expiry.delete(name);
    this.render();
  }

  remove(name) {
    if (this.expiry.delete(name)) this.render();
  }

  clear() {
    this.expiry.clear();
    this.render();
  }

  render() {
    const now = Date.now();
    for (const [name, until] of this.expiry) if (until <= now) this.expiry.delete(name);
    const names = [...this.expiry.keys()];
    let text = "";
    if (names.length === 1) text = `${names[0]} is typing…`;
    else if (names.length === 2) text = `${names[0]} and ${names[1]} are typing…`;
    else if (names.length === 3) text = `${names[0]}, ${names[1]} and ${names[2]} are typing…`;
    else if (names.length > 3) text = "Several people are typing…";
    this.node.textContent = text;
    this.node.classList.toggle("active", names.length > 0);
    clearTimeout(this.timer);
    if (names.length) {
      const next = Math.min(...this.expiry.values()) - now;
      this.timer = setTimeout(() => this.render(), Math.max(50, next));
    }
  }
}
