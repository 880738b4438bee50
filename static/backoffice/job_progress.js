// Polls the job's progress while it runs; reloads once it has finished to show every result.
(function () {
  const root = document.getElementById("job");
  if (!root || root.dataset.finished === "1") return;
  const url = root.dataset.progressUrl;
  const set = (id, value) => { const el = document.getElementById(id); if (el) el.textContent = value; };
  async function tick() {
    try {
      const response = await fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" });
      // Redirected to the login page (the session ended): reload, so the page says so.
      if (response.redirected) { window.location.reload(); return; }
      if (response.ok) {
        const job = await response.json();
        const bar = document.getElementById("job-bar");
        bar.max = job.total || 1;
        bar.value = job.processed;
        set("job-percent", job.percent + "%");
        set("job-state", job.state_label);
        document.getElementById("job-state").dataset.state = job.state;
        set("job-done", job.processed);
        set("job-succeeded", job.succeeded);
        set("job-failed", job.failed);
        set("job-cancelled", job.cancelled);
        set("job-skipped", job.skipped);
        set("job-prepared", job.prepared || 0);
        document.getElementById("job-preparing").hidden = !job.preparing;
        const paused = document.getElementById("job-paused");
        if (paused) { paused.textContent = job.paused || ""; paused.hidden = !job.paused; }
        if (job.finished) { window.location.reload(); return; }
      }
    } catch (e) { /* the next tick tries again */ }
    window.setTimeout(tick, 1000);
  }
  window.setTimeout(tick, 500);
})();
