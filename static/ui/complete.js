// Completing "@" in the message box: the shown room's people who have a handle, and
// @room / @here, in a list under the caret's word. From the keyboard (ArrowUp/ArrowDown,
// Enter or Tab to insert, Escape to close) or the pointer; the box keeps the focus and
// points at the highlighted option (aria-activedescendant), as a combobox does.

import { el } from "./dom.js";

/** Options shown at most: the list is for picking, not for browsing everyone. */
const MAX_OPTIONS = 8;
/** The word being typed: "@" where a mention may start (as the server reads them), to the caret. */
const TYPED = /(?<![\p{L}\p{N}_@])@([^\s@]*)$/u;
const EVERYONE = [
  { handle: "room", name: "Everyone in the room" },
  { handle: "here", name: "Everyone online here" },
];

export class MentionCompleter {
  /**
   * `box`: the textarea; `form`: its form (keys are caught there, before the box's own
   * Enter-sends); `people()`: the shown room's people [{handle?, name, user_id}];
   * `me()`: the reader's user_id.
   */
  constructor({ box, form, people, me }) {
    this.box = box;
    this.people = people;
    this.me = me;
    this.options = []; // [{handle, name, li}]
    this.active = -1;
    this.start = -1; // where the "@" of the word being completed is
    this.list = el("ul", "mention-list");
    this.list.id = "mention-list";
    this.list.setAttribute("role", "listbox");
    this.list.setAttribute("aria-label", "Mention someone");
    this.list.hidden = true;
    form.before(this.list);
    box.setAttribute("aria-autocomplete", "list");
    box.setAttribute("aria-controls", this.list.id);

    box.addEventListener("input", () => this.update());
    box.addEventListener("click", () => this.update());
    // The caret moved to another word (the arrows up and down are the list's while it is open).
    box.addEventListener("keyup", (event) => {
      if (["ArrowLeft", "ArrowRight", "Home", "End"].includes(event.key)) this.update();
    });
    box.addEventListener("blur", () => this.close());
    form.addEventListener("keydown", (event) => this.#key(event), true);
    // The box keeps the focus while an option is pressed.
    this.list.addEventListener("mousedown", (event) => event.preventDefault());
    this.list.addEventListener("click", (event) => {
      const li = event.target.closest("[role=option]");
      if (li) this.#insert(this.options[Number(li.dataset.index)]);
    });
  }

  get open() {
    return !this.list.hidden;
  }

  /** Offer what completes the word at the caret, if it is an @word; else close. */
  update() {
    const caret = this.box.selectionStart;
    if (caret !== this.box.selectionEnd) return this.close();
    const typed = TYPED.exec(this.box.value.slice(0, caret));
    if (!typed) return this.close();
    const query = typed[1].toLowerCase();
    const found = this.#candidates().filter(
      (c) =>
        c.handle.toLowerCase().startsWith(query) ||
        c.name
          .toLowerCase()
          .split(/\s+/)
          .some((word) => word.startsWith(query)),
    );
    if (!found.length) return this.close();
    this.start = caret - typed[0].length;
    const previous = this.options[this.active]?.handle;
    this.options = found.slice(0, MAX_OPTIONS).map((c, index) => {
      const li = el("li", "mention-option");
      li.id = `mention-option-${index}`;
      li.dataset.index = String(index);
      li.setAttribute("role", "option");
      li.append(el("span", "mention-handle", `@${c.handle}`), el("span", "mention-name", c.name));
      return { ...c, li };
    });
    this.list.replaceChildren(...this.options.map((o) => o.li));
    this.list.hidden = false;
    this.#activate(Math.max(0, this.options.findIndex((o) => o.handle === previous)));
  }

  close() {
    if (!this.open) return;
    this.list.hidden = true;
    this.list.replaceChildren();
    this.options = [];
    this.active = -1;
    this.box.removeAttribute("aria-activedescendant");
  }

  /** The shown room's people with a handle (me aside), each once, then @room and @here. */
  #candidates() {
    const me = this.me();
    const seen = new Set();
    const people = [];
    for (const p of this.people()) {
      if (!p.handle || p.user_id === me || seen.has(p.handle)) continue;
      seen.add(p.handle);
      people.push({ handle: p.handle, name: p.name });
    }
    people.sort((a, b) => a.handle.localeCompare(b.handle));
    return [...people, ...EVERYONE];
  }

  #activate(index) {
    this.active = index;
    this.options.forEach((o, i) => o.li.setAttribute("aria-selected", String(i === index)));
    const li = this.options[index].li;
    this.box.setAttribute("aria-activedescendant", li.id);
    li.scrollIntoView({ block: "nearest" });
  }

  #key(event) {
    if (!this.open || event.target !== this.box || event.isComposing) return;
    const n = this.options.length;
    if (event.key === "ArrowDown") this.#activate((this.active + 1) % n);
    else if (event.key === "ArrowUp") this.#activate((this.active - 1 + n) % n);
    else if ((event.key === "Enter" && !event.shiftKey) || (event.key === "Tab" && !event.shiftKey)) {
      this.#insert(this.options[this.active]);
    } else if (event.key === "Escape") this.close();
    else return;
    // Theirs, not the box's (Enter would send) nor the page's (Escape closes the side panel).
    event.preventDefault();
    event.stopPropagation();
  }

  /** `@handle ` in place of the word being typed; the caret after it. */
  #insert(option) {
    if (!option) return;
    const box = this.box;
    const caret = box.selectionStart;
    const text = `@${option.handle} `;
    box.setRangeText(text, this.start, caret, "end");
    this.close();
    // As if typed: the page sizes the box, counts, and says we are typing.
    box.dispatchEvent(new Event("input", { bubbles: true }));
    box.focus();
  }
}
