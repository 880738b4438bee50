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
      // A single push waits for the upstream (up to its timeout): say so beside the spinner.
      const note = form.dataset.sendingNote;
      const row = form.querySelector(".submit-row");
      if (note && row && !row.querySelector(".sending-note")) {
        const span = document.createElement("span");
        span.className = "sending-note";
        span.setAttribute("role", "status");
        span.textContent = note;
        row.appendChild(span);
      }
    }, 0);
  }, true);
})();

// Under the Content-Security-Policy no inline handler runs (onclick="...", onchange="..."):
// the pages mark what they need and these listeners do it.
(function () {
  // <a data-back>: back to the page before (the confirmation pages' "No, take me back").
  document.addEventListener("click", function (event) {
    const link = event.target.closest && event.target.closest("a[data-back]");
    if (!link) return;
    event.preventDefault();
    window.history.back();
  });
  // <select data-submit-on-change>: the header's language switch sends its form at once.
  document.addEventListener("change", function (event) {
    const select = event.target;
    if (select.matches && select.matches("select[data-submit-on-change]")) select.form.submit();
  });
})();
