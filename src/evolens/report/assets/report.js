/* evolens report: draws the interactive parts from the JSON data block. No network, no innerHTML: every string
   from a model or a dataset reaches the page through textContent or setAttribute. */
(function () {
  "use strict";
  var DATA = null;
  var PROB_SCALE = 1;
  var SVGNS = "http://www.w3.org/2000/svg";
  var selected = {}; // item index -> step

  // ------------------------------------------------------------------ helpers
  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    if (attrs) {
      Object.keys(attrs).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    }
    if (text !== undefined && text !== null) { node.textContent = String(text); }
    return node;
  }
  function svgEl(tag, attrs, text) {
    var node = document.createElementNS(SVGNS, tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (text !== undefined && text !== null) { node.textContent = String(text); }
    return node;
  }
  function hexToRgb(hex) {
    var n = parseInt(hex.slice(1), 16);
    return [(n >> 16) & 255, (n >> 8) & 255, n & 255];
  }
  function ramp(stops, t) {
    if (!(t >= 0)) { t = 0; }
    if (t > 1) { t = 1; }
    var x = t * (stops.length - 1);
    var i = Math.min(Math.floor(x), stops.length - 2);
    var a = hexToRgb(stops[i]);
    var b = hexToRgb(stops[i + 1]);
    var f = x - i;
    return [0, 1, 2].map(function (c) { return Math.round(a[c] + (b[c] - a[c]) * f); });
  }
  function rgb(c) { return "rgb(" + c[0] + "," + c[1] + "," + c[2] + ")"; }
  function inkFor(c) { return (0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]) < 140 ? "#fff" : "#111"; }
  // A token made readable on its own: whitespace visible, empty tokens marked.
  function label(s) {
    if (s === "") { return "\u2205"; }
    var shown = s.replace(/\n/g, "\u21b5").replace(/\t/g, "\u21e5").replace(/\r/g, "\u240d");
    return shown.trim() === "" ? shown.replace(/ /g, "\u2423") : shown;
  }
  function vocab(item, id) {
    var s = item.vocab[String(id)];
    return s === undefined ? "<" + id + ">" : s;
  }
  function fmt(v, digits) { return v === null || v === undefined ? "\u2014" : Number(v).toFixed(digits); }
  // A value short enough for a table cell: two decimals, or one significant digit when everything is tiny.
  function short(v, max) { return max >= 0.05 || v === 0 ? v.toFixed(2) : v.toExponential(0); }
  function pct(p4) { return (100 * p4 / PROB_SCALE).toFixed(1) + "%"; }

  // ------------------------------------------------------------ token colours
  function seriesColour(series, item, value) {
    if (value === null || value === undefined) { return null; }
    if (series.kind === "category") {
      var idx = series.categories.indexOf(value);
      return hexToRgb(DATA.palettes.categories[idx % DATA.palettes.categories.length]);
    }
    var lo = series.kind === "layer" ? 0 : series.min;
    var hi = series.kind === "layer" ? item.n_layers : series.max;
    return ramp(DATA.palettes.values, hi > lo ? (value - lo) / (hi - lo) : 0);
  }
  // A token's stages across layers as a background running from layer 0 (left) to the last layer (right).
  function stageGradient(item, step) {
    var runs = item.analysis.stages[step];
    var total = item.n_layers + 1;
    var stops = runs.map(function (r) {
      var colour = DATA.palettes.stages[String(r[0])];
      return colour + " " + (100 * r[1] / total).toFixed(2) + "% " + (100 * (r[2] + 1) / total).toFixed(2) + "%";
    });
    return "linear-gradient(to right, " + stops.join(", ") + ")";
  }
  function stageText(item, step) {
    return item.analysis.stages[step].map(function (r) {
      return DATA.stage_names[String(r[0])] + " " + (r[1] === r[2] ? r[1] : r[1] + "\u2013" + r[2]);
    }).join(", ");
  }
  function colourTokens(key) {
    var series = DATA.series.filter(function (s) { return s.key === key; })[0];
    document.querySelectorAll(".text[data-item]").forEach(function (box) {
      var item = DATA.items[Number(box.getAttribute("data-item"))];
      var values = item.values[key] || null;
      box.querySelectorAll(".tok").forEach(function (span) {
        var step = Number(span.getAttribute("data-step"));
        var tip = ["step " + step];
        if (series.kind === "stages") {
          var staged = item.analysis !== null && item.analysis !== undefined;
          span.style.background = staged ? stageGradient(item, step) : "";
          span.style.color = "";
          tip.push("stages: " + (staged ? stageText(item, step) : "not analysed"));
        } else {
          var value = values ? values[step] : null;
          var colour = seriesColour(series, item, value);
          span.style.background = colour ? rgb(colour) : "";
          span.style.color = colour ? inkFor(colour) : "";
          tip.push(series.label + ": " + (value === null || value === undefined ? "none" : value));
        }
        if (item.analysis) {
          var muts = item.analysis.mutations[step].map(function (m) { return m.layer; });
          tip.push("mutation layers: " + (muts.length ? muts.join(", ") : "none"));
        }
        DATA.flags.forEach(function (name) {
          if (item.flags[name] && item.flags[name][step]) { tip.push(name); }
        });
        tip.push("p(final) " + pct(item.p[step][item.n_layers]));
        span.setAttribute("title", tip.join(" \u00b7 "));
      });
    });
    drawScale(series);
    document.querySelectorAll("button.colour-toggle").forEach(function (b) {
      b.setAttribute("aria-pressed", b.getAttribute("data-series") === key ? "true" : "false");
    });
  }
  function drawScale(series) {
    var host = document.getElementById("scale");
    host.textContent = "";
    host.appendChild(el("span", { "class": "note" }, series.description));
    if (series.kind === "stages") {
      ["0", "1", "2", "-1"].forEach(function (code) {
        var sw = el("span", { "class": "swatch" });
        sw.style.background = DATA.palettes.stages[code];
        var wrap = el("span");
        wrap.appendChild(sw);
        wrap.appendChild(document.createTextNode(DATA.stage_names[code]));
        host.appendChild(wrap);
      });
      return;
    }
    if (series.kind === "category") {
      series.categories.forEach(function (c, i) {
        var sw = el("span", { "class": "swatch" });
        sw.style.background = DATA.palettes.categories[i % DATA.palettes.categories.length];
        var wrap = el("span");
        wrap.appendChild(sw);
        wrap.appendChild(document.createTextNode(String(c)));
        host.appendChild(wrap);
      });
      return;
    }
    var bar = el("span", { "class": "bar" });
    bar.style.background = "linear-gradient(to right," + DATA.palettes.values.join(",") + ")";
    host.appendChild(el("span", null, series.kind === "layer" ? "layer 0" : fmt(series.min, 3)));
    host.appendChild(bar);
    host.appendChild(el("span", null, series.kind === "layer" ? "last layer" : fmt(series.max, 3)));
  }

  // ------------------------------------------------------------- the charts
  function axes(svg, box, nLayers, yMax, yLabel) {
    var x0 = box.l, x1 = box.w - box.r, y0 = box.h - box.b, y1 = box.t;
    svg.appendChild(svgEl("line", { x1: x0, y1: y0, x2: x1, y2: y0, stroke: "#444" }));
    svg.appendChild(svgEl("line", { x1: x0, y1: y0, x2: x0, y2: y1, stroke: "#444" }));
    var every = Math.max(1, Math.ceil(nLayers / 16));
    for (var l = 0; l <= nLayers; l += every) {
      var x = x0 + (x1 - x0) * l / nLayers;
      svg.appendChild(svgEl("line", { x1: x, y1: y0, x2: x, y2: y0 + 3, stroke: "#444" }));
      svg.appendChild(svgEl("text", { x: x, y: y0 + 13, "text-anchor": "middle" }, l));
    }
    [0, 0.5, 1].forEach(function (f) {
      var y = y0 - (y0 - y1) * f;
      svg.appendChild(svgEl("line", { x1: x0 - 3, y1: y, x2: x1, y2: y, stroke: f ? "#eee" : "#444" }));
      svg.appendChild(svgEl("text", { x: x0 - 5, y: y + 3, "text-anchor": "end" }, +(yMax * f).toPrecision(2)));
    });
    svg.appendChild(svgEl("text", { x: (x0 + x1) / 2, y: box.h - 2, "text-anchor": "middle" }, "layer (0 = embeddings)"));
    svg.appendChild(svgEl("text", { x: 10, y: (y0 + y1) / 2, transform: "rotate(-90 10 " + (y0 + y1) / 2 + ")",
      "text-anchor": "middle" }, yLabel));
    return { x: function (l) { return x0 + (x1 - x0) * l / nLayers; },
             y: function (v) { return y0 - (y0 - y1) * Math.min(v / yMax, 1); } };
  }
  function candidateCurves(item, step) {
    var box = { w: 460, h: 230, l: 44, r: 10, t: 10, b: 30 };
    var svg = svgEl("svg", { "class": "curves", width: box.w, height: box.h, viewBox: "0 0 " + box.w + " " + box.h,
      role: "img", "aria-label": "candidate token probabilities across layers" });
    var L = item.n_layers;
    var s = axes(svg, box, L, 1, "probability");
    var legend = el("ul", { "class": "legend" });
    var ids = item.cand_ids[step];
    ids.forEach(function (id, c) {
      var colour = DATA.palettes.candidates[c % DATA.palettes.candidates.length];
      var probs = item.cand_p[step][c];
      var points = probs.map(function (p, l) { return s.x(l).toFixed(1) + "," + s.y(p / PROB_SCALE).toFixed(1); });
      var area = "M" + s.x(0) + "," + s.y(0) + " L" + points.join(" L") + " L" + s.x(L) + "," + s.y(0) + " Z";
      svg.appendChild(svgEl("path", { "class": "cand", d: area, fill: colour, "fill-opacity": 0.45, stroke: "none" }));
      svg.appendChild(svgEl("polyline", { points: points.join(" "), fill: "none", stroke: colour,
        "stroke-width": c === 0 ? 2.2 : 1.1 }));
      var li = el("li");
      var sw = el("span", { "class": "swatch" });
      sw.style.background = colour;
      li.appendChild(sw);
      li.appendChild(el("span", { "class": "chip" }, label(vocab(item, id))));
      li.appendChild(document.createTextNode(" " + pct(probs[L]) + (c === 0 ? " (generated)" : "")));
      legend.appendChild(li);
    });
    if (item.analysis) {
      var marks = [];
      var crit = item.analysis.crit[step];
      if (crit !== null) { marks.push([crit, "critical layer " + crit, "crit-mark"]); }
      item.analysis.mutations[step].forEach(function (m) { marks.push([m.layer, "mutation layer " + m.layer, "mut-mark"]); });
      marks.forEach(function (mk) {
        var line = svgEl("line", { "class": mk[2], x1: s.x(mk[0]), x2: s.x(mk[0]), y1: s.y(0), y2: s.y(1) });
        line.appendChild(svgEl("title", {}, mk[1]));
        svg.appendChild(line);
      });
    }
    var wrap = el("div", { "class": "panel" });
    wrap.appendChild(el("h4", null, "Candidate tokens across layers"));
    wrap.appendChild(el("p", { "class": "note" }, "the generated token and every token that is top-1 at a layer \u2265 " +
      item.from_layer + " (paper Fig. 2)"));
    wrap.appendChild(svg);
    wrap.appendChild(legend);
    return wrap;
  }
  function jsdColumn(item, step) {
    var values = item.jsd[step];
    var L = values.length;
    var rowH = Math.max(8, Math.min(16, Math.floor(320 / L)));
    var box = { w: 300, h: rowH * L + 34, l: 30, r: 46, t: 6 };
    var svg = svgEl("svg", { "class": "jsd-col", width: box.w, height: box.h, viewBox: "0 0 " + box.w + " " + box.h,
      role: "img", "aria-label": "JSD between adjacent layers for this token" });
    var maxV = Math.max.apply(null, values.concat([1e-9]));
    var scale = (box.w - box.l - box.r) / maxV;
    values.forEach(function (v, j) {
      var y = box.t + j * rowH;
      var colour = ramp(DATA.palettes.jsd, v / maxV);
      svg.appendChild(svgEl("text", { x: box.l - 4, y: y + rowH - 3, "text-anchor": "end" }, j + 1));
      var bar = svgEl("rect", { x: box.l, y: y + 1, width: Math.max(0.5, v * scale), height: rowH - 2, fill: rgb(colour),
        stroke: "#888", "stroke-width": 0.3 });
      bar.appendChild(svgEl("title", {}, "layer " + (j + 1) + ": JSD " + v.toFixed(4) + " bits, paper " +
        item.jsd_paper[step][j]));
      svg.appendChild(bar);
      svg.appendChild(svgEl("text", { x: box.l + Math.max(0.5, v * scale) + 3, y: y + rowH - 3 }, short(v, maxV)));
    });
    svg.appendChild(svgEl("text", { x: box.l, y: box.h - 4 }, "JSD (bits), decoder layer on the left"));
    var wrap = el("div", { "class": "panel" });
    wrap.appendChild(el("h4", null, "JSD column"));
    wrap.appendChild(el("p", { "class": "note" }, "divergence between the input and output of each decoder layer"));
    wrap.appendChild(svg);
    return wrap;
  }
  function lensGrid(item, step) {
    var L = item.n_layers;
    var k = item.topk_ids[step][0].length;
    var table = el("table", { "class": "grid" });
    var head = el("tr");
    ["layer", "p(token)", "rank", "entropy"].forEach(function (h) { head.appendChild(el("th", null, h)); });
    for (var r = 1; r <= k; r++) { head.appendChild(el("th", null, "top " + r)); }
    var thead = el("thead");
    thead.appendChild(head);
    table.appendChild(thead);
    var body = el("tbody");
    var generated = item.ids[step];
    for (var l = L; l >= 0; l--) {
      var tr = el("tr");
      tr.appendChild(el("th", null, l));
      tr.appendChild(el("td", null, pct(item.p[step][l])));
      tr.appendChild(el("td", null, item.rank[step][l]));
      tr.appendChild(el("td", null, fmt(item.entropy[step][l], 2)));
      for (var j = 0; j < k; j++) {
        var id = item.topk_ids[step][l][j];
        var p = item.topk_p[step][l][j] / PROB_SCALE;
        var td = el("td", { title: pct(item.topk_p[step][l][j]) }, label(vocab(item, id)));
        var colour = ramp(DATA.palettes.jsd, Math.sqrt(p));
        td.style.background = rgb(colour);
        td.style.color = inkFor(colour);
        if (id === generated) { td.className = "gen"; }
        tr.appendChild(td);
      }
      body.appendChild(tr);
    }
    table.appendChild(body);
    var wrap = el("div", { "class": "panel" });
    wrap.appendChild(el("h4", null, "Logit lens: top-" + k + " tokens per layer"));
    wrap.appendChild(el("p", { "class": "note" }, "last layer at the top; the generated token is outlined"));
    wrap.appendChild(table);
    return wrap;
  }

  function layerText(v) { return v === null || v === undefined ? "not found" : "layer " + v; }
  function stageBar(item, step) {
    var L = item.n_layers;
    var box = { w: 420, h: 54, l: 6, r: 6, t: 6 };
    var cell = (box.w - box.l - box.r) / (L + 1);
    var svg = svgEl("svg", { "class": "stage-bar", width: box.w, height: box.h, viewBox: "0 0 " + box.w + " " + box.h,
      role: "img", "aria-label": "stages of this token across layers" });
    var stageOf = [];
    item.analysis.stages[step].forEach(function (r) { for (var l = r[1]; l <= r[2]; l++) { stageOf[l] = r[0]; } });
    var every = Math.max(1, Math.ceil((L + 1) / 16));
    for (var l = 0; l <= L; l++) {
      var rect = svgEl("rect", { x: box.l + l * cell, y: box.t, width: Math.max(cell - 0.5, 0.5), height: 22,
        fill: DATA.palettes.stages[String(stageOf[l])], stroke: "#fff", "stroke-width": 0.5 });
      rect.appendChild(svgEl("title", {}, "layer " + l + ": " + DATA.stage_names[String(stageOf[l])]));
      svg.appendChild(rect);
      if (l % every === 0 || l === L) {
        svg.appendChild(svgEl("text", { x: box.l + (l + 0.5) * cell, y: box.t + 36, "text-anchor": "middle" }, l));
      }
    }
    var crit = item.analysis.crit[step];
    var marks = crit === null ? [] : [[crit, "crit-mark"]];
    item.analysis.mutations[step].forEach(function (m) { marks.push([m.layer, "mut-mark"]); });
    marks.forEach(function (mk) {
      var x = box.l + mk[0] * cell;
      svg.appendChild(svgEl("line", { "class": mk[1], x1: x, x2: x, y1: box.t - 4, y2: box.t + 26 }));
    });
    svg.appendChild(svgEl("text", { x: box.l, y: box.h - 2 }, "layer (0 = embeddings); | critical, | mutation"));
    return svg;
  }
  function analysisPanel(item, step) {
    var a = item.analysis;
    var wrap = el("div", { "class": "panel analysis" });
    wrap.appendChild(el("h4", null, "Critical and mutation layers"));
    if (!a) {
      wrap.appendChild(el("p", { "class": "note" }, "this item has no analysis (no analysis.json)"));
      return wrap;
    }
    var agree = a.agree[step];
    var rows = [
      ["critical layer (stages, " + a.stage_critical + "-based)", layerText(a.crit[step])],
      ["critical layer, probability-based", layerText(a.crit_prob[step])],
      ["critical layer, JSD-based", layerText(a.crit_jsd[step])],
      ["agreement", agree === 1 ? "agree (within \u00b1" + a.tolerance + ")" :
        agree === 0 ? "apart (more than \u00b1" + a.tolerance + ")" : "\u2014 (one is missing)"],
      ["mutation layers", a.mutations[step].length ? a.mutations[step].map(function (m) { return m.layer; }).join(", ") :
        "none detected"],
      ["stages", stageText(item, step)]
    ];
    if (a.is_eos[step]) { rows.push(["note", "end-of-sequence token (left out of the statistics)"]); }
    var table = el("table", { "class": "facts" });
    rows.forEach(function (r) {
      var tr = el("tr");
      tr.appendChild(el("th", null, r[0]));
      tr.appendChild(el("td", null, r[1]));
      table.appendChild(tr);
    });
    wrap.appendChild(table);
    if (a.mutations[step].length) {
      var list = el("ul", { "class": "mutations" });
      a.mutations[step].forEach(function (m) {
        var li = el("li");
        var evidence = [m.spike ? "JSD spike" : null, m.flip ? "top-1 flip" : null].filter(Boolean).join(" + ");
        li.appendChild(document.createTextNode("layer " + m.layer + ": " + (evidence || "mutation") + ", JSD " +
          fmt(m.jsd, 4) + " " + a.jsd_units + " (" + (m.ratio === null ? "\u221e" : fmt(m.ratio, 1)) + "\u00d7 the plateau)"));
        if (m.before >= 0 && m.after >= 0) {
          li.appendChild(document.createTextNode(", top-1 "));
          li.appendChild(el("span", { "class": "chip" }, label(vocab(item, m.before))));
          li.appendChild(document.createTextNode(" \u2192 "));
          li.appendChild(el("span", { "class": "chip" }, label(vocab(item, m.after))));
        }
        list.appendChild(li);
      });
      wrap.appendChild(list);
    }
    wrap.appendChild(stageBar(item, step));
    return wrap;
  }
  function labelFacts(item, step) {
    if (!item.labels) { return null; }
    var lab = item.labels.label[step];
    var obj = item.labels.object[step];
    var p = el("p", { "class": "eval-label" });
    p.appendChild(document.createTextNode("evaluation: " + (lab === null ? "not part of a judged word" : lab)));
    if (obj !== null && obj !== undefined) {
      p.appendChild(document.createTextNode(" \u00b7 object "));
      p.appendChild(el("span", { "class": "chip" }, obj));
    }
    return p;
  }

  // ------------------------------------------------------------ interaction
  function selectToken(index, step) {
    var item = DATA.items[index];
    var section = document.getElementById("item-" + index);
    section.querySelectorAll(".tok.sel").forEach(function (n) { n.classList.remove("sel"); });
    var span = section.querySelector('.tok[data-step="' + step + '"]');
    if (span) { span.classList.add("sel"); }
    section.querySelectorAll("table.hm tr.sel").forEach(function (n) { n.classList.remove("sel"); });
    var row = section.querySelector('table.hm tr[data-step="' + step + '"]');
    if (row) { row.classList.add("sel"); }
    selected[index] = step;
    var detail = section.querySelector(".detail");
    detail.textContent = "";
    var title = el("h4");
    title.appendChild(document.createTextNode("Token " + step + ": "));
    title.appendChild(el("span", { "class": "chip selected-token" }, label(item.tokens[step])));
    detail.appendChild(title);
    var facts = [];
    DATA.series.forEach(function (s) {
      if (s.kind === "stages") { return; }
      var v = item.values[s.key] ? item.values[s.key][step] : null;
      facts.push(s.label + ": " + (v === null || v === undefined ? "none" : v));
    });
    DATA.flags.forEach(function (name) {
      if (item.flags[name] && item.flags[name][step]) { facts.push("flagged: " + name); }
    });
    detail.appendChild(el("p", { "class": "note" }, facts.join(" \u00b7 ")));
    var evaluation = labelFacts(item, step);
    if (evaluation) { detail.appendChild(evaluation); }
    var panels = el("div", { "class": "panels" });
    if (item.analysis) { panels.appendChild(analysisPanel(item, step)); }
    panels.appendChild(candidateCurves(item, step));
    panels.appendChild(jsdColumn(item, step));
    panels.appendChild(lensGrid(item, step));
    detail.appendChild(panels);
    detail.hidden = false;
  }
  function onTokenEvent(event) {
    var span = event.target.closest ? event.target.closest(".tok") : null;
    if (!span) { return; }
    if (event.type === "keydown" && event.key !== "Enter" && event.key !== " ") { return; }
    event.preventDefault();
    var box = span.closest(".text");
    selectToken(Number(box.getAttribute("data-item")), Number(span.getAttribute("data-step")));
  }

  // ---------------------------------------------------------------- heatmap
  function heatmapValues(item, view, rows) {
    var source = view === "paper" ? item.jsd_paper : item.jsd;
    var values = source.slice(0, rows);
    if (view === "raw") { return values; }
    var L = values.length ? values[0].length : 0;
    var scale = [];
    for (var j = 0; j < L; j++) {
      var m = 0;
      values.forEach(function (row) { m = Math.max(m, Math.abs(row[j])); });
      scale.push(m || 1);
    }
    return values.map(function (row) { return row.map(function (v, j) { return v / scale[j]; }); });
  }
  function heatmapRows(host) {
    var index = Number(host.getAttribute("data-item"));
    var all = document.getElementById("item-" + index).querySelector("input.hm-all").checked;
    var n = DATA.items[index].tokens.length;
    return all ? n : Math.min(n, DATA.heatmap_tokens);
  }
  function renderHeatmap(host) {
    var index = Number(host.getAttribute("data-item"));
    var item = DATA.items[index];
    var section = document.getElementById("item-" + index);
    var view = section.querySelector("select.hm-view").value;
    var rows = heatmapRows(host);
    var values = heatmapValues(item, view, rows);
    var max = 0;
    values.forEach(function (row) { row.forEach(function (v) { max = Math.max(max, v); }); });
    max = max || 1;
    var table = el("table", { "class": "hm" });
    var thead = el("thead");
    var head = el("tr");
    head.appendChild(el("th", null, "token \\ layer"));
    for (var j = 1; j <= item.n_layers; j++) { head.appendChild(el("th", null, j)); }
    thead.appendChild(head);
    table.appendChild(thead);
    var body = el("tbody");
    values.forEach(function (row, step) {
      var tr = el("tr", { "data-step": step });
      if (selected[index] === step) { tr.className = "sel"; }
      tr.appendChild(el("th", { title: "step " + step }, label(item.tokens[step])));
      row.forEach(function (v, j) {
        var colour = ramp(DATA.palettes.jsd, v / max);
        var td = el("td", { title: "layer " + (j + 1) + ": " + v.toPrecision(3) }, short(v, max));
        td.style.background = rgb(colour);
        td.style.color = inkFor(colour);
        tr.appendChild(td);
      });
      tr.addEventListener("click", function () { selectToken(index, step); });
      body.appendChild(tr);
    });
    table.appendChild(body);
    host.textContent = "";
    host.appendChild(table);
    host.setAttribute("data-drawn", "1");
  }

  // ------------------------------------------------------------------- start
  // The data block is JSON, or gzip-compressed JSON in base64 for large runs (decompressed by the browser).
  function readData() {
    var node = document.getElementById("evolens-data");
    if (node.getAttribute("data-encoding") !== "gzip+base64") {
      return Promise.resolve(JSON.parse(node.textContent));
    }
    var binary = atob(node.textContent.trim());
    var bytes = new Uint8Array(binary.length);
    for (var i = 0; i < binary.length; i++) { bytes[i] = binary.charCodeAt(i); }
    var stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
    return new Response(stream).text().then(JSON.parse);
  }
  function prepare(data) {
    DATA = data;
    PROB_SCALE = DATA.prob_scale;
    DATA.items.forEach(function (item) {
      item.jsd = item.jsd.map(function (row) { return row.map(function (v) { return v / DATA.jsd_scale; }); });
    });
  }
  function start() {
    document.querySelectorAll(".text[data-item]").forEach(function (box) {
      box.addEventListener("click", onTokenEvent);
      box.addEventListener("keydown", onTokenEvent);
    });
    var select = document.getElementById("series");
    DATA.series.forEach(function (s) { select.appendChild(el("option", { value: s.key }, s.label)); });
    select.value = DATA.default_series;
    select.addEventListener("change", function () { colourTokens(select.value); });
    // The two colourings of analysed items, one click apart.
    var keys = DATA.series.map(function (s) { return s.key; });
    var toggles = document.getElementById("colour-toggle");
    var pair = DATA.toggle || [];
    if (toggles && pair.length === 2 && keys.indexOf(pair[0]) >= 0 && keys.indexOf(pair[1]) >= 0) {
      pair.forEach(function (key) {
        var series = DATA.series.filter(function (s) { return s.key === key; })[0];
        var button = el("button", { type: "button", "class": "colour-toggle", "data-series": key,
          "aria-pressed": "false" }, series.label);
        button.addEventListener("click", function () {
          select.value = key;
          colourTokens(key);
        });
        toggles.appendChild(button);
      });
      toggles.hidden = false;
    }
    colourTokens(DATA.default_series);
    var hosts = document.querySelectorAll(".heatmap[data-item]");
    hosts.forEach(function (host) {
      var section = document.getElementById("item-" + host.getAttribute("data-item"));
      section.querySelector("select.hm-view").addEventListener("change", function () { renderHeatmap(host); });
      section.querySelector("input.hm-all").addEventListener("change", function () { renderHeatmap(host); });
    });
    if ("IntersectionObserver" in window) {
      // drawn when scrolled near; until then the space it will take is reserved (report.css, --hm-rows)
      hosts.forEach(function (host) { host.style.setProperty("--hm-rows", String(heatmapRows(host) + 1)); });
      var observer = new IntersectionObserver(function (entries) {
        entries.forEach(function (entry) {
          if (entry.isIntersecting && !entry.target.getAttribute("data-drawn")) {
            renderHeatmap(entry.target);
            observer.unobserve(entry.target);
          }
        });
      }, { rootMargin: "400px" });
      hosts.forEach(function (host) { observer.observe(host); });
    } else {
      hosts.forEach(renderHeatmap);
    }
    // the image-token lens: the slider shows one layer's patch grid
    document.querySelectorAll("section.patches").forEach(function (section) {
      var slider = section.querySelector("input.patch-layer");
      slider.addEventListener("input", function () {
        section.querySelectorAll("table.patch-grid").forEach(function (grid) {
          grid.hidden = grid.getAttribute("data-layer") !== slider.value;
        });
        section.querySelector("output.patch-layer-value").textContent = slider.value;
      });
    });
    // the item list's filters hide the rows and the item sections that do not match
    var filters = document.getElementById("item-filters");
    if (filters) {
      var selects = filters.querySelectorAll("select[data-filter]");
      var applyFilters = function () {
        var rows = document.querySelectorAll("tr[data-row]");
        var shown = 0;
        rows.forEach(function (row) {
          var keep = true;
          selects.forEach(function (select) {
            var wanted = select.value;
            if (!wanted) { return; }
            var key = select.getAttribute("data-filter");
            var have = row.getAttribute("data-" + key) || "";
            keep = keep && (key === "flags" ? have.split("|").indexOf(wanted) >= 0 : have === wanted);
          });
          row.hidden = !keep;
          var section = document.getElementById("item-" + row.getAttribute("data-row"));
          if (section) { section.hidden = !keep; }
          if (keep) { shown += 1; }
        });
        document.getElementById("filter-count").textContent = shown + " of " + rows.length + " items";
      };
      selects.forEach(function (select) { select.addEventListener("change", applyFilters); });
    }
    // anchors (#item-3, #run-…) scroll their target below the sticky controls, however tall they wrap
    var controls = document.querySelector(".controls");
    function controlsHeight() {
      document.documentElement.style.setProperty("--controls-h", (controls ? controls.offsetHeight : 0) + "px");
    }
    controlsHeight();
    window.addEventListener("resize", controlsHeight);
    document.body.setAttribute("data-ready", "1");
  }
  readData().then(function (data) {
    prepare(data);
    start();
  }).catch(function (err) {
    var note = el("p", { "class": "load-error" }, "The report's data could not be read: " + err);
    document.body.insertBefore(note, document.body.firstChild);
    throw err;
  });
})();
