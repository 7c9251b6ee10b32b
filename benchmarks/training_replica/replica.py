"""A numpy replica of training.fit on vectors, for cheap research (docs/BENCHMARKS.md).

standardise -> softmax regression, Adam (Keras' constants), a class-share mixture of
per-class streams, per-epoch val P/R/F1 -> next shares, the epoch with the best val
macro-F1 scored on test. Rules: balanced, none, f1 (1 - F1, Pouyanfar), pr (precision -
recall controller), prb (the same with precision as if val were balanced), loss (shares
~ exp(rate * per-class val loss), class-level group DRO). Options: init glorot|zero,
std_floor (0: Keras' Normalization; a number: floor at that fraction of the RMS std;
"median"; "global"), l2 / l2n (L2 per record: LogisticRegression's 1/C), lr, schedule
const|cos, correct (importance weights), logit_adj (train on logits + log share), shrink.
Not project code: research only.
"""

import numpy as np


def f1_parts(y, p, C):
    cm = np.bincount(y * C + p, minlength=C * C).reshape(C, C).astype(float)
    tp = np.diag(cm)
    pred = cm.sum(0)
    sup = cm.sum(1)
    P = np.divide(tp, pred, out=np.zeros(C), where=pred > 0)
    R = np.divide(tp, sup, out=np.zeros(C), where=sup > 0)
    F = np.divide(2 * P * R, P + R, out=np.zeros(C), where=P + R > 0)
    R[sup == 0] = np.nan
    F[sup == 0] = np.nan
    P[(sup == 0) & (pred == 0)] = np.nan
    return P, R, F, cm


def floor_shares(s, fl):
    s = s / s.sum()
    fixed = np.zeros(len(s), bool)
    for _ in range(len(s)):
        low = ~fixed & (s < fl)
        if not low.any():
            break
        fixed |= low
        s = np.where(fixed, fl, s)
        free = ~fixed
        if free.any():
            s[free] = s[free] / s[free].sum() * (1 - fl * fixed.sum())
    return s


class Rule:
    """Returns next shares from val stats. kind: balanced|none|f1|pr|..."""

    def __init__(self, kind, C, prior, eta=2.0, mix=1.0, floor=0.02, smooth=0.0, shrink=0.0):
        self.shrink = shrink
        self.kind, self.C, self.prior, self.eta, self.mix, self.floor, self.smooth = (
            kind,
            C,
            prior,
            eta,
            mix,
            floor,
            smooth,
        )
        self.shares = prior.copy() if kind == "none" else np.full(C, 1 / C)
        self.mult = np.ones(C)
        self.ema = None

    def update(self, P, R, F, cm, extra=None):
        C = self.C
        if self.kind in ("balanced", "none"):
            return self.shares
        if self.kind == "f1":
            f = np.where(np.isfinite(F), F, np.nanmean(F))
            if self.ema is None:
                self.ema = f
            else:
                self.ema = self.smooth * self.ema + (1 - self.smooth) * f
            need = 1 - self.ema
            d = np.full(C, 1 / C) if np.allclose(need, need[0]) else need / need.sum()
            self.shares = floor_shares((1 - self.mix) / C + self.mix * d, self.floor)
        elif self.kind in ("pr", "prb"):
            if (
                self.kind == "prb"
            ):  # precision as if val were balanced: rows of cm scaled to equal mass
                sup = cm.sum(1)
                sc = np.divide(1.0, sup, out=np.zeros(C), where=sup > 0)
                cmb = cm * sc[:, None]
                tp = np.diag(cmb)
                pred = cmb.sum(0)
                P = np.divide(tp, pred, out=np.full(C, np.nan), where=pred > 0)
            d = np.where(np.isfinite(P) & np.isfinite(R), P - R, 0.0)
            if self.shrink:
                sup = cm.sum(1)
                d = d * sup / (sup + self.shrink)
            self.mult = self.mult * np.exp(self.eta * d)
            self.mult = self.mult / np.exp(np.log(self.mult).mean())
            self.shares = floor_shares(self.mult / self.mult.sum(), self.floor)
        elif self.kind == "loss":
            L = np.where(np.isfinite(extra), extra, np.nanmean(extra))
            self.mult = self.mult * np.exp(self.eta * (L - L.mean()))
            self.mult = self.mult / np.exp(np.log(self.mult).mean())
            self.shares = floor_shares(self.mult / self.mult.sum(), self.floor)
        return self.shares


