// Keyboard shortcuts for the review pages. Every element with data-key="K" is an action:
// a checkbox toggles, a text box takes focus, a link or button is clicked. The pages work
// without this file (plain links and forms); it only saves the mouse trip.
(function () {
  "use strict";
  function typing(el) {
    return el && (el.tagName === "TEXTAREA" || (el.tagName === "INPUT" && el.type !== "checkbox") || el.isContentEditable);
  }
  function toggleHelp() {
    var help = document.getElementById("help");
    if (help) { help.hidden = !help.hidden; }
  }
  document.addEventListener("DOMContentLoaded", function () {
    var helpButton = document.getElementById("help-toggle");
    if (helpButton) { helpButton.addEventListener("click", toggleHelp); }
  });
  document.addEventListener("keydown", function (event) {
    var target = event.target;
    if (typing(target)) {
      if (event.key === "Escape") { target.blur(); event.preventDefault(); }
      else if (event.key === "Enter" && (event.ctrlKey || event.metaKey) && target.form) {
        var save = target.form.querySelector('button[value="save"]');
        if (save) { save.click(); event.preventDefault(); }
      }
      return;
    }
    if (event.ctrlKey || event.metaKey || event.altKey) { return; }
    var key = event.key;
    if (key === "Escape") { var help = document.getElementById("help"); if (help) { help.hidden = true; } return; }
    if (key === "Enter") { key = "s"; }
    if (key === "ArrowRight") { key = "j"; }
    if (key === "ArrowLeft") { key = "k"; }
    if (key === "?") { toggleHelp(); event.preventDefault(); return; }
    var selector = '[data-key="' + (window.CSS && CSS.escape ? CSS.escape(key) : key) + '"]';
    var el = document.querySelector(selector);
    if (!el) { return; }
    event.preventDefault();
    if (el.tagName === "INPUT" && el.type === "checkbox") {
      el.checked = !el.checked;
      el.dispatchEvent(new Event("change", { bubbles: true }));
    } else if (el.tagName === "TEXTAREA" || el.tagName === "INPUT") {
      el.focus();
    } else {
      el.click();
    }
  });
})();
