// Quiet lines in a room's timeline when people come, go or change their name ("Ann joined",
// "Bob left", "Ann is now Annie"), from the room's live `presence` events only: who came or
// went while we were away is in the next join's list, not news. Notices live on this page
// only: they are not messages (no id, never counted as unread, never sent or stored), and
// they sit between the messages without taking part in their order.

import { el } from "./dom.js";
import { LEAVE_GRACE } from "./presence.js";
import { exactTime, shortTime } from "./time.js";

/** One entry of the room's people: a person (user_id) under a name. */
const entryKey = (p) => `${p.user_id}\u0000${p.name}`;

/** "Ann", "Ann and Bob", "Ann, Bob and Carl", "Ann, Bob and 3 others". */
function listNames(names) {
  if (names.length === 1) return names[0];
  if (names.length <= 3) return `${names.slice(0, -1).join(", ")} and ${names.at(-1)}`;
  return `${names[0]}, ${names[1]} and ${names.length - 2} others`;
}

/** What one notice says on its own, as listed when a collapsed line is expanded. */
function describe(notice) {
  if (notice.kind === "renamed") return `${notice.from} is now ${notice.to}`;
  return `${notice.name} ${notice.kind}`;
}

/** A collapsed line's summary: joins, departures and renames, each kind where it first came. */
function summarize(notices) {
  const kinds = [...new Set(notices.map((n) => n.kind))];
  const parts = kinds.map((kind) => {
    const these = notices.filter((n) => n.kind === kind);
    if (kind === "renamed") {
      if (these.length <= 2) return these.map(describe).join("; ");
      return `${describe(these[0])}; ${these.length - 1} others changed their names`;
    }
    // One person twice (joined, left, joined again) is named once.
    const names = [...new Map(these.map((n) => [n.key, n.name])).values()];
    return `${listNames(names)} ${kind}`;
  });
  return parts.join("; ");
}

export class Notices {
  /** `timeline`: the room's (for its scrolling); `list`: where its messages are. */
  constructor(timeline, list) {
    this.timeline = timeline;
    this.list = list;
    this.known = new Map(); // entryKey -> person: the room's people as last heard
    this.leaving = new Map(); // entryKey -> timer of a departure in its grace
    this.line = null; // the last line: {li, text, toggle, details, notices}
  }

  /** A join (welcome, subscribe answer): who is here now, without a word about it. */
  joined(people) {
    this.known = new Map(people.map((p) => [entryKey(p), p]));
  }

  /**
   * The connection is gone. A server going down announces everyone's departures just
   * before our own disconnection: those are not departures, and the next join says who is
   * still here.
   */
  lost() {
    for (const timer of this.leaving.values()) clearTimeout(timer);
    this.leaving.clear();
  }

  /** A live `presence` event of the room; `me`: our user_id (our own comings go unsaid). */
  presence(event, me) {
    // A list without us is the end of our own connection, announced before it happens.
    if (!event.people.some((p) => p.user_id === me)) return;
    const before = this.known;
    const after = new Map(event.people.map((p) => [entryKey(p), p]));
    this.known = after;
    // Several changes at once (a crowd reconnecting) come as `joins` and `leaves`.
    const came = new Set([event.joined, ...(event.joins ?? [])]);
    const went = new Set([event.left, ...(event.leaves ?? [])]);
    const arrived = [...after.values()].filter((p) => came.has(p.name) && !before.has(entryKey(p)));
    const gone = [...before.values()].filter((p) => went.has(p.name) && !after.has(entryKey(p)));
    if (event.joined && event.left) {
      // One person's rename (an event is about one person).
      if ([...arrived, ...gone].some((p) => p.user_id === me)) return;
      const key = entryKey(arrived[0] ?? gone[0] ?? { user_id: null, name: event.joined });
      this.#add({ kind: "renamed", key, from: event.left, to: event.joined });
      return;
    }
    for (const person of arrived) {
      if (person.user_id === me) continue;
      const key = entryKey(person);
      const back = this.leaving.get(key);
      if (back !== undefined) {
        // Gone and back within the grace (a reload, a network blip): nothing happened.
        clearTimeout(back);
        this.leaving.delete(key);
        continue;
      }
      this.#add({ kind: "joined", key, name: person.name });
    }
    for (const person of gone) {
      if (person.user_id === me) continue;
      const key = entryKey(person);
      clearTimeout(this.leaving.get(key));
      this.leaving.set(
        key,
        setTimeout(() => {
          this.leaving.delete(key);
          this.#add({ kind: "left", key, name: person.name });
        }, LEAVE_GRACE),
      );
    }
  }

  #add(notice) {
    notice.ts = Date.now();
    const timeline = this.timeline;
    const wasAtBottom = timeline.stuckToBottom || timeline.isAtBottom();
    // Notices in a row make one line; a message between them starts another.
    if (!this.line || this.list.lastElementChild !== this.line.li) this.line = this.#newLine();
    this.line.notices.push(notice);
    this.#render(this.line);
    if (wasAtBottom) timeline.scrollToBottom();
  }

  #newLine() {
    const li = el("li", "notice");
    const text = el("span", "notice-text");
    const toggle = el("button", "link-btn notice-toggle", "Show all");
    toggle.type = "button";
    toggle.hidden = true;
    toggle.setAttribute("aria-expanded", "false");
    const details = el("ul", "notice-details");
    details.hidden = true;
    toggle.addEventListener("click", () => {
      const open = details.hidden;
      details.hidden = !open;
      toggle.setAttribute("aria-expanded", String(open));
      toggle.textContent = open ? "Show less" : "Show all";
    });
    li.append(text, toggle, details);
    this.list.append(li);
    return { li, text, toggle, details, notices: [] };
  }

  #render(line) {
    line.text.textContent = summarize(line.notices);
    line.toggle.hidden = line.notices.length < 2;
    line.details.replaceChildren(
      ...line.notices.map((notice) => {
        const item = el("li", "", `${describe(notice)} `);
        const time = el("time", "time", shortTime(notice.ts));
        time.dateTime = new Date(notice.ts).toISOString();
        time.title = exactTime(notice.ts);
        item.append(time);
        return item;
      }),
    );
  }
}
