// The player: the frames the run decoded (one sprite sheet), drawn on a canvas at their
// frame rate, with the method's overlay of the frame on screen: T-VAU's heatmap and boxes,
// VA-GPT's SETS patches on its sampled frames, and every method's anomaly probability.
"use strict";

class Player {
  constructor(canvas, { play, scrub, clock, info, strip }, onTime) {
    this.canvas = canvas;
    this.ctx = canvas.getContext("2d");
    this.ui = { play, scrub, clock, info, strip };
    this.onTime = onTime;
    this.t = 0;
    this.playing = false;
    this.result = null;
    play.addEventListener("click", () => (this.playing ? this.pause() : this.play()));
    scrub.addEventListener("input", () => this.seek(Number(scrub.value) / this.fps));
  }

  load(result) {
    this.pause();
    this.result = result;
    const v = result.view;
    this.fps = Number(v.fps);
    this.n = v.sheet.n;
    this.sheetInfo = v.sheet;
    this.size = v.size; // decoded frame [w, h] in pixels (boxes are in these)
    this.duration = this.n / this.fps;
    const side = 384;
    this.canvas.width = side;
    this.canvas.height = Math.round((side * v.sheet.frame_h) / v.sheet.frame_w);
    this.boxes = new Map();
    for (const row of result.boxes || []) {
      if (!this.boxes.has(row[0])) this.boxes.set(row[0], []);
      this.boxes.get(row[0]).push(row);
    }
    this.ui.scrub.max = String(this.n - 1);
    this.t = 0;
    return new Promise((resolve, reject) => {
      const img = new Image();
      img.onload = () => {
        this.sheet = img;
        this.draw();
        this.drawStrip();
        resolve();
      };
      img.onerror = () => reject(new Error("the frames could not be loaded"));
      img.src = v.frames_url;
    });
  }

  frameAt(t) {
    return Math.max(0, Math.min(this.n - 1, Math.floor(t * this.fps + 1e-6)));
  }

  seek(t) {
    this.t = Math.max(0, Math.min(t, this.duration));
    if (this.playing) {
      this.t0 = this.t;
      this.clock0 = performance.now();
    }
    this.draw();
  }

  play() {
    if (!this.sheet) return;
    if (this.t >= this.duration - 1e-6) this.t = 0;
    this.playing = true;
    this.t0 = this.t;
    this.clock0 = performance.now();
    this.ui.play.innerHTML = "&#10074;&#10074;";
    const tick = (now) => {
      if (!this.playing) return;
      this.t = this.t0 + (now - this.clock0) / 1000;
      if (this.t >= this.duration) {
        this.t = this.duration;
        this.pause();
      }
      this.draw();
      if (this.playing) requestAnimationFrame(tick);
    };
    requestAnimationFrame(tick);
  }

  pause() {
    this.playing = false;
    this.ui.play.innerHTML = "&#9654;";
  }

  blit(ctx, i, w, h) {
    const s = this.sheetInfo;
    const sx = (i % s.cols) * s.frame_w, sy = Math.floor(i / s.cols) * s.frame_h;
    ctx.drawImage(this.sheet, sx, sy, s.frame_w, s.frame_h, 0, 0, w, h);
  }

  draw() {
    if (!this.sheet) return;
    const i = this.frameAt(this.t);
    const { width: w, height: h } = this.canvas;
    this.ctx.clearRect(0, 0, w, h);
    this.blit(this.ctx, i, w, h);
    const info = this.overlay(i, w, h);
    this.ui.scrub.value = String(i);
    this.ui.clock.textContent = `${Math.min(this.t, this.duration).toFixed(2)} / ${this.duration.toFixed(2)} s`;
    this.ui.info.textContent = info;
    this.onTime(this.t);
  }

  overlay(i, w, h) {
    const r = this.result, ctx = this.ctx;
    const p = Number((r.frame_probs || [])[i] ?? 0);
    const above = p >= Number(r.threshold);
    let info = `frame ${i + 1}/${this.n}: anomaly probability ${p.toFixed(3)}`;
    if (r.heatmaps && r.heatmaps[i]) {
      const g = r.heatmaps[i].length, cw = w / g, ch = h / g;
      r.heatmaps[i].forEach((row, y) => row.forEach((v, x) => {
        ctx.fillStyle = `rgba(255, 48, 0, ${(0.6 * Math.max(0, Math.min(1, v))).toFixed(3)})`;
        ctx.fillRect(x * cw, y * ch, cw, ch);
      }));
      const boxes = this.boxes.get(i) || [];
      ctx.lineWidth = 2;
      ctx.strokeStyle = "#ffe14d";
      ctx.fillStyle = "#ffe14d";
      ctx.font = "12px system-ui, sans-serif";
      const sx = w / this.size[0], sy = h / this.size[1];
      for (const [, x1, y1, x2, y2, score] of boxes) {
        ctx.strokeRect(x1 * sx, y1 * sy, (x2 - x1) * sx, (y2 - y1) * sy);
        ctx.fillText(Number(score).toFixed(2), x1 * sx + 2, Math.max(12, y1 * sy - 3));
      }
      info += ` · AHD heatmap, ${boxes.length} box${boxes.length === 1 ? "" : "es"}`;
    }
    const sets = r.view.sets;
    if (sets) {
      const k = sets.times_s.findIndex((ts) => this.frameAt(ts) === i);
      if (k >= 0) {
        this.drawMask(ctx, sets.masks[k], sets.grid, w, h);
        info += ` · SETS: sampled frame ${k + 1}/${sets.times_s.length}, ${Math.round(sets.keep * 100)}% of patches kept`;
      }
    }
    ctx.fillStyle = above ? "rgba(198, 40, 40, 0.9)" : "rgba(29, 35, 48, 0.75)";
    ctx.fillRect(6, 6, 76, 22);
    ctx.fillStyle = "#fff";
    ctx.font = "13px system-ui, sans-serif";
    ctx.fillText(`p ${p.toFixed(3)}`, 12, 22);
    if (above) {
      ctx.strokeStyle = "rgba(198, 40, 40, 0.95)";
      ctx.lineWidth = 6;
      ctx.strokeRect(3, 3, w - 6, h - 6);
    }
    return info;
  }

  drawMask(ctx, mask, g, w, h) {
    const cw = w / g, ch = h / g;
    ctx.lineWidth = 1;
    mask.forEach((row, y) => row.forEach((keep, x) => {
      if (keep) {
        ctx.strokeStyle = "rgba(90, 230, 130, 0.95)";
        ctx.strokeRect(x * cw + 0.5, y * ch + 0.5, cw - 1, ch - 1);
      } else {
        ctx.fillStyle = "rgba(0, 0, 0, 0.55)";
        ctx.fillRect(x * cw, y * ch, cw, ch);
      }
    }));
  }

  drawStrip() {
    const strip = this.ui.strip;
    strip.textContent = "";
    const sets = this.result.view.sets;
    if (!sets) return;
    sets.times_s.forEach((ts, k) => {
      const fig = document.createElement("figure");
      const c = document.createElement("canvas");
      c.width = 88;
      c.height = 88;
      const ctx = c.getContext("2d");
      this.blit(ctx, this.frameAt(ts), 88, 88);
      this.drawMask(ctx, sets.masks[k], sets.grid, 88, 88);
      const cap = document.createElement("figcaption");
      cap.textContent = `SETS ${ts.toFixed(2)} s`;
      fig.append(c, cap);
      fig.addEventListener("click", () => this.seek(ts));
      strip.appendChild(fig);
    });
  }
}

window.Player = Player;
