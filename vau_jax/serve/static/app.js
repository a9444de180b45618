// The page: choose a run, upload a video (or pick an example), follow the job, then show
// the player, the timeline, the ranked options / answers, the explanation and the chat.
"use strict";

const $ = (id) => document.getElementById(id);
const MB = 1024 * 1024;
const state = { runs: [], limits: {}, result: null, polling: null };

async function api(path, options) {
  const res = await fetch(path, options);
  let body = null;
  try {
    body = await res.json();
  } catch (err) {
    body = null;
  }
  if (!res.ok) throw new Error((body && body.detail) || `${res.status} ${res.statusText}`);
  return body;
}

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = !message;
}

function busy(on, stage = "", progress = 0) {
  $("progress").hidden = !on;
  $("go").disabled = on;
  $("stage").textContent = stage;
  $("bar").value = progress;
}

const timeline = new Timeline($("timeline"), (t) => player.seek(t));
const player = new Player(
  $("player"),
  { play: $("play"), scrub: $("scrub"), clock: $("clock"), info: $("overlay-info"), strip: $("sets-strip") },
  (t) => timeline.setTime(t),
);

async function loadExamples() {
  const sel = $("example");
  sel.length = 1;
  const run = $("run").value;
  const entry = state.runs.find((r) => r.name === run);
  $("run-method").textContent = entry ? entry.method : "";
  if (!run) return;
  const { examples } = await api(`/api/examples?run=${encodeURIComponent(run)}`);
  for (const ex of examples) sel.add(new Option(ex.label, ex.id));
}

async function init() {
  try {
    state.limits = await api("/api/limits");
    const { runs } = await api("/api/runs");
    state.runs = runs;
    for (const r of runs) $("run").add(new Option(`${r.name} (${r.method})`, r.name));
    const l = state.limits;
    $("limits").textContent = `Uploads up to ${l.max_upload_mb} MB` +
      (l.max_seconds ? `; at most the first ${l.max_seconds} s of a video are explained.` : ".") +
      " The video is decoded at the run's frame rate and size; the player shows those frames.";
    await loadExamples();
  } catch (err) {
    showError(err.message);
  }
}

function upload(form) {
  // XMLHttpRequest: fetch cannot report upload progress.
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", "/api/jobs");
    xhr.responseType = "json";
    xhr.upload.onprogress = (e) => {
      if (e.lengthComputable) busy(true, `uploading ${Math.round((100 * e.loaded) / e.total)}%`, 0.02);
    };
    xhr.onload = () => {
      const body = xhr.response || {};
      if (xhr.status === 202) resolve(body.job);
      else reject(new Error(body.detail || `${xhr.status} ${xhr.statusText}`));
    };
    xhr.onerror = () => reject(new Error("the upload failed (connection closed)"));
    xhr.send(form);
  });
}

async function follow(job) {
  for (;;) {
    const s = await api(`/api/jobs/${job}`);
    if (s.state === "done") return s.result;
    if (s.state === "error") throw new Error(s.error);
    busy(true, `${s.stage} (${s.elapsed_s.toFixed(1)} s)`, s.progress);
    await new Promise((r) => setTimeout(r, 400));
  }
}

async function explain(e) {
  e.preventDefault();
  showError("");
  const file = $("video").files[0];
  const example = $("example").value;
  if (!file && !example) return showError("choose a video file or an example");
  const limit = Number(state.limits.max_upload_mb);
  if (file && file.size > limit * MB) {
    return showError(`upload too large: ${(file.size / MB).toFixed(1)} MB > the server's limit of ${limit} MB (--max_upload_mb)`);
  }
  const form = new FormData();
  form.append("run", $("run").value);
  if (file) form.append("video", file, file.name);
  else form.append("example", example);
  if ($("seconds").value) form.append("max_seconds", $("seconds").value);
  busy(true, file ? "uploading" : "starting", 0.01);
  try {
    const job = await upload(form);
    const result = await follow(job);
    busy(false);
    await render(result);
  } catch (err) {
    busy(false);
    showError(err.message);
  }
}

