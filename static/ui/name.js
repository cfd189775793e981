// The reader's name: asked once, kept in localStorage, changeable.

import { codePoints } from "./dom.js";

const NAME_KEY = "chatapp.name";
const PAST_NAMES_KEY = "chatapp.pastNames";

export function storedName() {
  try {
    return localStorage.getItem(NAME_KEY);
  } catch {
    return null;
  }
}

export function storeName(name) {
  try {
    localStorage.setItem(NAME_KEY, name);
    const past = pastNames();
    if (!past.includes(name)) {
      past.unshift(name);
      localStorage.setItem(PAST_NAMES_KEY, JSON.stringify(past.slice(0, 10)));
    }
  } catch {
    // Private mode without storage: the name lasts for this page only.
  }
}

export function forgetName() {
  try {
    localStorage.removeItem(NAME_KEY);
  } catch {
    // nothing stored
  }
}

/** Names used in this browser, so that messages sent under an earlier name stay "own". */
export function pastNames() {
  try {
    const list = JSON.parse(localStorage.getItem(PAST_NAMES_KEY) || "[]");
    return Array.isArray(list) ? list.filter((n) => typeof n === "string") : [];
  } catch {
    return [];
  }
}

/**
 * A quick check before asking the server: empty, or longer than the server's `maxName` (in
 * code points, as it counts). Every other rule is the server's: its refusal is shown as is.
 * Returns an error text or "".
 */
export function nameProblem(raw, maxName) {
  const name = raw.trim();
  if (!name) return "Please enter a name.";
  if (codePoints(name) > maxName) return `At most ${maxName} characters, please.`;
  return "";
}

/**
 * The name dialog. ask({first, current, error}) resolves with the chosen name, or null
 * when cancelled (not possible the first time: a name is needed to join).
 */
export class NameDialog {
  constructor({ dialog, form, input, error, cancel, title, lead, ok }, maxName) {
    Object.assign(this, { dialog, form, input, error, cancel, title, lead, ok, maxName });
    this.resolve = null;
    this.validate = null;
    form.addEventListener("submit", (event) => this.#submit(event));
    cancel.addEventListener("click", () => this.#finish(null));
    dialog.addEventListener("cancel", (event) => {
      if (this.first) event.preventDefault(); // Escape cannot skip choosing a name
      else this.#finish(null);
    });
    input.addEventListener("input", () => {
      this.error.textContent = "";
      this.input.removeAttribute("aria-invalid");
    });
  }

  /**
   * `apply(name)` resolves to `{error}` (e.g. the server's refusal) to keep the dialog open,
   * or to `{name}`: the name in use, as the server has it.
   */
  ask({ first = false, current = "", error = "", apply = async (name) => ({ name }) } = {}) {
    this.first = first;
    this.apply = apply;
    this.title.textContent = first ? "Welcome! Choose a name" : "Change your name";
    this.lead.textContent = first
      ? "This is how others in the chat will see you. You can change it later."
      : "Everyone in the room will see your new name.";
    this.ok.textContent = first ? "Join the chat" : "Save";
    this.cancel.hidden = first;
    this.input.value = current;
    this.showError(error);
    if (!this.dialog.open) this.dialog.showModal();
    this.input.focus();
    this.input.select();
    return new Promise((resolve) => {
      this.resolve = resolve;
    });
  }

  showError(text) {
    this.error.textContent = text;
    if (text) this.input.setAttribute("aria-invalid", "true");
    else this.input.removeAttribute("aria-invalid");
  }

  async #submit(event) {
    event.preventDefault();
    const problem = nameProblem(this.input.value, this.maxName);
    if (problem) {
      this.showError(problem);
      this.input.focus();
      return;
    }
    const wanted = this.input.value.trim();
    this.ok.disabled = true;
    let result;
    try {
      result = await this.apply(wanted);
    } finally {
      this.ok.disabled = false;
    }
    if (result.error) {
      this.showError(result.error);
      this.input.focus();
      return;
    }
    this.#finish(result.name ?? wanted);
  }

  #finish(value) {
    if (this.dialog.open) this.dialog.close();
    const resolve = this.resolve;
    this.resolve = null;
    if (resolve) resolve(value);
  }
}
