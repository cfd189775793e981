// This browser's secret key (`auth.key`, docs/protocol.md "Who is who"): made once, kept
// in localStorage, so every tab of this browser profile, and every reload, is the same
// person. The server turns it into the public user_id by which the page knows its own
// messages; the key itself is never shown.

const KEY_STORAGE = "chatapp.key";

/** 128 random bits in base64url (22 characters). */
function randomKey() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return btoa(String.fromCharCode(...bytes))
    .replaceAll("+", "-")
    .replaceAll("/", "_")
    .replace(/=+$/, "");
}

/** The stored key, or a new one (stored; without storage it lasts for this page only). */
export function browserKey() {
  try {
    const stored = localStorage.getItem(KEY_STORAGE);
    if (stored) return stored;
  } catch {
    // No storage (a privacy mode): one key per page load.
  }
  return newBrowserKey();
}

/** Replace the stored key, e.g. one the server refuses (written by something else). */
export function newBrowserKey() {
  const key = randomKey();
  try {
    localStorage.setItem(KEY_STORAGE, key);
  } catch {
    // As above: this page only.
  }
  return key;
}
