// Gennaker web UI: live updates of the execution page (a progressive enhancement; the
// page shows everything without it). It listens to the execution's server-sent events
// and, when something changed, fetches the page's live part again (rendered on the
// server) and swaps it in. It never replaces the part while a field in it has focus.
(function () {
  "use strict";
  var live = document.getElementById("live");
  if (!live || !window.EventSource || !window.fetch) return;
  if (live.dataset.complete === "true") return;
  var source = null, timer = null, deferred = false, loading = false;

  function editing() {
    var active = document.activeElement;
    return active && live.contains(active) && /^(INPUT|SELECT|TEXTAREA)$/.test(active.tagName);
  }
  function refresh() {
    timer = null;
    if (editing()) { deferred = true; return; }
    if (loading) { schedule(); return; }
    loading = true;
    fetch(live.dataset.liveUrl, { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (response) { return response.ok ? response.text() : null; })
      .then(function (html) {
        loading = false;
        if (html === null) return;
        live.innerHTML = html;
        var head = live.querySelector("[data-complete]");
        if (head && head.dataset.complete === "true" && source) { source.close(); source = null; }
      })
      .catch(function () { loading = false; });
  }
  function schedule() { if (!timer) timer = setTimeout(refresh, 150); }

  source = new EventSource(live.dataset.eventsUrl);
  ["snapshot", "execution", "stage", "task"].forEach(function (name) {
    source.addEventListener(name, schedule);
  });
  // The server ends the stream with an `error` event when the session may no longer
  // read the execution; a reload then shows why.
  source.addEventListener("error", function (event) {
    if (event.data && source) { source.close(); source = null; }
  });
  live.addEventListener("focusout", function () {
    if (deferred) { deferred = false; schedule(); }
  });
})();
