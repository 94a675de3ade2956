// MESS dashboard: sortable tables, live numbers on the overview, the fronts plot.
// Plain JavaScript, no library; data comes from the page (JSON script blocks), never eval'd.
"use strict";

function sortable(root) {
  for (const table of root.querySelectorAll("table.sortable")) {
    const heads = table.tHead ? table.tHead.rows[0].cells : [];
    Array.from(heads).forEach((th, col) => {
      th.addEventListener("click", () => {
        const asc = !th.classList.contains("asc");
        Array.from(heads).forEach((h) => h.classList.remove("asc", "desc"));
        th.classList.add(asc ? "asc" : "desc");
        const body = table.tBodies[0];
        const key = (row) => {
          const cell = row.cells[col];
          const raw = cell.dataset.value !== undefined ? cell.dataset.value : cell.textContent.trim();
          const n = parseFloat(raw);
          return raw !== "" && !isNaN(n) && isFinite(raw) ? n : raw.toLowerCase();
        };
        const rows = Array.from(body.rows);
        rows.sort((a, b) => {
          const x = key(a), y = key(b);
          const order = typeof x === typeof y ? (x < y ? -1 : x > y ? 1 : 0) : typeof x === "number" ? -1 : 1;
          return asc ? order : -order;
        });
        rows.forEach((r) => body.appendChild(r));
      });
    });
  }
}

function liveRefresh() {
  for (const box of document.querySelectorAll("[data-refresh]")) {
    const every = parseInt(box.dataset.every || "5000", 10);
    const tick = async () => {
      try {
        const r = await fetch(box.dataset.refresh, { credentials: "same-origin", redirect: "follow" });
        if (r.redirected || !r.ok) { window.location.reload(); return; }  // session ended
        box.innerHTML = await r.text();  // our own server-rendered, escaped fragment
        sortable(box);
      } catch (e) { /* offline for a moment: try again at the next tick */ }
      window.setTimeout(tick, every);
    };
    window.setTimeout(tick, every);
  }
}

const SVG = "http://www.w3.org/2000/svg";

function el(name, attrs, parent) {
  const node = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  if (parent) parent.appendChild(node);
  return node;
}

function ticks(lo, hi, count) {
  const step0 = (hi - lo) / count;
  const mag = Math.pow(10, Math.floor(Math.log10(step0)));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= step0) || step0;
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + 1e-12; v += step) out.push(+v.toPrecision(12));
  return out;
}

function fmt(v, digits) { return Number(v).toFixed(digits); }

