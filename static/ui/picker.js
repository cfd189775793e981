// The emoji picker: a small popup of common emoji over a room's timeline, with a box that
// filters them by shortcode ("thu" finds 👍 :thumbsup:). The box keeps the focus and
// points at the highlighted emoji (aria-activedescendant), as a combobox does: the arrows
// move in the grid, Enter picks, Escape (or a click elsewhere) closes. Which emoji the
// server takes is the server's to say: an emoji typed or pasted into the box is offered too.

import { el } from "./dom.js";
import { EMOJI } from "./emoji.js";

/** Shown with an empty filter: the first ones of the list, the most used. */
const COMMON = 32;
/** Found by a filter: at most this many. */
const MAX_FOUND = 48;
/** Emoji per row of the grid (the arrows up and down move by a row). */
const COLUMNS = 8;
/** Pixels kept between the popup and the edges of the timeline. */
const MARGIN = 8;

let pickers = 0;

/** A filter as a shortcode: lowercase, without the colons around it. */
const shortcodeOf = (query) => query.trim().toLowerCase().replace(/^:+|:+$/g, "");

/** What the filter finds: [{emoji, names}], the names that match first. */
function find(query) {
  const code = shortcodeOf(query);
  if (!code) return EMOJI.slice(0, COMMON);
  const ranked = [];
  EMOJI.forEach((entry, order) => {
    const starts = entry.names.filter((n) => n.startsWith(code));
    const inside = entry.names.filter((n) => !n.startsWith(code) && n.includes(code));
    if (!starts.length && !inside.length) return;
    const rank = starts.length ? 0 : 1;
    const names = [...starts, ...inside, ...entry.names.filter((n) => !n.includes(code))];
    ranked.push({ emoji: entry.emoji, names, rank, order });
  });
  ranked.sort((a, b) => a.rank - b.rank || a.order - b.order);
  const found = ranked.slice(0, MAX_FOUND);
  // An emoji itself, typed or pasted (no shortcode has letters beyond ASCII): offered as is.
  const typed = query.trim();
  if (/[^\x00-\x7f]/.test(typed) && !found.some((f) => f.emoji === typed)) {
    found.unshift({ emoji: typed, names: [], typed: true });
  }
  return found;
}

