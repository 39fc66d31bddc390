"""The fitted plane over two ID accuracies, in 3-D (the paper's figure): a PNG and a
self-contained interactive HTML page a researcher can rotate (no libraries, no network).

Axes are in transformed space (logit or probit), labelled with the accuracies they stand for.

Shapes: M = models.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import numpy as np

from robustml_jax.core import plotting
from robustml_jax.effrob import _transforms
from robustml_jax.effrob._table import AccuracyTable

__all__ = ["plane_figure", "plane_html"]


def _scene(table: AccuracyTable, j: int, fit: Mapping[str, Any], transform: str) -> dict:
    """Points, plane grid and labels in transformed space."""
    if len(fit["id_sets"]) != 2:
        raise ValueError(f"a 3-D plane needs a fit on two ID sets, got {fit['id_sets']}")
    idx = [table.id_names.index(n) for n in fit["id_sets"]]
    tf = lambda a: np.asarray(_transforms.forward(np.asarray(a, np.float32), transform), float)
    rows = np.all(np.isfinite(table.id_acc[:, idx]), axis=1) & np.isfinite(table.ood_acc[:, j])
    x, y = tf(table.id_acc[rows, idx[0]]), tf(table.id_acc[rows, idx[1]])
    z = tf(table.ood_acc[rows, j])
    gx = np.linspace(x.min(), x.max(), 11)
    gy = np.linspace(y.min(), y.max(), 11)
    coef, b0 = fit["coef"], fit["intercept"]
    plane = b0 + coef[0] * gx[:, None] + coef[1] * gy[None, :]
    groups = [g for g, k in zip(table.groups, rows, strict=True) if k]
    return {
        "x": x,
        "y": y,
        "z": z,
        "gx": gx,
        "gy": gy,
        "plane": plane,
        "groups": groups,
        "names": [n for n, k in zip(table.names, rows, strict=True) if k],
        "labels": [*fit["id_sets"], table.ood_names[j]],
    }


def plane_figure(table: AccuracyTable, j: int, fit: Mapping[str, Any], transform: str):
    """A pyplot-free 3-D figure: models coloured by training group and the fitted plane."""
    s = _scene(table, j, fit, transform)
    fig = plotting.subplots(figsize=(6.4, 5.6))[0]
    fig.clear()
    ax = fig.add_subplot(projection="3d")
    gx, gy = np.meshgrid(s["gx"], s["gy"], indexing="ij")
    ax.plot_wireframe(gx, gy, s["plane"], color="0.4", linewidth=0.6, alpha=0.6)
    names = list(dict.fromkeys(s["groups"]))
    cmap = plotting.colormap("tab10" if len(names) <= 10 else "tab20")
    for i, g in enumerate(names):
        m = np.array([gg == g for gg in s["groups"]])
        ax.scatter(s["x"][m], s["y"][m], s["z"][m], s=12, color=cmap(i), label=g, alpha=0.9)
    from matplotlib.ticker import FuncFormatter

    pct = FuncFormatter(
        lambda v, _: f"{100 * float(_transforms.inverse(np.float32(v), transform)):.0f}"
    )
    for axis, label in zip((ax.xaxis, ax.yaxis, ax.zaxis), s["labels"], strict=True):
        axis.set_major_formatter(pct)
        axis.set_label_text(f"{label} (%, {transform} axis)")
    ax.set_title(
        f"{s['labels'][2]} ~ {s['labels'][0]} + {s['labels'][1]}: R$^2$={fit['r2']:.3f}",
        fontsize=9,
    )
    ax.legend(fontsize=7, loc="upper left")
    return fig


_PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>%(title)s</title>
<style>body{font:14px sans-serif;margin:16px}canvas{border:1px solid #ccc;cursor:grab}
#tip{position:absolute;background:#fff;border:1px solid #999;padding:2px 4px;display:none}
</style></head><body>
<h3>%(title)s</h3>
<p>Drag to rotate, scroll to zoom, hover a point for the model. Axes in %(transform)s space,
ticks in accuracy (%%). Grey grid: the fitted plane.</p>
<canvas id="c" width="820" height="620"></canvas><div id="tip"></div><div id="legend"></div>
<script>
const S = %(scene)s;
const cv = document.getElementById("c"), ctx = cv.getContext("2d");
const tip = document.getElementById("tip");
const colors = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
                "#7f7f7f", "#bcbd22", "#17becf"];
const groups = [...new Set(S.groups)];
document.getElementById("legend").innerHTML = groups.map((g, i) =>
  `<span style="color:${colors[i %% 10]}">&#9679;</span> ${g}`).join(" &nbsp; ");
const rng = a => [Math.min(...a), Math.max(...a)];
const zs = S.z.concat(S.plane.flat());
const R = [rng(S.x), rng(S.y), rng(zs)];
const norm = (v, k) => 2 * (v - R[k][0]) / ((R[k][1] - R[k][0]) || 1) - 1;
let yaw = -0.7, pitch = 0.45, zoom = 1;
function proj(x, y, z) {
  const p = [norm(x, 0), norm(y, 1), norm(z, 2)];
  const cy = Math.cos(yaw), sy = Math.sin(yaw), cp = Math.cos(pitch), sp = Math.sin(pitch);
  const x1 = cy * p[0] - sy * p[1], y1 = sy * p[0] + cy * p[1];
  const y2 = cp * y1 - sp * p[2], z2 = sp * y1 + cp * p[2];
  const s = 200 * zoom;
  return [cv.width / 2 + s * x1, cv.height / 2 - s * z2, y2];
}
const inv = v => S.transform === "logit" ? 1 / (1 + Math.exp(-v))
                                         : 0.5 * (1 + erf(v / Math.SQRT2));
function erf(x) {  // Abramowitz & Stegun 7.1.26
  const t = 1 / (1 + 0.3275911 * Math.abs(x));
  const y = 1 - (((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t
                 + 0.254829592) * t * Math.exp(-x * x);
  return x >= 0 ? y : -y;
}
let screen = [];
function line(a, b, col, w) {
  ctx.strokeStyle = col; ctx.lineWidth = w; ctx.beginPath();
  ctx.moveTo(a[0], a[1]); ctx.lineTo(b[0], b[1]); ctx.stroke();
}
function draw() {
  ctx.clearRect(0, 0, cv.width, cv.height);
  const lo = R.map(r => r[0]), hi = R.map(r => r[1]);
  const corner = (i, j, k) => proj(i ? hi[0] : lo[0], j ? hi[1] : lo[1], k ? hi[2] : lo[2]);
  [[0,0,0,1,0,0],[0,0,0,0,1,0],[0,0,0,0,0,1]].forEach((e, a) => {
    const p = corner(e[0], e[1], e[2]), q = corner(e[3], e[4], e[5]);
    line(p, q, "#000", 1.5);
    ctx.fillStyle = "#000"; ctx.fillText(S.labels[a], q[0] + 6, q[1]);
    for (let t = 1; t < 4; t++) {
      const v = lo[a] + (hi[a] - lo[a]) * t / 4, c = [lo[0], lo[1], lo[2]]; c[a] = v;
      const r = proj(c[0], c[1], c[2]); ctx.fillStyle = "#555";
      ctx.fillText((100 * inv(v)).toFixed(1), r[0] - 10, r[1] + 14);
    }
  });
  for (let i = 0; i < S.gx.length; i++) for (let k = 0; k + 1 < S.gy.length; k++) {
    const grey = "rgba(90,90,90,.45)";
    line(proj(S.gx[i], S.gy[k], S.plane[i][k]),
         proj(S.gx[i], S.gy[k + 1], S.plane[i][k + 1]), grey, 1);
    line(proj(S.gx[k], S.gy[i], S.plane[k][i]),
         proj(S.gx[k + 1], S.gy[i], S.plane[k + 1][i]), grey, 1);
  }
  screen = S.x.map((x, i) => [...proj(x, S.y[i], S.z[i]), i]).sort((a, b) => b[2] - a[2]);
  for (const [px, py, , i] of screen) {
    ctx.fillStyle = colors[groups.indexOf(S.groups[i]) %% 10];
    ctx.beginPath(); ctx.arc(px, py, 3.5, 0, 2 * Math.PI); ctx.fill();
  }
}
let drag = null;
cv.onmousedown = e => { drag = [e.clientX, e.clientY]; };
window.onmouseup = () => { drag = null; };
cv.onmousemove = e => {
  if (drag) {
    yaw += (e.clientX - drag[0]) / 150; pitch += (e.clientY - drag[1]) / 150;
    pitch = Math.max(-1.5, Math.min(1.5, pitch)); drag = [e.clientX, e.clientY]; draw(); return;
  }
  const r = cv.getBoundingClientRect(), mx = e.clientX - r.left, my = e.clientY - r.top;
  const hit = screen.find(([px, py]) => (px - mx) ** 2 + (py - my) ** 2 < 25);
  if (!hit) { tip.style.display = "none"; return; }
  const i = hit[3];
  tip.innerHTML = `${S.names[i]} (${S.groups[i]})<br>` + [S.x[i], S.y[i], S.z[i]].map((v, k) =>
    `${S.labels[k]} ${(100 * inv(v)).toFixed(2)}%%`).join("<br>");
  tip.style.left = (e.pageX + 12) + "px"; tip.style.top = (e.pageY + 12) + "px";
  tip.style.display = "block";
};
cv.onwheel = e => { e.preventDefault(); zoom *= e.deltaY < 0 ? 1.1 : 1 / 1.1; draw(); };
draw();
</script></body></html>
"""


def plane_html(table: AccuracyTable, j: int, fit: Mapping[str, Any], transform: str) -> str:
    """A self-contained HTML page (inline data and script) with the rotatable 3-D scene."""
    s = _scene(table, j, fit, transform)
    data = {k: (np.round(v, 5).tolist() if isinstance(v, np.ndarray) else v) for k, v in s.items()}
    data["transform"] = transform
    title = (
        f"{s['labels'][2]} ~ {s['labels'][0]} + {s['labels'][1]} ({transform} fit, "
        f"R^2 = {fit['r2']:.3f})"
    )
    scene = json.dumps(data).replace("</", "<\\/")
    return _PAGE % {"title": title, "scene": scene, "transform": transform}
