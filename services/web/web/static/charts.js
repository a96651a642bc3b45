// Draws the charts the server describes (GET <data-url> -> {charts: [...]}) with the vendored Chart.js.
// The data drawn is exactly the points in the JSON; the browser test compares them with the API's series.
(function () {
  "use strict";
  var palette = ["#2459c8", "#d9480f", "#2b8a3e", "#862e9c", "#c2255c", "#0b7285", "#5c940d", "#495057"];

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
            return { label: d.label, data: d.data, borderColor: palette[i % palette.length],
                     backgroundColor: palette[i % palette.length], pointRadius: d.data.length < 40 ? 2 : 0, borderWidth: 1.5, parsing: false };
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
        if (data.runs) {
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
