// The image view: the image fitted to the window, zoom (wheel, buttons, +/-) about a point, pan
// (drag, arrow keys). Each mask is a small canvas cropped to its pixels, drawn without smoothing,
// so mask pixels stay sharp squares at every zoom. Coordinates: image pixels -> CSS pixels of the
// canvas by x * scale + tx.

function colour(i) {  // well-separated hues (golden ratio), as the Python overlays
  const h = (i * 0.618033988749895) % 1, s = 0.75, v = 1.0, f = h * 6 - Math.floor(h * 6);
  const p = v * (1 - s), q = v * (1 - f * s), t = v * (1 - (1 - f) * s);
  const rgb = [[v, t, p], [q, v, p], [p, v, t], [p, q, v], [t, p, v], [v, p, q]][Math.floor(h * 6) % 6];
  return rgb.map((c) => Math.round(c * 255));
}

// A COCO RLE -> {canvas, bits, x0, y0, w, h, area} cropped to its pixels (null when empty):
// `bits` (h * w, row-major) says which pixels of the crop are in the mask. The canvas has a
// transparent 1-px border (drawn at x0 - 1, y0 - 1): the browser smooths the edges of a drawn
// rectangle even without image smoothing, and there they fall on nothing.
function maskLayer(rle, rgb) {
  const height = rle.size[0], counts = decodeRleCounts(rle.counts);
  let x0 = Infinity, y0 = Infinity, x1 = -1, y1 = -1, area = 0, index = 0;
  for (let i = 0; i < counts.length; index += counts[i], i++) {
    if (i % 2 === 0 || counts[i] === 0) continue;
    const first = index, last = index + counts[i] - 1;
    const c0 = Math.floor(first / height), c1 = Math.floor(last / height);
    x0 = Math.min(x0, c0); x1 = Math.max(x1, c1); area += counts[i];
    if (c0 === c1) { y0 = Math.min(y0, first % height); y1 = Math.max(y1, last % height); }
    else { y0 = 0; y1 = height - 1; }  // a run into the next column covers rows 0 .. height - 1
  }
  if (!area) return null;
  const w = x1 - x0 + 1, h = y1 - y0 + 1, bits = new Uint8Array(w * h);
  const image = new ImageData(w + 2, h + 2), pixels = new Uint32Array(image.data.buffer);
  const [r, g, b] = rgb, value = (255 << 24) | (b << 16) | (g << 8) | r;  // little-endian RGBA
  forEachMaskPixel(rle, (x, y) => {
    bits[(y - y0) * w + (x - x0)] = 1; pixels[(y - y0 + 1) * (w + 2) + (x - x0 + 1)] = value;
  });
  const canvas = document.createElement("canvas");
  canvas.width = w + 2; canvas.height = h + 2;
  canvas.getContext("2d").putImageData(image, 0, 0);
  return { canvas, bits, x0, y0, w, h, area };
}

class Viewer {
  constructor(canvas, onPick) {
    this.canvas = canvas; this.ctx = canvas.getContext("2d"); this.onPick = onPick;
    this.image = null; this.layers = []; this.keypoints = []; this.shown = []; this.highlight = null; this.opacity = 0.5;
    this.scale = 1; this.tx = 0; this.ty = 0; this.fitted = true;
    this.listen(canvas.parentElement);
    new ResizeObserver(() => (this.fitted ? this.fit() : this.draw())).observe(canvas.parentElement);
  }

  setImage(image, width, height, layers, keypoints = []) {  // keypoints: per instance [[x, y, score]] or null
    this.image = image; this.width = width; this.height = height; this.layers = layers; this.keypoints = keypoints;
    this.highlight = null; this.fit();
  }

  box() { return this.canvas.getBoundingClientRect(); }  // inside the viewer's border

  fit() {
    if (!this.image) return;
    const { width, height } = this.box();
    this.scale = Math.min(width / this.width, height / this.height);
    this.tx = (width - this.width * this.scale) / 2; this.ty = (height - this.height * this.scale) / 2;
    this.fitted = true; this.draw();
  }

  zoom(factor, cx, cy) {  // about (cx, cy) in CSS px of the canvas; the centre by default
    if (!this.image) return;
    const { width, height } = this.box();
    cx = cx ?? width / 2; cy = cy ?? height / 2;
    const fit = Math.min(width / this.width, height / this.height);
    const scale = Math.min(Math.max(this.scale * factor, fit / 4), Math.max(64, fit));
    this.tx = cx - (cx - this.tx) * (scale / this.scale); this.ty = cy - (cy - this.ty) * (scale / this.scale);
    this.scale = scale; this.fitted = false; this.draw();
  }

