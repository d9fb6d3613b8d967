// The page: send an image to /v1/predict, draw the answer; the score slider and the class
// checkboxes re-draw from the same answer without a new request.
const page = { result: null, image: null, drawn: false, hiddenLabels: new Set() };
window.maskrcnnPage = page;  // the answer and state, for tests and the console

const $ = (id) => document.getElementById(id);
const canvas = $("canvas"), ctx = canvas.getContext("2d");

function colour(i) {  // well-separated hues (golden ratio), as the Python overlays
  const h = (i * 0.618033988749895) % 1, s = 0.75, v = 1.0, f = h * 6 - Math.floor(h * 6);
  const p = v * (1 - s), q = v * (1 - f * s), t = v * (1 - (1 - f) * s);
  const rgb = [[v, t, p], [q, v, p], [p, v, t], [p, q, v], [t, p, v], [v, p, q]][Math.floor(h * 6) % 6];
  return rgb.map((c) => Math.round(c * 255));
}

function visible() {
  const thresh = parseFloat($("score").value);
  return page.result.instances.filter((d) => d.score >= thresh && !page.hiddenLabels.has(d.label));
}

function draw() {
  if (!page.result || !page.image) return;
  const { width, height } = page.result;
  canvas.width = width; canvas.height = height;
  ctx.drawImage(page.image, 0, 0, width, height);
  const shown = visible();
  const overlay = new ImageData(width, height);
  // lowest score first, so the top-scoring mask colours a pixel covered by several
  shown.map((d, i) => [d, i]).reverse().forEach(([d, i]) => {
    if (!d.mask) return;
    const [r, g, b] = colour(i);
    forEachMaskPixel(d.mask, (x, y) => {
      const o = (y * width + x) * 4;
      overlay.data[o] = r; overlay.data[o + 1] = g; overlay.data[o + 2] = b; overlay.data[o + 3] = 128;
    });
  });
  const layer = document.createElement("canvas");
  layer.width = width; layer.height = height;
  layer.getContext("2d").putImageData(overlay, 0, 0);
  ctx.drawImage(layer, 0, 0);
  ctx.lineWidth = 2; ctx.font = "12px sans-serif";
  shown.forEach((d, i) => {
    const [x0, y0, x1, y1] = d.box, c = `rgb(${colour(i).join(",")})`;
    ctx.strokeStyle = c; ctx.fillStyle = c;
    ctx.strokeRect(x0, y0, x1 - x0, y1 - y0);
    ctx.fillText(`${d.label_name} ${d.score.toFixed(2)}`, x0 + 2, Math.max(y0 - 3, 10));
    (d.keypoints || []).forEach(([x, y]) => ctx.fillRect(x - 2, y - 2, 4, 4));
  });
  $("count").textContent = `${shown.length} instance${shown.length === 1 ? "" : "s"}`;
  $("count").dataset.count = shown.length;
  page.drawn = true;
}

function showClasses() {
  const box = $("classes");
  box.textContent = "";
  page.hiddenLabels.clear();
  const names = new Map(page.result.instances.map((d) => [d.label, d.label_name]));
  [...names].sort((a, b) => a[0] - b[0]).forEach(([label, name]) => {
    const item = document.createElement("label");
    const check = document.createElement("input");
    check.type = "checkbox"; check.checked = true; check.dataset.label = label;
    check.addEventListener("change", () => {
      if (check.checked) page.hiddenLabels.delete(label); else page.hiddenLabels.add(label);
      draw();
    });
    item.append(check, ` ${name}`);
    box.append(item);
  });
}

function status(text, isError = false) {
  $("status").textContent = text;
  $("status").className = isError ? "error" : "";
}

async function predict(file) {
  page.drawn = false;
  status(`Sending ${file.name} ...`);
  const params = new URLSearchParams({ score_thresh: page.floor ?? 0 });
  if ($("tile").value) params.set("tile", $("tile").value);
  const body = new FormData();
  body.append("image", file);
  try {
    const [response, image] = await Promise.all([
      fetch(`/v1/predict?${params}`, { method: "POST", body }), createImageBitmap(file)]);
    const answer = await response.json();
    if (!response.ok) throw new Error(`${response.status}: ${answer.detail}`);
    page.result = answer; page.image = image;
    $("download").disabled = false;
    showClasses();
    draw();
    status(`${file.name}: ${answer.width}x${answer.height}, ${answer.instances.length} detections ` +
           `scoring >= ${answer.score_thresh}, ${answer.time_ms.toFixed(0)} ms`);
  } catch (error) {
    status(`${file.name}: ${error.message}`, true);
  }
}

function download() {
  const blob = new Blob([JSON.stringify(page.result, null, 1)], { type: "application/json" });
  const link = document.createElement("a");
  link.href = URL.createObjectURL(blob);
  link.download = "predictions.json";
  link.click();
  URL.revokeObjectURL(link.href);
}

$("file").addEventListener("change", (e) => e.target.files[0] && predict(e.target.files[0]));
$("score").addEventListener("input", () => {
  $("score-value").textContent = parseFloat($("score").value).toFixed(2);
  draw();
});
$("download").addEventListener("click", download);
const drop = $("drop");
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => {
  e.preventDefault(); drop.classList.remove("over");
  if (e.dataTransfer.files[0]) predict(e.dataTransfer.files[0]);
});

fetch("/health").then((r) => r.json()).then((health) => {
  page.floor = health.min_score_thresh;
  $("model").textContent = `${health.model} (${health.backend}, ${health.precision})`;
  $("score").value = Math.max(health.score_thresh, health.min_score_thresh);
  $("score-value").textContent = parseFloat($("score").value).toFixed(2);
});
