// The idle timeout, said in the page (security/session.py): a warning before the session ends
// with "Stay signed in", a note when it has ended, and what was typed kept in this browser
// (sessionStorage, per page) and put back after signing in again on the same page.
(function () {
  const root = document.getElementById("session-timer");
  const draftKey = "draft:" + window.location.pathname + window.location.search;
  const SKIP = new Set(["csrfmiddlewaretoken", "password", "confirm", "step"]);

  function fields() {
    return Array.from(document.querySelectorAll("#content form input, #content form textarea, #content form select"))
      .filter((el) => el.name && !SKIP.has(el.name) && !["hidden", "password", "file", "submit", "button"].includes(el.type));
  }
  function saveDraft() {
    const values = {};
    for (const el of fields()) {
      if (el.type === "checkbox" || el.type === "radio") { if (el.checked) (values[el.name] = values[el.name] || []).push(el.value); }
      else if (el.value) values[el.name] = el.value;
    }
    if (Object.keys(values).length) sessionStorage.setItem(draftKey, JSON.stringify(values));
  }
  function restoreDraft() {
    const saved = sessionStorage.getItem(draftKey);
    if (!saved || !root) return;  // only once signed in again
    sessionStorage.removeItem(draftKey);
    const values = JSON.parse(saved);
    let restored = 0;
    for (const el of fields()) {
      if (!(el.name in values)) continue;
      if (el.type === "checkbox" || el.type === "radio") el.checked = values[el.name].includes(el.value);
      else el.value = values[el.name];
      restored += 1;
    }
    const note = document.getElementById("draft-restored");
    if (restored && note) note.hidden = false;
  }
  restoreDraft();
  if (!root) return;

  const idle = Number(root.dataset.idle);
  const warnBefore = Math.min(120, Math.floor(idle / 4));
  const banner = document.getElementById("session-warning");
  const ended = document.getElementById("session-ended-here");
  let deadline = Date.now() + idle * 1000;
  let timer = null;

  function schedule() {
    window.clearTimeout(timer);
    const wait = deadline - warnBefore * 1000 - Date.now();
    timer = window.setTimeout(check, Math.max(0, wait));
  }
  async function ask(method) {
    const headers = { Accept: "application/json" };
    if (method === "POST") headers["X-CSRFToken"] = root.dataset.csrf;
    const response = await fetch(method === "POST" ? root.dataset.keepalive : root.dataset.status, { method, headers, credentials: "same-origin" });
    return (await response.json()).remaining;
  }
  async function check() {
    let remaining;
    try { remaining = await ask("GET"); } catch (e) { timer = window.setTimeout(check, 5000); return; }
    deadline = Date.now() + remaining * 1000;
    if (remaining <= 0) { end(); return; }
    if (remaining > warnBefore + 5) { banner.hidden = true; schedule(); return; }  // another tab was used
    const at = new Date(deadline).toLocaleTimeString(document.documentElement.lang || undefined, { hour: "2-digit", minute: "2-digit" });
    banner.querySelector(".session-at").textContent = at;
    banner.hidden = false;
    saveDraft();
    timer = window.setTimeout(check, Math.max(1000, Math.min(remaining * 1000, 15000)));
  }
  function end() {
    saveDraft();
    banner.hidden = true;
    ended.hidden = false;
    ended.focus();
  }
  document.getElementById("session-stay").addEventListener("click", async () => {
    try {
      const remaining = await ask("POST");
      deadline = Date.now() + remaining * 1000;
      if (remaining <= 0) { end(); return; }
      banner.hidden = true;
      schedule();
    } catch (e) { /* the next check says how it stands */ }
  });
  // A form sent after the end would only reach the login page: keep what was typed first.
  document.addEventListener("submit", () => { if (Date.now() >= deadline) saveDraft(); }, true);
  schedule();
})();