function cell(row, text, tag = "td") {
  const c = document.createElement(tag);
  c.textContent = text;
  row.appendChild(c);
  return c;
}

function fillRanked(r) {
  const table = $("options");
  table.textContent = "";
  const head = table.insertRow();
  if (r.options) {
    $("ranked-title").textContent = "Ranked options (log-likelihood of each answer line)";
    ["#", "option", "p"].forEach((h) => cell(head, h, "th"));
    r.options.forEach((o, k) => {
      const row = table.insertRow();
      cell(row, String(k + 1));
      cell(row, `${o.letter}. ${o.text}`);
      const pc = cell(row, "");
      const bar = document.createElement("div");
      bar.className = "pbar";
      const fill = document.createElement("span");
      fill.style.width = `${(100 * o.p).toFixed(1)}%`;
      bar.appendChild(fill);
      pc.append(bar, document.createTextNode(` ${o.p.toFixed(3)}`));
    });
  } else if (r.answers) {
    $("ranked-title").textContent = "Answers of the LVLM";
    ["question", "answer"].forEach((h) => cell(head, h, "th"));
    for (const a of r.answers) {
      const row = table.insertRow();
      cell(row, a.question);
      cell(row, a.answer || "(empty answer)");
    }
  } else {
    $("ranked-title").textContent = "Intervals above the threshold";
    ["start (s)", "end (s)"].forEach((h) => cell(head, h, "th"));
    for (const [a, b] of r.intervals_s) {
      const row = table.insertRow();
      cell(row, a.toFixed(2));
      cell(row, b.toFixed(2));
    }
    if (!r.intervals_s.length) cell(table.insertRow(), "none").colSpan = 2;
  }
}

async function render(r) {
  state.result = r;
  $("result").hidden = false;
  $("video-name").textContent = `${r.video} · ${r.run.method} (${r.run.stage}, step ${r.run.checkpoint_step})`;
  const maxP = r.frame_probs.reduce((a, b) => Math.max(a, b), 0);
  if ("explanation" in r) {
    $("explanation").textContent = r.explanation || "(the model's answer is empty)";
  } else {
    $("explanation").textContent = `No language model in this run: the anomaly scorer's ` +
      `maximum is ${maxP.toFixed(3)}, ${r.intervals_s.length} interval(s) above ${r.threshold}.`;
  }
  $("note").textContent = r.note || "";
  $("timeline-caption").textContent = `${r.n_frames} frames at ${r.fps} fps · max ${maxP.toFixed(3)}`;
  fillRanked(r);
  resetChat(r);
  timeline.set(r);
  await player.load(r);
}

function say(text, kind) {
  const div = document.createElement("div");
  div.className = `msg ${kind}`;
  div.textContent = text;
  $("chat-log").appendChild(div);
  $("chat-log").scrollTop = $("chat-log").scrollHeight;
  return div;
}

function resetChat(r) {
  $("chat-log").textContent = "";
  const can = r.view.chat;
  $("chat-input").disabled = !can;
  $("chat-send").disabled = !can;
  if (!can) say(r.view.chat_note || "this run has no language model to ask", "sys");
}

async function chat(e) {
  e.preventDefault();
  const input = $("chat-input");
  const message = input.value.trim();
  if (!message || !state.result) return;
  input.value = "";
  say(message, "user");
  const pending = say("thinking…", "pending");
  $("chat-send").disabled = true;
  try {
    const { answer } = await api("/api/chat", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ session: state.result.session, message }),
    });
    pending.className = "msg bot";
    pending.textContent = answer || "(empty answer)";
  } catch (err) {
    pending.className = "msg sys";
    pending.textContent = err.message;
  } finally {
    $("chat-send").disabled = !state.result.view.chat;
  }
}

$("run").addEventListener("change", () => loadExamples().catch((err) => showError(err.message)));
$("video").addEventListener("change", () => { if ($("video").files.length) $("example").value = ""; });
$("example").addEventListener("change", () => { if ($("example").value) $("video").value = ""; });
$("explain-form").addEventListener("submit", explain);
$("chat-form").addEventListener("submit", chat);
init();
