// "Go to a room": a room name typed in, which the server checks (its rule is not copied
// here); its refusal is shown under the field, in its words.

export class RoomForm {
  /**
   * `go(room)` resolves with "" once the room is shown (or the page goes to it), or with
   * the reason it is not.
   */
  constructor({ form, input, error }, go) {
    this.input = input;
    this.error = error;
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const room = input.value.trim().replace(/^#/, ""); // "#team" is how rooms are shown
      const problem = room ? await go(room) : "Please enter a room name.";
      if (problem) {
        error.textContent = problem;
        input.setAttribute("aria-invalid", "true");
        input.focus();
        return;
      }
      input.value = "";
      this.#clear();
    });
    input.addEventListener("input", () => this.#clear());
  }

  #clear() {
    this.error.textContent = "";
    this.input.removeAttribute("aria-invalid");
  }
}
