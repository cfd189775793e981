// Browser notifications for messages that arrive while the reader looks elsewhere (another
// room, another tab), with each room's choice of what deserves one, kept in this browser.
// Only live `message` events are offered here: what a welcome, a subscribe answer or a gap
// fill brings was missed while away, and a burst of old news would bury the new.

import { mentionsMe } from "./mentions.js";

const SETTINGS = "chatapp.notify.rooms";
const SOUND = "chatapp.notify.sound";

/** At most one new notification per room this often; what comes meanwhile is folded in. */
const COALESCE_MS = 4000;
/** A notification shows the start of a message: the tray cuts long ones anyway. */
const BODY_CHARS = 180;

export const LEVELS = ["all", "mentions", "none"];

/** Direct conversations are written to the reader: every message is for them. */
const isDirect = (room) => room.startsWith("dm-");

function loadSettings() {
  try {
    const stored = JSON.parse(localStorage.getItem(SETTINGS) ?? "{}");
    if (stored && typeof stored === "object" && !Array.isArray(stored)) return stored;
  } catch {
    // No storage, or not ours: the defaults, and the next change replaces it.
  }
  return {};
}

/** Each room's choice: {level: "all" | "mentions" | "none", muted: bool}. */
export class RoomSettings {
  constructor() {
    this.rooms = loadSettings(); // without storage, for this page only
  }

  level(room) {
    const level = this.rooms[room]?.level;
    if (LEVELS.includes(level)) return level;
    return isDirect(room) ? "all" : "mentions";
  }

  muted(room) {
    return this.rooms[room]?.muted === true;
  }

  set(room, change) {
    // Another tab may have changed other rooms meanwhile: theirs stay.
    this.rooms = loadSettings();
    this.rooms[room] = { ...this.rooms[room], ...change };
    try {
      localStorage.setItem(SETTINGS, JSON.stringify(this.rooms));
    } catch {
      // As above.
    }
  }
}

function storedSound() {
  try {
    return localStorage.getItem(SOUND) === "on";
  } catch {
    return false;
  }
}

function clip(text) {
  const chars = [...text];
  return chars.length > BODY_CHARS ? `${chars.slice(0, BODY_CHARS).join("")}…` : text;
}

/** A short two-note chime made on the spot: nothing is fetched, from here or elsewhere. */
class Chime {
  constructor() {
    this.context = null;
  }

  /** Called on the reader's click or key: browsers start audio only after one. */
  prime() {
    if (!this.context && typeof AudioContext === "function") this.context = new AudioContext();
    this.context?.resume().catch(() => {});
  }

  play() {
    if (!this.context) this.prime();
    const audio = this.context;
    if (!audio) return;
    if (audio.state === "suspended") audio.resume().catch(() => {});
    const t = audio.currentTime;
    const osc = audio.createOscillator();
    const gain = audio.createGain();
    osc.type = "sine";
    osc.frequency.setValueAtTime(880, t);
    osc.frequency.setValueAtTime(1320, t + 0.09);
    gain.gain.setValueAtTime(0.0001, t);
    gain.gain.exponentialRampToValueAtTime(0.15, t + 0.01);
    gain.gain.exponentialRampToValueAtTime(0.0001, t + 0.25);
    osc.connect(gain).connect(audio.destination);
    osc.start(t);
    osc.stop(t + 0.26);
  }
}

export class Notifier {
  /**
   * @param {object} dom  enable (the button asking for permission), note (says when the
   *   browser blocks them), sound (the sound toggle)
   * @param {object} hooks  me() -> the reader's user_id; isMine(msg); shown() -> the shown
   *   room's name; open(room, id): the reader clicked a notification about message `id`
   */
  constructor(dom, hooks, settings = new RoomSettings()) {
    this.dom = dom;
    this.hooks = hooks;
    this.settings = settings;
    this.sound = storedSound();
    this.chime = new Chime();
    this.rooms = new Map(); // room -> {count, firstId, latest, lastAt, timer, shown, lastId}
    dom.enable.addEventListener("click", () => this.#ask());
    dom.sound.addEventListener("click", () => this.#toggleSound());
    // After a reload the sound may be on, and audio starts only once the reader did
    // something on the page: the first thing they do wakes it.
    for (const event of ["pointerdown", "keydown"]) {
      document.addEventListener(event, () => this.sound && this.chime.prime(), { capture: true });
    }
    // The reader may allow or block them in the browser's settings meanwhile.
    document.addEventListener("visibilitychange", () => {
      this.render();
      if (!document.hidden) this.seen(this.hooks.shown());
    });
    this.render();
  }

  get permission() {
    return typeof Notification === "function" ? Notification.permission : "unsupported";
  }

  render() {
    const permission = this.permission;
    // Asked for only when the reader asks: never by itself, never again once answered.
    this.dom.enable.hidden = permission !== "default";
    this.dom.note.hidden = permission !== "denied";
    this.dom.note.textContent =
      permission === "denied" ? "Notifications are blocked: allow them in the browser's site settings." : "";
    this.dom.sound.hidden = permission !== "granted";
    this.dom.sound.setAttribute("aria-pressed", String(this.sound));
    this.dom.sound.title = this.sound ? "Notifications play a sound" : "Notifications are silent";
  }

  async #ask() {
    try {
      await Notification.requestPermission();
    } catch {
      // An old browser's callback-only form, or none: the button stays.
    }
    this.render();
    // The button is gone once answered: the keyboard goes on from what took its place.
    if (this.dom.enable.hidden && !this.dom.sound.hidden) this.dom.sound.focus();
  }

  #toggleSound() {
    this.sound = !this.sound;
    try {
      localStorage.setItem(SOUND, this.sound ? "on" : "off");
    } catch {
      // This page only.
    }
    if (this.sound) {
      this.chime.prime();
      this.chime.play(); // what it will sound like
    }
    this.render();
  }

