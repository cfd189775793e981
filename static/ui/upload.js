// Sending files (docs/protocol.md, "Files"): chosen with the "Attach a file" button,
// dropped on the room, or pasted into the message box. Each file is one upload, posted as
// a form to /api/rooms/<room>/files, one at a time in the order given, with the text in
// the box as its caption. Until the server answers, the room shows "Uploading <name>…"
// below its messages, with how much of it went (a progress bar and a percentage); a
// refusal shows the server's reason with Retry (the same client_id: the server stores it
// once) and Dismiss. What the server allows (sizes, quotas, kinds of file) is the
// server's to say. The message then arrives as any other: the answer's copy
// and the room's `message` event have one id, and the timeline holds each id once.

import { el, randomId } from "./dom.js";

/** A "rate limited" answer without retry_after: wait this long, in seconds. */
const DEFAULT_RETRY_AFTER = 1;

/** Whether a drag carries files (not text or a link being dragged about). */
const carriesFiles = (event) => Boolean(event.dataTransfer?.types.includes("Files"));

export class Uploader {
  /**
   * @param {object} dom  button ("Attach a file"), input (its hidden file input), zone
   *   (where files may be dropped), box (the message box: pasted files)
   * @param {object} env  room() -> the shown Room; auth() -> the form fields saying who
   *   sends ({name, key} for a guest, {} for an account), or null while there is nobody
   *   yet; caption() -> {text?, reply_to?} taken from the composer (which it empties)
   */
  constructor({ button, input, zone, box }, env) {
    this.env = env;
    this.zone = zone;
    this.queue = []; // {room, file, name, clientId, text?, reply_to?, state, row, ...}, in order
    this.busy = false;
    this.timer = null; // waiting out a rate limit
    this.depth = 0; // drag enters minus leaves inside the zone

    button.addEventListener("click", () => input.click());
    input.addEventListener("change", () => {
      const files = [...input.files];
      input.value = ""; // the same file may be chosen again
      this.add(files);
      box.focus();
    });
    box.addEventListener("paste", (event) => {
      const files = [...(event.clipboardData?.files ?? [])];
      if (!files.length) return; // text: the box takes it
      event.preventDefault();
      this.add(files);
    });
    zone.addEventListener("dragenter", (event) => {
      if (!carriesFiles(event)) return;
      event.preventDefault();
      this.depth += 1;
      this.#highlight(true);
    });
    zone.addEventListener("dragover", (event) => {
      if (!carriesFiles(event)) return;
      event.preventDefault();
      event.dataTransfer.dropEffect = "copy";
      this.#highlight(true);
    });
    zone.addEventListener("dragleave", (event) => {
      if (!carriesFiles(event)) return;
      this.depth = Math.max(0, this.depth - 1);
      if (this.depth === 0) this.#highlight(false);
    });
    zone.addEventListener("drop", (event) => {
      if (!carriesFiles(event)) return;
      event.preventDefault();
      this.#highlight(false);
      this.add([...event.dataTransfer.files]);
    });
    // Dropped beside the room (the side panel): not opened in place of the page.
    for (const type of ["dragover", "drop"]) {
      addEventListener(type, (event) => {
        if (!carriesFiles(event) || zone.contains(event.target)) return;
        event.preventDefault();
        event.dataTransfer.dropEffect = "none";
      });
    }
    addEventListener("dragend", () => this.#highlight(false));
  }

  #highlight(on) {
    if (!on) this.depth = 0;
    this.zone.classList.toggle("dropping", on);
  }

  /** Send `files` to the shown room, in order; the first takes the box's text as its caption. */
  add(files) {
    const room = this.env.room();
    if (!files.length || !room || this.env.auth() === null) return;
    const caption = this.env.caption();
    for (const [index, file] of files.entries()) {
      const item = {
        room,
        file,
        name: file.name || "file",
        clientId: randomId(), // one per upload, the same for each retry
        state: "queued",
        row: null,
      };
      if (index === 0) Object.assign(item, caption);
      this.#show(item);
      this.queue.push(item);
    }
    room.timeline.scrollToBottom();
    this.#pump();
  }

