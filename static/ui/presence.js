// Who is online in this room, and who is typing.

import { avatar, personOf } from "./avatar.js";
import { identityTag } from "./identity.js";
import { el } from "./dom.js";

/** An indicator not renewed within this time is dropped (the server renews every 3 s). */
const TYPING_TTL = 6000;

/**
 * A departure is shown this much later. A server going down disconnects everyone at once,
 * and the departures it announces reach us just before our own disconnection: the list
 * then stays as it was, marked stale. (A reload, leaving and coming back within it, does
 * not flicker either.)
 */
export const LEAVE_GRACE = 2000;

/** One entry of the list: a person (user_id) under a name; two tabs of one person, one. */
const entryKey = (p) => `${p.user_id}\u0000${p.name}`;

const collator = new Intl.Collator(undefined, { sensitivity: "base" });
const byName = (a, b) => collator.compare(a.name, b.name);
/** Names that read alike ("Ann", "ann", "Ánn", full-width "Ａｎｎ") are one name here. */
const nameKey = (name) => name.normalize("NFKD").replace(/\p{M}/gu, "").toLowerCase();

export class PeopleView {
  /**
   * `onChange(people)` is told the list shown, e.g. for the room's head count;
   * `action(person, mine)` may give a control to put after a person (or null).
   */
  constructor({ list, count, headerCount }, onChange = () => {}, action = () => null) {
    this.action = action;
    this.list = list;
    this.count = count;
    this.headerCount = headerCount;
    this.onChange = onChange;
    this.people = []; // shown: [{user_id, name}]
    this.me = null; // our user_id
    this.leaving = null; // timer of a departure in its grace
  }

  /** The `people` of a welcome, `me` our user_id: shown at once. */
  show(people, me) {
    this.me = me;
    clearTimeout(this.leaving);
    this.#render(people);
  }

  /**
   * The `people` of a `presence` event. Every connection in the room is listed, ours too: a
   * list without us is the end of our own connection, announced before it happens, and is
   * not shown. A departure (`left` without `joined`) shows after LEAVE_GRACE.
   */
  update(people, me, { departure = false } = {}) {
    this.me = me;
    if (!people.some((p) => p.user_id === me)) return;
    clearTimeout(this.leaving);
    const staying = new Set(people.map(entryKey));
    const going = departure ? this.people.filter((p) => !staying.has(entryKey(p))) : [];
    if (!going.length) {
      this.#render(people);
      return;
    }
    this.#render([...people, ...going]);
    this.leaving = setTimeout(() => this.#render(people), LEAVE_GRACE);
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
    const online = `${this.people.length} online`;
    this.headerCount.textContent = stale ? `${online} (last known)` : online;
    this.count.title = stale ? `${online} when last connected` : "";
  }

  /**
   * We come first, then by name. A name shown by more than one person gets a short id after
   * it, each person their own avatar color; "you" is decided by user_id, never by name.
   */
  #render(people) {
    const me = this.me;
    const mine = (p) => p.user_id != null && p.user_id === me;
    this.rendered = true;
    this.people = people;
    if (this.stale) this.setStale(false);
    // Namesakes in the same order in every page: by id.
    const byId = (a, b) => String(a.user_id).localeCompare(String(b.user_id));
    const sorted = [...people].sort((a, b) => mine(b) - mine(a) || byName(a, b) || byId(a, b));
    const uses = new Map();
    for (const p of people) uses.set(nameKey(p.name), (uses.get(nameKey(p.name)) ?? 0) + 1);
    this.list.replaceChildren(
      ...sorted.map((p) => {
        const li = el("li", "person");
        li.append(avatar(p, "avatar-small"), el("span", "person-name", p.name), identityTag(p));
        if (p.user_id && uses.get(nameKey(p.name)) > 1) {
          // The end of the id: enough to tell namesakes apart, the same in every page.
          const id = el("span", "person-id", `#${p.user_id.slice(-4)}`);
          id.title = "Someone else here uses this name too";
          li.append(id);
        }
        if (mine(p)) li.append(el("span", "you-tag", "you"));
        const control = this.action(p, mine(p));
        if (control) li.append(control);
        return li;
      }),
    );
    this.count.textContent = String(people.length);
    this.headerCount.textContent = `${people.length} online`;
    this.onChange(people);
  }
}

export class TypingView {
  constructor(node) {
    this.node = node;
    this.typists = new Map(); // personOf -> {name, until}: two people with one name are two
    this.timer = null;
  }

  /** A `typing {name, user_id, typing}` event from the server. */
  update(event) {
    const who = personOf(event);
    if (event.typing) this.typists.set(who, { name: event.name, until: Date.now() + TYPING_TTL });
    else this.typists.delete(who);
    this.render();
  }

  /** The indicator of whoever sent `msg` ends (their message arrived). */
  endFor(msg) {
    if (this.typists.delete(personOf(msg))) this.render();
  }

  /** Only the people online (a presence event's `people`) can still be typing. */
  keepOnly(people) {
    const online = new Set(people.map(personOf));
    const gone = [...this.typists.keys()].filter((id) => !online.has(id));
    for (const id of gone) this.typists.delete(id);
    if (gone.length) this.render();
  }

  clear() {
    this.typists.clear();
    this.render();
  }

  render() {
    const now = Date.now();
    for (const [id, { until }] of this.typists) if (until <= now) this.typists.delete(id);
    const names = [...this.typists.values()].map((t) => t.name);
    let text = "";
    if (names.length === 1) text = `${names[0]} is typing…`;
    else if (names.length === 2) text = `${names[0]} and ${names[1]} are typing…`;
    else if (names.length === 3) text = `${names[0]}, ${names[1]} and ${names[2]} are typing…`;
    else if (names.length > 3) text = "Several people are typing…";
    this.node.textContent = text;
    this.node.classList.toggle("active", names.length > 0);
    clearTimeout(this.timer);
    if (names.length) {
      const next = Math.min(...[...this.typists.values()].map((t) => t.until)) - now;
      this.timer = setTimeout(() => this.render(), Math.max(50, next));
    }
  }
}
