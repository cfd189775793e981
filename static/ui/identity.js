// Who someone is, beside the name they show: an account's @handle, a bot, or a guest.
// The server says which (docs/protocol.md, "Who is who"); a name alone proves nothing.

import { el } from "./dom.js";

/** The tag shown after a person's or a message's name: "@handle", "bot" or "guest". */
export function identityTag(who) {
  if (who.bot) {
    const tag = el("span", "id-tag id-bot", "bot");
    if (who.handle) tag.title = `@${who.handle}`;
    return tag;
  }
  if (who.handle) return el("span", "id-tag id-handle", `@${who.handle}`);
  const tag = el("span", "id-tag id-guest", "guest");
  tag.title = "Not signed in: anyone can use this name";
  return tag;
}
