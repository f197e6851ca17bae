/* softdb serve: the search page. All data shown goes into the page as text (textContent), never as markup. */
(function () {
  "use strict";
  var cfg = JSON.parse(document.getElementById("config").textContent);
  var $ = function (id) { return document.getElementById(id); };
  var q = $("q"), k = $("k"), mode = $("mode"), t = $("t"), tau = $("tau");
  var grid = cfg.grid, seq = 0, timer = null;
  k.max = String(cfg.max_k); $("ck").max = String(cfg.max_compare_k);
  q.maxLength = cfg.max_query_chars;
  t.min = "0"; t.max = String(grid.length - 1);

  function fmt(x, digits) {
    if (x === null || !isFinite(x)) { return "\u2014"; }
    var s = Number(x).toPrecision(digits);
    if (s.indexOf("e") < 0 && s.indexOf(".") >= 0) { s = s.replace(/\.?0+$/, ""); }
    return s;
  }
  function nearest(temp) {  /* the grid index closest to temp, in log scale: the slider snaps */
    var best = 0, bd = Infinity, lt = Math.log(temp);
    for (var i = 0; i < grid.length; i++) {
      var d = Math.abs(Math.log(grid[i]) - lt);
      if (d < bd) { bd = d; best = i; }
    }
    return best;
  }
  function temperature() { return grid[Math.round(Number(t.value))]; }
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) { e.className = cls; }
    if (text !== undefined && text !== null) { e.textContent = String(text); }
    return e;
  }
  function payloadText(p) {
    if (p === null || p === undefined) { return ""; }
    if (typeof p === "object") {
      var keys = ["summary", "title", "text"];
      for (var i = 0; i < keys.length; i++) { if (p[keys[i]]) { return String(p[keys[i]]); } }
      return JSON.stringify(p);
    }
    return String(p);
  }
  function params() {
    return "q=" + encodeURIComponent(q.value) + "&k=" + encodeURIComponent(k.value) +
      "&t=" + encodeURIComponent(String(temperature())) + "&mode=" + encodeURIComponent(mode.value);
  }
  function setStatus(node, text, isError) {
    node.textContent = text; node.className = isError ? "error" : "muted";
  }
  function showTau() { tau.textContent = fmt(temperature(), 4); tau.setAttribute("data-temperature", String(temperature())); }

  function render(r) {
    var body = $("hits").tBodies[0];
    while (body.firstChild) { body.removeChild(body.firstChild); }
    document.body.className = r.mode === "hard" ? "hard" : "";
    r.hits.forEach(function (h, i) {
      var tr = el("tr", "hit");
      tr.appendChild(el("td", "num", i + 1));
      tr.appendChild(el("td", "id", h.id));
      tr.appendChild(el("td", "num score", fmt(h.score, 4)));
      if (r.mode === "soft") {
        var wc = el("td", "num weight soft-only", fmt(h.weight, 4));
        wc.setAttribute("data-weight", String(h.weight));
        tr.appendChild(wc);
        var bc = el("td", "soft-only"), bar = el("span", "bar"), fill = el("span");
        fill.style.width = (100 * Math.min(1, Math.max(0, h.weight))).toFixed(2) + "%";
        bar.appendChild(fill); bc.appendChild(bar); tr.appendChild(bc);
      }
      tr.appendChild(el("td", "text", payloadText(h.payload)));
      body.appendChild(tr);
    });
    var stats = $("stats");
    while (stats.firstChild) { stats.removeChild(stats.firstChild); }
    if (r.mode === "soft") {
      var covered = r.hits.reduce(function (a, h) { return a + h.weight; }, 0);
      stats.appendChild(el("span", null, "top " + r.hits.length + " hold " + fmt(100 * covered, 3) + "% of the weight"));
    }
    stats.appendChild(el("span", null, "effective rows 1/\u03a3w\u00b2 " + fmt(r.effective_rows, 4)));
    stats.appendChild(el("span", null, "entropy " + fmt(r.entropy, 4) + " nats"));
    var res = $("hits");
    res.setAttribute("data-temperature", String(r.temperature));
    res.setAttribute("data-query", r.query);
    res.setAttribute("data-mode", r.mode);
    setStatus($("status"), (r.mode === "soft" ? "soft lookup" : "hard lookup (best rows by score)") +
      " over " + cfg.rows + " rows at \u03c4 = " + fmt(r.temperature, 4), false);
  }

  function search() {
    if (timer) { clearTimeout(timer); timer = null; }
    showTau();
    var share = "?" + params();
    $("share").setAttribute("href", share);
    if (!q.value.trim()) { setStatus($("status"), "type a query", false); return; }
    history.replaceState(null, "", share);
    var my = ++seq;
    var url = "api/search?q=" + encodeURIComponent(q.value) + "&k=" + encodeURIComponent(k.value) +
      "&temperature=" + encodeURIComponent(String(temperature())) + "&mode=" + encodeURIComponent(mode.value);
    fetch(url).then(function (resp) {
      return resp.json().then(function (j) { return {ok: resp.ok, j: j}; });
    }).then(function (o) {
      if (my !== seq) { return; }  /* a newer request is on its way */
      if (!o.ok) { setStatus($("status"), o.j.error || "error", true); return; }
      render(o.j);
    }).catch(function (e) { if (my === seq) { setStatus($("status"), "request failed: " + e, true); } });
  }
  function later() { if (timer) { clearTimeout(timer); } timer = setTimeout(search, 200); }

  function heat(w) {  /* white -> blue, on sqrt(weight) so small weights still show */
    var a = Math.sqrt(Math.max(0, Math.min(1, w)));
    var r = Math.round(255 - a * (255 - 59)), g = Math.round(255 - a * (255 - 111)), b = Math.round(255 - a * (255 - 216));
    return "rgb(" + r + "," + g + "," + b + ")";
  }
  function compare() {
    var lines = $("cq").value.split("\n").map(function (s) { return s.trim(); }).filter(function (s) { return s; });
    if (!lines.length) { setStatus($("cstatus"), "type one query per line", true); return; }
    var url = "api/compare?" + lines.map(function (s) { return "q=" + encodeURIComponent(s); }).join("&") +
      "&k=" + encodeURIComponent($("ck").value) + "&temperature=" + encodeURIComponent(String(temperature()));
    setStatus($("cstatus"), "\u2026", false);
    fetch(url).then(function (resp) {
      return resp.json().then(function (j) { return {ok: resp.ok, j: j}; });
    }).then(function (o) {
      var box = $("heatmap");
      while (box.firstChild) { box.removeChild(box.firstChild); }
      if (!o.ok) { setStatus($("cstatus"), o.j.error || "error", true); return; }
      var r = o.j, table = el("table", "heat"), head = el("tr");
      head.appendChild(el("th"));
      r.ids.forEach(function (id, j) { var th = el("th", "col", id); th.title = r.texts[j]; head.appendChild(th); });
      var thead = el("thead"); thead.appendChild(head); table.appendChild(thead);
      var tbody = el("tbody");
      r.queries.forEach(function (qq, i) {
        var tr = el("tr"), th = el("th", "row", qq);
        th.title = qq; tr.appendChild(th);
        r.weights[i].forEach(function (w, j) {
          var td = el("td", "cell", w >= 0.005 ? fmt(w, 2) : "");
          td.style.background = heat(w);
          td.title = qq + " \u2192 " + r.ids[j] + ": weight " + fmt(w, 4);
          td.setAttribute("data-weight", String(w));
          tr.appendChild(td);
        });
        tbody.appendChild(tr);
      });
      table.appendChild(tbody); box.appendChild(table);
      setStatus($("cstatus"), r.queries.length + " queries \u00d7 " + r.ids.length + " rows at \u03c4 = " + fmt(r.temperature, 4), false);
    }).catch(function (e) { setStatus($("cstatus"), "request failed: " + e, true); });
  }

  /* a shared URL (?q=...&k=...&t=...&mode=...) opens answered */
  var u = new URLSearchParams(window.location.search);
  t.value = String(nearest(u.has("t") && Number(u.get("t")) > 0 ? Number(u.get("t")) : cfg.temperature));
  if (u.has("k")) { k.value = u.get("k"); }
  if (u.get("mode") === "hard" || u.get("mode") === "soft") { mode.value = u.get("mode"); }
  if (u.has("q")) { q.value = u.get("q"); }
  showTau();
  $("form").addEventListener("submit", function (e) { e.preventDefault(); search(); });
  q.addEventListener("input", later);
  k.addEventListener("change", search);
  mode.addEventListener("change", search);
  t.addEventListener("input", search);
  $("compare").addEventListener("click", compare);
  if (q.value.trim()) { search(); } else { setStatus($("status"), "type a query", false); }
})();
