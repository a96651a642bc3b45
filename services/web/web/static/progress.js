// Live progress of an experiment: polls its session-authenticated progress.json, updates the bar and each
// run's status in the tables, and reloads when the experiment ends (to show the finished runs' figures).
(function () {
  "use strict";
  var box = document.getElementById("progress");
  if (!box) return;
  var bar = document.getElementById("progress-bar");
  var text = document.getElementById("progress-text");
  var status = document.getElementById("experiment-status");
  var initial = box.getAttribute("data-status");
  var active = { pending: true, running: true };

  function tick() {
    fetch(box.getAttribute("data-url"), { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { return r.json(); })
      .then(function (p) {
        bar.max = Math.max(p.runs_total, 1);
        bar.value = p.runs_finished;
        var cur = p.detail && p.detail.current_run;
        var detail = cur ? " · now: run " + cur.id + " (" + cur.case_key + ", repetition " + cur.repetition + ", " + cur.status + ")" : "";
        text.textContent = p.status + ": " + p.runs_finished + " of " + p.runs_total + " runs finished" + detail;
        status.textContent = p.status;
        status.className = "status " + p.status;
        box.setAttribute("data-status", p.status);
        // the runs tables follow too: each run's status as the executor records it
        (p.runs || []).forEach(function (r) {
          var cell = document.querySelector('tr[data-run="' + r.id + '"] [data-run-status]');
          if (cell && cell.textContent !== r.status) {
            cell.textContent = r.status;
            cell.className = "status " + r.status;
          }
        });
        if (active[p.status]) {
          setTimeout(tick, 1000);
        } else if (active[initial]) {
          window.location.reload();  // show the finished runs and their figures
        }
      })
      .catch(function () { setTimeout(tick, 3000); });
  }
  tick();
})();
