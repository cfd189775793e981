// Message text to DOM: a safe Markdown subset (markdown.js parses it into plain objects),
// with http(s) URLs turned into safe links, @mentions into marked spans and :shortcodes:
// into emoji in the text runs (not in code). Only ever text nodes and elements built here:
// the text is never parsed as HTML.

import { el } from "./dom.js";
import { emojiFor } from "./emoji.js";
import { parseMarkdown } from "./markdown.js";

/** `@word` where a mention may start: not inside a word or an address (as the server reads it). */
const MENTION_RE = /(?<![\p{L}\p{N}_@])@[^\s@]+/gu;
/** What may follow a handle in a sentence without being part of it (the server's list). */
const MENTION_TRAILING = new Set(".,:;!?)]}'\"\u2019\u201d");
/** A shortcode's name, between colons: ":+1:", ":white_check_mark:". */
const SHORTCODE = /:([A-Za-z0-9_+-]{1,40}):/y;

/** Text with the :shortcodes: that name an emoji shown as that emoji. */
function appendEmoji(parent, text) {
  let last = 0;
  let from = text.indexOf(":");
  while (from >= 0) {
    SHORTCODE.lastIndex = from;
    const match = SHORTCODE.exec(text);
    const emoji = match ? emojiFor(match[1]) : null;
    if (!emoji) {
      from = text.indexOf(":", from + 1);
      continue;
    }
    if (from > last) parent.append(document.createTextNode(text.slice(last, from)));
    const span = el("span", "md-emoji", emoji);
    span.title = match[0];
    parent.append(span);
    last = SHORTCODE.lastIndex;
    from = text.indexOf(":", last);
  }
  if (last < text.length) parent.append(document.createTextNode(text.slice(last)));
}

/** Plain text, with the @words that `isMention(word)` accepts (word without "@") marked. */
function appendText(parent, text, isMention) {
  let last = 0;
  if (isMention) {
    for (const match of text.matchAll(MENTION_RE)) {
      let end = match[0].length;
      while (end > 0 && MENTION_TRAILING.has(match[0][end - 1])) end -= 1;
      const token = match[0].slice(0, end);
      if (token.length < 2 || !isMention(token.slice(1))) continue;
      if (match.index > last) appendEmoji(parent, text.slice(last, match.index));
      parent.append(el("span", "mention", token));
      last = match.index + token.length;
    }
  }
  if (last < text.length) appendEmoji(parent, text.slice(last));
}

function link(href, label) {
  const a = el("a", "", label);
  a.href = href;
  a.target = "_blank";
  a.rel = "noopener noreferrer";
  return a;
}

const INLINE_TAG = { em: "em", strong: "strong", del: "del" };

/** Inline nodes into `parent`; `inLink`: inside a link's label (no links within links). */
function renderInline(parent, nodes, isMention, inLink) {
  for (const node of nodes) {
    if (node.type === "text") appendText(parent, node.text, isMention);
    else if (node.type === "code") parent.append(el("code", "md-code", node.text));
    else if (node.type === "url") {
      parent.append(inLink ? document.createTextNode(node.text) : link(node.href, node.text));
    } else if (node.type === "link") {
      const a = link(node.href, null);
      renderInline(a, node.children, isMention, true);
      parent.append(a);
    } else if (INLINE_TAG[node.type]) {
      const element = el(INLINE_TAG[node.type]);
      renderInline(element, node.children, isMention, inLink);
      parent.append(element);
    }
  }
}

/** Blocks into `parent` (nesting is capped by the parser, so is this recursion). */
function renderBlocks(parent, blocks, isMention) {
  for (const block of blocks) {
    if (block.type === "para") {
      renderInline(parent, block.children, isMention, false);
    } else if (block.type === "code") {
      const box = el("div", "md-codeblock");
      if (block.lang) box.append(el("span", "md-lang", block.lang));
      const pre = el("pre");
      pre.append(el("code", "", block.text));
      box.append(pre);
      parent.append(box);
    } else if (block.type === "quote") {
      const quote = el("blockquote", "md-quote");
      renderBlocks(quote, block.children, isMention);
      parent.append(quote);
    } else if (block.type === "list") {
      const list = el(block.ordered ? "ol" : "ul", "md-list");
      if (block.ordered && block.start !== 1) list.start = block.start;
      for (const item of block.items) {
        const li = el("li");
        renderBlocks(li, item, isMention);
        list.append(li);
      }
      parent.append(list);
    }
  }
}

/**
 * Render `text` (Markdown subset) as a fragment of text nodes and elements: links,
 * mention <span>s (the @words that `isMention(word)` accepts), emoji, code, quotes and
 * lists. Never parses HTML.
 */
export function renderText(text, isMention = null) {
  const fragment = document.createDocumentFragment();
  renderBlocks(fragment, parseMarkdown(text), isMention);
  return fragment;
}
