// Small DOM helpers. User-supplied text only ever goes through textContent.

/** Create an element with optional class names and text content. */
export function el(tag, className = "", text = null) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== null) node.textContent = text;
  return node;
}

/** Run fn() with the polite live region silenced, so history is not read out as new. */
export function quietly(region, fn) {
  region.setAttribute("aria-live", "off");
  try {
    return fn();
  } finally {
    // Restore after the mutations have been rendered, not within the same task (a hidden
    // tab gets no animation frames). Always to "polite": calls may overlap.
    const restore = () => region.setAttribute("aria-live", "polite");
    if (document.hidden) setTimeout(restore, 50);
    else requestAnimationFrame(restore);
  }
}

/** A random id that works on plain-http LAN origins too (crypto.randomUUID needs https). */
export function randomId() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Number of Unicode code points: what the server counts against its limits. */
export function codePoints(text) {
  let n = 0;
  for (const _ of text) n += 1;
  return n;
}
