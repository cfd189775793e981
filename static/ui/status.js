// The connection indicator: connected / reconnecting in N s (with "try now") / offline.

export class StatusView {
  constructor({ root, text, retry }, onTryNow) {
    this.root = root;
    this.text = text;
    this.retry = retry;
    this.ticker = null;
    retry.addEventListener("click", onTryNow);
  }

  show(state, detail = {}) {
    clearInterval(this.ticker);
    this.ticker = null;
    this.root.dataset.state = state;
    this.retry.hidden = !(state === "waiting" || state === "offline");
    switch (state) {
      case "connected":
        this.text.textContent = "Connected";
        break;
      case "connecting":
        this.text.textContent = "Connecting…";
        break;
      case "offline":
        this.text.textContent = "Offline: waiting for the network";
        break;
      case "refused":
        this.text.textContent = `Not connected: ${detail.message}`;
        break;
      case "waiting": {
        const tick = () => {
          const left = Math.max(0, Math.ceil((detail.until - Date.now()) / 1000));
          this.text.textContent = `Reconnecting in ${left} s`;
        };
        tick();
        this.ticker = setInterval(tick, 250);
        break;
      }
    }
  }
}
