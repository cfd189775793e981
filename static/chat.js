// The chat page: wires the Socket.IO protocol (docs/protocol.md) to the views in ui/. One
// connection follows all of the reader's rooms: it joins the shown room by connecting, and
// subscribes to the others; switching rooms shows another one without loading a page.

import { Connection } from "./ui/connection.js";
import { paintAvatar } from "./ui/avatar.js";
import { codePoints, el, randomId } from "./ui/dom.js";
import { browserKey, newBrowserKey } from "./ui/key.js";
import { mentionsMe } from "./ui/mentions.js";
import { MentionCompleter } from "./ui/complete.js";
import { MyRooms } from "./ui/myrooms.js";
import { MyRoomsView } from "./ui/myroomsview.js";
import { NameDialog, forgetName, storeName, storedName } from "./ui/name.js";
import { Room } from "./ui/room.js";
import { RoomForm } from "./ui/roomform.js";
import { RoomsView, copyText, roomOfPath, roomPath, roomProblem } from "./ui/rooms.js";
import { StatusView } from "./ui/status.js";
import { Uploader } from "./ui/upload.js";
import { Notifier, RoomSettings, flashMessage } from "./ui/notifications.js";
import { NotifyMenu } from "./ui/notifymenu.js";
import { ReadSender, countUnread } from "./ui/unread.js";
import { ReplyBar } from "./ui/reply.js";
import { SearchView } from "./ui/search.js";

const ACK_TIMEOUT = 15000;
/** Send `typing: true` at most this often while typing; the server expires it after 5 s. */
const TYPING_EVERY = 2000;
/** Stop saying "typing" after this long without a keystroke. */
const TYPING_IDLE = 4000;
/** A "rate limited" answer without retry_after (not from this server): wait this long. */
const DEFAULT_RETRY_AFTER = 1;

const $ = (id) => document.getElementById(id);
/** The room of the address the page was loaded at: the first connection joins it. */
const pageRoom = document.body.dataset.room;
/** The server's limits, rendered into the page by the server (chatapp/protocol.py). */
const limits = {
  text: Number(document.body.dataset.maxText),
  name: Number(document.body.dataset.maxName),
  history: Number(document.body.dataset.maxHistory), // messages in one `history` answer
};
/** Scrolling back asks for this many at a time; filling a catch-up gap, for all it may. */
const pages = { older: Math.min(50, limits.history), gap: limits.history };
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
  admin: false, // signed in as an admin (the welcome says): may delete any message, see edits
  keyReplaced: false,
  live: false, // welcomed, and connected since: people and head counts are current
  welcomed: false, // a connection was welcomed once: the page has something to keep
  refused: false, // the server refused the connection, and will until something changes
  authRoom: null, // the room the connection joined by connecting (its typing has no room)
  connection: 0, // counts connections: an answer from an older one is late
  unread: 0, // others' messages, in any room, that came while the tab was hidden
  typingSentAt: 0,
  typingIdle: null,
};

/** Ours: sent with our key. Never decided by name (anyone can take a name), and a message
 * from before ids (no user_id) is nobody's. */
const isMine = (msg) => msg.user_id != null && msg.user_id === state.userId;
/** It names us (as the server resolved it), and came from someone else. */
const mentionsUs = (msg) => mentionsMe(msg, state.userId);

// -- views ----------------------------------------------------------------------------------

/** The rooms on the page, by name: the reader's rooms, and the shown one. */
const rooms = new Map();
let current = null; // the shown Room