  /** Whether `msg`, live in `room`, deserves a notification by the room's setting. */
  #wanted(room, msg) {
    if (msg.deleted || this.hooks.isMine(msg)) return false;
    if (this.settings.muted(room)) return false;
    const level = this.settings.level(room);
    if (level === "all") return true;
    return level === "mentions" && mentionsMe(msg, this.hooks.me());
  }

  /** A live `message` event of `room` (never history or a catch-up). */
  message(room, msg) {
    const state = this.#state(room);
    // Once per message, whatever delivers it twice.
    if (state.lastId !== null && msg.id <= state.lastId) return;
    state.lastId = msg.id;
    if (this.permission !== "granted" || !this.#wanted(room, msg)) return;
    if (!document.hidden && room === this.hooks.shown()) return; // the reader sees it come
    state.count += 1;
    state.firstId ??= msg.id;
    state.latest = msg;
    if (state.timer) return; // folded into the one already due
    const wait = state.lastAt + COALESCE_MS - Date.now();
    if (wait <= 0) this.#post(room, state);
    else state.timer = setTimeout(() => this.#post(room, state), wait);
  }

  /** The reader looks at `room` (shown in a visible tab): what was waiting for it is read. */
  seen(room) {
    const state = this.rooms.get(room);
    if (!state) return;
    clearTimeout(state.timer);
    state.timer = null;
    state.count = 0;
    state.firstId = null;
    state.latest = null;
    state.shown?.close();
    state.shown = null;
  }

  #state(room) {
    let state = this.rooms.get(room);
    if (!state) {
      state = { count: 0, firstId: null, latest: null, lastAt: -Infinity, timer: null, shown: null, lastId: null };
      this.rooms.set(room, state);
    }
    return state;
  }

  #post(room, state) {
    state.timer = null;
    const msg = state.latest;
    if (!msg || this.permission !== "granted") return;
    const one = state.count === 1;
    const direct = isDirect(room);
    let title;
    if (!one) title = direct ? `${state.count} new direct messages` : `${state.count} new messages in #${room}`;
    else if (direct) title = msg.name;
    else if (mentionsMe(msg, this.hooks.me())) title = `${msg.name} mentioned you in #${room}`;
    else title = `${msg.name} in #${room}`;
    const body = one ? clip(msg.text) : `${msg.name}: ${clip(msg.text)}`;
    // One per room (its tag): a newer one takes the place of the last, never piles up.
    let notification;
    try {
      notification = new Notification(title, { body, tag: `chatapp:${room}` });
    } catch {
      return; // not constructible here (some mobile browsers want a service worker)
    }
    state.shown = notification;
    state.lastAt = Date.now();
    // A burst is read from its start.
    const target = one ? msg.id : state.firstId;
    notification.onclick = () => {
      window.focus();
      notification.close();
      this.hooks.open(room, target);
    };
    if (this.sound) this.chime.play();
  }
}

/** Bring message `id` of `list` (a room's message list) into view, marked for a moment. */
export function flashMessage(list, id) {
  const li = list.querySelector(`li.msg[data-id="${Number(id)}"]`);
  if (!li) return;
  const reduce = matchMedia("(prefers-reduced-motion: reduce)").matches;
  li.scrollIntoView({ block: "center", behavior: reduce ? "instant" : "smooth" });
  li.classList.remove("flash");
  void li.offsetWidth; // restart the animation when flashed twice
  li.classList.add("flash");
  li.addEventListener("animationend", () => li.classList.remove("flash"), { once: true });
}
