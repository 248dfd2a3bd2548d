// Follows a revocation on the follow page: polls the status JSON until
// no target is pending, and shows every target's state. Text only
// (textContent), never markup from the answer.
(function () {
  "use strict";
  var box = document.getElementById("follow");
  if (!box) { return; }
  var url = box.getAttribute("data-status-url");
  if (!url) { return; }
  var body = document.querySelector("#targets tbody");
  var verdict = document.getElementById("verdict");
  var progress = document.getElementById("progress");
  function cell(row, text, cls) {
    var td = document.createElement("td");
    td.textContent = text == null ? "" : String(text);
    if (cls) { td.className = cls; }
    row.appendChild(td);
  }
  function show(st) {
    verdict.textContent = st.verdict;
    while (body.firstChild) { body.removeChild(body.firstChild); }
    var pending = 0, failed = 0;
    (st.targets || []).forEach(function (t) {
      var row = document.createElement("tr");
      cell(row, t.kind); cell(row, t.name); cell(row, t.state, "state-" + t.state);
      cell(row, t.attempts || 0); cell(row, (t.note || "") + (t.last_error ? " " + t.last_error : ""));
      body.appendChild(row);
      if (t.state === "pending") { pending++; }
      if (t.state === "failed" || t.state === "not_honoured") { failed++; }
    });
    if (st.complete) {
      progress.textContent = "complete: every target is done";
      return true;
    }
    if (pending === 0) {
      progress.textContent = "finished: " + failed + " target(s) failed";
      return true;
    }
    progress.textContent = "following… " + pending + " target(s) pending";
    return false;
  }
  function poll() {
    fetch(url, { credentials: "same-origin", cache: "no-store" })
      .then(function (r) {
        if (r.status === 401 || r.status === 403 || r.redirected) {
          progress.textContent = "signed out: reload to sign in";
          return null;
        }
        return r.json();
      })
      .then(function (st) {
        if (st && !show(st)) { setTimeout(poll, 1000); }
      })
      .catch(function () {
        progress.textContent = "status not reachable; retrying";
        setTimeout(poll, 2000);
      });
  }
  poll();
})();
