// One confirmation for every destructive action: a form with data-confirm asks before it is
// sent; one with data-confirm-name also wants the name typed. Without this script the server
// still refuses a form whose confirmation box is not ticked.
(function () {
  "use strict";
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!(form instanceof HTMLFormElement) || !form.hasAttribute("data-confirm")) return;
    var question = form.getAttribute("data-confirm");
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
