// mlpipe console: version pickers that navigate, and the Try it page (drawing pad → serving API).
"use strict";

document.querySelectorAll("select[data-nav]").forEach((select) => {
  select.addEventListener("change", () => { window.location = select.dataset.nav + encodeURIComponent(select.value); });
});

(function tryIt() {
  const root = document.getElementById("try");
  if (!root) return;
  const pad = document.getElementById("pad");
  const small = document.getElementById("small");
  const ctx = pad.getContext("2d");
  const message = document.getElementById("message");
  let drawing = false;
  let last = null;

  function clear() {
    ctx.fillStyle = "#000";
    ctx.fillRect(0, 0, pad.width, pad.height);
    small.getContext("2d").clearRect(0, 0, 28, 28);
    document.getElementById("class").textContent = "–";
    document.getElementById("served").textContent = "";
    message.textContent = "";
    for (let c = 0; c < 10; c++) {
      document.getElementById("p" + c).style.width = "0";
      document.getElementById("pv" + c).textContent = "–";
    }
  }

  function point(event) {
    const rect = pad.getBoundingClientRect();
    return { x: (event.clientX - rect.left) * pad.width / rect.width, y: (event.clientY - rect.top) * pad.height / rect.height };
  }

  function stroke(p) {
    ctx.strokeStyle = "#fff";
    ctx.fillStyle = "#fff";
    ctx.lineWidth = 20;
    ctx.lineCap = "round";
    ctx.lineJoin = "round";
    ctx.beginPath();
    if (last) { ctx.moveTo(last.x, last.y); ctx.lineTo(p.x, p.y); ctx.stroke(); }
    else { ctx.arc(p.x, p.y, 10, 0, 2 * Math.PI); ctx.fill(); }
    last = p;
  }

  pad.addEventListener("pointerdown", (e) => { drawing = true; last = null; pad.setPointerCapture(e.pointerId); stroke(point(e)); e.preventDefault(); });
  pad.addEventListener("pointermove", (e) => { if (drawing) { stroke(point(e)); e.preventDefault(); } });
  const stop = () => { drawing = false; last = null; };
  pad.addEventListener("pointerup", stop);
  pad.addEventListener("pointercancel", stop);
  pad.addEventListener("pointerleave", stop);

  // MNIST's own preprocessing: crop to the ink, scale the longer side to 20 px, centre the centre of mass in 28×28.
  function pixels() {
    const data = ctx.getImageData(0, 0, pad.width, pad.height).data;
    let minX = pad.width, minY = pad.height, maxX = -1, maxY = -1;
    for (let y = 0; y < pad.height; y++) for (let x = 0; x < pad.width; x++) {
      if (data[(y * pad.width + x) * 4] > 20) { minX = Math.min(minX, x); maxX = Math.max(maxX, x); minY = Math.min(minY, y); maxY = Math.max(maxY, y); }
    }
    if (maxX < 0) return null;
    const w = maxX - minX + 1, h = maxY - minY + 1, scale = 20 / Math.max(w, h);
    const sw = Math.max(1, Math.round(w * scale)), sh = Math.max(1, Math.round(h * scale));
    const box = document.createElement("canvas");
    box.width = sw; box.height = sh;
    const bctx = box.getContext("2d");
    bctx.imageSmoothingQuality = "high";
    bctx.drawImage(pad, minX, minY, w, h, 0, 0, sw, sh);
    const bd = bctx.getImageData(0, 0, sw, sh).data;
    let mass = 0, cx = 0, cy = 0;
    for (let y = 0; y < sh; y++) for (let x = 0; x < sw; x++) { const v = bd[(y * sw + x) * 4]; mass += v; cx += v * x; cy += v * y; }
    cx = mass ? cx / mass : sw / 2; cy = mass ? cy / mass : sh / 2;
    const ox = Math.round(14 - cx), oy = Math.round(14 - cy);
    const out = new Array(784).fill(0);
    for (let y = 0; y < sh; y++) for (let x = 0; x < sw; x++) {
      const tx = x + ox, ty = y + oy;
      if (tx >= 0 && tx < 28 && ty >= 0 && ty < 28) out[ty * 28 + tx] = bd[(y * sw + x) * 4];
    }
    const sctx = small.getContext("2d");
    const img = sctx.createImageData(28, 28);
    out.forEach((v, i) => { img.data[i * 4] = img.data[i * 4 + 1] = img.data[i * 4 + 2] = v; img.data[i * 4 + 3] = 255; });
    sctx.putImageData(img, 0, 0);
    return out;
  }

  async function predict() {
    const values = pixels();
    message.textContent = "";
    if (!values) { message.textContent = "Draw a digit first (or upload a PNG)."; return; }
    document.getElementById("class").textContent = "…";
    let answer;
    try {
      const response = await fetch("/try/predict", {
        method: "POST",
        headers: { "Content-Type": "application/json", "X-CSRF-Token": root.dataset.csrf },
        body: JSON.stringify({ pixels: values, target: document.getElementById("target").value }),
      });
      answer = await response.json();
      if (!response.ok) { message.textContent = answer.error || ("request failed: HTTP " + response.status); document.getElementById("class").textContent = "–"; return; }
    } catch (err) {
      message.textContent = "The console did not answer: " + err; document.getElementById("class").textContent = "–"; return;
    }
    const p = answer.predictions[0];
    const probs = p.probabilities;
    const top = p.class_ids[0];
    document.getElementById("class").textContent = String(top);
    document.getElementById("served").textContent = answer.served_by ? "by " + answer.served_by : "";
    probs.forEach((v, c) => {
      const fill = document.getElementById("p" + c);
      fill.style.width = (100 * v).toFixed(1) + "%";
      fill.classList.toggle("top", c === top);
      document.getElementById("pv" + c).textContent = (100 * v).toFixed(1) + "%";
    });
  }

  document.getElementById("clear").addEventListener("click", clear);
  document.getElementById("predict").addEventListener("click", predict);
  document.getElementById("upload").addEventListener("change", (e) => {
    const file = e.target.files[0];
    if (!file) return;
    const url = URL.createObjectURL(file);
    const img = new Image();
    img.onload = () => {
      clear();
      ctx.drawImage(img, 0, 0, pad.width, pad.height);
      // A dark digit on a light background (a scan) is inverted to MNIST's white on black.
      const d = ctx.getImageData(0, 0, pad.width, pad.height);
      let sum = 0;
      for (let i = 0; i < d.data.length; i += 4) sum += d.data[i];
      if (sum / (d.data.length / 4) > 127) {
        for (let i = 0; i < d.data.length; i += 4) { d.data[i] = d.data[i + 1] = d.data[i + 2] = 255 - d.data[i]; }
        ctx.putImageData(d, 0, 0);
      }
      URL.revokeObjectURL(url);
      predict();
    };
    img.onerror = () => { message.textContent = "That file is not an image the browser can read."; };
    img.src = url;
  });
  clear();
})();