function plotFronts() {
  const holder = document.getElementById("plot");
  const source = document.getElementById("plot-data");
  if (!holder || !source) return;
  const data = JSON.parse(source.textContent);
  const series = data.series;
  const all = [];
  series.forEach((s) => { all.push(...s.points); if (s.original) all.push(s.original); });
  const W = 960, H = 440, M = { l: 64, r: 150, t: 16, b: 48 };  // the legend sits in the right margin
  const svg = el("svg", { viewBox: `0 0 ${W} ${H}`, role: "img" }, holder);
  if (!all.length) {
    el("text", { x: W / 2, y: H / 2, "text-anchor": "middle", class: "title" }, svg).textContent = "no front yet";
    return;
  }
  let [x0, x1] = [Math.min(...all.map((p) => p.x)), Math.max(...all.map((p) => p.x))];
  let [y0, y1] = [Math.min(...all.map((p) => p.y)), Math.max(...all.map((p) => p.y))];
  const padX = (x1 - x0 || Math.abs(x1) || 1) * 0.06, padY = (y1 - y0 || Math.abs(y1) || 1) * 0.08;
  x0 = Math.max(0, x0 - padX); x1 += padX; y0 -= padY; y1 += padY;
  const sx = (x) => M.l + ((x - x0) / (x1 - x0)) * (W - M.l - M.r);
  const sy = (y) => H - M.b - ((y - y0) / (y1 - y0)) * (H - M.t - M.b);
  const axis = el("g", { class: "axis" }, svg);
  for (const t of ticks(x0, x1, 8)) {
    el("line", { x1: sx(t), x2: sx(t), y1: M.t, y2: H - M.b, class: "grid" }, axis);
    el("text", { x: sx(t), y: H - M.b + 16, "text-anchor": "middle" }, axis).textContent = String(t);
  }
  for (const t of ticks(y0, y1, 6)) {
    el("line", { x1: M.l, x2: W - M.r, y1: sy(t), y2: sy(t), class: "grid" }, axis);
    el("text", { x: M.l - 6, y: sy(t) + 4, "text-anchor": "end" }, axis).textContent = String(t);
  }
  el("line", { x1: M.l, x2: W - M.r, y1: H - M.b, y2: H - M.b }, axis);
  el("line", { x1: M.l, x2: M.l, y1: M.t, y2: H - M.b }, axis);
  el("text", { x: (M.l + W - M.r) / 2, y: H - 8, "text-anchor": "middle", class: "title" }, axis).textContent = "expected latency (ms)";
  el("text", { x: 14, y: (M.t + H - M.b) / 2, "text-anchor": "middle", class: "title", transform: `rotate(-90 14 ${(M.t + H - M.b) / 2})` }, axis).textContent = "predicted mIoU";
  const budgetLine = el("line", { y1: M.t, y2: H - M.b, class: "budget", visibility: "hidden" }, svg);
  const tip = document.getElementById("tip");
  const show = (evt, s, p, what) => {
    tip.textContent = "";
    const head = document.createElement("div");
    head.textContent = `${s.device} · ${fmt(p.x, 3)} ms · mIoU ${fmt(p.y, 4)}${what ? " · " + what : ""}`;
    const body = document.createElement("code");
    body.textContent = p.label || "original network (exits: none, terminal: final)";
    tip.append(head, body);
    tip.hidden = false;
    tip.style.left = `${evt.pageX + 12}px`;
    tip.style.top = `${evt.pageY + 12}px`;
  };
  const hide = () => { tip.hidden = true; };
  const rings = [];
  // originals under the fronts: the original network is often a point of its front too
  const under = el("g", { class: "originals" }, svg);
  series.forEach((s, i) => {
    if (!s.original) return;
    const o = s.original;
    const r = el("rect", { x: sx(o.x) - 6, y: sy(o.y) - 6, width: 12, height: 12, class: `original s${i % 8}`, "data-device": s.device }, under);
    r.addEventListener("mouseenter", (e) => show(e, s, o, "original network"));
    r.addEventListener("mouseleave", hide);
  });
  series.forEach((s, i) => {
    const cls = `s${i % 8}`;
    const g = el("g", { class: "series", "data-device": s.device }, svg);
    if (s.points.length > 1) {
      el("polyline", { class: `front ${cls}`, points: s.points.map((p) => `${sx(p.x)},${sy(p.y)}`).join(" ") }, g);
    }
    for (const p of s.points) {
      const c = el("circle", { cx: sx(p.x), cy: sy(p.y), r: 4.5, class: `point ${cls}`, "data-device": s.device }, g);
      c.addEventListener("mouseenter", (e) => show(e, s, p, ""));
      c.addEventListener("mouseleave", hide);
    }
    rings.push(el("circle", { r: 8, class: "chosen", visibility: "hidden", "data-device": s.device }, g));
  });
  // legend
  const legend = el("g", { class: "legend" }, svg);
  const lx = W - M.r + 16;
  series.forEach((s, i) => {
    const y = M.t + 10 + i * 16;
    el("circle", { cx: lx + 5, cy: y - 4, r: 4.5, class: `s${i % 8}` }, legend);
    el("text", { x: lx + 15, y: y }, legend).textContent = s.device;
  });
  el("rect", { x: lx, y: M.t + 4 + series.length * 16, width: 10, height: 10, class: "original s7" }, legend);
  el("text", { x: lx + 15, y: M.t + 13 + series.length * 16 }, legend).textContent = "original network";

  const input = document.getElementById("budget");
  const rows = document.querySelectorAll("#picks tbody tr");
  const update = () => {
    const b = parseFloat(input.value);
    const ok = isFinite(b) && b > 0;
    budgetLine.setAttribute("visibility", ok && b >= x0 && b <= x1 ? "visible" : "hidden");
    if (ok) { budgetLine.setAttribute("x1", sx(b)); budgetLine.setAttribute("x2", sx(b)); }
    series.forEach((s, i) => {
      let best = null;
      if (ok) for (const p of s.points) if (p.x <= b && (!best || p.y > best.y || (p.y === best.y && p.x < best.x))) best = p;
      const ring = rings[i];
      ring.setAttribute("visibility", best ? "visible" : "hidden");
      if (best) { ring.setAttribute("cx", sx(best.x)); ring.setAttribute("cy", sy(best.y)); }
      const cell = rows[i] && rows[i].querySelector("td.pick");
      if (!cell || !s.points.length) return;
      cell.textContent = "";
      if (!ok) return;
      if (!best) { cell.textContent = "nothing within this budget"; return; }
      const a = document.createElement("a");
      a.className = "pick-link";
      a.href = `/ui/supernets/${encodeURIComponent(data.supernet)}/pick?device=${encodeURIComponent(s.device)}&budget_ms=${encodeURIComponent(b)}`;
      a.textContent = `${fmt(best.x, 3)} ms, mIoU ${fmt(best.y, 4)}: ${best.label}`;
      cell.appendChild(a);
    });
  };
  input.addEventListener("input", update);
  document.getElementById("budget-form").addEventListener("submit", (e) => { e.preventDefault(); update(); });
}

document.addEventListener("DOMContentLoaded", () => {
  sortable(document);
  liveRefresh();
  plotFronts();
});
