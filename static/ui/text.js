// Message text to DOM: plain text nodes, with http(s) URLs turned into safe links and
// @mentions into marked spans.

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

/** `@word` where a mention may start: not inside a word or an address (as the server reads it). */
const MENTION_RE = /(?<![\p{L}\p{N}_@])@[^\s@]+/gu;
/** What may follow a handle in a sentence without being part of it (the server's list). */
const MENTION_TRAILING = /[.,:;!?)\]}'"\u2019\u201d]+$/u;

/** Plain text, with the @words that `isMention(word)` accepts (word without "@") marked. */
function appendText(fragment, text, isMention) {
  let last = 0;
  if (isMention) {
    for (const match of text.matchAll(MENTION_RE)) {
      const token = match[0].replace(MENTION_TRAILING, "");
      if (token.length < 2 || !isMention(token.slice(1))) continue;
      if (match.index > last) fragment.append(document.createTextNode(text.slice(last, match.index)));
      fragment.append(el("span", "mention", token));
      last = match.index + token.length;
    }
  }
  if (last < text.length) fragment.append(document.createTextNode(text.slice(last)));
}

/**
 * Render `text` as a fragment of text nodes, <a> elements and mention <span>s (the @words
 * that `isMention(word)` accepts); never parses HTML.
 */
export function renderText(text, isMention = null) {
  const fragment = document.createDocumentFragment();
  let last = 0;
  for (const match of text.matchAll(URL_RE)) {
    const raw = trimUrl(match[0]);
    const href = safeHref(raw);
    if (!href) continue;
    if (match.index > last) appendText(fragment, text.slice(last, match.index), isMention);
    const link = el("a", "", raw);
    link.href = href;
    link.target = "_blank";
    link.rel = "noopener noreferrer";
    fragment.append(link);
    last = match.index + raw.length;
  }
  if (last < text.length) appendText(fragment, text.slice(last), isMention);
  return fragment;
}
