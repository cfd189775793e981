// The shown room's notification menu in its header: all messages, mentions only or
// nothing, and mute. A small panel of plain radio buttons and a checkbox, so that the
// keyboard and screen readers work with it as with any form.

export class NotifyMenu {
  /**
   * @param {object} dom  button (opens it), panel, title, levels (the radio inputs), mute
   * @param {RoomSettings} settings  where the choices are kept
   * @param {function} changed  changed(room): a room's choice changed
   */
  constructor(dom, settings, changed) {
    this.dom = dom;
    this.settings = settings;
    this.changed = changed;
    this.room = null;
    dom.button.addEventListener("click", () => this.setOpen(dom.panel.hidden));
    for (const input of dom.levels) {
      input.addEventListener("change", () => {
        if (input.checked) this.#set({ level: input.value });
      });
    }
    dom.mute.addEventListener("change", () => this.#set({ muted: dom.mute.checked }));
    dom.panel.addEventListener("keydown", (event) => {
      if (event.key === "Escape") {
        event.stopPropagation();
        this.setOpen(false);
        dom.button.focus();
      }
    });
    document.addEventListener("pointerdown", (event) => {
      if (!dom.panel.hidden && !dom.panel.contains(event.target) && !dom.button.contains(event.target)) {
        this.setOpen(false);
      }
    });
  }

  /** The menu is about the shown room. */
  setRoom(room) {
    this.room = room;
    this.dom.title.textContent = `Notify me in #${room}`;
    this.#sync();
  }

  setOpen(open) {
    this.dom.panel.hidden = !open;
    this.dom.button.setAttribute("aria-expanded", String(open));
    if (open) (this.dom.levels.find((i) => i.checked) ?? this.dom.levels[0]).focus();
  }

  #set(change) {
    if (!this.room) return;
    this.settings.set(this.room, change);
    this.#sync();
    this.changed(this.room);
  }

  #sync() {
    const room = this.room;
    const level = this.settings.level(room);
    const muted = this.settings.muted(room);
    for (const input of this.dom.levels) {
      input.checked = input.value === level;
      input.disabled = muted; // a muted room never notifies, whatever its level says
    }
    this.dom.mute.checked = muted;
    this.dom.button.classList.toggle("muted", muted);
    const what = muted ? "muted" : { all: "all messages", mentions: "mentions only", none: "nothing" }[level];
    this.dom.button.setAttribute("aria-label", `Notifications for #${room}: ${what}`);
    this.dom.button.title = `Notifications: ${what}`;
  }
}
