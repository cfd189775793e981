// The chat page: wires the Socket.IO protocol (docs/protocol.md) to the views in ui/.

import { Connection } from "./ui/connection.js";
import { paintAvatar } from "./ui/avatar.js";
import { codePoints, randomId } from "./ui/dom.js";
import { browserKey, newBrowserKey } from "./ui/key.js";
import { NameDialog, forgetName, storeName, storedName } from "./ui/name.js";
import { Outbox } from "./ui/outbox.js";
import { PeopleView, TypingView } from "./ui/presence.js";
import { RoomsView, copyText, roomPath } from "./ui/rooms.js";
import { StatusView } from "./ui/status.js";
import { Timeline } from "./ui/timeline.js";

const ACK_TIMEOUT = 15000;
/** Send `typing: true` at most this often while typing; the server expires it after 5 s. */
const TYPING_EVERY = 2000;
/** Stop saying "typing" after this long without a keystroke. */
const TYPING_IDLE = 4000;

const $ = (id) => document.getElementById(id);
const room = document.body.dataset.room;
const baseTitle = document.title;
/** The server's limits, rendered into the page by the server (chatapp/protocol.py). */
const limits = {
  text: Number(document.body.dataset.maxText),
  name: Number(document.body.dataset.maxName),
  history: Number(document.body.dataset.maxHistory), // messages in one `history` answer
};
/** Scrolling back asks for this many at a time; filling a catch-up gap, for all it may. */
const HISTORY_PAGE = Math.min(50, limits.history);
const GAP_PAGE = limits.history;
/** The character counter shows from this length on. */
const counterFrom = Math.floor(limits.text * 0.9);

/** Signed in: the page says to which account (the server decides; the name is the account's). */
const account = document.body.dataset.handle
  ? { handle: document.body.dataset.handle, displayName: document.body.dataset.displayName }
  : null;

const state = {
  name: account ? account.displayName : storedName(),
  key: browserKey(), // sent on every (re)connect: who we are, whatever our name
  userId: null, // the public id the server derives from it (the welcome says)
  admin: false, // signed in as an admin (the welcome says): may delete any message
  keyReplaced: false,
  loaded: false, // the first welcome's history is shown
  live: false, // welcomed, and connected since: people and head counts are current
  streamMax: null, // newest id received through the ordered stream (welcome + message)
  gapFloor: null, // while filling a catch-up gap: the `since` to resume from
  sinceSent: null,
  rev: null, // the room's newest change number seen (welcome + changed): sent with `since`
  view: 0, // counts the times the timeline started over: answers for an older view are late
  loadingOlder: false,
  unread: 0,
  typingSentAt: 0,
  typingIdle: null,
};

/** Ours: sent with our key. Never decided by name (anyone can take a name), and a message
 * from before ids (no user_id) is nobody's. */
const isMine = (msg) => msg.user_id != null && msg.user_id === state.userId;

// -- views ----------------------------------------------------------------------------------

const timeline = new Timeline(
  {
    scroller: $("scroller"),
    log: $("log"),
    list: $("messages"),
    pendingList: $("pending"),
    loadOlder: $("load-older"),
    historyStart: $("history-start"),
    jump: $("jump"),
    jumpLabel: $("jump-label"),
  },
  {
    isMine,
    needOlder: () => loadOlder(),
    // The clicked button goes away with the state it belonged to: keep the focus useful.
    onRetry: (pending) => {
      outbox.retry(pending);
      textarea.focus();
    },
    onDiscard: (pending) => {
      outbox.discard(pending);
      textarea.focus();
    },
    // Offered where the server may agree; the server decides.
    canDelete: (msg) => isMine(msg) || state.admin,
    onDelete: (msg) => deleteMessage(msg),
  },
);
const people = new PeopleView(
  { list: $("people"), count: $("people-count"), headerCount: $("online-count") },
  (shown) => rooms.setLocalCount(shown.length),
);
const typing = new TypingView($("typing"));
const rooms = new RoomsView(
  { list: $("rooms"), form: $("room-form"), input: $("room-input"), error: $("room-error") },
  room,
);
const nameDialog = new NameDialog(
  {
    dialog: $("name-dialog"),
    form: $("name-form"),
    input: $("name-input"),
    error: $("name-error"),
    cancel: $("name-cancel"),
    title: $("name-title"),
    lead: $("name-lead"),
    ok: $("name-ok"),
  },
  limits.name,
);
// The transports the server accepts, websocket first (see docs/deploy.md).
const transports = (document.body.dataset.transports || "websocket,polling")
  .split(",")
  .sort((a, b) => (a === "websocket" ? -1 : b === "websocket" ? 1 : 0));
