// Searching the history (docs/protocol.md, `search`): a box in the top bar and, under it,
// a panel of results, best first, each of which opens its message in its room. The server
// reads the query (words, "phrases", from:, in:, before:, after:) and says what is wrong
// with one: the page sends what was typed and shows the answer, as text.

import { el } from "./dom.js";
import { dayLabel, exactTime, shortTime } from "./time.js";

const UNREACHABLE = "could not reach the server, please try again";

export class SearchView {
  /**
   * @param {object} dom  form, input (the box), panel, close, scope (the "this room only"
   *   checkbox), scopeLabel, status, list (of results), more (the "More results" button)
   * @param {object} hooks  call(event, data) -> Promise of the ack; connected() -> whether
   *   the socket is up (else the HTTP API is asked); here() -> {name, label}: the shown
   *   room; label(room) -> what a room is called on the page; open(room, id) -> Promise of
   *   null once the message is shown in its room, or why not
   */
  constructor(dom, hooks) {
    this.dom = dom;
    this.hooks = hooks;
    this.query = null; // the payload of the search shown: {q, room?}
    this.count = 0; // its results shown so far (the next page's offset)
    this.asked = 0; // counts requests: an answer to an older one is late
    this.opening = 0; // counts opened results: only the last one's outcome is shown

    dom.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.run();
    });
    dom.input.addEventListener("keydown", (event) => this.#onBoxKey(event));
    dom.input.addEventListener("click", () => {
      if (this.query !== null) this.setOpen(true);
    });
    dom.panel.addEventListener("keydown", (event) => this.#onPanelKey(event));
    dom.close.addEventListener("click", () => this.close());
    dom.more.addEventListener("click", () => this.#more());
    dom.scope.addEventListener("change", () => {
      if (dom.input.value.trim() !== "" || this.query !== null) this.run();
    });
    // Clicked elsewhere: out of the way (the results stay for the next time).
    document.addEventListener("pointerdown", (event) => {
      if (!this.isOpen || dom.panel.contains(event.target) || dom.form.contains(event.target)) return;
      this.setOpen(false);
    });
    // "/" or Ctrl+K (⌘K) from anywhere the reader is not typing.
    document.addEventListener("keydown", (event) => {
      if (event.defaultPrevented || event.isComposing || typingIn(event.target)) return;
      if (document.querySelector("dialog[open]")) return;
      const slash = event.key === "/" && !event.ctrlKey && !event.metaKey && !event.altKey;
      const k = event.key.toLowerCase() === "k" && (event.ctrlKey || event.metaKey) && !event.altKey;
      if (!slash && !k) return;
      event.preventDefault();
      this.focus();
    });
  }

  get isOpen() {
    return !this.dom.panel.hidden;
  }

  focus() {
    this.dom.input.focus();
    this.dom.input.select();
  }

  setOpen(open) {
    if (open) this.#updateScope();
    this.dom.panel.hidden = !open;
    this.dom.input.setAttribute("aria-expanded", String(open));
  }

  /** Closed, the focus back in the box. */
  close() {
    this.setOpen(false);
    this.dom.input.focus();
  }

  /** Search for what the box holds (in the shown room only, if so chosen). */
  run() {
    this.#updateScope();
    const query = { q: this.dom.input.value };
    if (this.dom.scope.checked) query.room = this.hooks.here().name;
    this.query = query;
    this.count = 0;
    this.dom.list.replaceChildren();
    this.setOpen(true);
    return this.#fetch(query, 0);
  }

  /** The next page of the search shown. */
  #more() {
    if (this.query === null) return;
    const focused = this.dom.panel.contains(document.activeElement);
    return this.#fetch(this.query, this.count, focused);
  }

  async #fetch(query, offset, focusNew = false) {
    const asked = ++this.asked;
    const dom = this.dom;
    dom.more.hidden = true;
    dom.list.setAttribute("aria-busy", "true");
    this.#say(offset ? "Loading more results…" : "Searching…");
    const answer = await this.#ask(offset ? { ...query, offset } : query);
    if (asked !== this.asked) return; // another search since
    dom.list.removeAttribute("aria-busy");
    if (!answer.ok) {
      const wait = Number(answer.retry_after);
      const retry = answer.error === "rate limited" && wait > 0 ? `: try again in ${Math.ceil(wait)} s` : "";
      this.#say(`${answer.error}${retry}`, true);
      dom.more.hidden = offset === 0; // the next page may be asked for again
      return;
    }
    const results = Array.isArray(answer.results) ? answer.results : [];
    const items = results.map((result) => this.#renderResult(result));
    dom.list.append(...items);
    this.count += results.length;
    dom.more.hidden = !answer.has_more;
    const n = this.count;
    const more = answer.has_more ? ", more below" : "";
    this.#say(n === 0 ? "No messages found." : `${n} ${n === 1 ? "result" : "results"}${more}`);
    if (focusNew) (items[0]?.querySelector("button") ?? dom.input).focus();
  }

  /** The server's answer: over the socket, else (down, or no answer) over HTTP. */
  async #ask(payload) {
    if (this.hooks.connected()) {
      try {
        return await this.hooks.call("search", payload);
      } catch {
        // No answer on this connection: the HTTP API may still be reached.
      }
    }
    const params = new URLSearchParams({ q: payload.q });
    if (payload.room !== undefined) params.set("room", payload.room);
    if (payload.offset !== undefined) params.set("offset", String(payload.offset));
    try {
      const response = await fetch(`/api/search?${params}`, {
        credentials: "same-origin",
        headers: { Accept: "application/json" },
      });
      const body = await response.json();
      if (response.ok) return { ok: true, ...body };
      const error = String(body.error ?? `search failed (${response.status})`);
      return { ok: false, error, retry_after: body.retry_after };
    } catch {
      return { ok: false, error: UNREACHABLE };
    }
  }

  #say(text, error = false) {
    this.dom.status.textContent = text;
    this.dom.status.classList.toggle("search-error", error);
  }

  #updateScope() {
    this.dom.scopeLabel.textContent = `Search in ${this.hooks.here().label}`;
  }

  /** One result: where, who, when, and the snippet with its matches marked. */
  #renderResult({ message, snippet }) {
    const button = el("button", "search-result");
    button.type = "button";
    const meta = el("span", "search-meta");
    meta.append(
      el("span", "search-room", this.hooks.label(message.room)),
      el("span", "search-author", String(message.name ?? "")),
    );
    if (Number.isFinite(message.ts)) {
      const time = el("time", "search-time", `${dayLabel(message.ts)} ${shortTime(message.ts)}`);
      time.dateTime = new Date(message.ts).toISOString();
      time.title = exactTime(message.ts);
      meta.append(time);
    }
    const text = el("span", "search-snippet");
    for (const piece of Array.isArray(snippet) ? snippet : []) {
      if (!Array.isArray(piece)) continue;
      const [part, matched] = piece;
      text.append(matched ? el("mark", "", String(part)) : document.createTextNode(String(part)));
    }
    if (!text.childNodes.length) text.textContent = String(message.text ?? "");
    button.append(meta, text);
    button.addEventListener("click", () => this.#open(message, button));
    const item = el("li");
    item.append(button);
    return item;
  }

  async #open(message, button) {
    const opening = ++this.opening;
    button.setAttribute("aria-busy", "true");
    const problem = await this.hooks.open(message.room, message.id);
    button.removeAttribute("aria-busy");
    if (opening !== this.opening) return;
    if (problem) {
      this.#say(problem, true);
      return;
    }
    // The message has the focus now: the panel goes without taking it back.
    this.setOpen(false);
  }

  #results() {
    return [...this.dom.list.querySelectorAll(".search-result")];
  }

  #onBoxKey(event) {
    if (event.isComposing) return;
    if (event.key === "ArrowDown" && this.query !== null) {
      event.preventDefault();
      this.setOpen(true);
      this.#results()[0]?.focus();
    } else if (event.key === "Escape" && this.isOpen) {
      event.preventDefault(); // a search box would also empty itself
      event.stopPropagation();
      this.setOpen(false);
    }
  }

  #onPanelKey(event) {
    if (event.key === "Escape") {
      event.preventDefault();
      event.stopPropagation();
      this.close();
      return;
    }
    const results = this.#results();
    if (document.activeElement === this.dom.more && event.key === "ArrowUp" && results.length) {
      event.preventDefault();
      results.at(-1).focus();
      return;
    }
    const at = results.indexOf(document.activeElement);
    if (at === -1) return;
    let next = null;
    if (event.key === "ArrowDown") next = results[at + 1] ?? (this.dom.more.hidden ? null : this.dom.more);
    else if (event.key === "ArrowUp") next = at === 0 ? this.dom.input : results[at - 1];
    else if (event.key === "Home") next = results[0];
    else if (event.key === "End") next = results.at(-1);
    else return;
    event.preventDefault();
    next?.focus();
  }
}

/** Whether keys pressed in `target` are typed into something. */
function typingIn(target) {
  if (!(target instanceof Element)) return false;
  if (target.isContentEditable) return true;
  if (target instanceof HTMLTextAreaElement || target instanceof HTMLSelectElement) return true;
  if (!(target instanceof HTMLInputElement)) return false;
  return !["button", "checkbox", "radio", "submit", "reset", "range", "color", "file"].includes(target.type);
}
