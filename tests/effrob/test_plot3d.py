"""The 3-D plane plot: PNG written, the HTML page self-contained, and its script runs (under
node with a stub canvas, where node is installed) drawing every model and the plane."""

import json
import re
import shutil
import subprocess

import numpy as np
import pytest

from robustml_jax import effrob

STUB = """
const calls = {arc: 0, lineTo: 0, fillText: 0};
const stubCtx = new Proxy({}, {get: (t, k) => k in calls ? () => { calls[k]++; } : () => {},
                           set: () => true});
const el = {getContext: () => stubCtx, width: 820, height: 620, style: {},
            getBoundingClientRect: () => ({left: 0, top: 0})};
const document = {getElementById: () => el};
const window = {};
"""


def _table():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(30, 2))
    ood = 1 / (1 + np.exp(-(0.5 * z[:, 0] + 0.5 * z[:, 1])))
    ood[3] = np.nan  # a blank cell: left out of the plot
    return effrob.AccuracyTable(
        tuple(f"m{i}" for i in range(30)),
        tuple("ab"[i % 2] for i in range(30)),
        ("id1", "id2"),
        1 / (1 + np.exp(-z)),
        ("ood",),
        ood[:, None],
    )


def test_png_and_self_contained_html(tmp_path):
    t = _table()
    a = effrob.analyze_table(t)
    plots = effrob.write_analysis(tmp_path, t, a, tag="t")
    png = tmp_path / "t_ood_multi_id1_id2_3d.png"
    assert png in plots and png.stat().st_size > 10_000
    page = png.with_suffix(".html").read_text()
    assert "<script src" not in page and "http" not in page
    scene = json.loads(re.search(r"const S = (\{.*?\});\n", page).group(1))
    assert len(scene["x"]) == 29 and scene["transform"] == "logit"
    # The plane in the page is the fitted one.
    fit = a["fits"]["ood"]["multi:id1+id2"]
    want = fit["intercept"] + fit["coef"][0] * scene["gx"][2] + fit["coef"][1] * scene["gy"][7]
    assert scene["plane"][2][7] == pytest.approx(want, abs=1e-4)
    node = shutil.which("node")
    if node is None:
        return
    script = page.split("<script>")[1].split("</script>")[0]
    code = STUB + script + "\nel.onmousemove({clientX: 1, clientY: 1, pageX: 1, pageY: 1});"
    code += "\nconsole.log(JSON.stringify(calls));"
    out = subprocess.run([node, "-e", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    calls = json.loads(out.stdout.strip().splitlines()[-1])
    assert calls["arc"] == 29 and calls["lineTo"] >= 3 + 2 * 11 * 10


def test_needs_two_id_sets():
    t = _table()
    a = effrob.analyze_table(t)
    with pytest.raises(ValueError, match="two ID sets"):
        effrob.plane_html(t, 0, a["fits"]["ood"]["single:id1"], "logit")
