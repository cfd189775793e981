// Message text to DOM: plain text nodes, with http(s) URLs turned into safe links.

import { el } from "./dom.js";

const URL_RE = /\bhttps?:\/\/[^\s<>"'`]+/gi;
const TRAILING = /[.,;:!?'"\]}>]+$/;

/** Strip punctuation that ends a sentence rather than the URL, keeping balanced parens. */
function trimUrl(candidate) {
  let url = candidate.replace(TRAILING, "");
  while (url.endsWith(")")) {
    const opens = url.split("(").length - 1;
    const closes = url.split(")").length - 1;
    if (closes <= opens) break;
    url = url.slice(0, -1).replace(TRAILING, "");
  }
  return url;
}

function safeHref(raw) {
  try {
    const url = new URL(raw);
    return url.protocol === "http:" || url.protocol === "https:" ? url.href : null;
  } catch {
    return null;
  }
}

/** Render `text` as a fragment of text nodes and <a> elements; never parses HTML. */
export function renderText(text) {
  const fragment = document.createDocumentFragment();
  let last = 0;
  for (const match of text.matchAll(URL_RE)) {
    const raw = trimUrl(match[0]);
    const href = safeHref(raw);
    if (!href) continue;
    if (match.index > last) fragment.append(document.createTextNode(text.slice(last, match.index)));
    const link = el("a", "", raw);
    link.href = href;
    link.target = "_blank";
    link.rel = "noopener noreferrer";
    fragment.append(link);
    last = match.index + raw.length;
  }
  if (last < text.length) fragment.append(document.createTextNode(text.slice(last)));
  return fragment;
}