const conn = new Connection({ auth: connectAuth, onState: onConnectionState, transports });
const status = new StatusView(
  { root: $("status"), text: $("status-text"), retry: $("retry-now") },
  () => conn.tryNow(),
);
const socket = conn.socket;

function call(event, data) {
  return new Promise((resolve, reject) => {
    socket.timeout(ACK_TIMEOUT).emit(event, data, (err, ack) => (err ? reject(err) : resolve(ack)));
  });
}

const outbox = new Outbox((payload) => call("message", payload), {
  show: (pending) => timeline.showPending(pending),
  setState: (pending, state, reason) => timeline.setPendingState(pending, state, reason),
  delivered: (pending, message) => timeline.confirmPending(pending, message),
  moveToEnd: (pending) => timeline.movePendingToEnd(pending),
  remove: (pending) => timeline.removePending(pending),
});

// -- connection -------------------------------------------------------------------------------

function connectAuth() {
  const since = state.gapFloor ?? state.streamMax;
  state.sinceSent = since;
  const auth = { room, name: state.name, key: state.key };
  if (since !== null) {
    auth.since = since;
    // With it, the welcome also brings what changed in the messages we hold.
    if (state.rev !== null) auth.rev = state.rev;
  }
  return auth;
}

function onConnectionState(connState, detail) {
  status.show(connState, detail);
  updateComposer();
  if (connState !== "connected") {
    outbox.pause(); // until the next welcome
    typing.clear();
    if (state.live) {
      // Who is here, and how many are where: the last known, until the next welcome.
      state.live = false;
      people.setStale(true);
      rooms.setStale(true);
    }
  }
  if (
    connState === "refused" &&
    !account &&
    (detail.message.startsWith("invalid name") || detail.message.includes("belongs to an account"))
  ) {
    askNameAgain(detail.message);
  }
  if (connState === "refused" && detail.message.startsWith("invalid key") && !state.keyReplaced) {
    // Not one we made (storage edited, or an older page's): a new one, once.
    state.keyReplaced = true;
    state.key = newBrowserKey();
    conn.start();
  }
}

async function askNameAgain(message) {
  forgetName();
  const name = await nameDialog.ask({ first: true, current: state.name ?? "", error: message });
  setName(name);
  conn.start();
  textarea.focus();
}

function noteStream(messages) {
  for (const m of messages) if (state.streamMax === null || m.id > state.streamMax) state.streamMax = m.id;
}

/** The room's change numbers seen so far: the next connection asks for what came after. */
function noteRev(rev) {
  if (Number.isInteger(rev) && (state.rev === null || rev > state.rev)) state.rev = rev;
}

socket.on("welcome", (welcome) => {
  setUserId(welcome.user_id);
  setAdmin(Boolean(welcome.admin));
  setName(welcome.name);
  state.live = true;
  people.show(welcome.people, state.userId);
  rooms.setStale(false);
  const history = welcome.history;
  noteRev(welcome.rev);
  if (!state.loaded || welcome.reset) {
    // The first load; or too much changed while we were away, and the history is the
    // newest page, as for a fresh page: it replaces everything shown.
    if (state.loaded) {
      state.view += 1;
      state.streamMax = null;
      state.gapFloor = null;
      timeline.clear();
    }
    state.loaded = true;
    timeline.loadInitial(history, welcome.has_more);
    noteStream(history);
    fillScreen();
  } else {
    for (const msg of welcome.changed ?? []) applyChange(msg);
    const wasEmpty = timeline.firstId === null;
    noteUnread(timeline.addLive(history));
    noteStream(history);
    if (wasEmpty) timeline.setHasMore(welcome.has_more);
    const since = state.sinceSent;
    if (since !== null && welcome.has_more && history.length && history[0].id > since + 1) {
      // More was missed than one welcome carries: fetch the rest, newest first.
      state.gapFloor = since;
      fillGap(since, history[0].id);
    }
  }
  outbox.resume(); // what waits goes now, after the history that may already hold some
});

