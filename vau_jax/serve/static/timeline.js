// The anomaly-probability timeline: an SVG step curve of frame_probs over the video's
// seconds, the threshold, the intervals above it and a playhead. Hovering shows the time
// and the value under the pointer; clicking seeks (onSeek(seconds)).
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";

function svgEl(tag, attrs, parent) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
  if (parent) parent.appendChild(el);
  return el;
}

class Timeline {
  constructor(svg, onSeek) {
    this.svg = svg;
    this.onSeek = onSeek;
    this.probs = [];
    this.fps = 1;
    this.duration = 1;
    this.threshold = 0.5;
    this.intervals = [];
    this.time = 0;
    this.m = { l: 40, r: 14, t: 10, b: 26 };
    svg.addEventListener("mousemove", (e) => this.hover(e));
    svg.addEventListener("mouseleave", () => this.hideHover());
    svg.addEventListener("click", (e) => this.onSeek(this.timeAt(e)));
    window.addEventListener("resize", () => { if (this.probs.length) this.draw(); });
  }

  set(result) {
    this.probs = result.frame_probs || [];
    this.fps = Number(result.fps) || 1;
    this.duration = Number(result.duration_s) || this.probs.length / this.fps || 1;
    this.threshold = Number(result.threshold);
    this.intervals = result.intervals_s || [];
    this.time = 0;
    this.draw();
  }

  size() {
    return { w: this.svg.clientWidth || 800, h: this.svg.clientHeight || 190 };
  }

  x(t) {
    const { w } = this.size();
    return this.m.l + (t / this.duration) * (w - this.m.l - this.m.r);
  }

  y(p) {
    const { h } = this.size();
    return this.m.t + (1 - p) * (h - this.m.t - this.m.b);
  }

  timeAt(e) {
    const r = this.svg.getBoundingClientRect();
    const { w } = this.size();
    const f = (e.clientX - r.left - this.m.l) / (w - this.m.l - this.m.r);
    return Math.min(Math.max(f, 0), 1) * this.duration;
  }

  tickStep() {
    const steps = [0.25, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800];
    return steps.find((s) => this.duration / s <= 10) || 3600;
  }

  draw() {
    const svg = this.svg;
    const { w, h } = this.size();
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
    const x0 = this.x(0), x1 = this.x(this.duration);
    for (const p of [0, 0.25, 0.5, 0.75, 1]) {
      svgEl("line", { class: "grid", x1: x0, x2: x1, y1: this.y(p), y2: this.y(p) }, svg);
      if (p % 0.5 === 0) {
        const lab = svgEl("text", { class: "label", x: x0 - 6, y: this.y(p) + 4, "text-anchor": "end" }, svg);
        lab.textContent = p.toFixed(1);
      }
    }
    const step = this.tickStep();
    for (let t = 0; t <= this.duration + 1e-9; t += step) {
      svgEl("line", { class: "axis", x1: this.x(t), x2: this.x(t), y1: this.y(0), y2: this.y(0) + 4 }, svg);
      const lab = svgEl("text", { class: "label", x: this.x(t), y: h - 8, "text-anchor": "middle" }, svg);
      lab.textContent = `${+t.toFixed(2)} s`;
    }
    for (const [a, b] of this.intervals) {
      svgEl("rect", { class: "interval", x: this.x(a), y: this.y(1), width: Math.max(1, this.x(b) - this.x(a)), height: this.y(0) - this.y(1) }, svg);
    }
    let d = "";
    this.probs.forEach((p, i) => {
      const xa = this.x(i / this.fps), xb = this.x(Math.min((i + 1) / this.fps, this.duration));
      d += `${i ? "L" : "M"}${xa.toFixed(1)},${this.y(p).toFixed(1)}L${xb.toFixed(1)},${this.y(p).toFixed(1)}`;
    });
    if (d) {
      svgEl("path", { class: "area", d: `${d}L${x1.toFixed(1)},${this.y(0)}L${x0.toFixed(1)},${this.y(0)}Z` }, svg);
      svgEl("path", { id: "curve", class: "curve", d }, svg);
    }
    svgEl("line", { class: "axis", x1: x0, x2: x1, y1: this.y(0), y2: this.y(0) }, svg);
    if (Number.isFinite(this.threshold)) {
      svgEl("line", { class: "threshold", x1: x0, x2: x1, y1: this.y(this.threshold), y2: this.y(this.threshold) }, svg);
      const lab = svgEl("text", { class: "label", x: x1 - 2, y: this.y(this.threshold) - 4, "text-anchor": "end" }, svg);
      lab.textContent = `threshold ${this.threshold}`;
    }
    this.playhead = svgEl("line", { class: "playhead", y1: this.y(1), y2: this.y(0) }, svg);
    this.hoverGroup = svgEl("g", { id: "hover", visibility: "hidden" }, svg);
    this.hoverLine = svgEl("line", { class: "hoverline", y1: this.y(1), y2: this.y(0) }, this.hoverGroup);
    this.hoverDot = svgEl("circle", { r: 3.5, fill: "#2f5fd0" }, this.hoverGroup);
    this.tipBox = svgEl("rect", { class: "tipbox", rx: 4, height: 20 }, this.hoverGroup);
    this.tipText = svgEl("text", { id: "hover-text", class: "tiptext" }, this.hoverGroup);
    this.setTime(this.time);
  }

  setTime(t) {
    this.time = t;
    if (!this.playhead) return;
    const x = this.x(Math.min(t, this.duration));
    this.playhead.setAttribute("x1", x);
    this.playhead.setAttribute("x2", x);
  }

  valueAt(t) {
    const i = Math.min(this.probs.length - 1, Math.floor(t * this.fps + 1e-6));
    return this.probs[Math.max(0, i)];
  }

  hover(e) {
    if (!this.probs.length || !this.hoverGroup) return;
    const t = this.timeAt(e);
    const p = this.valueAt(t);
    const x = this.x(t), y = this.y(p);
    const { w } = this.size();
    this.hoverLine.setAttribute("x1", x);
    this.hoverLine.setAttribute("x2", x);
    this.hoverDot.setAttribute("cx", x);
    this.hoverDot.setAttribute("cy", y);
    this.tipText.textContent = `${t.toFixed(2)} s · p = ${p.toFixed(3)}`;
    const tw = this.tipText.getComputedTextLength() + 12;
    const bx = x + 8 + tw > w ? x - 8 - tw : x + 8;
    const by = Math.max(this.m.t, Math.min(y - 26, this.y(0) - 22));
    this.tipBox.setAttribute("x", bx);
    this.tipBox.setAttribute("y", by);
    this.tipBox.setAttribute("width", tw);
    this.tipText.setAttribute("x", bx + 6);
    this.tipText.setAttribute("y", by + 14);
    this.hoverGroup.setAttribute("visibility", "visible");
  }

  hideHover() {
    if (this.hoverGroup) this.hoverGroup.setAttribute("visibility", "hidden");
  }
}

window.Timeline = Timeline;
