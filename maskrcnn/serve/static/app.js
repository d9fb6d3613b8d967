// The page: images go one by one to /v1/predict; the answers are kept, and the score slider,
// class filter, opacity and selection re-draw from them without a new request. Several images:
// a gallery with counts, and every answer downloadable at once (COCO results here, the tools'
// formats through /v1/export).
const $ = (id) => document.getElementById(id);
const page = { entries: [], current: -1, selected: null, hovered: null, hiddenLabels: new Set(), floor: 0,
               drawn: false, busy: false };
window.maskrcnnPage = page;  // the answers and state, for tests and the console
const viewer = new Viewer($("canvas"), (i) => select(i, true));
page.viewer = viewer;

function threshold() { return parseFloat($("score").value); }

function shownOf(answer) {  // indices of the instances passing the slider and the class filter
  const thresh = threshold();
  return answer.instances.map((d, i) => i).filter((i) => {
    const d = answer.instances[i];
    return d.score >= thresh && !page.hiddenLabels.has(d.label);
  });
}

function status(text, isError = false) {
  $("status").textContent = text;
  $("status").className = isError ? "error" : "";
}

function entry() { return page.entries[page.current]; }

function redraw() {
  const e = entry();
  if (!e || !e.answer) return;
  viewer.shown = shownOf(e.answer);
  viewer.opacity = parseFloat($("opacity").value);
  viewer.highlight = page.hovered ?? page.selected;
  viewer.draw();
  page.drawn = true;
}

function refresh() {  // filters changed: list, counts, canvas
  showList();
  updateGallery();
  redraw();
}

function showList() {
  const list = $("instances"), e = entry();
  list.textContent = "";
  if (!e || !e.answer) return;
  const shown = shownOf(e.answer);
  if (page.selected !== null && !shown.includes(page.selected)) page.selected = null;
  shown.forEach((i) => {
    const d = e.answer.instances[i], layer = e.layers[i], item = document.createElement("li");
    const button = document.createElement("button"), swatch = document.createElement("span");
    const meta = document.createElement("span");
    swatch.className = "swatch"; swatch.style.background = `rgb(${colour(i).join(",")})`;
    meta.className = "meta";
    meta.textContent = `${layer ? layer.area : 0} px · [${d.box.map((v) => Math.round(v)).join(", ")}]`;
    button.dataset.index = i;
    button.setAttribute("aria-selected", String(i === page.selected));
    button.append(swatch, `${d.label_name} ${d.score.toFixed(2)}`, meta);
    button.addEventListener("click", () => select(i === page.selected ? null : i));
    button.addEventListener("mouseenter", () => { page.hovered = i; redraw(); });
    button.addEventListener("mouseleave", () => { page.hovered = null; redraw(); });
    item.append(button);
    list.append(item);
  });
  $("count").textContent = `${shown.length} instance${shown.length === 1 ? "" : "s"}`;
  $("count").dataset.count = shown.length;
}

function select(i, reveal = false) {
  page.selected = i;
  document.querySelectorAll("#instances button").forEach((b) => {
    b.setAttribute("aria-selected", String(Number(b.dataset.index) === i));
    if (reveal && Number(b.dataset.index) === i) b.scrollIntoView({ block: "nearest" });
  });
  redraw();
}

$("instances").addEventListener("keydown", (e) => {  // arrows move through the list, Escape clears
  const buttons = [...document.querySelectorAll("#instances button")];
  const at = buttons.indexOf(document.activeElement);
  if (e.key === "Escape") { select(null); return; }
  const next = { ArrowDown: at + 1, ArrowUp: at - 1, Home: 0, End: buttons.length - 1 }[e.key];
  if (next === undefined || !buttons.length) return;
  e.preventDefault();
  const button = buttons[Math.min(Math.max(next, 0), buttons.length - 1)];
  button.focus();
  select(Number(button.dataset.index));
});

function showClasses() {  // one checkbox per class found in any answer
  const names = new Map();
  page.entries.forEach((e) => e.answer && e.answer.instances.forEach((d) => names.set(d.label, d.label_name)));
  const box = $("classes");
  const known = new Set([...box.querySelectorAll("input")].map((c) => Number(c.dataset.label)));
  [...names].sort((a, b) => a[0] - b[0]).filter(([label]) => !known.has(label)).forEach(([label, name]) => {
    const item = document.createElement("label"), check = document.createElement("input");
    check.type = "checkbox"; check.checked = true; check.dataset.label = label;
    check.addEventListener("change", () => {
      if (check.checked) page.hiddenLabels.delete(label); else page.hiddenLabels.add(label);
      refresh();
    });
    item.append(check, ` ${name}`);
    box.append(item);
  });
}

async function show(index) {
  const e = page.entries[index];
  if (!e || !e.answer) return;
  page.current = index; page.selected = null; page.hovered = null; page.drawn = false;
  const image = await createImageBitmap(e.file);
  if (page.current !== index) { image.close(); return; }
  if (viewer.image && viewer.image.close) viewer.image.close();
  e.layers = e.layers || e.answer.instances.map((d, i) => (d.mask ? maskLayer(d.mask, colour(i)) : null));
  viewer.setImage(image, e.answer.width, e.answer.height, e.layers, e.answer.instances.map((d) => d.keypoints));
  showList();
  updateGallery();
  redraw();
  status(`${e.name}: ${e.answer.width}x${e.answer.height}, ${e.answer.instances.length} detections ` +
         `scoring >= ${e.answer.score_thresh}, ${e.answer.time_ms.toFixed(0)} ms`);
}

