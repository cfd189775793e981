// Replies: a one-line excerpt of a message, the quote a reply shows above its text (a
// button that jumps to the original), and the "Replying to …" bar above the message box.
// Excerpts are plain text: the original's Markdown marks are left out, not shown.

import { el } from "./dom.js";
import { plainText } from "./markdown.js";

/** Characters of a message an excerpt keeps (the quote's width cuts it further). */
const EXCERPT = 90;

/** `text` on one line: runs of whitespace as one space. */
const oneLine = (text) => String(text).replace(/\s+/gu, " ").trim();

/**
 * Message `text` as plain text (without its Markdown marks; as written if that leaves
 * nothing, e.g. an empty code block) on one line, cut at `max` code points with "…".
 */
export function excerpt(text, max = EXCERPT) {
  const line = oneLine(plainText(text)) || oneLine(text);
  const points = [...line];
  return points.length > max ? `${points.slice(0, max).join("").trimEnd()}…` : line;
}

/**
 * The quote above a reply, for the original `id`; `original` is the message the page holds
 * (a tombstone if deleted), or null when it is not loaded. Filled again by fillQuote when
 * that changes. A button: `onJump(id)` shows the original.
 */
export function replyQuote(id, original, onJump) {
  const quote = el("button", "reply-quote");
  quote.type = "button";
  quote.dataset.replyTo = String(id);
  quote.dataset.focus = "quote";
  quote.title = "Show the message this replies to";
  quote.addEventListener("click", () => onJump(id, quote));
  fillQuote(quote, original);
  return quote;
}

/** The quote's text for `original` (the held message, a tombstone, or null: not loaded). */
export function fillQuote(quote, original) {
  const hidden = el("span", "visually-hidden", "In reply to ");
  if (!original) {
    quote.dataset.state = "unloaded";
    quote.replaceChildren(hidden, el("span", "quote-text", "an earlier message"));
  } else if (original.deleted) {
    quote.dataset.state = "deleted";
    quote.replaceChildren(hidden, el("span", "quote-text", "a deleted message"));
  } else {
    quote.dataset.state = "shown";
    const author = el("span", "quote-author", original.name);
    const colon = el("span", "visually-hidden", ":");
    quote.replaceChildren(hidden, author, colon, " ", el("span", "quote-text", excerpt(original.text)));
  }
}

/**
 * The bar above the message box while a reply is being written: "Replying to <name>:
 * <excerpt>" and a button that cancels it. `show(target)` with {name, text}, or null.
 */
export class ReplyBar {
  constructor({ bar, text, cancel }, onCancel) {
    this.bar = bar;
    this.text = text;
    cancel.addEventListener("click", () => onCancel());
  }

  show(target) {
    this.bar.hidden = !target;
    if (!target) {
      this.text.replaceChildren();
      return;
    }
    const name = el("strong", "reply-bar-name", target.name);
    const quote = target.deleted ? "a deleted message" : excerpt(target.text, 140);
    this.text.replaceChildren("Replying to ", name, ": ", el("span", "reply-bar-excerpt", quote));
  }
}
