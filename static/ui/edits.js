// What an edited message said before (docs/protocol.md, `edits`), for admins: its
// "(edited)" marker is then a button that opens a panel under the message listing each
// earlier text, oldest first, with when it was written, and the current text last, each
// drawn as a message is. Escape or its Close button closes it; the server's refusal shows
// in it. For everyone else "(edited)" stays plain text. Its state lives outside the DOM
// (the timeline draws a message again when it changes), as the editor's does.

import { el } from "./dom.js";
import { renderText } from "./text.js";
import { exactTime, shortTime } from "./time.js";

let panels = 0;

/** A panel's state while its versions load; `previous`: the one it replaces (keeps its id). */
export function historyState(previous = null) {
  if (!previous) panels += 1;
  return { id: previous?.id ?? `edit-history-${panels}`, state: "loading", edits: [], error: "" };
}

/**
 * The "(edited)" marker of `msg`. `history`: the panel's state (null: closed); `toggle`:
 * opens or closes it, or null when the reader may not see earlier versions (plain text).
 */
export function editedMarker(msg, history, toggle) {
  const title = `Edited ${exactTime(msg.edited)}`;
  if (!toggle) {
    const marker = el("span", "edited", "(edited)");
    marker.title = title;
    return marker;
  }
  const button = el("button", "edited", "(edited)");
  button.type = "button";
  button.title = `${title}: show what it said before`;
  button.dataset.focus = "edits";
  button.setAttribute("aria-label", "Edited: show earlier versions");
  button.setAttribute("aria-expanded", String(Boolean(history)));
  if (history) button.setAttribute("aria-controls", history.id);
  button.addEventListener("click", toggle);
  button.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && history) {
      event.stopPropagation(); // ours, not the page's (Escape closes the side panel)
      toggle();
    }
  });
  return button;
}

/** One version: when it was written (`label` and time) and its text. */
function version(label, ts, text) {
  const item = el("li", "edit-version");
  const head = el("p", "edit-version-head", `${label} `);
  const time = el("time", "", shortTime(ts));
  time.dateTime = new Date(ts).toISOString();
  time.title = exactTime(ts);
  head.append(time);
  const body = el("div", "edit-version-text");
  body.append(renderText(text));
  item.append(head, body);
  return item;
}

/** The panel of `msg`'s versions for `history` (see historyState); `close()` closes it. */
export function editHistory(msg, history, close) {
  const panel = el("section", "edit-history");
  panel.id = history.id;
  panel.setAttribute("aria-label", "Earlier versions");
  const head = el("div", "edit-history-head");
  const closeButton = el("button", "link-btn edit-history-close", "Close");
  closeButton.type = "button";
  closeButton.dataset.focus = "edits-close";
  closeButton.setAttribute("aria-label", "Close earlier versions");
  closeButton.addEventListener("click", close);
  head.append(el("span", "edit-history-title", "Earlier versions"), closeButton);
  panel.append(head);
  panel.addEventListener("keydown", (event) => {
    if (event.key === "Escape") {
      event.stopPropagation();
      close();
    }
  });
  if (history.state === "loading") {
    panel.setAttribute("aria-busy", "true");
    panel.append(el("p", "edit-history-note", "Loading…"));
    return panel;
  }
  if (history.state === "failed") {
    const error = el("p", "edit-history-note edit-history-error", `Could not load them: ${history.error}`);
    error.setAttribute("role", "alert");
    panel.append(error);
    return panel;
  }
  // Each text was written when the one before it was replaced; the first when it was sent.
  const edits = history.edits;
  const list = el("ol", "edit-versions");
  edits.forEach((edit, i) => {
    list.append(i ? version("Edited", edits[i - 1].ts, edit.text) : version("Sent", msg.ts, edit.text));
  });
  if (!edits.length) panel.append(el("p", "edit-history-note", "No earlier versions are kept."));
  const current = version("Current, edited", msg.edited, msg.text);
  current.classList.add("current");
  list.append(current);
  panel.append(list);
  return panel;
}