  pan(dx, dy) { this.tx += dx; this.ty += dy; this.fitted = false; this.draw(); }

  draw() {
    const { width, height } = this.box(), ratio = window.devicePixelRatio || 1, ctx = this.ctx;
    const w = Math.round(width * ratio), h = Math.round(height * ratio);
    if (this.canvas.width !== w || this.canvas.height !== h) { this.canvas.width = w; this.canvas.height = h; }
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.clearRect(0, 0, w, h);
    if (!this.image) return;
    const s = this.scale * ratio;
    ctx.setTransform(s, 0, 0, s, this.tx * ratio, this.ty * ratio);
    ctx.imageSmoothingEnabled = this.scale < 1;  // enlarged: show the image's own pixels
    ctx.drawImage(this.image, 0, 0, this.width, this.height);
    ctx.imageSmoothingEnabled = false;
    const focus = this.highlight;
    [...this.shown].reverse().forEach((i) => {  // lowest score first: the top one ends on top
      const layer = this.layers[i];
      if (!layer || i === focus) return;
      ctx.globalAlpha = focus === null ? this.opacity : this.opacity * 0.35;
      ctx.drawImage(layer.canvas, layer.x0 - 1, layer.y0 - 1);
    });
    const layer = focus === null ? null : this.layers[focus];
    if (layer) {
      ctx.globalAlpha = Math.max(this.opacity, 0.85);
      ctx.drawImage(layer.canvas, layer.x0 - 1, layer.y0 - 1);
      ctx.globalAlpha = 1; ctx.lineWidth = 2 / this.scale;
      ctx.strokeStyle = "#fff"; ctx.strokeRect(layer.x0, layer.y0, layer.w, layer.h);
      ctx.setLineDash([4 / this.scale, 4 / this.scale]); ctx.strokeStyle = "#000";
      ctx.strokeRect(layer.x0, layer.y0, layer.w, layer.h); ctx.setLineDash([]);
    }
    ctx.globalAlpha = 1;
    const size = 5 / this.scale;  // keypoints: 5 screen px at any zoom
    this.shown.forEach((i) => (this.keypoints[i] || []).forEach(([x, y]) => {
      ctx.fillStyle = `rgb(${colour(i).join(",")})`; ctx.fillRect(x - size / 2, y - size / 2, size, size);
    }));
  }

  at(clientX, clientY) {  // the top shown instance under a point of the window, or null
    const { left, top } = this.box();
    const x = Math.floor((clientX - left - this.tx) / this.scale), y = Math.floor((clientY - top - this.ty) / this.scale);
    return this.shown.find((i) => {
      const l = this.layers[i];
      return l && x >= l.x0 && y >= l.y0 && x < l.x0 + l.w && y < l.y0 + l.h && l.bits[(y - l.y0) * l.w + (x - l.x0)];
    }) ?? null;
  }

  listen(element) {
    let drag = null;
    element.addEventListener("wheel", (e) => {
      e.preventDefault();
      const { left, top } = this.box();
      this.zoom(Math.exp(-e.deltaY * 0.002), e.clientX - left, e.clientY - top);
    }, { passive: false });
    element.addEventListener("pointerdown", (e) => {
      drag = { x: e.clientX, y: e.clientY, moved: false };
      element.setPointerCapture(e.pointerId); element.classList.add("dragging");
    });
    element.addEventListener("pointermove", (e) => {
      if (!drag) return;
      const dx = e.clientX - drag.x, dy = e.clientY - drag.y;
      if (drag.moved || Math.abs(dx) + Math.abs(dy) > 3) {
        drag.moved = true; drag.x = e.clientX; drag.y = e.clientY; this.pan(dx, dy);
      }
    });
    element.addEventListener("pointerup", (e) => {
      element.classList.remove("dragging");
      if (drag && !drag.moved) this.onPick(this.at(e.clientX, e.clientY));
      drag = null;
    });
    element.addEventListener("keydown", (e) => {
      const step = 40, keys = {
        "+": () => this.zoom(1.25), "=": () => this.zoom(1.25), "-": () => this.zoom(0.8), "0": () => this.fit(),
        ArrowLeft: () => this.pan(step, 0), ArrowRight: () => this.pan(-step, 0),
        ArrowUp: () => this.pan(0, step), ArrowDown: () => this.pan(0, -step) };
      if (keys[e.key]) { e.preventDefault(); keys[e.key](); }
    });
  }
}
