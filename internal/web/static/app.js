// provisiond dashboard: live refresh of [data-live] regions, auto-submitting
// filters and busy buttons. Pages work without it, only less live.
"use strict";

function live(el) {
  const src = el.dataset.live;
  const every = Number(el.dataset.interval) || 3000;
  const status = document.getElementById("live-status");
  let etag = "";
  async function poll() {
    if (document.hidden) return;
    let res;
    try {
      res = await fetch(src, { headers: etag ? { "If-None-Match": etag } : {}, cache: "no-store", credentials: "same-origin" });
    } catch (e) {
      if (status) status.textContent = "Connection lost; retrying.";
      return;
    }
    if (res.status === 401) { location.reload(); return; }
    if (res.status === 304 || !res.ok) return;
    etag = res.headers.get("ETag") || "";
    const before = el.querySelector("[data-matching], [data-count]");
    const was = before ? before.dataset.matching || before.dataset.count : null;
    el.innerHTML = await res.text();
    const after = el.querySelector("[data-matching], [data-count]");
    const now = after ? after.dataset.matching || after.dataset.count : null;
    if (status) {
      status.textContent = was !== now && now !== null ? "Updated: " + (after.dataset.matching !== undefined ? now + " machines" : now + " events") + "." : "";
    }
  }
  setInterval(poll, every);
  document.addEventListener("visibilitychange", () => { if (!document.hidden) poll(); });
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("[data-live]").forEach(live);
  document.querySelectorAll("select[data-autosubmit]").forEach((s) => {
    s.addEventListener("change", () => s.form.submit());
  });
  document.querySelectorAll("form[data-busy]").forEach((f) => {
    f.addEventListener("submit", () => {
      const b = f.querySelector("button[type=submit]");
      if (b) { b.disabled = true; b.textContent = "Working…"; }
    });
  });
});
