// Draws the charts the server describes (GET <data-url> -> {charts: [...]}) with the vendored Chart.js.
// The data drawn is exactly the points in the JSON; the browser test compares them with the API's series.
(function () {
  "use strict";
  var palette = ["#2459c8", "#d9480f", "#2b8a3e", "#862e9c", "#c2255c", "#0b7285", "#5c940d", "#495057"];
  var dashes = [[], [8, 4], [2, 3], [12, 3, 2, 3]];
  var points = ["circle", "rect", "triangle", "crossRot"];

  function draw(container, charts, prefix) {
    charts.forEach(function (c) {
      var box = document.createElement("div");
      box.className = "chart";
      var title = document.createElement("h3");
      title.textContent = (prefix || "") + c.title;
      var canvas = document.createElement("canvas");
      canvas.setAttribute("data-chart", c.id);
      if (prefix) canvas.setAttribute("data-prefix", prefix);
      box.appendChild(title);
      box.appendChild(canvas);
      container.appendChild(box);
      new Chart(canvas, {
        type: "line",
        data: {
          datasets: c.datasets.map(function (d, i) {
            // a distinct dash and point per series, so that one drawn exactly over another (queue_wait
            // under end_to_end when execution takes no time) still shows, and has its legend entry
            return { label: d.label, data: d.data, borderColor: palette[i % palette.length],
                     backgroundColor: palette[i % palette.length], borderDash: dashes[i % dashes.length],
                     pointStyle: points[i % points.length], pointRadius: d.data.length < 40 ? 3 : 0,
                     borderWidth: 2, parsing: false };
          })
        },
        options: {
          animation: false, responsive: true,
          scales: { x: { type: "linear", title: { display: true, text: c.x_label || "" } },
                    y: { title: { display: true, text: c.y_label || "" } } }
        }
      });
    });
  }

  function load(container) {
    fetch(container.getAttribute("data-url"), { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { if (!r.ok) throw new Error("HTTP " + r.status); return r.json(); })
      .then(function (data) {
        if (data.overlaid) {
          draw(container, data.overlaid);  // the runs on one chart per figure, shared axes
        } else if (data.runs) {
          data.runs.forEach(function (run) { draw(container, run.charts, "Run " + run.run_id + ": "); });
        } else {
          draw(container, data.charts || []);
        }
        if (!container.querySelector("canvas")) {
          var p = document.createElement("p");
          p.className = "empty";
          p.textContent = "No series recorded for this run.";
          container.appendChild(p);
        }
        container.setAttribute("data-loaded", "true");
      })
      .catch(function (err) {
        var p = document.createElement("p");
        p.className = "notice";
        p.textContent = "Could not load the chart data: " + err.message;
        container.appendChild(p);
        container.setAttribute("data-loaded", "error");
      });
  }

  document.querySelectorAll(".charts[data-url]").forEach(load);
})();