async function fillGap(since, before) {
  const view = state.view;
  try {
    while (before > since + 1) {
      const ack = await call("history", { before, limit: GAP_PAGE });
      if (view !== state.view) return; // the view started over meanwhile
      if (!ack.ok) break;
      const missed = ack.messages.filter((m) => m.id > since);
      noteUnread(timeline.addLive(missed));
      if (!ack.has_more || !ack.messages.length) break;
      before = ack.messages[0].id;
    }
    state.gapFloor = null;
  } catch {
    // Disconnected meanwhile: the next welcome resumes from gapFloor.
  }
}

socket.on("message", (msg) => {
  if (msg.room !== room) return;
  const added = timeline.addLive([msg]);
  noteStream([msg]);
  noteUnread(added);
  if (added.length) typing.endFor(msg);
});

socket.on("changed", (msg) => {
  if (msg.room !== room) return;
  applyChange(msg);
});

/** A message's new state, from a `changed` event or a welcome's `changed`. */
function applyChange(msg) {
  noteRev(msg.rev);
  timeline.applyChange(msg);
}

socket.on("presence", (event) => {
  if (event.room !== room) return;
  typing.keepOnly(event.people);
  people.update(event.people, state.userId, { departure: Boolean(event.left && !event.joined) });
});

socket.on("typing", (event) => {
  // Our own other tabs type as us: not shown. Someone else with our name is someone else.
  if (event.user_id !== state.userId) typing.update(event);
});

// -- history ----------------------------------------------------------------------------------

async function loadOlder() {
  const before = timeline.firstId;
  if (state.loadingOlder || !timeline.hasMore || before === null || !conn.connected) return;
  state.loadingOlder = true;
  const view = state.view;
  $("scroller").setAttribute("aria-busy", "true");
  try {
    const ack = await call("history", { before, limit: HISTORY_PAGE });
    if (ack.ok && view === state.view) timeline.prependOlder(ack.messages, ack.has_more);
  } catch {
    // Lost the connection: scrolling up again retries.
  } finally {
    state.loadingOlder = false;
    $("scroller").removeAttribute("aria-busy");
  }
  fillScreen();
}

/** Keep loading older pages until the list is taller than the screen (or all is loaded). */
function fillScreen() {
  if (timeline.needsFill()) loadOlder();
}

// -- deleting -----------------------------------------------------------------------------------

/** Ask the server to delete `msg` for everyone: null when it did, or the reason it did not. */
async function deleteMessage(msg) {
  if (!conn.connected) return "not connected, try again once the connection is back";
  try {
    const ack = await call("delete", { id: msg.id });
    if (!ack.ok) return ack.error;
    // Its rev is not noted: changes before it may still be on their way to us.
    timeline.applyChange(ack.message);
    return null;
  } catch {
    return "could not reach the server, please try again";
  }
}

// -- sending ------------------------------------------------------------------------------------

const textarea = $("text");
const sendButton = $("send");
const counter = $("counter");

function updateComposer() {
  // The server counts the text as sent, in code points, and refuses a blank one.
  const length = codePoints(textarea.value);
  const blank = textarea.value.trim() === "";
  const over = length > limits.text;
  // Offline too: the outbox keeps it until the connection is back.
  sendButton.disabled = !state.name || blank || over;
  counter.classList.toggle("over", over);
  counter.classList.toggle("near", length >= counterFrom && !over);
  counter.textContent =
    length < counterFrom
      ? ""
      : over
        ? `${length - limits.text} characters over the ${limits.text} limit`
        : `${limits.text - length} characters left`;
}

function send() {
  if (sendButton.disabled) return;
  const pending = {
    clientId: randomId(),
    text: textarea.value,
    name: state.name,
    user_id: state.userId,
    ts: Date.now(),
  };
  textarea.value = "";
  autosize();
  updateComposer();
  // The server ends our typing indicator when the message arrives.
  clearTimeout(state.typingIdle);
  state.typingSentAt = 0;
  outbox.add(pending);
}

$("composer").addEventListener("submit", (event) => {
  event.preventDefault();
  send();
  textarea.focus(); // after a click on the send button, keep typing
});

textarea.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    send();
  }
});

textarea.addEventListener("input", () => {
  autosize();
  updateComposer();
  noteTyping();
});

const growsByItself = CSS.supports("field-sizing", "content");
function autosize() {
  if (growsByItself) return;
  textarea.style.height = "auto";
  textarea.style.height = `${textarea.scrollHeight}px`;
}

