// A safe Markdown subset for message text, parsed into a small tree of plain objects
// (no DOM, no HTML: text.js turns the tree into nodes with textContent only).
//
// Blocks: fenced code (```lang … ```; unclosed runs to the end), block quotes ("> "),
// bullet lists ("- ", "* ") and numbered lists ("1. "), nested by indenting; everything
// else is a paragraph that keeps its line breaks and whitespace exactly.
// Inline: `code`, **bold**, *italic* / _italic_ (not inside words), ~~strike~~,
// [label](url) for http(s) and mailto URLs only, and bare http(s) URLs.
//
// Hostile input: every pass is a single scan (or one per nesting level), nesting is
// capped (deeper markers stay literal text), recursion is bounded by that cap, and no
// regular expression here can backtrack catastrophically.

/** Block nesting (quotes, lists) and inline nesting (emphasis, links) allowed, each. */
export const MAX_DEPTH = 8;

// -- URLs ---------------------------------------------------------------------------------

/** A bare URL: from "http(s)://" up to a space or a character that ends it in prose. */
const BARE_URL = /https?:\/\/[^\s<>"'`]+/iy;
/** What ends a sentence rather than a URL (and the closing Markdown markers). */
const URL_TRAILING = new Set(".,;:!?'\"]}>*_~");
const WORD_CHAR = /[A-Za-z0-9_]/;

/** Strip punctuation that ends a sentence rather than the URL, keeping balanced parens. */
export function trimUrl(candidate) {
  let opens = 0;
  let closes = 0;
  for (const ch of candidate) {
    if (ch === "(") opens += 1;
    else if (ch === ")") closes += 1;
  }
  let end = candidate.length;
  for (;;) {
    while (end > 0 && URL_TRAILING.has(candidate[end - 1])) end -= 1;
    if (end > 0 && candidate[end - 1] === ")" && closes > opens) {
      end -= 1;
      closes -= 1;
      continue;
    }
    return candidate.slice(0, end);
  }
}

function hrefWith(raw, protocols) {
  try {
    const url = new URL(raw);
    return protocols.includes(url.protocol) ? url.href : null;
  } catch {
    return null;
  }
}

/** The href for a bare URL: http(s) only, else null. */
export function safeHref(raw) {
  return hrefWith(raw, ["http:", "https:"]);
}

/** The href for a [label](url) link: http(s) and mailto only, else null. */
export function safeLinkHref(raw) {
  return hrefWith(raw, ["http:", "https:", "mailto:"]);
}

// -- blocks -------------------------------------------------------------------------------

const FENCE_OPEN = /^ {0,3}(`{3,})([^`]*)$/;
const FENCE_CLOSE = /^ {0,3}(`{3,})[ \t\r]*$/;
/** A quote marker: ">" then a space, the end of the line or another ">". */
const QUOTE = /^ {0,3}>(?:[ \t]|(?=>)|\r?$)/;
/** A list item: its marker, then spaces, then something (an empty item is text). */
const LIST_ITEM = /^( {0,3})([-*]|[0-9]{1,9}[.)])[ \t]+(?=[^ \t\r])/;
const BLANK = /^[ \t\r]*$/;
const LANG_CHAR = /[^A-Za-z0-9_+#.-]/g;

/** A fence's language label: the info string's first word, sanitised; "" for none. */
function fenceLang(info) {
  const word = info.trim().split(/[ \t]/, 1)[0] ?? "";
  return word.replace(LANG_CHAR, "").slice(0, 20);
}

/** Leading indentation in columns (a tab counts as 4). */
function indentOf(line) {
  let cols = 0;
  for (const ch of line) {
    if (ch === " ") cols += 1;
    else if (ch === "\t") cols += 4;
    else break;
  }
  return cols;
}

/** `line` without up to `cols` columns of leading indentation. */
function dedent(line, cols) {
  let i = 0;
  let taken = 0;
  while (i < line.length && taken < cols) {
    if (line[i] === " ") taken += 1;
    else if (line[i] === "\t") taken += 4;
    else break;
    i += 1;
  }
  return line.slice(i);
}

/**
 * Parse `text` into blocks:
 *   {type: "para", children: inline[]}, {type: "code", lang, text},
 *   {type: "quote", children: block[]}, {type: "list", ordered, start, items: block[][]}.
 * Inline nodes: {type: "text", text}, {type: "code", text}, {type: "url", text, href},
 *   {type: "em" | "strong" | "del", children}, {type: "link", href, children}.
 */
export function parseMarkdown(text) {
  return parseBlocks(String(text).split("\n"), 0);
}

function parseBlocks(lines, depth) {
  const blocks = [];
  let para = [];
  const flush = () => {
    if (para.length) blocks.push({ type: "para", children: parseInline(para.join("\n")) });
    para = [];
  };
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    // A fence on the last line would open an empty block: that is text.
    const fence = i + 1 < lines.length ? FENCE_OPEN.exec(line) : null;
    if (fence) {
      flush();
      const size = fence[1].length;
      let end = i + 1;
      while (end < lines.length) {
        const close = FENCE_CLOSE.exec(lines[end]);
        if (close && close[1].length >= size) break;
        end += 1;
      }
      const code = lines.slice(i + 1, end).join("\n");
      blocks.push({ type: "code", lang: fenceLang(fence[2]), text: code });
      i = end + 1;
      continue;
    }
    if (depth < MAX_DEPTH && QUOTE.test(line)) {
      const from = i;
      const inner = [];
      while (i < lines.length && QUOTE.test(lines[i])) {
        inner.push(lines[i].replace(QUOTE, ""));
        i += 1;
      }
      if (inner.every((quoted) => BLANK.test(quoted))) {
        para.push(...lines.slice(from, i)); // only markers, nothing quoted: text
      } else {
        flush();
        blocks.push({ type: "quote", children: parseBlocks(inner, depth + 1) });
      }
      continue;
    }
    const item = depth < MAX_DEPTH ? LIST_ITEM.exec(line) : null;
    if (item) {
      flush();
      i = parseList(lines, i, item, depth, blocks);
      continue;
    }
    para.push(line);
    i += 1;
  }
  flush();
  return blocks;
}

/** Parse the list that starts at lines[start] (matched as `first`); return the next line. */
function parseList(lines, start, first, depth, blocks) {
  const ordered = first[2] !== "-" && first[2] !== "*";
  const base = first[1].length;
  const list = { type: "list", ordered, start: ordered ? parseInt(first[2], 10) : 1, items: [] };
  let body = null;
  let contentIndent = 0;
  const finish = () => {
    if (body) list.items.push(parseBlocks(body, depth + 1));
  };
  let i = start;
  for (; i < lines.length; i += 1) {
    const line = lines[i];
    if (BLANK.test(line)) break;
    const indent = indentOf(line);
    const item = i === start ? first : LIST_ITEM.exec(line);
    if (item && indent < base + 2) {
      const itemOrdered = item[2] !== "-" && item[2] !== "*";
      if (itemOrdered !== ordered) break;
      finish();
      body = [line.slice(item[0].length)];
      contentIndent = Math.min(item[0].length, base + 6);
    } else if (indent >= base + 2) {
      body.push(dedent(line, contentIndent));
    } else {
      break;
    }
  }
  finish();
  blocks.push(list);
  return i;
}

// -- inline -------------------------------------------------------------------------------

const KIND_TYPE = { "*": "em", _: "em", "**": "strong", "~~": "del", "[": "link" };
const OPENER_KINDS = ["*", "_", "**", "~~", "["];
const WHITESPACE = /\s/u;
const PUNCTUATION = /[\p{P}\p{S}]/u;

/**
 * Code spans: a run of N backticks up to the next run of exactly N. Returns
 * [{start, end, text}] in order (start: the opening run, end: after the closing run).
 */
function codeSpans(src) {
  const runs = [];
  for (let i = 0; i < src.length; ) {
    if (src[i] !== "`") {
      i += 1;
      continue;
    }
    let j = i;
    while (j < src.length && src[j] === "`") j += 1;
    runs.push({ start: i, len: j - i });
    i = j;
  }
  const spans = [];
  if (runs.length < 2) return spans;
  const byLen = new Map();
  runs.forEach((run, k) => {
    if (!byLen.has(run.len)) byLen.set(run.len, { list: [], next: 0 });
    byLen.get(run.len).list.push(k);
  });
  for (let k = 0; k < runs.length; ) {
    const run = runs[k];
    const same = byLen.get(run.len);
    while (same.next < same.list.length && same.list[same.next] <= k) same.next += 1;
    if (same.next === same.list.length) {
      k += 1;
      continue;
    }
    const m = same.list[same.next];
    let text = src.slice(run.start + run.len, runs[m].start);
    if (text.length > 2 && text.startsWith(" ") && text.endsWith(" ") && text.trim()) {
      text = text.slice(1, -1);
    }
    spans.push({ start: run.start, end: runs[m].start + run.len, text });
    k = m + 1;
  }
  return spans;
}