function updateGallery() {
  const gallery = $("gallery");
  if (page.entries.length < 2) { gallery.textContent = ""; return; }
  page.entries.forEach((e, index) => {
    if (!e.button) {
      e.button = document.createElement("button");
      e.thumb = document.createElement("canvas"); e.caption = document.createElement("span");
      e.thumb.width = 96; e.thumb.height = 72;
      e.button.append(e.thumb, e.caption);
      e.button.addEventListener("click", () => show(index));
    }
    if (!e.button.isConnected) gallery.append(e.button);
    const count = e.answer ? shownOf(e.answer).length : null;
    e.caption.textContent = `${e.name} · ${e.error ? "error" : count ?? "…"}`;
    e.button.dataset.count = count ?? "";
    e.button.title = e.error || `${e.name}: ${count ?? "pending"} instances`;
    e.button.setAttribute("aria-current", String(index === page.current));
  });
}

async function thumbnail(e) {
  const image = await createImageBitmap(e.file), ctx = e.thumb.getContext("2d");
  const s = Math.min(96 / image.width, 72 / image.height);
  ctx.drawImage(image, (96 - image.width * s) / 2, (72 - image.height * s) / 2, image.width * s, image.height * s);
  image.close();
}

async function predict(e) {
  const params = new URLSearchParams({ score_thresh: page.floor });
  if ($("tile").value) params.set("tile", $("tile").value);
  const body = new FormData();
  body.append("image", e.file);
  const response = await fetch(`/v1/predict?${params}`, { method: "POST", body });
  const answer = await response.json();
  if (!response.ok) throw new Error(`${response.status}: ${answer.detail}`);
  return answer;
}

async function run(files) {  // predicts the files one after the other; shows the first
  if (page.busy || !files.length) return;
  page.busy = true; page.done = false;
  page.entries = [...files].map((file) => ({ name: file.name, file, answer: null }));
  page.current = -1; page.hiddenLabels.clear();
  $("classes").textContent = ""; $("gallery").textContent = ""; $("download").disabled = true;
  updateGallery();
  for (const [index, e] of page.entries.entries()) {
    status(`${e.name}: predicting (${index + 1} of ${page.entries.length}) ...`);
    try {
      e.answer = await predict(e);
      if (e.thumb) await thumbnail(e);
      showClasses();
      if (page.current < 0) await show(index); else updateGallery();
    } catch (error) {
      e.error = `${e.name}: ${error.message}`;
      status(e.error, true);
      updateGallery();
    }
  }
  const failed = page.entries.filter((e) => e.error).length;
  if (page.entries.length > 1) {
    status(`${page.entries.length - failed} of ${page.entries.length} images done` + (failed ? `, ${failed} failed` : ""), failed > 0);
  }
  $("download").disabled = failed === page.entries.length;
  page.busy = false; page.done = true;
}

function answered() { return page.entries.filter((e) => e.answer); }

function cocoResults() {  // the answers, filtered as shown, as one COCO results list
  return answered().flatMap((e) => shownOf(e.answer).map((i) => {
    const d = e.answer.instances[i], [x0, y0, x1, y1] = d.box;
    const result = { image_id: page.entries.indexOf(e), file_name: e.name, category_id: d.label,
                     bbox: [x0, y0, x1 - x0, y1 - y0], score: d.score };
    if (d.mask) result.segmentation = d.mask;
    if (d.mask_score !== undefined) result.mask_score = d.mask_score;
    if (d.keypoints) result.keypoints = d.keypoints.flat();
    return result;
  }));
}

async function download() {
  const format = $("format").value;
  let blob, name;
  try {
    if (format === "coco-results") {
      blob = new Blob([JSON.stringify(cocoResults())], { type: "application/json" });
      name = "results.json";
    } else {
      const images = answered().map((e) => ({ file_name: e.name, width: e.answer.width, height: e.answer.height,
        instances: shownOf(e.answer).map((i) => e.answer.instances[i]).filter((d) => d.mask) }));
      const response = await fetch(`/v1/export?format=${format}`, {
        method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ images }) });
      if (!response.ok) throw new Error(`${response.status}: ${(await response.json()).detail}`);
      blob = await response.blob();
      name = /filename="([^"]+)"/.exec(response.headers.get("Content-Disposition"))[1];
    }
  } catch (error) {
    status(`download: ${error.message}`, true);
    return;
  }
  const link = document.createElement("a");
  link.href = URL.createObjectURL(blob); link.download = name;
  document.body.append(link); link.click(); link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 10000);
  status(`downloaded ${name}`);
}

$("file").addEventListener("change", (e) => run(e.target.files));
$("score").addEventListener("input", () => {
  $("score-value").textContent = threshold().toFixed(2);
  refresh();
});
$("opacity").addEventListener("input", () => {
  $("opacity-value").textContent = parseFloat($("opacity").value).toFixed(2);
  redraw();
});
$("zoom-in").addEventListener("click", () => viewer.zoom(1.25));
$("zoom-out").addEventListener("click", () => viewer.zoom(0.8));
$("zoom-fit").addEventListener("click", () => viewer.fit());
$("download").addEventListener("click", download);
document.addEventListener("dragover", (e) => { e.preventDefault(); document.body.classList.add("over"); });
document.addEventListener("dragleave", () => document.body.classList.remove("over"));
document.addEventListener("drop", (e) => {
  e.preventDefault(); document.body.classList.remove("over");
  run([...e.dataTransfer.files].filter((f) => f.type.startsWith("image/")));
});

fetch("/health").then((r) => r.json()).then((health) => {
  page.floor = health.min_score_thresh;
  $("model").textContent = `${health.model} (${health.backend}, ${health.precision})`;
  $("score").value = Math.max(health.score_thresh, health.min_score_thresh);
  $("score-value").textContent = threshold().toFixed(2);
});
