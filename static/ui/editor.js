// The inline editor of one of the reader's messages: its text in a box in place of the
// message's, Enter (or Save) saves, Shift+Enter makes a new line, Escape (or Cancel) puts
// the message back as it was. The server's refusal shows under the box, which stays open.
// Its state lives outside the DOM (the timeline draws a message again when it changes).

import { el } from "./dom.js";

/**
 * A fresh editor's state for `text`; `returnTo`: where the focus goes when it closes
 * ("composer", or "button": the message's Edit button).
 */
export function editorState(text, returnTo) {
  return { draft: text, start: text.length, end: text.length, error: "", busy: false, returnTo };
}

/** The editor's DOM for `state`; `save()` and `cancel()` are the person's two ways out. */
export function messageEditor(state, { save, cancel }) {
  const form = el("form", "msg-editor");
  form.noValidate = true;
  form.setAttribute("aria-label", "Edit message");
  const box = el("textarea", "edit-box");
  box.rows = 1;
  box.value = state.draft;
  box.dataset.focus = "editor";
  box.setAttribute("aria-label", "Message text");
  box.readOnly = state.busy;
  const grow = () => {
    box.style.height = "auto";
    box.style.height = `${box.scrollHeight + 2}px`;
  };
  box.addEventListener("input", () => {
    state.draft = box.value;
    grow();
  });
  box.addEventListener("select", () => {
    state.start = box.selectionStart;
    state.end = box.selectionEnd;
  });
  box.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      save();
    } else if (event.key === "Escape" && !event.isComposing) {
      event.preventDefault();
      event.stopPropagation(); // ours, not the page's (Escape closes the side panel)
      cancel();
    }
  });
  // Sized once it is in the document (it has no scrollHeight before).
  requestAnimationFrame(grow);

  const buttons = el("div", "edit-buttons");
  const hint = el("span", "edit-hint", "Enter to save · Shift+Enter for a new line · Esc to cancel");
  const cancelButton = el("button", "btn btn-small btn-ghost edit-cancel", "Cancel");
  cancelButton.type = "button";
  cancelButton.dataset.focus = "edit-cancel";
  cancelButton.addEventListener("click", () => cancel());
  const saveButton = el("button", "btn btn-small btn-primary edit-save", state.busy ? "Saving…" : "Save");
  saveButton.type = "submit";
  saveButton.dataset.focus = "edit-save";
  saveButton.disabled = state.busy;
  buttons.append(hint, cancelButton, saveButton);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    save();
  });
  form.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && event.target !== box) {
      event.stopPropagation();
      cancel();
    }
  });
  form.append(box);
  if (state.error) {
    const error = el("p", "edit-error", `Not saved: ${state.error}`);
    error.setAttribute("role", "alert");
    form.append(error);
  }
  form.append(buttons);
  return form;
}
