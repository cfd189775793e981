// A message's Delete control: a small button shown on hover or focus, an in-page "are you
// sure?" in its place, and the server's refusal beside it. Who may delete is the server's
// to decide; the timeline only offers the button where it may succeed (ours, or an admin's).
// It shares its bar with the message's other actions (`before`: Reply, React, Edit), which
// step aside while it asks.

import { el } from "./dom.js";

/**
 * The control for one message. `remove()` asks the server and resolves with null when the
 * message was deleted (its tombstone then takes the message's place, this control's too)
 * or with the reason it was not. `before`: the bar's other buttons, shown before Delete.
 */
export function deleteControl(remove, before = []) {
  const box = el("div", "msg-actions");
  const start = el("button", "msg-action", "Delete");
  start.type = "button";
  start.dataset.focus = "delete";
  start.setAttribute("aria-label", "Delete message");
  const question = el("span", "action-label", "Delete for everyone?");
  const yes = el("button", "msg-action danger", "Yes, delete");
  yes.type = "button";
  const no = el("button", "msg-action", "Cancel");
  no.type = "button";

  /** Back to the button alone; with the reason a deletion was refused, if it was. */
  const idle = (error = "") => {
    box.dataset.state = error ? "failed" : "idle";
    if (!error) {
      box.replaceChildren(...before, start);
      return;
    }
    const reason = el("span", "action-error", `Not deleted: ${error}`);
    reason.setAttribute("role", "alert");
    box.replaceChildren(...before, start, reason);
  };
  const cancel = () => {
    idle();
    start.focus();
  };

  start.addEventListener("click", () => {
    box.dataset.state = "asking";
    box.replaceChildren(question, yes, no);
    no.focus(); // the safe answer first: Enter does not delete by accident
  });
  no.addEventListener("click", cancel);
  yes.addEventListener("click", async () => {
    box.dataset.state = "deleting";
    const busy = el("span", "action-label", "Deleting…");
    busy.tabIndex = -1; // keeps the focus in the message until the answer
    box.replaceChildren(busy);
    busy.focus();
    const error = await remove();
    if (error === null) return; // the tombstone took the message's place
    idle(error);
    if (box.isConnected) start.focus();
  });
  box.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && box.dataset.state === "asking") {
      event.stopPropagation();
      cancel();
    }
  });
  idle();
  return box;
}

/** The bar of a message the reader may not delete: its other actions alone. */
export function actionBar(buttons) {
  const box = el("div", "msg-actions");
  box.dataset.state = "idle";
  box.append(...buttons);
  return box;
}
