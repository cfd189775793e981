// Who is online in this room, and who is typing.

import { avatar } from "./avatar.js";
import { el } from "./dom.js";

/** An indicator not renewed within this time is dropped (the server renews every 3 s). */
const TYPING_TTL = 6000;

export class PeopleView {
  constructor({ list, count, headerCount }) {
    this.list = list;
    this.count = count;
    this.headerCount = headerCount;
    this.users = [];
  }

  /** While disconnected the list is last known, not live: say so. */
  setStale(stale) {
    this.stale = stale;
    this.list.classList.toggle("stale", stale);
    if (stale && this.rendered) this.headerCount.textContent = "not connected";
  }

  render(users, me) {
    if (this.stale) this.setStale(false);
    this.rendered = true;
    this.users = users;
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
