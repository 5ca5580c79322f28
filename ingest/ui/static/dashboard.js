// Meterline dashboard: draws each [data-chart] element with uPlot from the page's JSON.
// The data is embedded by the server (<script type="application/json" id="chart-data">),
// so charts need no extra request and work offline.
(function () {
  "use strict";
  var holder = document.getElementById("chart-data");
  if (!holder || typeof uPlot === "undefined") { return; }
  var charts = JSON.parse(holder.textContent);
  var palette = ["#3b6fd8", "#e0803a", "#3aa37a", "#c0464f", "#8a5cc7", "#7a8a99", "#d4b83a", "#3ab3c7", "#999"];
  document.querySelectorAll("[data-chart]").forEach(function (target) {
    var chart = charts[target.getAttribute("data-chart")];
    if (!chart || chart.x.length === 0) { return; }
    var data = [chart.x];
    var series = [{}];
    chart.series.forEach(function (s, i) {
      data.push(s.values);
      series.push({ label: s.label, stroke: palette[i % palette.length], width: 2,
                    value: function (u, v) { return v == null ? "" : "$" + v.toFixed(2); } });
    });
    var width = Math.max(400, target.clientWidth || 900);
    new uPlot({ width: width, height: 260, series: series,
                scales: { x: { time: true } },
                axes: [{}, { values: function (u, vals) { return vals.map(function (v) { return "$" + v; }); } }] },
              data, target);
  });
})();
