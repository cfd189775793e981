// "My rooms": the rooms the reader keeps in the sidebar, every one of them followed on the
// page's one connection. For now this browser keeps them (localStorage), for guests and
// accounts alike; this module is the one place that loads and saves them, so that keeping
// an account's on the server later changes this file only.

const STORAGE = "chatapp.rooms";

/** Without storage (some privacy modes) the list lasts for this page only. */
let memory = [];

function load() {
  try {
    const stored = JSON.parse(localStorage.getItem(STORAGE) ?? "[]");
    if (Array.isArray(stored)) return stored.filter((room) => typeof room === "string");
  } catch {
    return memory; // no storage; or not ours (then the next save replaces it)
  }
  return [];
}

function save(rooms) {
  memory = rooms;
  try {
    localStorage.setItem(STORAGE, JSON.stringify(rooms));
  } catch {
    // As above: this page only.
  }
}

/** The reader's rooms, in the order they were added. */
export function myRooms() {
  return load();
}

// Each change is made to the list as stored now, not to the one this page loaded: the
// rooms another tab added or left meanwhile stay as that tab left them.

export function addMyRoom(room) {
  const rooms = load();
  if (!rooms.includes(room)) save([...rooms, room]);
}

export function removeMyRoom(room) {
  const rooms = load();
  if (rooms.includes(room)) save(rooms.filter((r) => r !== room));
}