/**
 * Where a link destination that starts at `from` (just after "](") ends: the index of its
 * ")" or -1. No spaces, no "<>`", parentheses balanced up to 3 deep, at most 2048 long.
 */
function linkEnd(src, from) {
  let depth = 0;
  const limit = Math.min(src.length, from + 2048);
  for (let p = from; p < limit; p += 1) {
    const ch = src[p];
    if (ch === "(") {
      depth += 1;
      if (depth > 3) return -1;
    } else if (ch === ")") {
      if (depth === 0) return p > from ? p : -1;
      depth -= 1;
    } else if (ch === "<" || ch === ">" || ch === "`" || WHITESPACE.test(ch)) {
      return -1;
    }
  }
  return -1;
}

/** Parse one paragraph's text into inline nodes. */
export function parseInline(src) {
  const n = src.length;
  const spans = codeSpans(src);
  let nextSpan = 0;
  /** Tokens: text, code, url, delim (a possible opener: literal unless matched), open, close. */
  const toks = [];
  /** Per kind, the indexes in toks of the openers that may still match, innermost last. */
  const openers = Object.fromEntries(OPENER_KINDS.map((kind) => [kind, []]));
  let buf = "";
  const flush = () => {
    if (buf) toks.push({ t: "text", s: buf });
    buf = "";
  };
  /** Match the innermost opener of `kind`; openers opened after it can no longer match. */
  const close = (kind, src_, extra = {}) => {
    flush();
    const o = openers[kind].pop();
    for (const k of OPENER_KINDS) {
      const stack = openers[k];
      while (stack.length && stack[stack.length - 1] > o) stack.pop();
    }
    Object.assign(toks[o], { t: "open", close: toks.length }, extra);
    toks.push({ t: "close", kind, s: src_ });
  };
  const open = (kind) => {
    flush();
    openers[kind].push(toks.length);
    toks.push({ t: "delim", kind, s: kind });
  };
  const top = (kind) => (openers[kind].length ? openers[kind][openers[kind].length - 1] : -1);

  let i = 0;
  while (i < n) {
    while (nextSpan < spans.length && spans[nextSpan].start < i) nextSpan += 1;
    if (nextSpan < spans.length && spans[nextSpan].start === i) {
      flush();
      toks.push({ t: "code", s: spans[nextSpan].text });
      i = spans[nextSpan].end;
      nextSpan += 1;
      continue;
    }
    const c = src[i];
    if (c === "*" || c === "_" || c === "~") {
      let j = i;
      while (j < n && src[j] === c) j += 1;
      const len = j - i;
      const before = i > 0 ? src[i - 1] : " ";
      const after = j < n ? src[j] : " ";
      const spaceBefore = WHITESPACE.test(before);
      const spaceAfter = WHITESPACE.test(after);
      const punctBefore = PUNCTUATION.test(before);
      const punctAfter = PUNCTUATION.test(after);
      const left = !spaceAfter && (!punctAfter || spaceBefore || punctBefore);
      const right = !spaceBefore && (!punctBefore || spaceAfter || punctAfter);
      let canOpen = left;
      let canClose = right;
      if (c === "_") {
        canOpen = left && (!right || punctBefore);
        canClose = right && (!left || punctAfter);
      }
      let kinds = null;
      if (c === "*" && len <= 2) kinds = [c.repeat(len)];
      else if (c === "*" && len === 3) {
        const closing = canClose && (top("*") >= 0 || top("**") >= 0);
        kinds = closing && top("*") > top("**") ? ["*", "**"] : ["**", "*"];
      } else if (c === "_" && len === 1) kinds = ["_"];
      else if (c === "~" && len === 2) kinds = ["~~"];
      if (!kinds) {
        buf += src.slice(i, j);
      } else {
        for (const kind of kinds) {
          if (canClose && openers[kind].length) close(kind, kind);
          else if (canOpen) open(kind);
          else buf += kind;
        }
      }
      i = j;
      continue;
    }
    if (c === "[") {
      open("[");
      i += 1;
      continue;
    }
    if (c === "]" && src[i + 1] === "(" && openers["["].length) {
      const end = linkEnd(src, i + 2);
      const href = end >= 0 ? safeLinkHref(src.slice(i + 2, end)) : null;
      if (href) {
        close("[", src.slice(i, end + 1), { href });
        openers["["].length = 0; // no links inside links
        i = end + 1;
        continue;
      }
      openers["["].pop(); // that "[" stays text
      buf += c;
      i += 1;
      continue;
    }
    if ((c === "h" || c === "H") && !(i > 0 && WORD_CHAR.test(src[i - 1]))) {
      BARE_URL.lastIndex = i;
      const match = BARE_URL.exec(src);
      if (match) {
        let raw = match[0];
        if (openers["["].length) {
          const cut = raw.indexOf("](");
          if (cut >= 0) raw = raw.slice(0, cut);
        }
        raw = trimUrl(raw);
        const href = safeHref(raw);
        if (href) {
          flush();
          toks.push({ t: "url", s: raw, href });
          i += raw.length;
          continue;
        }
      }
    }
    buf += c;
    i += 1;
  }
  flush();
  return buildInline(toks);
}

