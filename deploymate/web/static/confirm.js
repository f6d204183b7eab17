// One confirmation for every destructive action: a form with data-confirm asks before it is
// sent; one with data-confirm-name also wants the name typed. With this script the dialog is the
// confirmation, so the form's "confirm" box is hidden and ticked on the way out; without it the
// box stays and the server refuses a form whose box is not ticked.
(function () {
  "use strict";
  function adopt() {
    document.querySelectorAll("form[data-confirm]").forEach(function (form) {
      var box = form.querySelector('input[name="confirm"]');
      if (!box) return;
      box.required = false;
      var label = box.closest("label");
      if (label) label.hidden = true;
    });
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", adopt);
  else adopt();
  document.addEventListener("dm:content", adopt); // sections swapped in by a live page
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!(form instanceof HTMLFormElement) || !form.hasAttribute("data-confirm")) return;
    var question = form.getAttribute("data-confirm");
    var data = form.querySelector('input[name="volumes"]');
    if (data && data.checked) question += " Its volumes and their data are removed too.";
    var name = form.getAttribute("data-confirm-name");
    var ok = name
      ? window.prompt(question + "\n\nType " + name + " to confirm:") === name
      : window.confirm(question);
    if (!ok) {
      event.preventDefault();
      return;
    }
    var box = form.querySelector('input[name="confirm"]');
    if (box) box.checked = true;
  }, true);
})();
