// Popcorn console: the little JavaScript the pages use. Everything works without it except charts.
(function () {
  "use strict";

  // Charts: <div class="chart" data-figure='{"data": [...], "layout": {...}}'> drawn by plotly.js.
  function drawCharts() {
    if (typeof window.Plotly === "undefined") return;
    document.querySelectorAll(".chart[data-figure]").forEach(function (el) {
      var figure;
      try {
        figure = JSON.parse(el.getAttribute("data-figure"));
      } catch (err) {
        el.textContent = "This chart could not be read.";
        return;
      }
      window.Plotly.newPlot(el, figure.data, figure.layout, {
        responsive: true,
        displaylogo: false,
        modeBarButtonsToRemove: ["select2d", "lasso2d"],
      }).then(function () {
        el.setAttribute("data-drawn", "true");
      });
    });
  }

  // Buttons that change something important ask first: <button data-confirm="Revoke it?">.
  document.addEventListener("submit", function (event) {
    var button = event.submitter;
    var message = button && button.getAttribute("data-confirm");
    if (message && !window.confirm(message)) event.preventDefault();
  });

  // Filters that apply as soon as they change: <select data-autosubmit> (no inline
  // handlers: the Content-Security-Policy allows only scripts served from here).
  document.addEventListener("change", function (event) {
    var field = event.target;
    if (field && field.form && field.hasAttribute("data-autosubmit")) field.form.submit();
  });

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", drawCharts);
  } else {
    drawCharts();
  }
})();
