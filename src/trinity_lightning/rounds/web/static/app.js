// trinity label: one page for class, tag-span and yes/no queries. Plain JavaScript, no build step.
// Every piece of query data is put in the page as text (textContent), never as HTML.
"use strict";
(() => {
  const COLORS = ["#d9480f", "#2b8a3e", "#1864ab", "#862e9c", "#c2255c", "#5c940d", "#0b7285", "#e67700", "#495057"];
  const S = {
    worker: null, round: null, queries: [], byIndex: new Map(), mine: new Map(), order: [], counts: {},
    k: 1, complete: 0, current: null, skipped: new Set(), timings: [], tag: null, busy: false, newRound: null,
  };
  window.trinity = S; // read by the browser tests and the latency benchmark

  const $ = (id) => document.getElementById(id);
  function el(tag, text, cls) {
    const e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }
  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }
  function message(text, error) { const m = $("message"); m.textContent = text || ""; m.className = error ? "error" : ""; }

  async function api(path, body) {
    const opts = body === undefined ? {} : {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    };
    const response = await fetch(path, opts);
    let data = null;
    try { data = await response.json(); } catch (e) { data = { error: response.statusText }; }
    return { status: response.status, data };
  }

  // ---------------------------------------------------------------------------------------- name
  function askName() {
    $("task").hidden = true; $("done").hidden = true; $("name-form").hidden = false;
    $("name-input").value = S.worker || ""; $("name-input").focus();
  }
  $("name-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const name = $("name-input").value.trim();
    if (!name) return;
    S.worker = name; localStorage.setItem("trinity.worker", name);
    $("name-form").hidden = true; $("who").textContent = "annotator: " + name;
    start();
  });
  $("change-name").addEventListener("click", askName);

  // ---------------------------------------------------------------------------------------- rounds
  async function loadRound() {
    const { data } = await api("/api/queries");
    S.round = data.round; S.queries = data.queries || []; S.byIndex = new Map(S.queries.map((q) => [q.index, q]));
    S.skipped = new Set(); S.current = null; S.newRound = null; $("banner").hidden = true;
    await refreshState();
  }

  async function refreshState() {
    const { data } = await api("/api/state?worker=" + encodeURIComponent(S.worker || ""));
    if (data.round !== S.round) {
      const mineLeft = S.queries.some((q) => todo(q));
      if (S.round === null || !mineLeft) { await loadRound(); showNext(); return; }
      S.newRound = data.round;
      const b = $("banner"); clear(b); b.hidden = false;
      b.appendChild(el("span", `Round ${data.round}'s queries arrived (${data.total} items). `));
      const go = el("button", `go to round ${data.round}`); go.type = "button"; go.id = "go-round";
      go.addEventListener("click", async () => { await loadRound(); showNext(); });
      b.appendChild(go);
      return;
    }
    S.k = data.k; S.counts = data.counts || {}; S.complete = data.complete || 0;
    S.mine = new Map((data.mine || []).map(([i, label]) => [i, label]));
    S.order = (data.mine || []).map(([i]) => i);
    progress(); history();
  }

  // a relabel query is not for the people who labelled the item before (the server answers them 409)
  function answeredBefore(q) { return Boolean(q.relabel) && (q.answered_by || []).includes(S.worker); }
  function todo(q) { return !S.mine.has(q.index) && (S.counts[q.index] || 0) < S.k && !answeredBefore(q); }

  function progress() {
    const total = S.queries.length, mine = S.mine.size;
    $("progress-bar").style.width = total ? (100 * mine / total) + "%" : "0";
    $("progress-text").textContent = S.round === null ? "no queries yet" :
      `${mine} of ${total} answered by you · ${S.complete} of ${total} items complete` +
      (S.k > 1 ? ` (${S.k} people each)` : "") + (S.skipped.size ? ` · ${S.skipped.size} skipped` : "");
    $("round-info").textContent = S.round === null ? "" : `round ${S.round}`;
  }

  function history() {
    const list = $("history-list"); clear(list);
    for (const index of [...S.order].reverse()) {
      const li = el("li"); const a = el("a", `#${index}: ${summary(S.byIndex.get(index), S.mine.get(index))}`);
      a.dataset.index = index; a.addEventListener("click", () => show(index)); li.appendChild(a); list.appendChild(li);
    }
  }
  function summary(q, label) {
    if (Array.isArray(label)) { const ents = spansOf(q, label).map((s) => s.type); return ents.length ? ents.join(", ") : "no entities"; }
    return String(label);
  }

  function showNext() {
    const n = S.queries.length;
    const from = S.current === null ? -1 : S.queries.findIndex((q) => q.index === S.current);
    for (let step = 1; step <= n; step++) {
      const q = S.queries[(from + step) % n];
      if (todo(q) && !S.skipped.has(q.index)) { show(q.index); return; }
    }
    done();
  }

  function done() {
    S.current = null; $("task").hidden = true; const d = $("done"); clear(d); d.hidden = false;
    if (S.round === null) { d.appendChild(el("p", "No queries yet: this page shows the round as soon as its queries file is written.")); return; }
    d.appendChild(el("h2", `Round ${S.round}: nothing left for you.`));
    d.appendChild(el("p", "Your answers are saved; the campaign picks them up. This page shows the next round when its queries arrive."));
    if (S.skipped.size) {
      const again = el("button", `show the ${S.skipped.size} skipped item(s) again`); again.type = "button"; again.id = "unskip";
      again.addEventListener("click", () => { S.skipped.clear(); showNext(); }); d.appendChild(again);
    }
    progress();
  }

  // ---------------------------------------------------------------------------------------- items
  function show(index) {
    const q = S.byIndex.get(index); if (!q) return;
    S.current = index; $("done").hidden = true; $("task").hidden = false; message("");
    const position = S.queries.findIndex((x) => x.index === index) + 1;
    const answered = S.mine.has(index);
    $("item-id").textContent = `item ${position} of ${S.queries.length} · pool index ${index} · ${q.kind}` +
      (answered ? " · answered: change it or skip" : "");
    for (const id of ["question", "path", "example", "tokens", "choices", "candidates", "help"]) clear($(id));
    relabelBadge(q);
    $("accept").hidden = q.kind !== "tags"; $("tokens").hidden = q.kind !== "tags";
    const example = q.example;
    if (q.kind === "yesno") {
      $("question").appendChild(questionWords(q.question || "?"));
      if (example && Array.isArray(example.path)) $("path").textContent = "path: " + example.path.map(String).join(" › ");
      if (example && Array.isArray(example.candidates)) {
        $("candidates").textContent = `candidates left (${example.candidates.length}): ` + example.candidates.map(String).join(", ");
      }
      showExample(q, example);
      choiceButtons([["yes", "y"], ["no", "n"]], answered ? S.mine.get(index) : null);
      $("help").textContent = "y: yes · n: no · s: skip · u: undo";
    } else if (q.kind === "tags") {
      S.tag = tagState(q, answered ? S.mine.get(index) : null);
      renderTokens(); entityButtons(); $("tokens").focus();
      $("help").textContent = "select tokens with the mouse (drag) or the keyboard (←/→, shift+←/→), then press the entity's number · " +
        "x or Delete: remove the entity under the cursor · Esc: clear the selection · Enter: accept · s: skip · u: undo";
    } else {
      showExample(q, example);
      const names = q.choices || [];
      choiceButtons(names.map((name, i) => [name, i < 9 ? String(i + 1) : i === 9 ? "0" : ""]), answered ? S.mine.get(index) : null);
      $("help").textContent = "number keys or click: choose · s: skip · u: undo";
    }
    progress();
  }

  function relabelBadge(q) {
    // a further label of an item labelled already: a badge, and who answered it before (as text, never HTML)
    const box = $("relabel"); clear(box); box.hidden = !q.relabel;
    if (!q.relabel) return;
    box.appendChild(el("span", "relabel", "badge"));
    const who = q.answered_by || [];
    box.appendChild(el("span", "another label of an item that is labelled already · " +
      (who.length ? "answered before by " + who.map(String).join(", ") : "earlier annotators not recorded"), "who"));
    if (answeredBefore(q)) box.appendChild(el("span", " · you answered it before: someone else should", "mine"));
  }

  function questionWords(text) {
    // "Is this a dog?" -> Is this a <em>dog</em>? (as text nodes: nothing from the file is parsed as HTML)
    const span = el("span"); const m = /^(Is (?:this|it) (?:a |an )?(?:kind of )?)(.+?)(\?)$/.exec(text);
    if (!m) { span.textContent = text; return span; }
    span.appendChild(document.createTextNode(m[1])); span.appendChild(el("em", m[2])); span.appendChild(document.createTextNode(m[3]));
    return span;
  }

  function showExample(q, example) {
    const box = $("example");
    if (example === null || example === undefined) return;
    if (typeof example !== "object" || Array.isArray(example)) { box.appendChild(el("div", JSON.stringify(example))); return; }
    if (typeof example.image === "string") {
      const img = el("img"); img.alt = `example ${q.index}`;
      img.src = example.image.startsWith("data:image/") ? example.image : `/api/image/${S.round}/${q.index}`;
      box.appendChild(img);
    }
    if (typeof example.text === "string") box.appendChild(el("div", example.text, "text"));
    if (Array.isArray(example.tokens)) box.appendChild(el("div", example.tokens.map(String).join(" "), "text"));
    if (example.features !== undefined) box.appendChild(features(example.features));
    for (const [key, value] of Object.entries(example)) {
      if (["image", "text", "tokens", "features", "path", "candidates"].includes(key)) continue;
      box.appendChild(el("div", `${key}: ${typeof value === "string" ? value : JSON.stringify(value)}`, "field"));
    }
  }

  function features(value) {
    // a grey-level picture for a 2-D (or 1xHxW) array or a square number of values, else the JSON text
    let grid = value;
    if (Array.isArray(grid) && grid.length === 1 && Array.isArray(grid[0]) && Array.isArray(grid[0][0])) grid = grid[0];
    if (Array.isArray(grid) && grid.every((v) => typeof v === "number")) {
      const side = Math.round(Math.sqrt(grid.length));
      if (side * side === grid.length && side > 1) grid = Array.from({ length: side }, (_, r) => grid.slice(r * side, (r + 1) * side));
    }
    const numeric = Array.isArray(grid) && grid.length > 1 && grid.every((r) => Array.isArray(r) && r.length === grid[0].length && r.every((v) => typeof v === "number"));
    if (!numeric) { const text = JSON.stringify(value); return el("pre", text.length > 2000 ? text.slice(0, 2000) + " …" : text); }
    const flat = grid.flat(), lo = Math.min(...flat), hi = Math.max(...flat), h = grid.length, w = grid[0].length;
    const scale = Math.max(1, Math.floor(240 / Math.max(h, w)));
    const canvas = el("canvas"); canvas.width = w * scale; canvas.height = h * scale;
    const ctx = canvas.getContext("2d");
    grid.forEach((row, r) => row.forEach((v, c) => {
      const g = hi > lo ? Math.round(255 * (1 - (v - lo) / (hi - lo))) : 255;
      ctx.fillStyle = `rgb(${g},${g},${g})`; ctx.fillRect(c * scale, r * scale, scale, scale);
    }));
    return canvas;
  }

  function choiceButtons(pairs, chosen) {
    const box = $("choices");
    pairs.forEach(([name, key], i) => {
      const b = el("button"); b.type = "button"; b.dataset.label = name; b.dataset.key = key;
      if (key) b.appendChild(el("kbd", key)); b.appendChild(document.createTextNode(name));
      if (chosen !== null && chosen !== undefined && String(chosen) === String(name)) b.classList.add("chosen");
      b.addEventListener("click", () => submit(name, performance.now()));
      box.appendChild(b);
    });
  }

  // ---------------------------------------------------------------------------------------- spans
  function entityTypes(q) {
    const choices = q.choices || [];
    const bio = choices.length > 0 && choices.every((c) => c === "O" || c.startsWith("B-") || c.startsWith("I-"));
    const types = bio ? [...new Set(choices.filter((c) => c.startsWith("B-")).map((c) => c.slice(2)))] : choices.filter((c) => c !== "O");
    return { bio, types };
  }

  function spansOf(q, tags) {
    const { bio } = entityTypes(q); const spans = [];
    tags.forEach((tag, i) => {
      if (tag === "O") return;
      const type = bio ? tag.slice(2) : tag; const last = spans[spans.length - 1];
      const continues = last && last.end === i - 1 && last.type === type && (bio ? tag.startsWith("I-") : true);
      if (continues) last.end = i; else spans.push({ start: i, end: i, type });
    });
    return spans;
  }

  function tagState(q, answer) {
    const tokens = (q.example && q.example.tokens) || [];
    return { q, tokens, spans: answer ? spansOf(q, answer) : [], anchor: 0, focus: 0, dragging: false, ...entityTypes(q) };
  }

  function tagsOf(t) {
    const tags = t.tokens.map(() => "O");
    for (const s of t.spans) for (let i = s.start; i <= s.end; i++) tags[i] = t.bio ? (i === s.start ? "B-" : "I-") + s.type : s.type;
    return tags;
  }

  function spanAt(t, i) { return t.spans.find((s) => s.start <= i && i <= s.end); }

  function renderTokens() {
    const t = S.tag, box = $("tokens"); clear(box);
    t.tokens.forEach((token, i) => {
      const span = el("span", token, "tok"); span.dataset.i = i;
      const ent = spanAt(t, i);
      if (ent) {
        const color = COLORS[t.types.indexOf(ent.type) % COLORS.length];
        span.classList.add("ent"); span.style.borderBottomColor = color; span.style.background = color + "22";
        span.dataset.entity = ent.type;
      }
      box.appendChild(span);
      if (ent && ent.end === i) {
        const badge = el("span", ent.type, "ent-label"); badge.title = "click to remove";
        badge.style.background = COLORS[t.types.indexOf(ent.type) % COLORS.length];
        badge.addEventListener("mousedown", (ev) => { ev.stopPropagation(); ev.preventDefault(); removeSpan(ent); });
        box.appendChild(badge);
      }
      box.appendChild(document.createTextNode(" "));
    });
    paint();
  }

  function paint() { // the selection and the cursor only: token elements stay the same while selecting
    const t = S.tag, lo = Math.min(t.anchor, t.focus), hi = Math.max(t.anchor, t.focus);
    for (const tok of $("tokens").querySelectorAll(".tok")) {
      const i = Number(tok.dataset.i);
      tok.classList.toggle("sel", i >= lo && i <= hi); tok.classList.toggle("cursor", i === t.focus);
    }
  }

  function entityButtons() {
    const box = $("choices"), t = S.tag;
    t.types.forEach((type, i) => {
      const b = el("button"); b.type = "button"; b.dataset.entity = type;
      if (i < 9) b.appendChild(el("kbd", String(i + 1)));
      b.appendChild(document.createTextNode(type)); b.style.borderColor = COLORS[i % COLORS.length];
      b.addEventListener("mousedown", (ev) => ev.preventDefault()); // keep the token selection
      b.addEventListener("click", () => assign(type));
      box.appendChild(b);
    });
  }

  function assign(type) {
    const t = S.tag, start = Math.min(t.anchor, t.focus), end = Math.max(t.anchor, t.focus);
    if (!t.tokens.length) return;
    t.spans = t.spans.filter((s) => s.end < start || s.start > end); // no overlaps: the new span replaces them
    t.spans.push({ start, end, type }); t.spans.sort((a, b) => a.start - b.start);
    t.anchor = t.focus = end; renderTokens();
  }
  function removeSpan(span) { const t = S.tag; t.spans = t.spans.filter((s) => s !== span); renderTokens(); }

  $("tokens").addEventListener("mousedown", (ev) => {
    const tok = ev.target.closest(".tok"); if (!tok || !S.tag) return;
    ev.preventDefault(); const i = Number(tok.dataset.i);
    if (ev.shiftKey) S.tag.focus = i; else S.tag.anchor = S.tag.focus = i;
    S.tag.dragging = true; paint(); $("tokens").focus();
  });
  $("tokens").addEventListener("mouseover", (ev) => {
    const tok = ev.target.closest(".tok"); if (!tok || !S.tag || !S.tag.dragging) return;
    S.tag.focus = Number(tok.dataset.i); paint();
  });
  document.addEventListener("mouseup", () => { if (S.tag) S.tag.dragging = false; });

  function tagKey(ev) {
    const t = S.tag, n = t.tokens.length;
    if (ev.key === "ArrowRight" || ev.key === "ArrowLeft") {
      const step = ev.key === "ArrowRight" ? 1 : -1; t.focus = Math.min(n - 1, Math.max(0, t.focus + step));
      if (!ev.shiftKey) t.anchor = t.focus; paint(); return true;
    }
    if (ev.key === "Home" || ev.key === "End") {
      t.focus = ev.key === "Home" ? 0 : n - 1; if (!ev.shiftKey) t.anchor = t.focus; paint(); return true;
    }
    if (/^[1-9]$/.test(ev.key) && Number(ev.key) <= t.types.length) { assign(t.types[Number(ev.key) - 1]); return true; }
    if (ev.key === "x" || ev.key === "Delete" || ev.key === "Backspace") { const s = spanAt(t, t.focus); if (s) removeSpan(s); return true; }
    if (ev.key === "Escape") { t.anchor = t.focus; paint(); return true; }
    if (ev.key === "Enter") { submit(tagsOf(t), performance.now()); return true; }
    return false;
  }
  $("accept").addEventListener("click", () => { if (S.tag) submit(tagsOf(S.tag), performance.now()); });

  // ---------------------------------------------------------------------------------------- answers
  async function submit(label, t0) {
    if (S.current === null || S.busy) return;
    const index = S.current; S.busy = true;
    try {
      const { status, data } = await api("/api/answer", { round: S.round, index, label, worker: S.worker });
      if (status !== 200) {
        message(data.error || `refused (${status})`, true);
        if (status === 409) { await refreshState(); if (S.current === index && !todo(S.byIndex.get(index)) && !S.mine.has(index)) showNext(); }
        return;
      }
      const ms = performance.now() - t0; S.timings.push(ms);
      S.counts[index] = data.count; S.complete = data.complete;
      S.mine.set(index, data.saved.label); S.order = S.order.filter((i) => i !== index).concat([index]);
      S.skipped.delete(index);
      history(); showNext(); message(`saved #${index} (${ms.toFixed(0)} ms)`);
    } catch (err) {
      message("not saved: the server did not answer (" + err + "); try again", true);
    } finally { S.busy = false; }
  }

  function skip() { if (S.current === null) return; S.skipped.add(S.current); showNext(); }

  function undo() {
    // answers are saved at once (append-only, the last answer wins): undo reopens your last answer to change it
    const order = S.order.filter((i) => i !== S.current || !S.mine.has(i));
    const last = S.current !== null && S.order[S.order.length - 1] === S.current ? S.order[S.order.length - 2] : order[order.length - 1];
    if (last === undefined) { message("nothing to undo"); return; }
    show(last); message(`undo: change your answer to #${last} (skip keeps it)`);
  }
  $("skip").addEventListener("click", skip);
  $("undo").addEventListener("click", undo);

  document.addEventListener("keydown", (ev) => {
    if (!$("name-form").hidden || S.current === null || ev.altKey || ev.metaKey) return;
    const t0 = performance.now(), q = S.byIndex.get(S.current);
    if (ev.ctrlKey) { if (ev.key === "z") { undo(); ev.preventDefault(); } return; }
    let handled = q.kind === "tags" && tagKey(ev);
    if (!handled) {
      handled = true;
      if (ev.key === "s") skip();
      else if (ev.key === "u") undo();
      else if (q.kind === "yesno" && (ev.key === "y" || ev.key === "n")) submit(ev.key === "y" ? "yes" : "no", t0);
      else if (q.kind === "class" && /^[0-9]$/.test(ev.key)) {
        const i = ev.key === "0" ? 9 : Number(ev.key) - 1; const names = q.choices || [];
        if (i < names.length) submit(names[i], t0); else handled = false;
      } else handled = false;
    }
    if (handled) ev.preventDefault();
  });

  // ---------------------------------------------------------------------------------------- start
  async function start() {
    await loadRound(); showNext();
    if (!S.polling) S.polling = setInterval(() => { refreshState().catch(() => message("server unreachable: retrying", true)); }, 1500);
  }
  S.worker = localStorage.getItem("trinity.worker");
  if (S.worker) { $("who").textContent = "annotator: " + S.worker; start(); } else askName();
})();
