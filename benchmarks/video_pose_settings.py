"""Choose the pose filter's settings (blend weight, scale lock) on rendered sequences the video benchmark does not
use (seeds 200 and up), for a checkpoint trained on the renderer's scenes:

    python benchmarks/video_pose_settings.py runs/synth/checkpoints/last.ckpt

Prints TAE and per-frame AbsRel of each setting as ratios to the per-frame model's.
"""
import sys, numpy as np
from depthforge.data.synthetic import SKY_DEPTH, render_sequence
import depthforge
from depthforge.video.stabilize import FlowStabilizer
from depthforge.metrics.temporal import tae
m = depthforge.load(sys.argv[1]); pred = m.runner(); cap = m.config.data.max_depth
seqs, seed = [], 200
while len(seqs) < 2:
    s = render_sequence(seed, 16, 144, 256); seed += 1
    gt = s["depth"]; valid = (gt < SKY_DEPTH) & (gt > 0.5)
    if valid.reshape(len(gt), -1).mean(1).min() < 0.5: continue
    s["valid"] = valid & (gt <= cap); s["raw"] = np.stack([pred(r) for r in s["rgb"]]); seqs.append(s)
def score(make):
    t, a = [], []
    for s in seqs:
        f = make(s["K"]); out = np.stack([f(d, r) for d, r in zip(s["raw"], s["rgb"])])
        v = s["valid"]; gt = s["depth"]
        t.append(tae(np.clip(out, 1e-3, cap), gt, s["K"], s["poses"], v))
        a.append(np.mean([np.mean(np.abs(np.clip(o[m], 1e-3, cap) - g[m]) / g[m]) for o, g, m in zip(out, gt, v)]))
    return np.mean(t), np.mean(a)
base = score(lambda k: (lambda d, r: d))
print("raw", base, flush=True)
for flow in ("dis",):
    t, a = score(lambda k: FlowStabilizer(flow=flow))
    print("flow", flow, round(t / base[0], 3), round(a / base[1], 3), flush=True)
    for lock in (0.3, 0.6):
        for w in (0.6, 0.8):
            t, a = score(lambda k: FlowStabilizer(flow=flow, k=k, lock=lock, weight=w))
            print("pose", flow, lock, w, round(t / base[0], 3), round(a / base[1], 3), flush=True)
