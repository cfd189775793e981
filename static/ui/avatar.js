// Initials in a colored circle; the color is a stable function of the name.

import { el } from "./dom.js";

const HUES = 12;

export function hueOf(name) {
  let h = 0;
  for (const ch of name) h = (h * 31 + ch.codePointAt(0)) >>> 0;
  return h % HUES;
}

export function initials(name) {
  const words = name.trim().split(/[\s_.-]+/u).filter(Boolean);
  const chars = words.length > 1 ? [words[0], words[1]].map((w) => [...w][0]) : [...name.trim()].slice(0, 2);
  return chars.join("").toUpperCase();
}

/** Fill an avatar element for `name` (class "avatar hue-N"). */
export function paintAvatar(node, name) {
  node.textContent = initials(name);
  for (const cls of [...node.classList]) if (cls.startsWith("hue-")) node.classList.remove(cls);
  node.classList.add(`hue-${hueOf(name)}`);
  return node;
}

export function avatar(name, extra = "") {
  const node = el("span", `avatar ${extra}`.trim());
  node.setAttribute("aria-hidden", "true");
  return paintAvatar(node, name);
}