function noteTyping() {
  if (!conn.connected) return;
  if (!textarea.value.trim()) {
    stopTyping();
    return;
  }
  const now = Date.now();
  if (now - state.typingSentAt >= TYPING_EVERY) {
    socket.volatile.emit("typing", { typing: true });
    state.typingSentAt = now;
  }
  clearTimeout(state.typingIdle);
  state.typingIdle = setTimeout(stopTyping, TYPING_IDLE);
}

function stopTyping() {
  clearTimeout(state.typingIdle);
  if (state.typingSentAt && conn.connected) socket.volatile.emit("typing", { typing: false });
  state.typingSentAt = 0;
}

textarea.addEventListener("blur", stopTyping);

// -- name -----------------------------------------------------------------------------------------

function setName(name) {
  if (!name) return;
  state.name = name;
  if (!account) storeName(name); // a guest's, for next time; an account's comes from the server
  $("my-name").textContent = name;
  paintAvatar($("my-avatar"), { name, user_id: state.userId });
}

/** Our user_id, as the server says (the welcome, a rename's answer): what makes a message ours. */
function setUserId(userId) {
  if (!userId || userId === state.userId) return;
  state.userId = userId;
  if (state.name) paintAvatar($("my-avatar"), { name: state.name, user_id: userId });
  timeline.refreshOwnership();
}

/** Whether we are an admin (the welcome says): may delete anyone's message. */
function setAdmin(admin) {
  if (admin === state.admin) return;
  state.admin = admin;
  timeline.refreshOwnership();
}

if (account) {
  // An account's name is its display name: not changed from the chat.
  $("change-name").disabled = true;
  $("change-name").setAttribute("aria-label", `Signed in as @${account.handle}`);
}

$("change-name").addEventListener("click", async () => {
  const name = await nameDialog.ask({
    current: state.name ?? "",
    apply: async (wanted) => {
      // Offline, the next connection asks for the new name (and a refusal asks again).
      if (wanted === state.name || !conn.connected) return { name: wanted };
      try {
        const ack = await call("rename", { name: wanted });
        if (ack.ok) setUserId(ack.user_id); // the same, with our key
        return ack.ok ? { name: ack.name } : { error: ack.error };
      } catch {
        return { error: "Could not reach the server, please try again." };
      }
    },
  });
  if (name) setName(name);
  $("change-name").focus();
});

// -- page chrome ------------------------------------------------------------------------------------

function noteUnread(added) {
  if (!document.hidden) return;
  const fromOthers = added.filter((m) => !isMine(m)).length;
  if (!fromOthers) return;
  state.unread += fromOthers;
  document.title = `(${state.unread}) ${baseTitle}`;
}

document.addEventListener("visibilitychange", () => {
  if (!document.hidden && state.unread) {
    state.unread = 0;
    document.title = baseTitle;
  }
});

const copyLabel = $("copy-label");
$("copy-link").addEventListener("click", async () => {
  const ok = await copyText(location.origin + roomPath(room));
  copyLabel.textContent = ok ? "Copied!" : "Copy failed";
  $("copy-link").classList.toggle("done", ok);
  setTimeout(() => {
    copyLabel.textContent = "Copy link";
    $("copy-link").classList.remove("done");
  }, 2000);
});

const app = $("app");
const menu = $("menu-toggle");
const scrim = $("scrim");
function setSidebar(open) {
  app.classList.toggle("sidebar-open", open);
  menu.setAttribute("aria-expanded", String(open));
  scrim.hidden = !open;
  if (open) $("room-input").focus();
}
menu.addEventListener("click", () => setSidebar(!app.classList.contains("sidebar-open")));
scrim.addEventListener("click", () => setSidebar(false));
$("sidebar-close").addEventListener("click", () => {
  setSidebar(false);
  menu.focus();
});
document.addEventListener("keydown", (event) => {
  if (event.key === "Escape" && app.classList.contains("sidebar-open")) {
    setSidebar(false);
    menu.focus();
  }
});

// -- start --------------------------------------------------------------------------------------------

async function start() {
  rooms.start();
  updateComposer();
  if (!state.name) {
    setName(await nameDialog.ask({ first: true }));
    conn.start();
    textarea.focus(); // the name chosen, the next thing to do is to write
  } else {
    setName(state.name);
    conn.start();
  }
}

start();
