// A form marked data-submit-once sends once: its buttons are disabled right after the browser
// has taken the submission (a double click cannot send twice), and a spinner says it is working.
(function () {
  document.addEventListener("submit", function (event) {
    const form = event.target;
    if (!form.matches("form[data-submit-once]")) return;
    if (form.dataset.sending === "1") { event.preventDefault(); return; }
    form.dataset.sending = "1";
    // After this tick the submitter's name and value are already in the request being sent.
    setTimeout(function () {
      form.querySelectorAll("button[type=submit], input[type=submit]").forEach(function (b) {
        b.disabled = true;
      });
      form.classList.add("sending");
    }, 0);
  }, true);
})();
