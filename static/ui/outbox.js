// The reader's messages on their way to the server: they leave in the order typed, one at
// a time. Over the rate limit they wait as long as the server says, without a connection
// until the next welcome, and then go by themselves. Only a message the server refuses
// stops, with Retry and Discard; the ones behind it keep going. Every attempt carries the
// message's client_id, so the server stores it once however often it is sent
// (docs/protocol.md, "Retrying").

/** After an ack that never came on a live connection, try again this much later. */
const NO_ANSWER_PAUSE = 2000;
/** A "rate limited" answer without retry_after (not from this server): wait this long. */
const DEFAULT_RETRY_AFTER = 1;

export class Outbox {
  /**
   * @param {(payload: object) => Promise<object>} send  emits `message`; resolves with the
   *   ack, rejects when none came (timeout, or the connection dropped)
   * @param {object} view  show(item), setState(item, state, reason?), delivered(item, message),
   *   moveToEnd(item), remove(item); `item.state` is "queued" | "sending" | "failed"
   */
  constructor(send, view) {
    this.send = send;
    this.view = view;
    this.items = []; // in the order they will leave
    this.inFlight = null;
    this.ready = false; // connected and welcomed
    this.timer = null; // waiting before the next attempt
  }

  /** A new message, `item` = {clientId, text, reply_to?, ...}: queued behind the others. */
  add(item) {
    this.items.push(item);
    this.view.show(item);
    this.#set(item, "queued");
    this.#pump();
  }

  /** A welcome arrived: a fresh connection (with a fresh rate limit). Send what waits. */
  resume() {
    this.ready = true;
    this.#stopWaiting();
    this.#pump();
  }

  /** The connection is gone: hold everything until resume(). */
  pause() {
    this.ready = false;
    this.#stopWaiting();
  }

  /** Send a refused message again (after the others), with its client_id. */
  retry(item) {
    if (item.state !== "failed") return;
    this.items.splice(this.items.indexOf(item), 1);
    this.items.push(item);
    this.view.moveToEnd(item);
    this.#set(item, "queued");
    this.#pump();
  }

  /** Forget a refused message. */
  discard(item) {
    if (item.state !== "failed") return;
    this.items.splice(this.items.indexOf(item), 1);
    this.view.remove(item);
  }

  #set(item, state, reason = "") {
    item.state = state;
    this.view.setState(item, state, reason);
  }

  #stopWaiting() {
    clearTimeout(this.timer);
    this.timer = null;
  }

  #waitThenPump(ms) {
    this.#stopWaiting();
    this.timer = setTimeout(() => {
      this.timer = null;
      this.#pump();
    }, ms);
  }

  async #pump() {
    if (!this.ready || this.inFlight || this.timer !== null) return;
    const item = this.items.find((i) => i.state === "queued");
    if (!item) return;
    this.inFlight = item;
    // Whether the server may hold it: the timeline may then show a broadcast in its place.
    const storedBefore = item.mayBeStored ?? false;
    item.mayBeStored = true;
    this.#set(item, "sending");
    let ack = null;
    try {
      // The same payload every time: a reply stays a reply when it is sent again.
      const payload = { text: item.text, client_id: item.clientId };
      if (item.reply_to !== undefined) payload.reply_to = item.reply_to;
      ack = await this.send(payload);
    } catch {
      // No answer: the connection dropped (pause() came first), or the server is slow.
    }
    this.inFlight = null;
    if (ack?.ok) {
      this.items.splice(this.items.indexOf(item), 1);
      this.view.delivered(item, ack.message);
    } else if (ack && (ack.retry_after !== undefined || ack.error === "rate limited")) {
      item.mayBeStored = storedBefore; // refused before looking at it
      this.#set(item, "queued");
      this.#waitThenPump(Math.max(0, ack.retry_after ?? DEFAULT_RETRY_AFTER) * 1000);
    } else if (ack) {
      item.mayBeStored = false;
      this.#set(item, "failed", ack.error);
    } else {
      // Perhaps stored: the same client_id again returns the stored message.
      this.#set(item, "queued");
      if (this.ready) this.#waitThenPump(NO_ANSWER_PAUSE);
    }
    this.#pump();
  }
}
