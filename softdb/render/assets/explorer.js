/* softdb explorer: re-weights the hits exactly as the temperature slider moves.
   w_j(t) = exp(s_j / t - lse(t)), lse(t) precomputed over the whole table on the grid. */
function softdbExplorer(rootId) {
  "use strict";
  var root = document.getElementById(rootId);
  if (!root) { return; }
  var data = JSON.parse(root.querySelector("script.sdbx-data").textContent);
  var grid = data.grid;
  var slider = root.querySelector("input.sdbx-slider");
  if (!grid || !slider) { return; }
  var rows = root.querySelectorAll("tr.sdbx-hit");
  function fmt(x, digits) {
    if (!isFinite(x)) { return "\u2014"; }
    var s = Number(x).toPrecision(digits);
    if (s.indexOf("e") < 0 && s.indexOf(".") >= 0) { s = s.replace(/\.?0+$/, ""); }
    return s;
  }
  function update() {
    var i = Math.round(Number(slider.value));
    var t = grid.temperatures[i], lse = grid.lse[i], covered = 0;
    for (var j = 0; j < rows.length; j++) {
      var w = Math.exp(data.hits[j].score / t - lse);
      covered += w;
      var cell = rows[j].querySelector(".sdbx-w");
      cell.textContent = fmt(w, 4);
      cell.setAttribute("data-weight", String(w));
      rows[j].querySelector(".sdbx-bar > span").style.width = (100 * Math.min(1, w)).toFixed(2) + "%";
    }
    var tau = root.querySelector(".sdbx-tau");
    tau.textContent = fmt(t, 4);
    tau.setAttribute("data-temperature", String(t));
    root.querySelector(".sdbx-covered").textContent = fmt(100 * covered, 3) + "%";
    root.querySelector(".sdbx-eff").textContent = fmt(grid.effective_rows[i], 4);
  }
  slider.addEventListener("input", update);
  update();
}
