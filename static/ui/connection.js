// The Socket.IO connection with our own reconnect loop, so that the page can show
// "reconnecting in N s" with a "try now" button and wait for the network when offline.

import { io } from "/static/vendor/socket.io.esm.min.js";

const BASE_DELAY = 1000;
const MAX_DELAY = 20000;
/** Refusals (docs/protocol.md) that connecting again as it is cannot change. */
const FINAL = [
  /^invalid /,
  /^the name .* belongs to an account/,
  /^signed out/,
  /^sign in to chat/,
  /^no such room, or you are not/,
  /^banned from this server/,
];

/**
 * Wraps a socket.io-client socket. `auth()` is called before every (re)connect.
 * onState(state, detail) gets: "connecting" | "connected" | "waiting" {until} |
 * "offline" | "refused" {message}.
 */
export class Connection {
  constructor({ auth, onState, transports = ["websocket", "polling"] }) {
    this.onState = onState;
    this.attempt = 0;
    this.timer = null;
    this.socket = io({
      autoConnect: false,
      reconnection: false, // our loop below, for a visible countdown
      // WebSocket straight away (no polling-then-upgrade dance), long-polling only if a
      // proxy in between refuses WebSockets and the server allows it.
      transports,
      tryAllTransports: true,
      auth: (cb) => cb(auth()),
    });
    this.socket.on("connect", () => {
      this.attempt = 0;
      this.onState("connected");
    });
    this.socket.on("connect_error", (err) => {
      // A refusal by the server (bad name, a name that is an account's, a sign-in that
      // ended...) carries its reason; retrying won't help.
      if (err && err.message && FINAL.some((re) => re.test(err.message))) {
        this.onState("refused", { message: err.message });
        return;
      }
      this.#schedule();
    });
    this.socket.on("disconnect", (reason) => {
      if (reason !== "io client disconnect") this.#schedule();
    });
    addEventListener("online", () => this.tryNow());
    addEventListener("offline", () => {
      if (!this.socket.connected) this.#schedule();
    });
    document.addEventListener("visibilitychange", () => {
      if (document.visibilityState === "visible" && this.timer !== null) this.tryNow();
    });
  }

  get connected() {
    return this.socket.connected;
  }

  start() {
    this.#connectNow();
  }

  /** Skip the remaining wait and reconnect at once. */
  tryNow() {
    if (this.socket.connected) return;
    this.#connectNow();
  }

  #connectNow() {
    clearTimeout(this.timer);
    this.timer = null;
    if (!navigator.onLine) {
      this.onState("offline");
      return;
    }
    this.onState("connecting");
    this.socket.connect();
  }

  #schedule() {
    if (this.socket.connected) return;
    clearTimeout(this.timer);
    if (!navigator.onLine) {
      this.timer = null;
      this.onState("offline"); // the "online" event resumes
      return;
    }
    // Exponential backoff with jitter, so that a restarted server is not hit by every
    // client at the same instant.
    const base = Math.min(MAX_DELAY, BASE_DELAY * 2 ** this.attempt);
    const delay = Math.round(base * (0.5 + Math.random()));
    this.attempt += 1;
    this.timer = setTimeout(() => this.#connectNow(), delay);
    this.onState("waiting", { until: Date.now() + delay });
  }
}