def run(
    d,
    rule_kind="balanced",
    seed=0,
    epochs=12,
    budget=2000,
    batch=64,
    lr=1e-3,
    init="glorot",
    l2=0.0,
    std_floor=0.0,
    correct=False,
    logit_adj=False,
    eta=2.0,
    mix=1.0,
    floor=0.02,
    smooth=0.0,
    schedule="const",
    select="best",
    wd=0.0,
    l2n=0.0,
    shrink=0.0,
    ema=0.0,
    ema_restart=False,
):
    xtr, ytr, xva, yva, xte, yte = d["xtr"], d["ytr"], d["xva"], d["yva"], d["xte"], d["yte"]
    C = int(max(ytr.max(), yte.max()) + 1)
    D = xtr.shape[1]
    rng = np.random.default_rng(seed)
    if l2n:
        l2 = l2n / len(ytr)
    # Normalization adapted on up to 512 rows per class
    samp = np.concatenate([xtr[ytr == c][:512] for c in range(C)])
    mu = samp.mean(0)
    sd = np.sqrt(samp.var(0))
    if std_floor == "global":
        sd = np.full_like(sd, np.sqrt(np.mean(samp.var(0))))
    elif std_floor == "median":
        sd = np.maximum(sd, np.median(sd))
    elif std_floor > 0:
        sd = np.maximum(sd, std_floor * np.sqrt(np.mean(samp.var(0))))
    sd = np.maximum(sd, 1e-7)
    def nz(x):
        return (x - mu) / sd
    Xtr, Xva, Xte = nz(xtr), nz(xva), nz(xte)
    if init == "glorot":
        lim = np.sqrt(6 / (D + C))
        W = rng.uniform(-lim, lim, (D, C))
    else:
        W = np.zeros((D, C))
    b = np.zeros(C)
    m = [np.zeros_like(W), np.zeros_like(b)]
    v = [np.zeros_like(W), np.zeros_like(b)]
    t = 0
    counts = np.bincount(ytr, minlength=C)
    prior = counts / counts.sum()
    rule = Rule(rule_kind, C, prior, eta, mix, floor, smooth, shrink)
    byc = [np.flatnonzero(ytr == c) for c in range(C)]
    pos = [0] * C
    perm = [rng.permutation(ix) for ix in byc]
    steps = int(np.ceil(budget / batch))
    total = epochs * steps
    best, bestW, hist = -1, None, []
    aW, ab = W.copy(), b.copy()  # ema > 0: the moving average of the weights, scored instead
    for _ep in range(epochs):
        shares = rule.shares.copy()
        ch = rng.choice(C, size=steps * batch, p=shares)
        w_c = (1 / C) / np.maximum(shares, 1e-12) if correct else np.ones(C)
        w_c = w_c / (shares * w_c).sum()
        idx = np.empty(len(ch), int)
        for c in range(C):
            k = np.flatnonzero(ch == c)
            out = []
            need = len(k)
            while need:
                take = perm[c][pos[c] : pos[c] + need]
                out.append(take)
                pos[c] += len(take)
                need -= len(take)
                if pos[c] >= len(perm[c]):
                    perm[c] = rng.permutation(byc[c])
                    pos[c] = 0
            idx[k] = np.concatenate(out) if out else []
        adj = np.log(np.maximum(shares, 1e-12)) if logit_adj else 0.0
        for s in range(steps):
            ii = idx[s * batch : (s + 1) * batch]
            X = Xtr[ii]
            y = ytr[ii]
            sw = w_c[y]
            z = X @ W + b + adj
            z -= z.max(1, keepdims=True)
            p = np.exp(z)
            p /= p.sum(1, keepdims=True)
            g = p
            g[np.arange(len(y)), y] -= 1
            g *= sw[:, None] / len(y)
            gW = X.T @ g + l2 * W
            gb = g.sum(0)
            t += 1
            a = lr
            if schedule == "cos":
                a = lr * 0.5 * (1 + np.cos(np.pi * (t - 1) / total))
            for i, (P_, G) in enumerate(((W, gW), (b, gb))):
                m[i] = 0.9 * m[i] + 0.1 * G
                v[i] = 0.999 * v[i] + 0.001 * G * G
                mh = m[i] / (1 - 0.9**t)
                vh = v[i] / (1 - 0.999**t)
                P_ -= a * mh / (np.sqrt(vh) + 1e-7)
            if wd:
                W -= a * wd * W
            if ema:
                aW = ema * aW + (1 - ema) * W
                ab = ema * ab + (1 - ema) * b
        if not ema:
            aW, ab = W, b
        elif ema_restart:  # Keras' use_ema with one fit per epoch: training goes on from the average
            W[...], b[...] = aW, ab
        zv = Xva @ aW + ab
        pv = zv.argmax(1)
        P, R, F, cm = f1_parts(yva, pv, C)
        zz = zv - zv.max(1, keepdims=True)
        lp = zz - np.log(np.exp(zz).sum(1, keepdims=True))
        nll = -lp[np.arange(len(yva)), yva]
        Lc = np.array([nll[yva == c].mean() if (yva == c).any() else np.nan for c in range(C)])
        mf = float(np.nanmean(F))
        hist.append(mf)
        if mf > best or select == "last":
            best, bestW = mf, (aW.copy(), ab.copy())
        rule.update(P, R, F, cm, Lc)
    W_, b_ = bestW
    pt = (Xte @ W_ + b_).argmax(1)
    _, _, Ft, _ = f1_parts(yte, pt, C)
    rare = np.argsort(counts, kind="stable")[:3]
    return float(np.mean(Ft)), float(np.mean(Ft[rare]))


def anchor(d, Cs=None, scale=False):
    Cs = 10.0 ** np.arange(-3, 3) if Cs is None else Cs
    import warnings

    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    xtr, ytr, xva, yva, xte, yte = d["xtr"], d["ytr"], d["xva"], d["yva"], d["xte"], d["yte"]
    C = int(yte.max() + 1)
    if scale:
        s = StandardScaler().fit(xtr)
        xtr, xva, xte = s.transform(xtr), s.transform(xva), s.transform(xte)
    best = (-1, None)
    for c in Cs:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            m = LogisticRegression(C=c, class_weight="balanced", max_iter=3000).fit(xtr, ytr)
        f = float(np.nanmean(f1_parts(yva, m.predict(xva), C)[2]))
        if f > best[0]:
            best = (f, m)
    m = best[1]
    Ft = f1_parts(yte, m.predict(xte), C)[2]
    counts = np.bincount(ytr, minlength=C)
    rare = np.argsort(counts, kind="stable")[:3]
    return float(np.mean(Ft)), float(np.mean(Ft[rare]))
