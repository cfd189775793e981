// One of the reader's rooms on the page: its timeline, who is online and who is typing,
// the messages on their way to it, and what the page holds of its stream, so that joining
// it again (a welcome, or a subscribe answer: docs/protocol.md) brings exactly what was
// missed. The page keeps one per room in its sidebar. Only the shown one is visible; the
// others stay laid out behind it, so that each keeps its scroll position.

import { el } from "./dom.js";
import { Notices } from "./notices.js";
import { EmojiPicker } from "./picker.js";
import { Outbox } from "./outbox.js";
import { PeopleView, TypingView } from "./presence.js";
import { Timeline } from "./timeline.js";

/**
 * The shown room's parts carry the ids that the page's skip link, styles and tests name;
 * the other rooms' parts have none (an id names one element of the document).
 */
const PART_IDS = {
  scroller: "scroller",
  log: "log",
  list: "messages",
  pendingList: "pending",
  loadOlder: "load-older",
  historyStart: "history-start",
  jump: "jump",
  jumpLabel: "jump-label",
  people: "people",
  peopleCount: "people-count",
  onlineCount: "online-count",
  typing: "typing",
};

export class Room {
  /**
   * @param {string} name  the room's name, as the server spells it
   * @param {object} env  call(event, data) -> Promise of the ack; userId() -> ours;
   *   isMine(msg); canDelete(msg); pages {older, gap}: how many messages to ask for;
   *   slots {views, people, peopleCount, onlineCount, typing}: where its parts go; and
   *   what the page is told: arrived(room, messages) (new ones, live or caught up),
   *   atBottom(room) (the reader reached its newest message), people(room, shown),
   *   focusComposer(); mentionsMe(msg) (it names the reader: highlighted) and
   *   personAction(room, person, mine) (a control after a person in its online list, or null);
   *   canEdit(msg) (offer Edit: the reader's own); reply(room, msg) (the reader is answering it);
   *   canSeeEdits() (offer a message's earlier versions: the reader is an admin)
   */
  constructor(name, env) {
    this.name = name;
    this.env = env;
    this.unread = 0; // the sidebar's count (the page keeps it)
    this.draft = ""; // the message box's text while another room is shown
    this.problem = ""; // why the server did not let us in, if it did not
    this.live = false; // joined on the current connection
    this.loaded = false; // its first history is shown
    this.streamMax = null; // newest id received through the ordered stream (join + message)
    this.gapFloor = null; // while filling a catch-up gap: the `since` to resume from
    this.sinceSent = null; // the `since` the last join asked from
    this.rev = null; // its newest change number seen (join + changed): sent with `since`
    this.view = 0; // counts the times its timeline started over: older answers are late
    this.olderLoad = null; // the `history` request under way, a promise of whether it loaded
    this.picker = null; // the emoji picker, made when first asked for
    this.parts = this.#build();

    const parts = this.parts;
    this.timeline = new Timeline(parts, {
      isMine: env.isMine,
      needOlder: () => this.loadOlder(),
      atBottom: () => env.atBottom(this),
      // The clicked button goes away with the state it belonged to: keep the focus useful.
      onRetry: (pending) => {
        this.outbox.retry(pending);
        env.focusComposer();
      },
      onDiscard: (pending) => {
        this.outbox.discard(pending);
        env.focusComposer();
      },
      // Offered where the server may agree; the server decides.
      canDelete: env.canDelete,
      onDelete: (msg) => this.deleteMessage(msg),
      mentionsMe: env.mentionsMe,
      canEdit: env.canEdit,
      onEdit: (msg, text) => this.editMessage(msg, text),
      onReact: (msg, emoji, add) => this.react(msg, emoji, add),
      onPick: (msg, request) => this.#pickEmoji(request),
      onReply: (msg) => env.reply(this, msg),
      onJump: (id) => this.jumpTo(id),
      canSeeEdits: env.canSeeEdits,
      onEdits: (msg) => this.messageEdits(msg),
      userId: env.userId,
      nameOf: (userId) => this.nameOf(userId),
      focusComposer: env.focusComposer,
    });
    this.people = new PeopleView(
      { list: parts.people, count: parts.peopleCount, headerCount: parts.onlineCount },
      (shown) => env.people(this, shown),
      (person, mine) => env.personAction(this, person, mine),
    );
    this.typing = new TypingView(parts.typing);
    this.notices = new Notices(this.timeline, parts.list);
    const timeline = this.timeline;
    this.outbox = new Outbox((payload) => this.#call("message", payload), {
      show: (pending) => timeline.showPending(pending),
      setState: (pending, state, reason) => timeline.setPendingState(pending, state, reason),
      delivered: (pending, message) => timeline.confirmPending(pending, message),
      moveToEnd: (pending) => timeline.movePendingToEnd(pending),
      remove: (pending) => timeline.removePending(pending),
    });
  }

  /** Its parts, made from the page's template, each put in its place (hidden for now). */
  #build() {
    const template = document.getElementById("room-view");
    const view = template.content.firstElementChild.cloneNode(true);
    const parts = { view };
    for (const node of view.querySelectorAll("[data-part]")) parts[node.dataset.part] = node;
    parts.scroller.setAttribute("aria-label", `Messages in #${this.name}`);
    parts.welcome.textContent = `Welcome to #${this.name}!`;
    parts.people = el("ul", "people-list");
    parts.peopleCount = el("span", "count");
    parts.onlineCount = el("span", "", "connecting…");
    parts.typing = el("p", "typing");
    const slots = this.env.slots;
    slots.views.append(view);
    for (const part of ["people", "peopleCount", "onlineCount", "typing"]) {
      parts[part].hidden = true;
      slots[part].append(parts[part]);
    }
    return parts;
  }

  /** Shown (the others are hidden: out of sight, of the tab order and of screen readers). */
  setShown(shown) {
    const parts = this.parts;
    if (!shown) this.picker?.close(false);
    parts.view.classList.toggle("shown", shown);
    parts.view.inert = !shown;
    for (const part of ["people", "peopleCount", "onlineCount", "typing"]) parts[part].hidden = !shown;
    for (const [part, id] of Object.entries(PART_IDS)) {
      if (shown) parts[part].id = id;
      else parts[part].removeAttribute("id");
    }
  }

  /** Whether the reader has its newest message in view. */
  get atBottom() {
    return this.timeline.stuckToBottom || this.timeline.isAtBottom();
  }

  /** Gone from the page (the reader left it). */
  remove() {
    this.picker?.close(false);
    this.outbox.pause();
    this.typing.clear();
    this.parts.view.remove();
    for (const part of ["people", "peopleCount", "onlineCount", "typing"]) this.parts[part].remove();
  }

  #call(event, data) {
    return this.env.call(event, { ...data, room: this.name });
  }

  // -- joining -----------------------------------------------------------------------------

  /** Where a join (auth or subscribe) should start from: {since?, rev?}, noted as asked. */
  joinPosition() {
    const since = this.gapFloor ?? this.streamMax;
    this.sinceSent = since;
    if (since === null) return {};
    // With `rev`, the join also brings what changed in the messages we hold.
    return this.rev === null ? { since } : { since, rev: this.rev };
  }

  /** A welcome to this room, or a subscribe answer: the same fields, the same guarantee. */
  joined(join) {
    this.live = true;
    this.setProblem("");
    this.people.show(join.people, this.env.userId());
    this.notices.joined(join.people);
    const history = join.history;
    this.#noteRev(join.rev);
    if (!this.loaded || join.reset) {
      // The first load; or too much changed while we were away, and the history is the
      // newest page, as for a fresh page: it replaces everything shown.
      if (this.loaded) {
        this.view += 1;
        this.streamMax = null;
        this.gapFloor = null;
        this.timeline.clear();
      }
      this.loaded = true;
      this.timeline.loadInitial(history, join.has_more);
      this.#noteStream(history);
      this.fillScreen();
    } else {
      for (const msg of join.changed ?? []) this.applyChange(msg);
      const wasEmpty = this.timeline.firstId === null;
      this.env.arrived(this, this.timeline.addLive(history));
      this.#noteStream(history);
      if (wasEmpty) this.timeline.setHasMore(join.has_more);
      const since = this.sinceSent;
      if (since !== null && join.has_more && history.length && history[0].id > since + 1) {
        // More was missed than one join carries: fetch the rest, newest first.
        this.gapFloor = since;
        this.#fillGap(since, history[0].id);
      }
    }
    this.outbox.resume(); // what waits goes now, after the history that may already hold some
  }

  /** The connection is gone: who is here is the last known, and messages wait. */
  lost() {
    this.outbox.pause(); // until the next join
    this.typing.clear();
    this.notices.lost();
    if (this.live) {
      this.live = false;
      this.people.setStale(true);
    }
  }

  /** The server's reason for not letting us in ("" once it did), shown in its timeline. */
  setProblem(problem) {
    this.problem = problem;
    this.parts.problem.textContent = problem ? `Not in #${this.name}: ${problem}` : "";
    this.parts.problem.hidden = !problem;
  }

  async #fillGap(since, before) {
    const view = this.view;
    try {
      while (before > since + 1) {
        const ack = await this.#call("history", { before, limit: this.env.pages.gap });
        if (view !== this.view) return; // the view started over meanwhile
        if (!ack.ok) break;
        const missed = ack.messages.filter((m) => m.id > since);
        this.env.arrived(this, this.timeline.addLive(missed));
        if (!ack.has_more || !ack.messages.length) break;
        before = ack.messages[0].id;
      }
      this.gapFloor = null;
    } catch {
      // Disconnected meanwhile: the next join resumes from gapFloor.
    }
  }

  #noteStream(messages) {
    for (const m of messages) if (this.streamMax === null || m.id > this.streamMax) this.streamMax = m.id;
  }

  /** The room's change numbers seen so far: the next join asks for what came after. */
  #noteRev(rev) {
    if (Number.isInteger(rev) && (this.rev === null || rev > this.rev)) this.rev = rev;
  }

  // -- the room's events -------------------------------------------------------------------

  message(msg) {
    const added = this.timeline.addLive([msg]);
    this.#noteStream([msg]);
    this.env.arrived(this, added);
    if (added.length) this.typing.endFor(msg);
  }

  /** A message's new state, from a `changed` event or a join's `changed`. */
  applyChange(msg) {
    this.#noteRev(msg.rev);
    this.timeline.applyChange(msg);
  }

  presence(event) {
    this.typing.keepOnly(event.people);
    this.notices.presence(event, this.env.userId());
    this.people.update(event.people, this.env.userId(), {
      departure: Boolean(event.left && !event.joined),
    });
  }

  // -- history -------------------------------------------------------------------------------

  /**
   * The page of messages before the oldest one held (`limit` of them at most): a promise of
   * whether it came. One request at a time: a second call while one is under way gets it.
   */
  loadOlder(limit = this.env.pages.older) {
    if (this.olderLoad) return this.olderLoad;
    const before = this.timeline.firstId;
    if (!this.timeline.hasMore || before === null || !this.live) return Promise.resolve(false);
    this.olderLoad = this.#loadOlder(before, limit).finally(() => {
      this.olderLoad = null;
      this.fillScreen();
    });
    return this.olderLoad;
  }

  async #loadOlder(before, limit) {
    const view = this.view;
    const scroller = this.parts.scroller;
    scroller.setAttribute("aria-busy", "true");
    try {
      const ack = await this.#call("history", { before, limit });
      if (!ack.ok || view !== this.view) return false;
      this.timeline.prependOlder(ack.messages, ack.has_more);
      return true;
    } catch {
      // Lost the connection: scrolling up again retries.
      return false;
    } finally {
      scroller.removeAttribute("aria-busy");
    }
  }

  /** Keep loading older pages until the list is taller than the screen (or all is loaded). */
  fillScreen() {
    if (this.timeline.needsFill()) this.loadOlder();
  }

  // -- replies, reactions, edits ---------------------------------------------------------------

  /**
   * Show message `id` (the original of a reply): older history is loaded back to it first
   * if it is not held, a page at a time, so that the list stays whole. Null once it is
   * shown, or the reason it is not.
   */
  async jumpTo(id) {
    const timeline = this.timeline;
    while (!timeline.entries.has(id) && timeline.hasMore && timeline.firstId > id) {
      // Enough to reach it with some of what led to it, within what one answer may hold.
      const wanted = timeline.firstId - id + 25;
      const limit = Math.min(this.env.pages.gap, Math.max(this.env.pages.older, wanted));
      if (!(await this.loadOlder(limit))) {
        return this.live ? "could not load the earlier messages" : "not connected, try again once the connection is back";
      }
    }
    return timeline.reveal(id) ? null : "that message is no longer in the history";
  }

  /**
   * The name the page knows for `userId`: "you", someone online here, or the author of a
   * message it holds (the newest); null if none.
   */
  nameOf(userId) {
    if (userId == null) return null;
    if (userId === this.env.userId()) return "you";
    const online = this.people.people.find((p) => p.user_id === userId);
    if (online) return online.name;
    const ids = this.timeline.ids;
    for (let i = ids.length - 1; i >= 0; i -= 1) {
      const msg = this.timeline.entries.get(ids[i]).msg;
      if (msg.user_id === userId) return msg.name;
    }
    return null;
  }

  /** The emoji picker, for one message (see EmojiPicker.show); a second click closes it. */
  #pickEmoji({ button, anchor, pick }) {
    this.picker ??= new EmojiPicker(this.parts.view, this.parts.scroller);
    if (this.picker.swallowClick(button)) return;
    this.picker.show({
      anchor,
      pick,
      closed: (refocus) => {
        if (refocus) anchor()?.focus({ preventScroll: true });
      },
    });
  }

  /**
   * Set the reader's reaction `emoji` to `msg` (`add`: on or off): null when the server
   * took it (the message is shown as it now is), or the reason it did not.
   */
  async react(msg, emoji, add) {
    if (!this.live) return "not connected, try again once the connection is back";
    try {
      const ack = await this.#call("react", { id: msg.id, emoji, add });
      if (!ack.ok) return ack.error;
      // Its rev is not noted: changes before it may still be on their way to us.
      this.timeline.applyChange(ack.message);
      return null;
    } catch {
      return "could not reach the server, please try again";
    }
  }

  /** Ask the server to change the text of `msg`: {message} as it now is, or {error}. */
  async editMessage(msg, text) {
    if (!this.live) return { error: "not connected, try again once the connection is back" };
    try {
      const ack = await this.#call("edit", { id: msg.id, text });
      return ack.ok ? { message: ack.message } : { error: ack.error };
    } catch {
      return { error: "could not reach the server, please try again" };
    }
  }

  /** What `msg` said before its edits (admins only): {edits}, oldest first, or {error}. */
  async messageEdits(msg) {
    if (!this.live) return { error: "not connected, try again once the connection is back" };
    try {
      const ack = await this.#call("edits", { id: msg.id });
      return ack.ok ? { edits: ack.edits } : { error: ack.error };
    } catch {
      return { error: "could not reach the server, please try again" };
    }
  }

  // -- deleting --------------------------------------------------------------------------------

  /** Ask the server to delete `msg` for everyone: null when it did, or the reason it did not. */
  async deleteMessage(msg) {
    if (!this.live) return "not connected, try again once the connection is back";
    try {
      const ack = await this.#call("delete", { id: msg.id });
      if (!ack.ok) return ack.error;
      // Its rev is not noted: changes before it may still be on their way to us.
      this.timeline.applyChange(ack.message);
      return null;
    } catch {
      return "could not reach the server, please try again";
    }
  }
}
