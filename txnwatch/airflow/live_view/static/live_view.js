// txnwatch live view: polls api/state/<schema> every second and draws it with plain SVG.
// Relative URLs only; data goes into the page through textContent, never as HTML.
(function () {
  "use strict";
  const POLL_MS = 1000;
  const PATTERNS = ["PatId1", "PatId2", "PatId3"];
  const COLORS = { PatId1: "var(--p1)", PatId2: "var(--p2)", PatId3: "var(--p3)" };
  const ACTIONS = { PatId1: "UPGRADE", PatId2: "CHILD", PatId3: "DEI-NEEDED" };
  const SVG_NS = "http://www.w3.org/2000/svg";
  const params = new URLSearchParams(window.location.search);
  let schema = params.get("schema");
  // A DAG run's view: its own mechanism counts from the run's queue time on (an earlier run's is not shown
  // as this run's state).
  let since = ["y_since", "x_since"].filter((k) => params.get(k))
    .map((k) => "&" + k + "=" + encodeURIComponent(params.get(k))).join("");
  let series = emptySeries();
  let timer = null;

  function emptySeries() {
    return { chunk: [], lag: [], batch: [], cum: { PatId1: [], PatId2: [], PatId3: [] } };
  }
  const $ = (id) => document.getElementById(id);
  function setText(id, text) { $(id).textContent = text; }
  function setValue(id, value) { const el = $(id); el.textContent = fmt(value); el.dataset.value = String(value); }
  function fmt(n) { return n === null || n === undefined ? "–" : Number(n).toLocaleString("en-US"); }
  function sec(v) { return v === null || v === undefined ? "–" : v.toFixed(3) + " s"; }
  function time(iso) { return iso ? new Date(iso).toLocaleTimeString() : "–"; }
  function cls(el, kind) { el.classList.remove("ok", "warn", "bad"); if (kind) el.classList.add(kind); }
  function showMessage(text) { const m = $("message"); m.hidden = !text; m.textContent = text || ""; }

  async function getJSON(url) {
    const r = await fetch(url, { credentials: "same-origin", cache: "no-store" });
    let body = null;
    try { body = await r.json(); } catch (e) { body = null; }
    if (!r.ok) {
      const err = new Error((body && body.detail) || r.status + " " + r.statusText);
      err.status = r.status;
      throw err;
    }
    return body;
  }

  async function loadSchemas() {
    const data = await getJSON("api/schemas");
    if (!schema) schema = data.default;  // the most recently active schema
    const select = $("schema");
    select.replaceChildren();
    const names = data.schemas.includes(schema) ? data.schemas : [schema, ...data.schemas];
    for (const name of names) {
      const o = document.createElement("option");
      o.value = name; o.textContent = name; o.selected = name === schema;
      select.appendChild(o);
    }
  }

  function el(tag, attrs, text) {
    const e = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    return e;
  }

  // Axes and scales of a chart in a 560x260 viewBox.
  function frame(svg, xmin, xmax, ymax, ylabel, integer) {
    svg.replaceChildren();
    if (integer) ymax = 4 * Math.max(1, Math.ceil(ymax / 4));  // whole-number ticks for counts
    const L = 48, R = 12, T = 10, B = 30, W = 560, H = 260;
    const x = (v) => L + (xmax > xmin ? (v - xmin) / (xmax - xmin) : 0.5) * (W - L - R);
    const y = (v) => H - B - (ymax > 0 ? v / ymax : 0) * (H - T - B);
    svg.appendChild(el("line", { x1: L, y1: H - B, x2: W - R, y2: H - B, class: "axis" }));
    svg.appendChild(el("line", { x1: L, y1: T, x2: L, y2: H - B, class: "axis" }));
    for (let i = 0; i <= 4; i++) {
      const v = (ymax * i) / 4;
      svg.appendChild(el("line", { x1: L, y1: y(v), x2: W - R, y2: y(v), class: "axis", "stroke-opacity": 0.5 }));
      const label = integer || ymax >= 10 ? Math.round(v).toLocaleString("en-US") : v.toFixed(ymax >= 2 ? 1 : 2);
      svg.appendChild(el("text", { x: L - 6, y: y(v) + 4, "text-anchor": "end" }, label));
    }
    svg.appendChild(el("text", { x: L, y: H - 8, "text-anchor": "start" }, "chunk " + xmin));
    svg.appendChild(el("text", { x: W - R, y: H - 8, "text-anchor": "end" }, "chunk " + xmax));
    svg.appendChild(el("text", { x: (L + W - R) / 2, y: H - 8, "text-anchor": "middle" }, ylabel));
    return { x, y };
  }

  function drawLag(target) {
    const svg = $("lag-chart");
    const pts = series.chunk.map((c, i) => [c, series.lag[i], series.batch[i]]).filter((p) => p[1] !== null);
    const xmin = series.chunk.length ? series.chunk[0] : 0;
    const xmax = series.chunk.length ? series.chunk[series.chunk.length - 1] : 1;
    const ymax = Math.max(target * 1.5, ...pts.map((p) => p[1])) * 1.05;
    const s = frame(svg, xmin, xmax, ymax, "seconds from landed to committed");
    svg.appendChild(el("line", { x1: s.x(xmin), x2: s.x(xmax), y1: s.y(target), y2: s.y(target), class: "target" }));
    svg.appendChild(el("text", { x: s.x(xmax) - 4, y: s.y(target) - 4, "text-anchor": "end", fill: "var(--bad)" },
      target + " s target"));
    if (pts.length > 1) {
      const d = pts.map((p, i) => (i ? "L" : "M") + s.x(p[0]).toFixed(1) + " " + s.y(p[1]).toFixed(1)).join(" ");
      svg.appendChild(el("path", { d, fill: "none", stroke: "var(--y)", "stroke-width": 1.5 }));
    }
    const r = pts.length > 300 ? 1.2 : 2.5;
    for (const p of pts) {
      const over = p[1] > target;
      svg.appendChild(el("circle", { cx: s.x(p[0]), cy: s.y(p[1]), r: p[2] > 1 ? r + 1 : r,
        fill: over ? "var(--bad)" : (p[2] > 1 ? "var(--warn)" : "var(--y)") }));
    }
  }

  function drawDetections() {
    const svg = $("det-chart");
    const n = series.chunk.length;
    const xmin = n ? series.chunk[0] : 0, xmax = n ? series.chunk[n - 1] : 1;
    const last = PATTERNS.map((p) => (n ? series.cum[p][n - 1] : 0));
    const s = frame(svg, xmin, xmax, Math.max(4, ...last) * 1.1, "detections (cumulative)", true);
    PATTERNS.forEach((p, k) => {
      if (n) {
        let d = "M" + s.x(series.chunk[0]) + " " + s.y(series.cum[p][0]);
        for (let i = 1; i < n; i++) d += " H" + s.x(series.chunk[i]).toFixed(1) + " V" + s.y(series.cum[p][i]).toFixed(1);
        svg.appendChild(el("path", { d, fill: "none", stroke: COLORS[p], "stroke-width": 2 }));
      }
      const lx = 60 + k * 150;
      svg.appendChild(el("rect", { x: lx, y: 14, width: 12, height: 12, fill: COLORS[p] }));
      svg.appendChild(el("text", { x: lx + 16, y: 24 }, p + " " + ACTIONS[p] + ": " + last[k].toLocaleString("en-US")));
    });
  }

  function drawPositions(data) {
    const svg = $("positions");
    svg.replaceChildren();
    const xLast = data.x ? data.x.last_chunk : 0, yLast = data.y.last_chunk;
    const max = Math.max(1, xLast, yLast);
    const L = 110, W = 880;
    const bar = (row, label, value, color, note) => {
      const yy = 6 + row * 30;
      svg.appendChild(el("text", { x: 0, y: yy + 15 }, label));
      svg.appendChild(el("rect", { x: L, y: yy, width: W - L, height: 20, fill: "var(--bg)", stroke: "var(--line)" }));
      const w = ((W - L) * value) / max;
      svg.appendChild(el("rect", { x: L, y: yy, width: w, height: 20, fill: color }));
      const text = "chunk " + value.toLocaleString("en-US") + note;
      // Inside the bar when it has room, else just past its end.
      svg.appendChild(w > 260 ? el("text", { x: L + 6, y: yy + 15, fill: "#fff" }, text)
        : el("text", { x: L + w + 6, y: yy + 15, fill: "var(--fg)" }, text));
    };
    bar(0, "X landed", xLast, "var(--x)", data.x && data.x.finished ? " (source exhausted)" : "");
    bar(1, "Y processed", yLast, "var(--y)", data.backlog_chunks ? " (" + data.backlog_chunks + " behind)" : "");
  }

  function drawTable(data) {
    const body = $("detections").querySelector("tbody");
    body.replaceChildren();
    for (const d of data.newest_detections) {
      const tr = document.createElement("tr");
      const cells = [[d.seq, "num"], [d.patternId], [d.ActionType], [d.customerName || "(empty)"], [d.merchantId],
        [d.chunk, "num"], [time(d.detectionTime)], [d.file ? "detections_" + String(d.file).padStart(8, "0") : "pending"]];
      for (const [v, c] of cells) {
        const td = document.createElement("td");
        td.textContent = String(v);
        if (c) td.className = c;
        tr.appendChild(td);
      }
      body.appendChild(tr);
    }
    if (!data.newest_detections.length) {
      const tr = document.createElement("tr"), td = document.createElement("td");
      td.colSpan = 8; td.className = "muted"; td.textContent = "no detection yet";
      tr.appendChild(td); body.appendChild(tr);
    }
    const q = $("quarantine");
    q.replaceChildren();
    if (data.newest_quarantine.length) {
      const h = document.createElement("h3");
      h.textContent = "Latest quarantine entries";
      q.appendChild(h);
      for (const e of data.newest_quarantine) {
        const p = document.createElement("div");
        p.className = "muted";
        p.textContent = "chunk " + e.chunk + (e.sourceLine ? ", line " + e.sourceLine : "") + ": " + e.reason;
        q.appendChild(p);
      }
    }
  }

  // The headline: does Y keep pace with X?
  function verdict(data) {
    const v = $("verdict");
    const y = data.y;
    if (since.includes("y_since") && y.status === "not started") {
      v.textContent = "this run's Y has not started" + (y.y_start_time ? " (the last Y started " + time(y.y_start_time) + ")" : "");
      return cls(v, null);
    }
    if (!data.chunks) {
      v.textContent = y.status === "starting" ? "Y is starting (Spark warming up)" : "no chunk processed yet";
      return cls(v, y.status === "stalled" ? "bad" : null);
    }
    const p95 = data.lag_p95_s, target = data.lag_target_s;
    const paced = p95 !== null && p95 <= target && data.backlog_chunks <= 1;
    if (y.status === "stalled") { v.textContent = "Y stalled: no heartbeat for " + y.heartbeat_age_s + " s"; return cls(v, "bad"); }
    if (y.finished) {
      v.textContent = (paced ? "Y kept pace" : "Y fell behind") + ": p95 lag " + sec(p95) + ", all chunks processed";
      return cls(v, paced ? "ok" : "warn");
    }
    v.textContent = paced ? "Y keeps pace: p95 lag " + sec(p95)
      : "Y behind: " + data.backlog_chunks + " chunks, p95 lag " + sec(p95);
    cls(v, paced ? "ok" : (data.backlog_chunks > 5 ? "bad" : "warn"));
  }

  function render(data) {
    const x = data.x, y = data.y;
    setValue("x-chunk", x ? x.last_chunk : 0);
    setText("x-detail", x ? fmt(x.rows_landed) + " rows landed, " + fmt(x.rejected) + " rejected" : "not started");
    const xs = $("x-status");
    xs.textContent = x ? x.status : "not started";
    cls(xs, x && x.status === "finished" ? "ok" : null);
    setValue("y-chunk", y.last_chunk);
    setText("y-detail", fmt(data.rows) + " rows, heartbeat " + (y.heartbeat_age_s === null ? "–" : y.heartbeat_age_s + " s ago")
      + (data.max_batch_chunks > 1 ? ", largest batch " + data.max_batch_chunks + " chunks" : ""));
    const ys = $("y-status");
    ys.textContent = y.status;
    cls(ys, { running: "ok", finished: "ok", starting: "warn", stalled: "bad" }[y.status] || null);
    setText("lag-p95", "p95 " + sec(data.lag_p95_s));
    cls($("lag-p95"), data.lag_p95_s === null ? null : (data.lag_p95_s <= data.lag_target_s ? "ok" : "bad"));
    setText("lag-detail", "p50 " + sec(data.lag_p50_s) + ", max " + sec(data.lag_max_s) + "; "
      + fmt(data.lag_within_target) + " of " + fmt(data.lag_chunks) + " chunks within " + data.lag_target_s + " s");
    setValue("det-total", data.detections_total);
    setText("det-detail", PATTERNS.map((p) => p + " " + fmt(data.detections[p])).join(", ") + "; "
      + fmt(data.detections_in_files) + " in " + fmt(data.files) + " files");
    setValue("q-rows", data.quarantined_rows);
    setText("q-detail", fmt(data.quarantined_chunks) + " whole chunks set aside");
    verdict(data);
    drawPositions(data);
    drawLag(data.lag_target_s);
    drawDetections();
    drawTable(data);
  }

  function merge(data) {
    const s = data.series;
    const last = series.chunk.length ? series.chunk[series.chunk.length - 1] : 0;
    if (s.after !== last) return false;
    series.chunk.push(...s.chunk);
    series.lag.push(...s.lag_s);
    series.batch.push(...s.batch_size);
    for (const p of PATTERNS) series.cum[p].push(...s.cumulative[p]);
    return true;
  }

  async function poll() {
    let last = series.chunk.length ? series.chunk[series.chunk.length - 1] : 0;
    try {
      let data = await getJSON("api/state/" + encodeURIComponent(schema) + "?after=" + last + since);
      if (data.y.last_chunk < last || !merge(data)) {  // the schema was reset: start over
        series = emptySeries(); last = 0;
        data = await getJSON("api/state/" + encodeURIComponent(schema) + "?after=0" + since);
        merge(data);
      }
      showMessage("");
      render(data);
      setText("updated", "updated " + new Date().toLocaleTimeString());
    } catch (e) {
      if (e.status === 404) showMessage("Schema " + schema + " holds no txnwatch tables yet: waiting for a run to create them.");
      else if (e.status === 401 || e.status === 403) { showMessage("Not signed in to Airflow (" + e.message + ")."); return; }
      else showMessage("Could not refresh: " + e.message);
    }
    timer = setTimeout(poll, POLL_MS);
  }

  async function start() {
    const dag = params.get("dag_id"), run = params.get("run_id");
    if (dag && run) setText("run", dag + " / " + run);
    try {
      await loadSchemas();
    } catch (e) {
      showMessage(e.status === 401 || e.status === 403 ? "Not signed in to Airflow (" + e.message + ")." : "Could not list schemas: " + e.message);
      if (!schema) return;
    }
    $("schema").addEventListener("change", (ev) => {
      schema = ev.target.value;
      const p = new URLSearchParams(window.location.search);
      p.set("schema", schema); p.delete("dag_id"); p.delete("run_id"); p.delete("y_since"); p.delete("x_since");
      since = "";
      window.history.replaceState(null, "", "?" + p.toString());
      setText("run", "");
      series = emptySeries();
      clearTimeout(timer);
      poll();
    });
    poll();
  }
  start();
})();
