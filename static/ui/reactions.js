// A message's reactions: a chip per emoji ("👍 2"), pressed when the reader is among those
// who reacted, titled with who did (the names the page knows). A click sets the reader's
// reaction to the opposite of what it is, as an explicit `add` (a retry changes nothing).

import { el } from "./dom.js";

/** "Ann", "Ann and Bo", "Ann, Bo and Cy". */
function listOf(names) {
  if (names.length < 2) return names.join("");
  return `${names.slice(0, -1).join(", ")} and ${names.at(-1)}`;
}

/**
 * Who reacted with `reaction` ({emoji, count, users}), for a chip's title: each by the
 * name `nameOf(user_id)` gives (null: not known to the page), "someone" otherwise.
 */
export function whoReacted(reaction, nameOf) {
  const names = [];
  let unknown = 0;
  for (const userId of reaction.users ?? []) {
    const name = nameOf(userId);
    if (name) names.push(name);
    else unknown += 1;
  }
  unknown += Math.max(0, reaction.count - (reaction.users?.length ?? 0));
  if (unknown === 1) names.push("someone");
  else if (unknown > 1) names.push(names.length ? `${unknown} others` : `${unknown} people`);
  return `${listOf(names)} reacted with ${reaction.emoji}`;
}

/**
 * The chips of `msg`, or null if it has none. `me`: the reader's user_id; `nameOf(user_id)`;
 * `toggle(emoji)`: the reader clicked a chip.
 */
export function reactionsRow(msg, { me, nameOf, toggle }) {
  if (msg.deleted || !msg.reactions?.length) return null;
  const row = el("div", "reactions");
  row.setAttribute("role", "group");
  row.setAttribute("aria-label", "Reactions");
  for (const reaction of msg.reactions) {
    const mine = me != null && (reaction.users ?? []).includes(me);
    const chip = el("button", "reaction");
    chip.type = "button";
    chip.dataset.focus = `reaction ${reaction.emoji}`;
    chip.dataset.emoji = reaction.emoji;
    chip.setAttribute("aria-pressed", String(mine));
    chip.append(
      el("span", "reaction-emoji", reaction.emoji),
      " ",
      el("span", "reaction-count", String(reaction.count)),
    );
    // Names may become known later (someone comes online): said again when looked at.
    const describe = () => {
      chip.title = whoReacted(reaction, nameOf);
    };
    describe();
    chip.addEventListener("mouseenter", describe);
    chip.addEventListener("focus", describe);
    chip.addEventListener("click", () => toggle(reaction.emoji));
    row.append(chip);
  }
  return row;
}

/** Whether `userId` is among those who reacted to `msg` with `emoji`. */
export function hasReacted(msg, emoji, userId) {
  const reaction = msg.reactions?.find((r) => r.emoji === emoji);
  return Boolean(userId != null && reaction?.users?.includes(userId));
}
