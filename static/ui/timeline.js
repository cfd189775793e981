// The message list: confirmed messages in id order, each once, in their newest state (a
// deleted one as a tombstone, an edited one marked "(edited)", with its reactions and the
// quote of the message it replies to); the user's own messages still waiting for their ack
// below them; day separators, grouping, and scrolling that never jumps under the reader.
// Each message's actions (Reply, React, Edit, Delete) show on hover or keyboard focus; an
// admin opens an edited message's earlier versions from its "(edited)".

import { avatar, hueClass } from "./avatar.js";
import { attachment, showsText } from "./attachments.js";
import { actionBar, deleteControl } from "./deletion.js";
import { el, quietly } from "./dom.js";
import { editorState, messageEditor } from "./editor.js";
import { editHistory, editedMarker, historyState } from "./edits.js";
import { identityTag } from "./identity.js";
import { mentionWords } from "./mentions.js";
import { hasReacted, reactionsRow } from "./reactions.js";
import { fillQuote, replyQuote } from "./reply.js";
import { renderText } from "./text.js";
import { dayKey, dayLabel, exactTime, shortTime } from "./time.js";

/** Consecutive messages of one author within this many ms are grouped under one header. */
const GROUP_MS = 5 * 60 * 1000;
/** Within this many pixels of the end counts as "at the bottom". */
const BOTTOM_SLACK = 48;
/** Start fetching older messages when this close to the top. */
const TOP_SLACK = 160;

/**
 * Grouped under one header: the same person under the same name (a message from before
 * ids has only its name). A new name shows, and so does a namesake.
 */
const sameAuthor = (a, b) => a.name === b.name && (a.user_id ?? null) === (b.user_id ?? null);

/** A message's change number: its newest change's, 0 if it never changed. */
const revOf = (msg) => msg.rev ?? 0;
/** How long a note under a message (a reaction refused) stays, in ms. */
const NOTE_MS = 6000;

/** A button of a message's action bar. */
function actionButton(label, name, focusKey, onClick) {
  const button = el("button", "msg-action", label);
  button.type = "button";
  button.dataset.focus = focusKey;
  button.setAttribute("aria-label", name);
  button.addEventListener("click", onClick);
  return button;
}

export class Timeline {
  /**
   * @param {object} dom  scroller, log, list, pendingList, loadOlder, historyStart, jump, jumpLabel
   * @param {object} hooks  isMine(msg) -> bool (by its user_id); needOlder() -> void;
   *   atBottom() -> void (the reader is at the newest message: it counts as read);
   *   onRetry(pending); onDiscard(pending); canDelete(msg) -> bool (whether to offer a
   *   Delete button); onDelete(msg) -> Promise of null (deleted) or the reason it was not;
   *   mentionsMe(msg) -> bool (it names the reader: marked "mentions-me");
   *   userId() -> the reader's; nameOf(user_id) -> a name the page knows, or null;
   *   canEdit(msg) -> bool (whether to offer Edit); onEdit(msg, text) -> Promise of
   *   {message} (its new state) or {error}; onReact(msg, emoji, add) -> Promise of null or
   *   the reason it was refused; onPick(msg, {button, anchor(), pick(emoji)}) (open the
   *   emoji picker from `button`, pointing at anchor(), the message's React button now);
   *   onReply(msg); onJump(id) -> Promise of null (shown) or why not; focusComposer();
   *   canSeeEdits() -> bool (offer earlier versions: the reader is an admin);
   *   onEdits(msg) -> Promise of {edits} (docs/protocol.md, `edits`) or {error}
   */
  constructor(dom, hooks) {
    this.dom = dom;
    this.hooks = hooks;
    this.entries = new Map(); // id -> {msg, el, sep, actions, actionsKey, editor, history}
    this.ids = []; // sorted ascending
    this.pending = new Map(); // client_id -> pending record
    this.hasMore = false;
    this.unseen = 0;
    this.stuckToBottom = true;

    dom.scroller.addEventListener("scroll", () => this.#onScroll(), { passive: true });
    dom.jump.addEventListener("click", () => this.scrollToBottom(true));
    dom.loadOlder.addEventListener("click", () => this.hooks.needOlder());
    new ResizeObserver(() => {
      if (this.stuckToBottom) this.scrollToBottom();
    }).observe(dom.scroller);
  }

  get firstId() {
    return this.ids.length ? this.ids[0] : null;
  }

  isAtBottom() {
    const s = this.dom.scroller;
    return s.scrollHeight - s.scrollTop - s.clientHeight <= BOTTOM_SLACK;
  }

  scrollToBottom(smooth = false) {
    const s = this.dom.scroller;
    const reduce = matchMedia("(prefers-reduced-motion: reduce)").matches;
    s.scrollTo({ top: s.scrollHeight, behavior: smooth && !reduce ? "smooth" : "instant" });
    this.stuckToBottom = true;
    this.#setUnseen(0);
    this.hooks.atBottom();
  }

  #onScroll() {
    this.stuckToBottom = this.isAtBottom();
    if (this.stuckToBottom) {
      this.#setUnseen(0);
      this.hooks.atBottom();
    }
    if (this.hasMore && this.dom.scroller.scrollTop < TOP_SLACK) this.hooks.needOlder();
  }

