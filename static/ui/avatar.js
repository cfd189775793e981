// Initials in a colored circle. The initials come from the name; the color is a stable
// function of who it is (the user_id), so that two people with one name look different.

import { el } from "./dom.js";

const HUES = 12;

/** Who a message, event or list entry is from: its user_id, or (from before ids) its name. */
export const personOf = (p) => p.user_id ?? p.name;

/** The color class ("hue-N") of `person` ({name, user_id}). */
export function hueClass(person) {
  let h = 0;
  for (const ch of personOf(person)) h = (h * 31 + ch.codePointAt(0)) >>> 0;
  return `hue-${h % HUES}`;
}

export function initials(name) {
  const words = name.trim().split(/[\s_.-]+/u).filter(Boolean);
  const chars = words.length > 1 ? [words[0], words[1]].map((w) => [...w][0]) : [...name.trim()].slice(0, 2);
  return chars.join("").toUpperCase();
}

/** Fill an avatar element (class "avatar hue-N") for `person` ({name, user_id}). */
export function paintAvatar(node, person) {
  node.textContent = initials(person.name);
  for (const cls of [...node.classList]) if (cls.startsWith("hue-")) node.classList.remove(cls);
  node.classList.add(hueClass(person));
  return node;
}

export function avatar(person, extra = "") {
  const node = el("span", `avatar ${extra}`.trim());
  node.setAttribute("aria-hidden", "true");
  return paintAvatar(node, person);
}