const activeRooms = new RoomsView($("rooms"), pageRoom);
const myRoomsView = new MyRoomsView($("my-rooms"), $("leave-icon").content.firstElementChild, (name) =>
  leave(name),
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

/** The reader's rooms, kept by the server for an account, by this browser for a guest. */
const myRooms = new MyRooms({
  signedIn: Boolean(account),
  sendRead: (room, id) => call("read", { room, id }),
});
/** Read marks go to where the list is kept, a burst of them as one. */
const readMarks = new ReadSender((room, id) => myRooms.markRead(room, id));

/** What every room needs from the page. */
const roomEnv = {
  call,
  userId: () => state.userId,
  isMine,
  mentionsMe: mentionsUs,
  personAction: (room, person, mine) => messageButton(person, mine),
  canDelete: (msg) => isMine(msg) || state.admin,
  // Only the author edits (an admin may delete others' words, not change them).
  canEdit: isMine,
  // What a message said before its edits is for admins (the server checks again).
  canSeeEdits: () => state.admin,
  reply: (room, msg) => startReply(room, msg),
  pages,
  slots: {
    views: $("timelines"),
    people: $("people-slot"),
    peopleCount: $("people-count-slot"),
    onlineCount: $("room-sub"),
    typing: $("typing-slot"),
  },
  arrived: noteArrived,
  atBottom: noteRead,
  people: (room, shown) => activeRooms.setLiveCount(room.name, shown.length),
  focusComposer: () => textarea.focus(),
};

/** The room called `name`, made if the page has none. */
function roomNamed(name) {
  let room = rooms.get(name);
  if (!room) {
    room = new Room(name, roomEnv);
    room.muted = roomSettings.muted(name);
    room.lastRead = null; // read up to this id (null: not known yet)
    room.readSent = 0; // the mark as last told to where the list is kept
    room.server = null; // an account's counts as the server last listed them
    room.mentions = 0; // unread messages that mention us
    room.dm = null; // a direct conversation: its people's handles
    room.dmNames = new Map(); // and their names, handle -> name, as we learn them
    room.replyTo = null; // the message the next one sent here answers: {id, name, text, deleted}
    rooms.set(name, room);
  }
  return room;
}

/** Added to the page (followed on the connection, if there is one), unless it is there. */
function addRoom(name) {
  const fresh = !rooms.has(name);
  const room = roomNamed(name);
  if (fresh && state.live) subscribe(room);
  return room;
}

// -- connection -------------------------------------------------------------------------------

/**
 * The connection joins one room by connecting: the shown one, unless the server refused
 * us in it (then another of ours, so that one room cannot keep us out of all the others).
 */
function connectAuth() {
  const home = current.problem ? ([...rooms.values()].find((r) => !r.problem) ?? current) : current;
  state.authRoom = home.name;
  return { room: home.name, name: state.name, key: state.key, ...home.joinPosition() };
}

function onConnectionState(connState, detail) {
  status.show(connState, detail);
  state.refused = connState === "refused";
  updateComposer();
  if (connState !== "connected") {
    for (const room of rooms.values()) room.lost(); // until each is joined again
    if (state.live) {
      // Who is here, and how many are where: the last known, until the next welcome.
      state.live = false;
      activeRooms.setStale(true);
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
  if (connState === "refused" && detail.message.startsWith("no such room") && state.welcomed) {
    // A room of ours became private to others while we were away: the others go on.
    const room = rooms.get(state.authRoom);
    room?.setProblem(detail.message);
    renderMyRooms();
    if ([...rooms.values()].some((r) => !r.problem)) conn.start();
  }
}

async function askNameAgain(message) {
  forgetName();
  const name = await nameDialog.ask({ first: true, current: state.name ?? "", error: message });
  setName(name);
  conn.start();
  textarea.focus();
}

socket.on("connect", () => {
  state.connection += 1;
});

socket.on("welcome", (welcome) => {
  setUserId(welcome.user_id);
  setAdmin(Boolean(welcome.admin));
  setName(welcome.name);
  const again = state.welcomed;
  state.live = true;
  state.welcomed = true;
  activeRooms.setStale(false);
  const home = roomNamed(welcome.room);
  joinedRoom(home, welcome);
  // Then every other room of ours, each from where it is (docs/protocol.md, `subscribe`).
  for (const room of rooms.values()) if (room !== home) subscribe(room);
  // Rooms added, and read, on the account's other devices while we were away.
  if (again && account) loadMyRooms();
});

/**
 * Ask to follow `name` too, from `position` ({since?, rev?}); "rate limited" is waited out.
 * `answered(ack)` gets the answer, or null if none came on this connection (the next
 * welcome subscribes again). It runs as the answer arrives, before any event after it: the
 * room must be joined then, for its first messages follow at once.
 */
function requestSubscribe(name, position, answered) {
  const connection = state.connection;
  socket.timeout(ACK_TIMEOUT).emit("subscribe", { room: name, ...position }, (err, ack) => {
    if (err || connection !== state.connection) return answered(null);
    if (!ack.ok && (ack.retry_after !== undefined || ack.error === "rate limited")) {
      const wait = Math.max(0, ack.retry_after ?? DEFAULT_RETRY_AFTER) * 1000;
      setTimeout(() => {
        if (connection === state.connection) requestSubscribe(name, position, answered);
        else answered(null);
      }, wait);
      return;
    }
    answered(ack);
  });
}

/** Follow `room` on this connection, catching up from what it holds. */
function subscribe(room) {
  requestSubscribe(room.name, room.joinPosition(), (ack) => {
    if (ack === null) return;
    if (rooms.get(room.name) !== room) {
      // Left while asking: leave on the server too.
      if (ack.ok) socket.emit("unsubscribe", { room: room.name });
      return;
    }
    if (!ack.ok) {
      // (Unless another request, say the form's, got us in meanwhile.)
      if (!room.live) room.setProblem(ack.error);
    } else {
      joinedRoom(room, ack);
    }
    renderMyRooms();
  });
}

/**
 * A welcome or subscribe answer for `room`: the server let us in, and it is one of ours from
 * now on. A room never read before counts from what it holds now (the reader opened it).
 */
function joinedRoom(room, join) {
  room.joined(join);
  if (room.dm !== null) learnNames(room, [...join.people, ...join.history]);
  if (room.lastRead === null) room.lastRead = room.timeline.ids.at(-1) ?? 0;
  myRooms.add(room.name, room.lastRead);
  recount(room);
  noteRead(room);
  renderMyRooms();
  for (const resolve of loadWaiters.get(room) ?? []) resolve();
  loadWaiters.delete(room);
}

/**
 * The reader's rooms as kept (the server's, for an account: on load and after a reconnect),
 * each added to the page with its read mark; those the page has already stay.
 */
async function loadMyRooms() {
  const listed = await myRooms.load();
  for (const entry of listed ?? []) {
    const room = addRoom(entry.room);
    if (entry.dm) room.dm = entry.dm;
    const mark = entry.last_read;
    if (mark !== null && (room.lastRead === null || mark > room.lastRead)) room.lastRead = mark;
    room.readSent = Math.max(room.readSent, mark ?? 0);
    if (entry.last_id !== undefined) {
      room.server = {
        lastRead: mark,
        lastId: entry.last_id,
        unread: entry.unread,
        mentions: entry.mentions,
      };
    }
    recount(room);
  }
  renderMyRooms();
}

socket.on("message", (msg) => {
  const room = rooms.get(msg.room);
  if (!room) return;
  room.message(msg);
  // Here only: a join's history and a gap fill are news from while we were away.
  notifier.message(room.name, msg);
});
// This account read a room on another tab or device (the server moved its mark).
socket.on("read", ({ room: name, last_read: lastRead }) => {
  const room = addRoom(name);
  myRooms.known(name);
  room.readSent = Math.max(room.readSent, lastRead);
  if (room.lastRead !== null && lastRead <= room.lastRead) return;
  room.lastRead = lastRead;
  recount(room);
  renderMyRooms();
});
// Someone started a direct conversation with us: one of our rooms, unread from its start.
socket.on("dm", ({ room: name, people }) => {
  const room = addRoom(name);
  myRooms.known(name);
  setDmPeople(room, people);
  if (room.lastRead === null) room.lastRead = 0;
  recount(room);
  renderMyRooms();
});
socket.on("changed", (msg) => {
  const room = rooms.get(msg.room);
  if (!room) return;
  room.applyChange(msg);
  // A deleted message that mentioned us does no more.
  recount(room);
  renderMyRooms();
});
socket.on("presence", (event) => {
  const room = rooms.get(event.room);
  if (!room) return;
  room.presence(event);
  if (room.dm !== null) {
    learnNames(room, event.people);
    renderMyRooms();
  }
});

socket.on("typing", (event) => {
  // Our own other tabs type as us: not shown. Someone else with our name is someone else.
  if (event.user_id === state.userId) return;
  // Without a room: the one the connection joined by connecting (docs/protocol.md).
  rooms.get(event.room ?? state.authRoom)?.typing.update(event);
});

// -- rooms ----------------------------------------------------------------------------------------

/**
 * Show the room called `name` (added to the page if it was not there). `address`: "push"
 * a history entry for it, "replace" the current one, or "keep" (the browser moved already).
 */
function show(name, address = "push") {
  const fresh = !rooms.has(name);
  const room = roomNamed(name);
  if (fresh && state.live) subscribe(room);
  if (room !== current) {
    if (current) {
      stopTyping(); // typing is for the room it is typed in
      current.draft = textarea.value;
      current.setShown(false);
    }
    current = room;
    room.setShown(true);
    textarea.value = room.draft;
    replyBar.show(room.replyTo);
    completer.close(); // it offered the other room's people
    autosize();
    updateComposer();
    updateHeader();
    const next = encodeURIComponent(roomPath(name));
    for (const link of [$("sign-in"), $("name-sign-in")]) if (link) link.href = `/signin?next=${next}`;
    activeRooms.setCurrent(name);
    notifyMenu.setRoom(name);
    if (!document.hidden) notifier.seen(name);
    updateTitle();
    renderMyRooms();
    if (room.atBottom) noteRead(room);
  }
  if (address === "push" && location.pathname !== roomPath(name)) {
    history.pushState({ room: name }, "", roomPath(name));
  } else if (address === "replace") {
    history.replaceState({ room: name }, "", roomPath(name));
  }
}

/** Leave a room of ours: out of the list, off the connection, off the page. */
function leave(name) {
  const room = rooms.get(name);
  if (!room || rooms.size < 2) return;
  myRooms.remove(name);
  rooms.delete(name);
  if (room.live && conn.connected) socket.emit("unsubscribe", { room: name });
  if (room === current) show([...rooms.keys()].sort()[0], "replace");
  room.remove();
  activeRooms.forget(name);
  renderMyRooms();
  // Its Leave button is gone with it: the keyboard goes on from the shown room.
  $("my-rooms").querySelector('[aria-current="page"]')?.focus();
}

function renderMyRooms() {
  const listed = [...rooms.values()].map((room) => ({
    name: room.name,
    label: labelOf(room),
    dm: room.dm !== null,
    unread: room.unread,
    mentions: room.mentions,
    problem: room.problem,
    muted: room.muted,
  }));
  myRoomsView.render(listed, current?.name);
  updateHeader();
}

/** What a room is called on the page: a direct conversation by its other people. */
function labelOf(room) {
  if (room.dm === null) return room.name;
  const others = room.dm.filter((handle) => handle !== account?.handle);
  return others.map((handle) => room.dmNames.get(handle) ?? `@${handle}`).join(", ") || room.name;
}

/** The people of a direct conversation (a `dm` answer or event): its handles and names. */
function setDmPeople(room, people) {
  room.dm = people.map((p) => p.handle).filter(Boolean);
  for (const p of people) if (p.handle) room.dmNames.set(p.handle, p.name);
}

/** The shown room's name in the header and the message box. */
function updateHeader() {
  if (!current) return;
  const dm = current.dm !== null;
  const label = labelOf(current);
  document.querySelector(".room-title .hash").hidden = dm;
  if ($("room-name").textContent !== label) $("room-name").textContent = label;
  const box = dm ? `Message ${label}` : `Message #${label}`;
  if ($("text-label").textContent !== box) $("text-label").textContent = box;
  textarea.placeholder = box;
}

/**
 * "Go to a room": the server says whether we may (subscribing is the check), and the
 * room is shown. "" when it is, else the reason.
 */
async function goTo(typed) {
  if (state.refused) {
    // No connection to ask, and none coming by itself: ask the history API, then go the
    // way of a page load, which connects again.
    const problem = await roomProblem(typed);
    if (!problem) location.assign(`/r/${encodeURIComponent(typed)}`);
    return problem;
  }
  // Room names are lowercase on the server: one of ours is found without asking.
  const known = rooms.get(typed.toLowerCase());
  if (known && !known.problem) {
    show(known.name);
    closeSidebarOnPick();
    return "";
  }
  if (!state.live) return "Not connected: try again once the connection is back.";
  const ack = await new Promise((resolve) =>
    requestSubscribe(typed, {}, (answer) => {
      if (answer?.ok) {
        // Under the name the server gives it ("Team" is #team).
        const room = roomNamed(answer.room);
        joinedRoom(room, answer);
        show(room.name);
      }
      resolve(answer);
    }),
  );
  if (ack === null) return "Could not reach the server, please try again.";
  if (!ack.ok) return ack.error;
  closeSidebarOnPick();
  return "";
}

new RoomForm({ form: $("room-form"), input: $("room-input"), error: $("room-error") }, goTo);

// -- direct messages --------------------------------------------------------------------------

/**
 * The "Message" button of a person in the online list: an account's, someone else's, for a
 * signed-in reader (the server lets only accounts talk directly). Null for the others.
 */
function messageButton(person, mine) {
  if (!account || mine || !person.handle || person.handle === account.handle) return null;
  const button = el("button", "link-btn person-message", "Message");
  button.type = "button";
  button.setAttribute("aria-label", `Message ${person.name} (@${person.handle})`);
  button.addEventListener("click", () => startDm(person.handle, button));
  return button;
}

/** Start (or find again) the direct conversation with `handle`, and show it. */
async function startDm(handle, button) {
  let ack;
  try {
    ack = state.live ? await call("dm", { with: [handle] }) : null;
  } catch {
    ack = null;
  }
  if (!ack?.ok) {
    // Said where it was asked; the button stays for another try.
    button.title = ack?.error ?? "Not connected: try again once the connection is back.";
    return;
  }
  const room = addRoom(ack.room);
  myRooms.known(ack.room);
  setDmPeople(room, ack.people);
  show(room.name);
  closeSidebarOnPick();
}

// Links to rooms (ours, the active ones) show them in this page, while it is connected or
// may be again; a refused page goes by loading the room's page.
$("sidebar").addEventListener("click", (event) => {
  const link = event.target.closest("a[data-room]");
  if (!link || state.refused) return;
  if (event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  event.preventDefault();
  show(link.dataset.room);
  closeSidebarOnPick();
});

/** On a narrow screen the side panel covers the room just picked: out of the way. */
function closeSidebarOnPick() {
  if (!app.classList.contains("sidebar-open")) return;
  setSidebar(false);
  textarea.focus(); // the panel's controls are hidden now; writing is what comes next
}

addEventListener("popstate", () => show(roomOfPath(location.pathname), "keep"));

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
  if (current.replyTo) {
    pending.reply_to = current.replyTo.id;
    setReply(current, null);
  }
  textarea.value = "";
  autosize();
  updateComposer();
  // The server ends our typing indicator when the message arrives.
  clearTimeout(state.typingIdle);
  state.typingSentAt = 0;
  current.outbox.add(pending);
}

$("composer").addEventListener("submit", (event) => {
  event.preventDefault();
  send();
  textarea.focus(); // after a click on the send button, keep typing
});

textarea.addEventListener("keydown", (event) => {
  if (event.isComposing) return;
  const plain = !event.shiftKey && !event.altKey && !event.ctrlKey && !event.metaKey;
  if (event.key === "Enter" && !event.shiftKey) {
    event.preventDefault();
    send();
  } else if (event.key === "ArrowUp" && plain && textarea.value === "") {
    // As in Slack and Zulip: the reader's newest message here, in its editor.
    if (current.timeline.editNewestMine()) event.preventDefault();
  } else if (event.key === "Escape" && plain && current.replyTo) {
    event.preventDefault();
    event.stopPropagation();
    setReply(current, null);
  }
});

// -- replying -----------------------------------------------------------------------------------

const replyBar = new ReplyBar({ bar: $("reply-bar"), text: $("reply-text"), cancel: $("reply-cancel") }, () => {
  setReply(current, null);
  textarea.focus();
});

/** The next message sent in `room` answers `target` ({id, name, text, deleted}), or nothing. */
function setReply(room, target) {
  room.replyTo = target;
  if (room === current) replyBar.show(target);
}

/** The reader chose to answer `msg` in `room`: said above the box, where writing goes on. */
function startReply(room, msg) {
  setReply(room, { id: msg.id, name: msg.name, text: msg.text, deleted: Boolean(msg.deleted) });
  if (room === current) textarea.focus();
}

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
  if (!current.live) return;
  if (!textarea.value.trim()) {
    stopTyping();
    return;
  }
  const now = Date.now();
  if (now - state.typingSentAt >= TYPING_EVERY) {
    socket.volatile.emit("typing", { typing: true, room: current.name });
    state.typingSentAt = now;
  }
  clearTimeout(state.typingIdle);
  state.typingIdle = setTimeout(stopTyping, TYPING_IDLE);
}

function stopTyping() {
  clearTimeout(state.typingIdle);
  if (state.typingSentAt && current.live) {
    socket.volatile.emit("typing", { typing: false, room: current.name });
  }
  state.typingSentAt = 0;
}

textarea.addEventListener("blur", stopTyping);

const completer = new MentionCompleter({
  box: textarea,
  form: $("composer"),
  people: () => current.people.people,
  me: () => state.userId,
});

// -- files --------------------------------------------------------------------------------------

new Uploader(
  { button: $("attach"), input: $("attach-input"), zone: $("main"), box: textarea },
  {
    room: () => current,
    // As the connection's auth says who we are: a guest by name and key, an account by its cookie.
    auth: () => (account ? {} : state.name ? { name: state.name, key: state.key } : null),
    caption: takeCaption,
    focusComposer: () => textarea.focus(),
  },
);

/** What goes with the next file sent: the text in the box as its caption, and the reply. */
function takeCaption() {
  const caption = {};
  // A text the server would refuse stays in the box (and the file goes without it).
  if (textarea.value.trim() !== "" && codePoints(textarea.value) <= limits.text) {
    caption.text = textarea.value;
    textarea.value = "";
    autosize();
    updateComposer();
    stopTyping();
  }
  if (current.replyTo) {
    caption.reply_to = current.replyTo.id;
    setReply(current, null);
  }
  return caption;
}

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
  for (const room of rooms.values()) room.timeline.refreshOwnership();
}

/** Whether we are an admin (the welcome says): may delete anyone's message, see earlier versions. */
function setAdmin(admin) {
  if (admin === state.admin) return;
  state.admin = admin;
  for (const room of rooms.values()) room.timeline.refreshOwnership();
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

// -- notifications ----------------------------------------------------------------------------

const roomSettings = new RoomSettings();
const notifier = new Notifier(
  { enable: $("notify-enable"), note: $("notify-note"), sound: $("notify-sound") },
  {
    me: () => state.userId,
    isMine,
    shown: () => current?.name,
    open: (name, id) => {
      const room = rooms.get(name);
      if (!room) return; // left since
      show(name);
      closeSidebarOnPick();
      flashMessage(room.parts.list, id);
    },
  },
  roomSettings,
);
const notifyMenu = new NotifyMenu(
  {
    button: $("room-notify"),
    panel: $("notify-menu"),
    title: $("notify-menu-title"),
    levels: [...document.querySelectorAll('#notify-menu input[name="notify-level"]')],
    mute: $("notify-mute"),
  },
  roomSettings,
  (name) => {
    const room = rooms.get(name);
    if (room) room.muted = roomSettings.muted(name);
    renderMyRooms();
  },
);

// -- unread -------------------------------------------------------------------------------------

/**
 * New messages in `room` (live, or caught up on after a reconnect). Others' count as unread
 * in its sidebar entry unless the reader sees them arrive (see noteRead); and in the tab's
 * title while the tab is hidden.
 */
function noteArrived(room, added) {
  if (room.dm !== null) learnNames(room, added);
  if (!noteRead(room)) {
    recount(room);
    renderMyRooms();
  }
  const fromOthers = added.filter((m) => !isMine(m)).length;
  if (!fromOthers) return;
  if (document.hidden) {
    state.unread += fromOthers;
    updateTitle();
  }
}

/**
 * The reader sees `room`'s newest message if it is shown, at its end, in a visible and
 * focused tab: read up to it, here at once, and where the list is kept soon after. Whether
 * it was.
 */
function noteRead(room) {
  if (room !== current || document.hidden || !document.hasFocus() || !room.atBottom) return false;
  if (!room.loaded) return false;
  const newest = room.timeline.ids.at(-1);
  if (newest !== undefined && (room.lastRead === null || newest > room.lastRead)) room.lastRead = newest;
  // The server takes a read only in a room the connection is in: told once joined again.
  if (room.live && room.lastRead !== null && room.lastRead > room.readSent) {
    room.readSent = room.lastRead;
    readMarks.mark(room.name, room.lastRead);
  }
  if (room.unread || room.mentions) {
    recount(room);
    renderMyRooms();
  }
  return true;
}

/** `room`'s unread and mention counts, from its read mark. */
function recount(room) {
  const { unread, mentions } = countUnread(room, isMine, mentionsUs);
  room.unread = unread;
  room.mentions = mentions;
}

/** A direct conversation's names, from people lists and messages (handle -> name). */
function learnNames(room, people) {
  for (const p of people) if (p.handle && room.dm.includes(p.handle)) room.dmNames.set(p.handle, p.name);
}

function updateTitle() {
  const title = `${current.dm === null ? "#" : ""}${labelOf(current)} · chatapp`;
  document.title = state.unread ? `(${state.unread}) ${title}` : title;
}

document.addEventListener("visibilitychange", () => {
  if (document.hidden) return;
  if (state.unread) {
    state.unread = 0;
    updateTitle();
  }
  if (current.atBottom) noteRead(current);
});
addEventListener("focus", () => noteRead(current));

// -- search -----------------------------------------------------------------------------------------

/** Rooms whose first history someone waits for (a search result in them): room -> [resolve]. */
const loadWaiters = new Map();

/** A promise that `room` shows its history (resolved at its join, or after ACK_TIMEOUT). */
function roomLoaded(room) {
  if (room.loaded) return Promise.resolve();
  return new Promise((resolve) => {
    if (!loadWaiters.has(room)) loadWaiters.set(room, []);
    loadWaiters.get(room).push(resolve);
    setTimeout(resolve, ACK_TIMEOUT);
  });
}

/**
 * Show message `id` of the room called `name` (a search result): the room shown as the
 * sidebar shows one (joined first, and so one of ours, if it is not yet: as "Go to a
 * room"), then older history loaded back to the message, which is scrolled to and
 * flashed. Null once it is shown, or why not.
 */
async function openMessage(name, id) {
  const held = rooms.get(name);
  if (!held || held.problem || state.refused) {
    const problem = await goTo(name);
    if (problem || state.refused) return problem || null; // refused: the room's page loads
  } else {
    show(name);
    closeSidebarOnPick();
  }
  const room = rooms.get(name);
  if (!room) return "that room is no longer one of yours";
  if (!room.loaded) {
    if (!state.live) return "Not connected: try again once the connection is back.";
    await roomLoaded(room);
    if (!room.loaded) return room.problem || "Could not reach the server, please try again.";
  }
  if (room !== current) return null; // the reader went elsewhere meanwhile
  return room.jumpTo(id);
}

/** A room as a search result names it: "#name", or a direct conversation's people. */
const searchLabel = (room) => `${room.dm === null ? "#" : ""}${labelOf(room)}`;

new SearchView(
  {
    form: $("search-form"),
    input: $("search-input"),
    panel: $("search-panel"),
    close: $("search-close"),
    scope: $("search-scope"),
    scopeLabel: $("search-scope-label"),
    status: $("search-status"),
    list: $("search-results"),
    more: $("search-more"),
  },
  {
    call,
    connected: () => conn.connected,
    here: () => ({ name: current.name, label: searchLabel(current) }),
    label: (name) => (rooms.has(name) ? searchLabel(rooms.get(name)) : `#${name}`),
    open: openMessage,
  },
);

// -- page chrome ------------------------------------------------------------------------------------

const copyLabel = $("copy-label");
$("copy-link").addEventListener("click", async () => {
  const ok = await copyText(location.origin + roomPath(current.name));
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
  show(pageRoom, "keep");
  await loadMyRooms();
  activeRooms.start();
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