  #setUnseen(n) {
    this.unseen = n;
    this.dom.jump.hidden = n === 0;
    this.dom.jumpLabel.textContent =
      n === 1 ? "1 new message" : n > 1 ? `${n} new messages` : "New messages";
  }

  /** Whether older history should be fetched now to fill the screen. */
  needsFill() {
    const s = this.dom.scroller;
    return this.hasMore && s.scrollHeight <= s.clientHeight + TOP_SLACK;
  }

  setHasMore(hasMore) {
    this.hasMore = hasMore;
    this.dom.loadOlder.hidden = !hasMore;
    // Only claim "the beginning" when we really hold the room's first message.
    this.dom.historyStart.hidden = hasMore || (this.firstId !== null && this.firstId !== 1);
  }

  // -- confirmed messages --------------------------------------------------------------

  /** Forget every confirmed message (the view starts over; those on their way stay). */
  clear() {
    this.entries.clear();
    this.ids = [];
    this.dom.list.replaceChildren();
    this.#setUnseen(0);
  }

  /** First load: history that is not announced to screen readers. */
  loadInitial(messages, hasMore) {
    quietly(this.dom.log, () => {
      for (const msg of messages) this.#insert(msg);
    });
    this.setHasMore(hasMore);
    this.scrollToBottom();
  }

  /**
   * Messages that arrived live (or were missed while offline): announced, and followed only
   * if the reader was at the bottom. Returns the messages that were new.
   */
  addLive(messages, { ownSend = false } = {}) {
    const wasAtBottom = this.stuckToBottom || this.isAtBottom();
    const added = [];
    for (const msg of messages) {
      if (this.#adoptPending(msg) || this.#insert(msg)) added.push(msg);
    }
    if (!added.length) return added;
    if (wasAtBottom || ownSend) {
      this.scrollToBottom();
    } else {
      const fromOthers = added.filter((m) => !this.hooks.isMine(m)).length;
      if (fromOthers) this.#setUnseen(this.unseen + fromOthers);
    }
    return added;
  }

  /** Older messages above the current ones, keeping what the reader sees in place. */
  prependOlder(messages, hasMore) {
    const s = this.dom.scroller;
    const fromBottom = s.scrollHeight - s.scrollTop;
    quietly(this.dom.log, () => {
      for (const msg of messages) this.#insert(msg);
    });
    this.setHasMore(hasMore);
    s.scrollTop = s.scrollHeight - fromBottom;
  }

  /**
   * A message's new state (a `changed` event, a deletion's answer): shown in place of the
   * one held if it is newer. A message not held is not shown (it is not in view).
   */
  applyChange(msg) {
    const entry = this.entries.get(msg.id);
    if (!entry || revOf(msg) <= revOf(entry.msg)) return;
    const edited = entry.msg.edited;
    entry.msg = msg;
    if (msg.deleted) {
      entry.editor = null; // nothing left to edit
      entry.history = null; // nor to look back on (a deletion removes the earlier texts)
    }
    this.#redraw(entry);
    this.#refreshQuotes(msg.id);
    // Edited again while its earlier versions are open: they are asked for again.
    if (entry.history && msg.edited !== edited) this.#loadEdits(entry);
  }

  /**
   * Draw `entry` again from its state (message, editor): in the same place, the focus on
   * the same control if it is still there (`focusKey`: on that one instead), and what the
   * reader sees kept in place; `quiet`: not announced (the reader's own doing).
   */
  #redraw(entry, focusKey = null, { quiet = false } = {}) {
    const wasAtBottom = this.stuckToBottom || this.isAtBottom();
    const s = this.dom.scroller;
    const old = entry.el;
    const above =
      !wasAtBottom && old.getBoundingClientRect().bottom <= s.getBoundingClientRect().top;
    const height = old.offsetHeight;
    const active = document.activeElement;
    const hadFocus = old.contains(active);
    const onItself = active === old; // a message shown by a jump to it
    const key = focusKey ?? (hadFocus ? (active.closest("[data-focus]")?.dataset.focus ?? null) : null);
    const box = old.querySelector(".edit-box");
    if (entry.editor && box) {
      entry.editor.start = box.selectionStart;
      entry.editor.end = box.selectionEnd;
    }
    entry.el = this.#renderMessage(entry.msg, { entry });
    entry.actions = null;
    entry.actionsKey = null;
    entry.el.classList.toggle("sent", old.classList.contains("sent"));
    // The reader's own doings (an editor opened or closed) are not news to announce.
    if (quiet) quietly(this.dom.log, () => old.replaceWith(entry.el));
    else old.replaceWith(entry.el);
    this.#decorate(this.#indexFor(entry.msg.id));
    this.#syncActions(entry);
    if (onItself && focusKey === null) {
      entry.el.tabIndex = -1;
      entry.el.focus({ preventScroll: true });
    } else if (key !== null || hadFocus) {
      this.#refocus(entry, key);
    }
    // Keep what the reader sees in place when a message above it changed height.
    if (wasAtBottom) this.scrollToBottom();
    else if (above) s.scrollTop += entry.el.offsetHeight - height;
  }

  /** The focus on the control called `key` in `entry`, else on its React button, else the list. */
  #refocus(entry, key) {
    const controls = [...entry.el.querySelectorAll("[data-focus]")];
    const target =
      controls.find((c) => c.dataset.focus === key) ?? controls.find((c) => c.dataset.focus === "react");
    if (!target) {
      this.dom.scroller.focus({ preventScroll: true });
      return;
    }
    target.focus({ preventScroll: true });
    if (target.classList.contains("edit-box") && entry.editor) {
      target.setSelectionRange(entry.editor.start, entry.editor.end);
    }
  }

  /**
   * Insert a confirmed message in id order; false if it was already there (a newer state
   * of it, as history may bring, then replaces the one shown).
   */
  #insert(msg) {
    if (this.entries.has(msg.id)) {
      this.applyChange(msg);
      return false;
    }
    const entry = { msg, el: null, sep: null, actions: null, actionsKey: null, editor: null, history: null };
    entry.el = this.#renderMessage(msg, { entry });
    const index = this.#indexFor(msg.id);
    const next = index < this.ids.length ? this.entries.get(this.ids[index]) : null;
    this.dom.list.insertBefore(entry.el, next ? (next.sep ?? next.el) : null);
    this.ids.splice(index, 0, msg.id);
    this.entries.set(msg.id, entry);
    this.#decorate(index);
    if (next) this.#decorate(index + 1);
    this.#syncActions(entry);
    this.#refreshQuotes(msg.id);
    return true;
  }

  /**
   * The action bar: Reply and React on every message, Edit on the reader's own, Delete
   * where the reader may delete; none on a tombstone.
   */
  #syncActions(entry) {
    const msg = entry.msg;
    const edit = !msg.deleted && !entry.editor && this.hooks.canEdit(msg);
    const remove = !msg.deleted && this.hooks.canDelete(msg);
    const key = msg.deleted ? "none" : `${edit} ${remove}`;
    if (key === entry.actionsKey) return;
    const hadFocus = entry.actions?.contains(document.activeElement) ?? false;
    const focused = hadFocus ? document.activeElement.dataset.focus : null;
    entry.actions?.remove();
    entry.actions = null;
    entry.actionsKey = key;
    if (msg.deleted) return;
    const id = msg.id;
    const buttons = [
      actionButton("Reply", "Reply", "reply", () => this.hooks.onReply(this.entries.get(id).msg)),
      actionButton("React", "Add reaction", "react", (event) => this.#openPicker(id, event.currentTarget)),
    ];
    if (edit) buttons.push(actionButton("Edit", "Edit message", "edit", () => this.editMessage(id)));
    entry.actions = remove
      ? deleteControl(() => this.hooks.onDelete(this.entries.get(id).msg), buttons)
      : actionBar(buttons);
    entry.el.querySelector(".bubble").append(entry.actions);
    if (hadFocus) this.#refocus(entry, focused);
  }

  // -- replies ------------------------------------------------------------------------------

  /** The quotes of the replies to `id`, drawn again from what the page holds of it. */
  #refreshQuotes(id) {
    const original = this.entries.get(id)?.msg ?? null;
    const selector = `.reply-quote[data-reply-to="${Number(id)}"]`;
    for (const list of [this.dom.list, this.dom.pendingList]) {
      for (const quote of list.querySelectorAll(selector)) fillQuote(quote, original);
    }
  }

  /** Show message `id` (held): in view, highlighted a moment, the focus on it. */
  reveal(id) {
    const entry = this.entries.get(id);
    if (!entry) return false;
    const li = entry.el;
    const reduce = matchMedia("(prefers-reduced-motion: reduce)").matches;
    li.scrollIntoView({ block: "center", behavior: reduce ? "instant" : "smooth" });
    li.tabIndex = -1;
    li.focus({ preventScroll: true });
    li.classList.remove("flash");
    void li.offsetWidth; // restart the animation when shown twice
    li.classList.add("flash");
    li.addEventListener("animationend", () => li.classList.remove("flash"), { once: true });
    return true;
  }

  async #jump(id, quote) {
    quote.setAttribute("aria-busy", "true");
    const problem = await this.hooks.onJump(id);
    quote.removeAttribute("aria-busy");
    if (problem) this.#note(quote.closest(".msg"), problem);
  }

  /** A short note under the message `li` (a refusal), gone after a few seconds. */
  #note(li, text) {
    const bubble = li?.querySelector(".bubble");
    if (!bubble) return;
    bubble.querySelector(".msg-note")?.remove();
    const note = el("p", "msg-note", text);
    note.setAttribute("role", "alert");
    bubble.append(note);
    setTimeout(() => note.remove(), NOTE_MS);
  }

  // -- reactions ------------------------------------------------------------------------------

  #openPicker(id, button) {
    const anchor = () => {
      const entry = this.entries.get(id);
      return entry?.el.querySelector('[data-focus="react"]') ?? entry?.el.querySelector(".bubble") ?? null;
    };
    const pick = (emoji) => this.#react(id, emoji, true);
    this.hooks.onPick(this.entries.get(id).msg, { button, anchor, pick });
  }

  /** Toggle the reader's `emoji` on message `id` as it is now (an explicit add or take away). */
  #toggle(id, emoji) {
    const entry = this.entries.get(id);
    if (entry) this.#react(id, emoji, !hasReacted(entry.msg, emoji, this.hooks.userId()));
  }

  async #react(id, emoji, add) {
    const entry = this.entries.get(id);
    if (!entry) return;
    const error = await this.hooks.onReact(entry.msg, emoji, add);
    const now = this.entries.get(id);
    if (error && now) this.#note(now.el, `Reaction not ${add ? "added" : "removed"}: ${error}`);
  }

  // -- earlier versions (admins) ---------------------------------------------------------------

  #toggleEdits(id) {
    const entry = this.entries.get(id);
    if (!entry) return;
    if (entry.history) this.#closeEdits(entry);
    else this.#loadEdits(entry);
  }

  /** Open (or refresh) the panel of `entry`'s earlier versions, and ask the server for them. */
  async #loadEdits(entry) {
    const history = historyState(entry.history);
    entry.history = history;
    this.#redraw(entry, null, { quiet: true });
    const result = await this.hooks.onEdits(entry.msg);
    if (this.entries.get(entry.msg.id) !== entry || entry.history !== history) return; // closed meanwhile
    if (result.error) Object.assign(history, { state: "failed", error: result.error });
    else Object.assign(history, { state: "shown", edits: result.edits });
    this.#redraw(entry, null, { quiet: true });
  }

  #closeEdits(entry) {
    entry.history = null;
    this.#redraw(entry, "edits", { quiet: true });
  }

  // -- editing ----------------------------------------------------------------------------------

  /** Open the editor of message `id` (one of the reader's); `returnTo` as in editorState. */
  editMessage(id, returnTo = "button") {
    const entry = this.entries.get(id);
    if (!entry || entry.msg.deleted) return false;
    if (!entry.editor) entry.editor = editorState(entry.msg.text, returnTo);
    this.#redraw(entry, "editor", { quiet: true });
    entry.el.scrollIntoView({ block: "nearest" });
    return true;
  }

  /** ArrowUp in an empty message box: edit the reader's newest message here. */
  editNewestMine() {
    for (let i = this.ids.length - 1; i >= 0; i -= 1) {
      const msg = this.entries.get(this.ids[i]).msg;
      if (!msg.deleted && this.hooks.canEdit(msg)) return this.editMessage(msg.id, "composer");
    }
    return false;
  }

  #closeEditor(entry) {
    const returnTo = entry.editor?.returnTo;
    entry.editor = null;
    if (returnTo === "composer") this.hooks.focusComposer(); // back to writing, as it was
    this.#redraw(entry, returnTo === "button" ? "edit" : null, { quiet: true });
  }

  async #saveEdit(entry) {
    const editor = entry.editor;
    if (!editor || editor.busy) return;
    const text = editor.draft;
    if (text === entry.msg.text) {
      this.#closeEditor(entry);
      return;
    }
    editor.busy = true;
    editor.error = "";
    this.#redraw(entry, null, { quiet: true });
    const result = await this.hooks.onEdit(entry.msg, text);
    if (this.entries.get(entry.msg.id) !== entry || entry.editor !== editor) return; // gone meanwhile
    editor.busy = false;
    if (result.error) {
      editor.error = result.error;
      this.#redraw(entry, "editor", { quiet: true }); // its error is an alert of its own
      return;
    }
    if (revOf(result.message) > revOf(entry.msg)) entry.msg = result.message;
    this.#closeEditor(entry);
    this.#refreshQuotes(entry.msg.id);
  }

  #indexFor(id) {
    let lo = 0;
    let hi = this.ids.length;
    if (hi && this.ids[hi - 1] < id) return hi; // the usual case: a new message at the end
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.ids[mid] < id) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** Day separator before, and grouping with, the previous message. */
  #decorate(index) {
    const entry = this.entries.get(this.ids[index]);
    const prev = index > 0 ? this.entries.get(this.ids[index - 1]).msg : null;
    const msg = entry.msg;
    const newDay = !prev || dayKey(prev.ts) !== dayKey(msg.ts);
    if (newDay && !entry.sep) {
      entry.sep = el("li", "day-sep");
      entry.sep.append(el("span", "day-label", dayLabel(msg.ts)));
      entry.el.before(entry.sep);
    } else if (!newDay && entry.sep) {
      entry.sep.remove();
      entry.sep = null;
    }
    const grouped = !newDay && sameAuthor(prev, msg) && msg.ts - prev.ts < GROUP_MS;
    entry.el.classList.toggle("cont", grouped);
  }

  #renderMessage(msg, { mine = this.hooks.isMine(msg), extraClass = "", entry = null } = {}) {
    const kind = `${mine ? "mine" : "theirs"} ${msg.deleted ? "deleted" : ""}`;
    const li = el("li", `msg ${kind} ${hueClass(msg)} ${extraClass}`);
    // Names the reader: stands out (who "me" is may change: see refreshOwnership).
    if (this.hooks.mentionsMe?.(msg)) li.classList.add("mentions-me");
    if (msg.id !== undefined) li.dataset.id = String(msg.id);
    li.append(avatar(msg));
    const bubble = el("div", "bubble");
    const meta = el("div", "meta");
    meta.append(el("span", "author", msg.name));
    if (msg.user_id !== undefined) meta.append(identityTag(msg));
    const time = el("time", "time", shortTime(msg.ts));
    time.dateTime = new Date(msg.ts).toISOString();
    time.title = exactTime(msg.ts);
    meta.append(time);
    if (msg.edited && !msg.deleted) {
      const toggle = entry && this.hooks.canSeeEdits() ? () => this.#toggleEdits(msg.id) : null;
      meta.append(editedMarker(msg, entry?.history ?? null, toggle));
    }
    bubble.append(meta);
    // The message it answers: a tombstone's is gone with its text.
    if (Number.isInteger(msg.reply_to) && !msg.deleted) {
      const original = this.entries.get(msg.reply_to)?.msg ?? null;
      bubble.append(replyQuote(msg.reply_to, original, (id, quote) => this.#jump(id, quote)));
    }
    // A tombstone keeps who and when (for the grouping), never what it said.
    if (entry?.editor && !msg.deleted) {
      bubble.append(
        messageEditor(entry.editor, {
          save: () => this.#saveEdit(entry),
          cancel: () => this.#closeEditor(entry),
        }),
      );
      li.classList.add("editing");
    } else if (showsText(msg)) {
      const text = msg.deleted ? el("div", "text tombstone", "message deleted") : el("div", "text");
      if (!msg.deleted) text.append(renderText(msg.text, mentionWords(msg)));
      bubble.append(text);
    }
    // The file it carries (a tombstone's is gone): a thumbnail or a download card.
    const file = attachment(msg);
    if (file) bubble.append(file);
    if (entry?.history && !msg.deleted) {
      bubble.append(editHistory(msg, entry.history, () => this.#closeEdits(entry)));
    }
    if (entry) {
      const row = reactionsRow(msg, {
        me: this.hooks.userId(),
        nameOf: (userId) => this.hooks.nameOf(userId),
        toggle: (emoji) => this.#toggle(msg.id, emoji),
      });
      if (row) bubble.append(row);
    }
    li.append(bubble);
    return li;
  }

  /**
   * Re-evaluate which messages are the reader's own, which they may delete, and whose
   * earlier versions they may see (the reader's user_id, or whether they are an admin,
   * changed).
   */
  refreshOwnership() {
    for (const entry of this.entries.values()) {
      const mine = this.hooks.isMine(entry.msg);
      if (!mine) entry.editor = null;
      if (!this.hooks.canSeeEdits()) entry.history = null;
      if (entry.msg.reactions?.length || entry.msg.edited || entry.el.classList.contains("editing")) {
        this.#redraw(entry); // which chips are pressed, whether "(edited)" opens its versions
        continue;
      }
      entry.el.classList.toggle("mine", mine);
      entry.el.classList.toggle("theirs", !mine);
      entry.el.classList.toggle("mentions-me", Boolean(this.hooks.mentionsMe?.(entry.msg)));
      this.#syncActions(entry);
    }
  }

  // -- the reader's own messages before their ack ---------------------------------------
  // The outbox (outbox.js) decides when they are sent; this shows them, in its order.

  /** Show a message on its way; `pending` is {clientId, text, name, user_id, ts}. */
  showPending(pending) {
    pending.el = this.#renderMessage(pending, { mine: true, extraClass: "pending" });
    pending.el.dataset.clientId = pending.clientId;
    pending.stateEl = el("div", "send-state");
    pending.el.querySelector(".bubble").append(pending.stateEl);
    this.pending.set(pending.clientId, pending);
    this.dom.pendingList.append(pending.el);
    this.scrollToBottom();
  }

  /**
   * state: "queued" (waiting for its turn, the rate limit or the connection), "sending",
   * or "failed" with the server's `reason`, a Retry and a Discard button.
   */
  setPendingState(pending, state, reason = "") {
    pending.el.dataset.state = state;
    if (state === "queued") {
      pending.stateEl.replaceChildren(el("span", "state-label", "Queued"));
      return;
    }
    if (state === "sending") {
      pending.stateEl.replaceChildren(el("span", "state-label", "Sending…"));
      return;
    }
    const label = el("span", "state-label", `Not sent: ${reason}`);
    const retry = el("button", "link-btn retry", "Retry");
    retry.type = "button";
    retry.addEventListener("click", () => this.hooks.onRetry(pending));
    const discard = el("button", "link-btn discard", "Discard");
    discard.type = "button";
    discard.addEventListener("click", () => this.hooks.onDiscard(pending));
    pending.stateEl.replaceChildren(label, retry, discard);
  }

  /** A retried message goes after the others waiting. */
  movePendingToEnd(pending) {
    if (this.pending.has(pending.clientId)) this.dom.pendingList.append(pending.el);
  }

  /** A discarded message. */
  removePending(pending) {
    this.#dropPending(pending);
  }

  /** The ack for `pending` arrived with the stored message. */
  confirmPending(pending, msg) {
    if (this.pending.has(pending.clientId)) this.#dropPending(pending);
    // (Otherwise a broadcast took its place already.)
    const wasAtBottom = this.stuckToBottom;
    if (!this.entries.has(msg.id)) this.#insert(msg);
    this.#markSent(msg.id);
    if (wasAtBottom) this.scrollToBottom();
  }

  /**
   * A broadcast of one of our own messages usually arrives just before its ack (and a
   * catch-up may bring one whose ack was lost): let it take the pending bubble's place so
   * that the text never shows twice. Only a message the server may hold qualifies, and
   * only one from us (by user_id: someone else may use our name, and post the same text).
   * Broadcasts carry no client_id: the same text is the best match, and if it came from
   * another of our tabs, the ack still puts ours in place.
   */
  #adoptPending(msg) {
    if (this.entries.has(msg.id) || !this.hooks.isMine(msg)) return false;
    for (const pending of this.pending.values()) {
      if (pending.mayBeStored && pending.text === msg.text) {
        this.#dropPending(pending);
        this.#insert(msg);
        this.#markSent(msg.id);
        return true;
      }
    }
    return false;
  }

  #dropPending(pending) {
    this.pending.delete(pending.clientId);
    pending.el.remove();
  }

  #markSent(id) {
    const entry = this.entries.get(id);
    if (entry) entry.el.classList.add("sent");
  }
}
