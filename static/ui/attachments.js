// A message's file (docs/protocol.md, "Files"): an image with a thumbnail shows it, in a
// box sized before it loads (nothing jumps), and opens the full image in an overlay on the
// page; any other file is a card to download it, with its name and size. The server
// decides what is an image; names go in as text and into URLs through encodeURIComponent.

import { el } from "./dom.js";

/** A thumbnail is shown at most this wide and this tall (CSS px), keeping its shape. */
const THUMB_MAX = 360;

/** The file's address: `/files/<id>/<name>`. */
export function fileUrl(file) {
  return `/files/${encodeURIComponent(file.id)}/${encodeURIComponent(file.name)}`;
}

/** An image's thumbnail: `/files/<id>/thumb`. */
export function thumbUrl(file) {
  return `/files/${encodeURIComponent(file.id)}/thumb`;
}

/** A size for people: "512 bytes", "1.5 KB", "24 MB". */
export function humanSize(bytes) {
  if (bytes < 1024) return bytes === 1 ? "1 byte" : `${bytes} bytes`;
  const units = ["KB", "MB", "GB", "TB"];
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  const shown = value < 10 ? Math.round(value * 10) / 10 : Math.round(value);
  return `${shown} ${units[unit]}`;
}

/**
 * Whether `msg`'s text is shown: not when it is only the name of its file (sent without a
 * caption, the server makes the name its text), which the attachment shows already.
 */
export function showsText(msg) {
  return !(msg.file && !msg.deleted && msg.text === msg.file.name);
}

/** What `msg` carries, to go under its text: a thumbnail or a download card; null if none. */
export function attachment(msg) {
  const file = msg.file;
  if (!file || msg.deleted) return null;
  const hasThumb = file.thumb === true && file.width > 0 && file.height > 0;
  return hasThumb ? imageLink(file) : downloadCard(file);
}

/** The thumbnail, a link to the full image that opens it in the overlay. */
function imageLink(file) {
  const link = el("a", "attachment attachment-image");
  link.href = fileUrl(file);
  link.dataset.focus = "attachment";
  link.title = `${file.name} (${humanSize(file.size)})`;
  const scale = Math.min(1, THUMB_MAX / file.width, THUMB_MAX / file.height);
  const img = el("img");
  // Its box, before the thumbnail arrives: the image's shape at the size it is shown.
  img.width = Math.max(1, Math.round(file.width * scale));
  img.height = Math.max(1, Math.round(file.height * scale));
  img.alt = file.name;
  img.decoding = "async";
  img.src = thumbUrl(file);
  link.append(img);
  link.addEventListener("click", (event) => {
    // A new tab or window, as asked (middle click, Ctrl/Cmd+click): the link's own way.
    if (event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
    event.preventDefault();
    openLightbox(file, link);
  });
  return link;
}

/** A card for any other file: a link that downloads it, with its name and size. */
function downloadCard(file) {
  const link = el("a", "attachment attachment-file");
  link.href = fileUrl(file);
  link.download = file.name;
  link.dataset.focus = "attachment";
  const icon = el("span", "attachment-icon");
  icon.setAttribute("aria-hidden", "true");
  const about = el("span", "attachment-about");
  about.append(el("span", "attachment-name", file.name), el("span", "attachment-size", humanSize(file.size)));
  link.append(icon, about);
  link.setAttribute("aria-label", `Download ${file.name} (${humanSize(file.size)})`);
  return link;
}

// -- the overlay ----------------------------------------------------------------------------

/** The page's one image overlay, made when first opened: {dialog, img, name, original, opener}. */
let lightbox = null;

function buildLightbox() {
  const dialog = el("dialog", "lightbox");
  const bar = el("div", "lightbox-bar");
  const name = el("span", "lightbox-name");
  const original = el("a", "lightbox-original", "Open original");
  original.target = "_blank";
  original.rel = "noopener";
  const close = el("button", "lightbox-close", "\u2715");
  close.type = "button";
  close.setAttribute("aria-label", "Close image");
  bar.append(name, original, close);
  const img = el("img", "lightbox-img");
  dialog.append(bar, img);
  document.body.append(dialog);
  const box = { dialog, img, name, original, close, opener: null };
  // A click anywhere but on its link closes it (the image, the dark around it, the button).
  dialog.addEventListener("click", (event) => {
    if (!event.target.closest("a")) dialog.close();
  });
  // Escape closes a modal dialog by itself; the focus goes back to the thumbnail.
  dialog.addEventListener("close", () => {
    img.removeAttribute("src");
    const opener = box.opener;
    box.opener = null;
    if (opener?.isConnected) opener.focus({ preventScroll: true });
  });
  return box;
}

/** Show `file`'s full image over the page, as large as the window allows. */
function openLightbox(file, opener) {
  lightbox ??= buildLightbox();
  const { dialog, img, name, original, close } = lightbox;
  const url = fileUrl(file);
  const scale = Math.min(1, (innerWidth * 0.92) / file.width, (innerHeight - 90) / file.height);
  img.width = Math.max(1, Math.round(file.width * scale));
  img.height = Math.max(1, Math.round(file.height * scale));
  img.alt = file.name;
  img.src = url;
  name.textContent = file.name;
  original.href = url;
  dialog.setAttribute("aria-label", file.name);
  lightbox.opener = opener;
  if (!dialog.open) dialog.showModal();
  close.focus();
}
