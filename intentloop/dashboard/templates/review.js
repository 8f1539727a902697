// The review page's keys: 1-9 choose a label, Enter accepts the suggestion, S skips, U undoes.
// Each key submits the form button it names (requestSubmit keeps the button's name=value), so the
// server sees exactly what a click sends; every button also works with scripts off.
// Keys are ignored while typing in a field, with Ctrl/Alt/Meta held (browser shortcuts), on key
// repeat, and after one submit until the next page loads (a double press must not decide twice).
"use strict";
(function () {
  let busy = false;

  function typing(el) {
    return el instanceof HTMLElement &&
      (el.isContentEditable || ["INPUT", "SELECT", "TEXTAREA"].includes(el.tagName));
  }

  function press(button) {
    if (!button || button.disabled || !button.form) return false;
    busy = true;
    button.form.requestSubmit(button);
    return true;
  }

  function target(key) {
    if (/^[1-9]$/.test(key)) return document.querySelector(`#choices button[data-key="${key}"]`);
    if (key === "Enter") return document.getElementById("accept");
    const lower = key.toLowerCase();
    if (lower === "s") return document.getElementById("skip");
    if (lower === "u") return document.querySelector("#undo button");
    return null;
  }

  document.addEventListener("keydown", (event) => {
    if (busy || event.repeat || event.ctrlKey || event.altKey || event.metaKey) return;
    if (typing(event.target)) return;
    // Enter on a focused button or link keeps its own meaning (it activates that control).
    if (event.key === "Enter" && event.target instanceof HTMLElement &&
        ["BUTTON", "A"].includes(event.target.tagName)) return;
    if (press(target(event.key))) event.preventDefault();
  });

  // Back/forward cache: a restored page must take keys again.
  window.addEventListener("pageshow", () => { busy = false; });
})();