  async #pump() {
    if (this.busy || this.timer !== null) return;
    const item = this.queue.find((i) => i.state === "queued");
    if (!item) return;
    this.busy = true;
    this.#set(item, "sending");
    const { status, body } = await this.#post(item);
    this.busy = false;
    if (body?.ok && body.message) {
      this.#forget(item);
      // As an ack: in its place by id, once, whichever of this and the event comes first.
      item.room.timeline.confirmPending({ clientId: item.clientId }, body.message);
    } else if (status === 429) {
      this.#set(item, "queued");
      const wait = Math.max(0, Number(body?.retry_after ?? DEFAULT_RETRY_AFTER)) * 1000;
      this.timer = setTimeout(() => {
        this.timer = null;
        this.#pump();
      }, wait);
      return;
    } else {
      const reason =
        body?.error ?? (status ? `the server answered ${status}` : "could not reach the server, please try again");
      this.#set(item, "failed", reason);
    }
    this.#pump();
  }

  /**
   * The upload: {status, body} (the answer's JSON, or null); status 0 when none came. By
   * XMLHttpRequest, not fetch: only it tells how much of the body went.
   */
  #post(item) {
    const form = new FormData();
    if (item.text !== undefined) form.append("text", item.text);
    form.append("client_id", item.clientId);
    if (item.reply_to !== undefined) form.append("reply_to", String(item.reply_to));
    for (const [field, value] of Object.entries(this.env.auth() ?? {})) form.append(field, value);
    form.append("file", item.file, item.name); // last: the server reads the fields first
    return new Promise((resolve) => {
      const xhr = new XMLHttpRequest();
      xhr.upload.addEventListener("progress", (event) => {
        if (event.lengthComputable) this.#progress(item, event.loaded, event.total);
      });
      // Not the server's JSON (a proxy's page): the body is null, its status says enough.
      xhr.addEventListener("load", () => resolve({ status: xhr.status, body: xhr.response }));
      for (const type of ["error", "abort", "timeout"]) {
        xhr.addEventListener(type, () => resolve({ status: 0, body: null }));
      }
      xhr.open("POST", `/api/rooms/${encodeURIComponent(item.room.name)}/files`);
      xhr.responseType = "json";
      xhr.send(form);
    });
  }

  // -- the rows -----------------------------------------------------------------------------

  #show(item) {
    const row = el("li", "msg mine pending upload");
    row.dataset.clientId = item.clientId;
    const bubble = el("div", "bubble");
    item.label = el("p", "upload-label");
    item.stateEl = el("div", "send-state");
    bubble.append(item.label, item.stateEl);
    row.append(bubble);
    item.row = row;
    item.room.parts.pendingList.append(row);
    this.#set(item, "queued");
  }

  #set(item, state, reason = "") {
    item.state = state;
    item.row.dataset.state = state;
    if (state === "queued") {
      item.label.textContent = `Waiting to upload ${item.name}`;
      item.stateEl.replaceChildren();
      return;
    }
    if (state === "sending") {
      item.label.textContent = `Uploading ${item.name}…`;
      item.progress = el("progress", "upload-progress"); // no value: under way, until it says
      item.progress.setAttribute("aria-label", `Uploading ${item.name}`);
      item.percent = el("span", "upload-percent"); // what the bar says, for the eye
      item.percent.setAttribute("aria-hidden", "true");
      item.stateEl.replaceChildren(item.progress, item.percent);
      return;
    }
    item.label.textContent = `${item.name} was not sent`;
    const why = el("span", "state-label", `Not sent: ${reason}`);
    why.setAttribute("role", "alert");
    const retry = el("button", "link-btn retry", "Retry");
    retry.type = "button";
    retry.addEventListener("click", () => this.#retry(item));
    const dismiss = el("button", "link-btn discard", "Dismiss");
    dismiss.type = "button";
    dismiss.addEventListener("click", () => {
      this.#forget(item);
      this.env.focusComposer?.();
    });
    item.stateEl.replaceChildren(why, retry, dismiss);
  }

  /** `loaded` of the upload's `total` bytes went. */
  #progress(item, loaded, total) {
    if (item.state !== "sending" || !total) return;
    item.progress.max = total;
    item.progress.value = loaded;
    item.percent.textContent = `${Math.floor((loaded * 100) / total)}%`;
  }

  /** Try a refused upload again (after the others), with its client_id. */
  #retry(item) {
    if (item.state !== "failed") return;
    this.queue.splice(this.queue.indexOf(item), 1);
    this.queue.push(item);
    item.room.parts.pendingList.append(item.row);
    this.#set(item, "queued");
    this.env.focusComposer?.();
    this.#pump();
  }

  #forget(item) {
    const index = this.queue.indexOf(item);
    if (index !== -1) this.queue.splice(index, 1);
    item.row.remove();
  }
}