export class EmojiPicker {
  /**
   * `container`: the positioned element it shows in (a room's view); `scroller`: the
   * timeline inside it, whose scrolling moves the popup along with its message.
   */
  constructor(container, scroller) {
    pickers += 1;
    this.prefix = `emoji-picker-${pickers}`;
    this.container = container;
    this.scroller = scroller;
    this.request = null; // {anchor(), pick(emoji), closed(refocus)} while open
    this.options = []; // [{emoji, names, node}]
    this.active = -1;
    this.ignoreClickOn = null; // the button whose press closed it: its click is not a new open

    this.root = el("div", "emoji-picker");
    this.root.setAttribute("role", "dialog");
    this.root.setAttribute("aria-label", "Add a reaction");
    this.root.hidden = true;
    this.input = el("input", "picker-filter");
    this.input.type = "text";
    this.input.autocomplete = "off";
    this.input.spellcheck = false;
    this.input.placeholder = "Find an emoji: thumbsup, tada…";
    this.input.setAttribute("aria-label", "Find an emoji by name");
    this.input.setAttribute("role", "combobox");
    this.input.setAttribute("aria-expanded", "true");
    this.input.setAttribute("aria-autocomplete", "list");
    this.grid = el("div", "picker-grid");
    this.grid.id = `${this.prefix}-list`;
    this.grid.setAttribute("role", "listbox");
    this.grid.setAttribute("aria-label", "Emoji");
    this.input.setAttribute("aria-controls", this.grid.id);
    this.preview = el("p", "picker-preview");
    this.preview.setAttribute("aria-hidden", "true");
    this.root.append(this.input, this.grid, this.preview);
    container.append(this.root);

    this.input.addEventListener("input", () => this.#render());
    this.input.addEventListener("keydown", (event) => this.#key(event));
    // The box keeps the focus while an emoji is pressed.
    this.grid.addEventListener("mousedown", (event) => event.preventDefault());
    this.grid.addEventListener("click", (event) => {
      const node = event.target.closest("[role=option]");
      if (node) this.#pick(this.options[Number(node.dataset.index)]);
    });
    this.grid.addEventListener("mousemove", (event) => {
      const node = event.target.closest("[role=option]");
      if (node && Number(node.dataset.index) !== this.active) this.#activate(Number(node.dataset.index));
    });
    this.root.addEventListener("focusout", (event) => {
      if (this.request && !this.root.contains(event.relatedTarget)) this.close(false);
    });
    this.onPointer = (event) => {
      if (this.root.contains(event.target)) return;
      // A click on the button that opened it closes it (the button's own click must not
      // open it again at once).
      const anchor = this.request?.anchor();
      if (anchor && anchor.contains(event.target)) this.ignoreClickOn = anchor;
      this.close(false);
    };
    this.onScroll = () => this.#place();
  }

  get open() {
    return this.request !== null;
  }

  /**
   * Open for one message: `anchor()` gives the element it points at (the message's React
   * button: it may be drawn again meanwhile), `pick(emoji)` is told the choice, and
   * `closed(refocus)` that it closed (refocus: by the keyboard or a pick, so the focus
   * should go back to the message).
   */
  show(request) {
    if (this.request) this.close(false);
    this.request = request;
    this.ignoreClickOn = null;
    this.input.value = "";
    this.root.hidden = false;
    this.#render();
    this.#place();
    this.input.focus({ preventScroll: true });
    document.addEventListener("pointerdown", this.onPointer, true);
    this.scroller.addEventListener("scroll", this.onScroll, { passive: true });
  }

  /** Whether a click on `button` should be ignored: it was the click that closed the picker. */
  swallowClick(button) {
    const swallow = this.ignoreClickOn === button;
    this.ignoreClickOn = null;
    return swallow;
  }

  close(refocus = true) {
    const request = this.request;
    if (!request) return;
    this.request = null;
    this.root.hidden = true;
    this.grid.replaceChildren();
    this.options = [];
    this.active = -1;
    document.removeEventListener("pointerdown", this.onPointer, true);
    this.scroller.removeEventListener("scroll", this.onScroll);
    request.closed(refocus);
  }

  #render() {
    const found = find(this.input.value);
    const previous = this.options[this.active]?.emoji;
    this.options = found.map((entry, index) => {
      const node = el("div", "picker-option", entry.emoji);
      node.id = `${this.prefix}-option-${index}`;
      node.dataset.index = String(index);
      node.setAttribute("role", "option");
      const label = entry.typed ? `${entry.emoji} (as typed)` : `${entry.emoji} ${codes(entry)}`;
      node.setAttribute("aria-label", label);
      node.title = entry.typed ? "As typed" : codes(entry);
      return { ...entry, node };
    });
    this.grid.replaceChildren(...this.options.map((o) => o.node));
    if (!this.options.length) {
      this.grid.append(el("p", "picker-empty", "No emoji by that name"));
      this.input.removeAttribute("aria-activedescendant");
      this.active = -1;
      this.preview.textContent = "";
      return;
    }
    const keep = this.options.findIndex((o) => o.emoji === previous);
    this.#activate(this.input.value.trim() ? 0 : Math.max(0, keep));
  }

  #activate(index) {
    this.active = index;
    this.options.forEach((o, i) => o.node.setAttribute("aria-selected", String(i === index)));
    const option = this.options[index];
    this.input.setAttribute("aria-activedescendant", option.node.id);
    option.node.scrollIntoView({ block: "nearest" });
    this.preview.replaceChildren(
      el("span", "picker-preview-emoji", option.emoji),
      el("span", "picker-preview-names", option.typed ? "as typed" : codes(option)),
    );
  }

  #key(event) {
    if (event.isComposing) return;
    const n = this.options.length;
    const move = { ArrowRight: 1, ArrowLeft: -1, ArrowDown: COLUMNS, ArrowUp: -COLUMNS }[event.key];
    if (move !== undefined) {
      // Left and right move the caret in the box while there is text to move in.
      if ((event.key === "ArrowLeft" || event.key === "ArrowRight") && this.input.value) return;
      if (n) this.#activate(Math.min(n - 1, Math.max(0, this.active + move)));
    } else if (event.key === "Enter") {
      if (this.active >= 0) this.#pick(this.options[this.active]);
    } else if (event.key === "Escape") {
      this.close(true);
    } else if (event.key === "Tab") {
      this.close(true);
    } else {
      return;
    }
    event.preventDefault();
    event.stopPropagation();
  }

  #pick(option) {
    if (!option || !this.request) return;
    const request = this.request;
    this.close(true);
    request.pick(option.emoji);
  }

  /** By its anchor: below it, or above it if there is more room there. */
  #place() {
    const anchor = this.request?.anchor();
    if (!anchor || !anchor.isConnected) {
      this.close(false);
      return;
    }
    const box = this.container.getBoundingClientRect();
    const at = anchor.getBoundingClientRect();
    const width = this.root.offsetWidth;
    const height = this.root.offsetHeight;
    const below = box.bottom - at.bottom;
    const above = at.top - box.top;
    const top =
      below >= height + MARGIN || below >= above
        ? Math.min(at.bottom - box.top + 4, box.height - height - MARGIN)
        : Math.max(MARGIN, at.top - box.top - height - 4);
    const left = Math.min(Math.max(MARGIN, at.left - box.left), box.width - width - MARGIN);
    this.root.style.top = `${Math.max(MARGIN, top)}px`;
    this.root.style.left = `${Math.max(MARGIN, left)}px`;
  }
}

/** ":+1: :thumbsup:" */
function codes(entry) {
  return entry.names.map((n) => `:${n}:`).join(" ");
}
