// softdb head view: a heatmap per head, a layer and head picker, and each token's soft lookup.
// Reads the JSON in #heads-data; builds everything with textContent (no markup from data).
(function () {
  "use strict";
  var node = document.getElementById("heads-data");
  if (!node) return;
  var data = JSON.parse(node.textContent);
  var SPECIAL = {"[CLS]": 1, "[SEP]": 1, "[PAD]": 1};
  var toks = data.tokens, n = toks.length;
  var params = new URLSearchParams(window.location.search);
  var state = {
    layer: String(data.layers[0]),
    head: 0,
    token: Math.min(1, n - 1)
  };
  if (params.has("head") && +params.get("head") >= 0 && +params.get("head") < data.heads) state.head = +params.get("head");
  if (params.has("view_layer") && data.views[params.get("view_layer")]) state.layer = params.get("view_layer");

  function el(tag, attrs, text) {
    var e = document.createElement(tag);
    if (attrs) for (var k in attrs) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function fmt(x, d) { return Number(x).toPrecision(d || 4).replace(/\.?0+(e|$)/, "$1"); }
  function blue(w) { return "rgba(59,111,216," + Math.max(0, Math.min(1, w)).toFixed(3) + ")"; }
  function view() { return data.views[state.layer][state.head]; }

  // ------------------------------------------------------------------ picker
  var layerSel = document.getElementById("layer");
  data.layers.forEach(function (l) { layerSel.appendChild(el("option", {value: String(l)}, "layer " + l)); });
  layerSel.value = state.layer;
  layerSel.addEventListener("change", function () { state.layer = layerSel.value; drawThumbs(); draw(); });

  function drawThumbs() {
    var box = document.getElementById("head-thumbs");
    box.textContent = "";
    data.views[state.layer].forEach(function (v, h) {
      var b = el("button", {"class": "head" + (h === state.head ? " active" : ""), "data-head": String(h),
                            type: "button", title: "layer " + state.layer + " head " + h});
      var c = el("canvas", {width: String(n), height: String(n)});
      var ctx = c.getContext("2d");
      for (var i = 0; i < n; i++) for (var j = 0; j < n; j++) {
        ctx.fillStyle = "#fff"; ctx.fillRect(j, i, 1, 1);
        ctx.fillStyle = blue(v.weights[i][j]); ctx.fillRect(j, i, 1, 1);
      }
      b.appendChild(c);
      b.appendChild(el("span", null, "head " + h));
      b.addEventListener("click", function () { state.head = h; drawThumbs(); draw(); });
      box.appendChild(b);
    });
  }

  // ---------------------------------------------------------------- sentence
  function drawSentence() {
    var s = document.getElementById("sentence");
    s.textContent = "";
    toks.forEach(function (t, i) {
      var sp = el("span", {"class": "tok" + (SPECIAL[t] ? " special" : "") + (i === state.token ? " active" : ""),
                           "data-i": String(i), title: "position " + i}, t);
      sp.addEventListener("click", function () { pick(i); });
      s.appendChild(sp);
    });
  }

  // ----------------------------------------------------------------- heatmap
  function drawHeatmap() {
    var v = view(), tbl = document.getElementById("heatmap");
    document.getElementById("heat-title").textContent = "layer " + state.layer + " · head " + state.head;
    tbl.textContent = "";
    var head = el("thead"), hr = el("tr");
    hr.appendChild(el("th"));
    toks.forEach(function (t, j) { hr.appendChild(el("th", {"class": "col", "data-j": String(j)}, t)); });
    head.appendChild(hr); tbl.appendChild(head);
    var body = el("tbody");
    for (var i = 0; i < n; i++) {
      var tr = el("tr", {"data-i": String(i), "class": i === state.token ? "active" : ""});
      var th = el("th", {"class": "row", "data-i": String(i)}, toks[i]);
      th.addEventListener("click", pick.bind(null, i));
      tr.appendChild(th);
      for (var j = 0; j < n; j++) {
        var w = v.weights[i][j];
        var td = el("td", {"class": "cell", "data-weight": String(w), title: toks[i] + " → " + toks[j] + ": " + fmt(w)});
        td.style.background = blue(w);
        tr.appendChild(td);
      }
      body.appendChild(tr);
    }
    tbl.appendChild(body);
  }

  // ------------------------------------------------------------------ lookup
  function spark(soft, hard) {
    var W = 320, H = 60, c = el("canvas", {width: String(W), height: String(H), "class": "spark"});
    var ctx = c.getContext("2d");
    var all = soft.concat(hard), lo = Math.min.apply(null, all), hi = Math.max.apply(null, all), span = (hi - lo) || 1;
    [[soft, "#3b6fd8"], [hard, "#c0392b"]].forEach(function (p) {
      ctx.strokeStyle = p[1]; ctx.lineWidth = 1.5; ctx.beginPath();
      p[0].forEach(function (y, k) {
        var px = 2 + k * (W - 4) / Math.max(1, p[0].length - 1), py = H - 2 - (y - lo) / span * (H - 4);
        if (k) ctx.lineTo(px, py); else ctx.moveTo(px, py);
      });
      ctx.stroke();
    });
    return c;
  }

  function drawLookup() {
    var v = view(), i = state.token, box = document.getElementById("lookup");
    box.textContent = "";
    box.setAttribute("data-layer", state.layer); box.setAttribute("data-head", String(state.head));
    box.setAttribute("data-token", String(i));
    box.appendChild(el("h2", null, "“" + toks[i] + "” (position " + i + ") looks up layer " + state.layer + ", head " + state.head));
    var st = el("div", {"class": "stats"});
    var parts = [["entropy", fmt(v.entropy[i]) + " nats", "entropy"], ["effective rows 1/Σw²", fmt(v.effective_rows[i]), "eff"],
                 ["hard answer", toks[v.hard_row[i]] + " (" + v.hard_row[i] + ")", "hard-token"],
                 ["cosine soft·hard", fmt(v.cosine[i]), "cosine"]];
    parts.forEach(function (p) {
      var s = el("span", null, p[0] + " "); s.appendChild(el("b", {id: p[2]}, p[1])); st.appendChild(s);
    });
    box.appendChild(st);
    var order = v.weights[i].map(function (w, j) { return j; });
    order.sort(function (a, b) { return v.weights[i][b] - v.weights[i][a] || a - b; });
    var tbl = el("table", {id: "lookup-table"}), hr = el("tr");
    ["#", "retrieved token", "position", "weight", ""].forEach(function (h) { hr.appendChild(el("th", null, h)); });
    var thead = el("thead"); thead.appendChild(hr); tbl.appendChild(thead);
    var body = el("tbody");
    order.forEach(function (j, r) {
      var w = v.weights[i][j], tr = el("tr", {"class": "hit", "data-j": String(j)});
      tr.appendChild(el("td", {"class": "num"}, String(r + 1)));
      tr.appendChild(el("td", {"class": "tok"}, toks[j]));
      tr.appendChild(el("td", {"class": "num pos"}, String(j)));
      tr.appendChild(el("td", {"class": "num weight", "data-weight": String(w)}, fmt(w)));
      var bar = el("span", {"class": "bar"}), fill = el("span");
      fill.style.width = (100 * w).toFixed(2) + "%"; bar.appendChild(fill);
      var td = el("td"); td.appendChild(bar); tr.appendChild(td);
      body.appendChild(tr);
    });
    tbl.appendChild(body); box.appendChild(tbl);
    var ans = el("div", {"class": "answers"});
    ans.appendChild(el("h2", null, "soft answer vs hard answer"));
    var p = el("p");
    p.appendChild(el("span", {"class": "legend-soft"}, "soft"));
    p.appendChild(document.createTextNode(": the head's context vector, a blend of ≈" + fmt(v.effective_rows[i], 3) +
      " token values · "));
    p.appendChild(el("span", {"class": "legend-hard"}, "hard"));
    p.appendChild(document.createTextNode(": the value of “" + toks[v.hard_row[i]] + "” alone · " +
      v.soft[i].length + " components each"));
    ans.appendChild(p);
    ans.appendChild(spark(v.soft[i], v.hard[i]));
    box.appendChild(ans);
  }

  function pick(i) { state.token = i; drawSentence(); drawHeatmap(); drawLookup(); }
  function draw() { drawSentence(); drawHeatmap(); drawLookup(); }
  drawThumbs();
  draw();
  document.body.setAttribute("data-ready", "1");
})();