/** Tokens to a tree, without recursion; pairs nested deeper than MAX_DEPTH stay text. */
function buildInline(toks) {
  const root = [];
  const stack = [root];
  const addText = (s) => {
    const children = stack[stack.length - 1];
    const last = children[children.length - 1];
    if (last && last.type === "text") last.text += s;
    else children.push({ type: "text", text: s });
  };
  for (const tok of toks) {
    const children = stack[stack.length - 1];
    if (tok.t === "text" || tok.t === "delim") addText(tok.s);
    else if (tok.t === "code") children.push({ type: "code", text: tok.s });
    else if (tok.t === "url") children.push({ type: "url", text: tok.s, href: tok.href });
    else if (tok.t === "open") {
      if (stack.length > MAX_DEPTH) {
        toks[tok.close].literal = true;
        addText(tok.s);
        continue;
      }
      const node = { type: KIND_TYPE[tok.kind], children: [] };
      if (tok.href) node.href = tok.href;
      children.push(node);
      stack.push(node.children);
    } else if (tok.t === "close") {
      if (tok.literal) addText(tok.s);
      else stack.pop();
    }
  }
  return root;
}

// -- plain text -----------------------------------------------------------------------------

/** Inline nodes' text as a reader sees it: the marks gone, code and links as their text. */
function inlineText(nodes) {
  return nodes.map((node) => (node.children ? inlineText(node.children) : node.text)).join("");
}

/** Blocks' text, one block (paragraph, code block, list item) a line. */
function blocksText(blocks) {
  const lines = [];
  for (const block of blocks) {
    if (block.type === "para") lines.push(inlineText(block.children));
    else if (block.type === "code") lines.push(block.text);
    else if (block.type === "quote") lines.push(blocksText(block.children));
    else if (block.type === "list") lines.push(...block.items.map(blocksText));
  }
  return lines.join("\n");
}

/**
 * `text` without its Markdown marks, as plain text ("**bold** `x`" is "bold x"): for an
 * excerpt (a reply's quote). Nesting is capped by the parser, so is this recursion.
 */
export function plainText(text) {
  return blocksText(parseMarkdown(text));
}
