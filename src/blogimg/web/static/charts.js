/* The overview's charts (uPlot): images per day, cost per day, provider latency p50/p95.
 *
 * Data: <script type="application/json" id="chart-data"> (overview.py's chart_series), which
 * htmx replaces on every change (#chart-series); the charts then take the new data in place.
 * Colours come from the page's CSS custom properties, so both themes read well; a theme
 * change or a resize rebuilds them.
 */
(function () {
  "use strict";
  var charts = {};
  var lastData = "";

  function css(name) {
    return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  }

  function readData() {
    var element = document.getElementById("chart-data");
    if (!element) {
      return null;
    }
    try {
      return { text: element.textContent, value: JSON.parse(element.textContent) };
    } catch (error) {
      return null;
    }
  }

  function money(value, step) {
    if (value === null || value === undefined) {
      return "–";
    }
    if (value === 0) {
      return "$0";
    }
    var digits = step ? Math.min(4, Math.max(2, Math.ceil(-Math.log10(step)))) : value < 0.1 ? 4 : 2;
    return "$" + value.toFixed(digits);
  }

  function duration(value) {
    if (value === null || value === undefined) {
      return "–";
    }
    return value >= 1000 ? (value / 1000).toFixed(1) + " s" : Math.round(value) + " ms";
  }

  function axes(format) {
    var stroke = css("--muted");
    var grid = { stroke: css("--grid"), width: 1 };
    return [
      { stroke: stroke, grid: grid, ticks: { stroke: grid.stroke }, font: "12px " + css("--font") },
      {
        stroke: stroke, grid: grid, ticks: { stroke: grid.stroke }, size: 64, font: "12px " + css("--font"),
        // The tick step says how many digits the labels need: "$0.05, $0.10", not "$0.0500, $0.10".
        values: function (u, values, axis, space, step) {
          return values.map(function (value) { return format(value, step); });
        },
      },
    ];
  }

  // A y scale from zero to a little above the highest value (to ``empty`` when all are zero).
  function fromZero(empty) {
    return function (u, min, max) {
      return [0, max > 0 ? max * 1.15 : empty];
    };
  }

  // Half a day either side, so the first and last days' bars and points are drawn whole.
  function padDays(chart, days) {
    if (days.length) {
      chart.setScale("x", { min: days[0] - 43200, max: days[days.length - 1] + 43200 });
    }
  }

  function specs(data) {
    var bars = window.uPlot.paths && window.uPlot.paths.bars ? window.uPlot.paths.bars({ size: [0.7, 28] }) : undefined;
    var total = data.succeeded.map(function (value, index) { return value + data.failed[index]; });
    return {
      images: {
        data: [data.day, total, data.succeeded],
        series: [
          {},
          // Drawn first and full height, so the part above "succeeded" reads as the failures.
          { label: "Failed", stroke: css("--fail"), fill: css("--fail"), width: 0, paths: bars, points: { show: false },
            value: function (u, value, series, index) { return index === null ? "–" : String(data.failed[index]); } },
          { label: "Succeeded", stroke: css("--ok"), fill: css("--ok"), width: 0, paths: bars, points: { show: false } },
        ],
        format: function (value) { return String(Math.round(value)); },
        range: fromZero(5),
      },
      cost: {
        data: [data.day, data.cost],
        series: [{}, { label: "Cost", stroke: css("--accent"), fill: css("--accent-soft"), width: 2,
                       value: function (u, value) { return money(value); } }],
        format: money,
        range: fromZero(1),
      },
      latency: {
        data: [data.day, data.p50, data.p95],
        series: [{}, { label: "p50", stroke: css("--accent"), width: 2, spanGaps: true, points: { show: true, size: 5 },
                       value: function (u, value) { return duration(value); } },
                 { label: "p95", stroke: css("--warn"), width: 2, dash: [6, 4], spanGaps: true, points: { show: true, size: 5 },
                   value: function (u, value) { return duration(value); } }],
        format: duration,
      },
    };
  }

  function build() {
    var read = readData();
    if (!read || !window.uPlot) {
      return;
    }
    lastData = read.text;
    var data = read.value;
    // Days with nothing are zeros: with no image and no cost in the whole period there is nothing to plot.
    var empty = !data.day.some(function (day, index) {
      return data.succeeded[index] || data.failed[index] || data.cost[index];
    });
    var emptyNote = document.getElementById("charts-empty");
    if (emptyNote) {
      emptyNote.hidden = !empty;
    }
    var all = specs(data);
    Object.keys(charts).forEach(function (name) { charts[name].destroy(); });
    charts = {};
    document.querySelectorAll("[data-chart]").forEach(function (element) {
      element.closest(".chart").hidden = empty;
      if (empty) {
        return;
      }
      var name = element.getAttribute("data-chart");
      var spec = all[name];
      var width = Math.max(240, element.clientWidth);
      charts[name] = new window.uPlot({
        width: width, height: 200, series: spec.series, axes: axes(spec.format),
        scales: { x: { time: true }, y: spec.range ? { range: spec.range } : {} },
        cursor: { drag: { x: false, y: false } },
        legend: { live: true },
      }, spec.data, element);
      padDays(charts[name], data.day);
    });
  }

  function update() {
    var read = readData();
    if (!read || read.text === lastData) {
      return;
    }
    var hadNone = Object.keys(charts).length === 0;
    var all = specs(read.value);
    if (hadNone) {
      build();
      return;
    }
    lastData = read.text;
    Object.keys(charts).forEach(function (name) {
      charts[name].setData(all[name].data);
      padDays(charts[name], read.value.day);
    });
  }

  var resizeTimer = null;
  function onResize() {
    window.clearTimeout(resizeTimer);
    resizeTimer = window.setTimeout(function () {
      Object.keys(charts).forEach(function (name) {
        var element = document.querySelector('[data-chart="' + name + '"]');
        if (element) {
          charts[name].setSize({ width: Math.max(240, element.clientWidth), height: 200 });
        }
      });
    }, 100);
  }

  document.addEventListener("DOMContentLoaded", build);
  document.addEventListener("blogimg:theme", build);
  document.body.addEventListener("htmx:afterSettle", function (event) {
    if (event.target && event.target.id === "chart-series") {
      update();
    }
  });
  window.addEventListener("resize", onResize);
})();
