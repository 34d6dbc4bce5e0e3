// provisiond dashboard: live refresh of [data-live] regions, auto-submitting
// filters and busy buttons. Pages work without it, only less live.
"use strict";

// ago shows each time[data-ago] relative to now; the server sends absolute
// times so that an unchanged fragment stays byte-identical.
function ago(root) {
  const now = Date.now();
  root.querySelectorAll("time[data-ago]").forEach((t) => {
    const at = Date.parse(t.getAttribute("datetime"));
    if (isNaN(at)) return;
    if (!t.title) t.title = t.textContent;
    const s = Math.max(0, Math.round((now - at) / 1000));
    t.textContent = s < 60 ? s + "s ago" : s < 3600 ? Math.floor(s / 60) + "m ago" :
      s < 172800 ? Math.floor(s / 3600) + "h ago" : Math.floor(s / 86400) + "d ago";
  });
}

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
    ago(el);
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
  ago(document);
  setInterval(() => ago(document), 5000);
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
