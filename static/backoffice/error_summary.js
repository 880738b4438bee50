// A form error was shown only next to its field, maybe far down a long page. Every form error
// is also listed at the top, each linked to its field, and the focus moves there (WCAG 3.3.1).
(function () {
  function summarize() {
    const content = document.getElementById("content-main") || document.getElementById("content");
    const source = document.getElementById("error-summary-title");
    if (!content || !source) return;
    const errors = Array.from(content.querySelectorAll("form ul.errorlist")).filter((ul) => ul.textContent.trim());
    const general = Array.from(content.querySelectorAll("form .errornote")).filter((e) => e.textContent.trim());
    if (!errors.length && !general.length) return;
    const box = document.createElement("div");
    box.id = "error-summary";
    box.className = "errornote error-summary";
    box.setAttribute("role", "alert");
    box.tabIndex = -1;
    const title = document.createElement("p");
    title.textContent = source.textContent;
    box.appendChild(title);
    const list = document.createElement("ul");
    for (const ul of errors) {
      const row = ul.closest(".form-row, .fieldBox, fieldset, div") || ul.parentElement;
      const field = row && row.querySelector("input:not([type=hidden]), select, textarea");
      const label = field && field.id ? document.querySelector(`label[for="${field.id}"]`) : null;
      const item = document.createElement("li");
      const text = (label ? label.textContent.replace(/:\s*$/, "") + ": " : "") + ul.textContent.trim();
      if (field && field.id) {
        const link = document.createElement("a");
        link.href = "#" + field.id;
        link.textContent = text;
        link.addEventListener("click", (e) => { e.preventDefault(); field.focus(); });
        item.appendChild(link);
      } else {
        item.textContent = text;
      }
      list.appendChild(item);
    }
    if (list.children.length) box.appendChild(list);
    content.insertBefore(box, content.firstChild);
    box.focus();
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", summarize);
  else summarize();
})();
