#!/usr/bin/env python3
"""One-step-ahead forecasts of tbptt against River's online models, on the same events.

Setup (once): ``python3 -m pip install river numpy``. Without them the script prints why and
exits 0. Run from the repository root after ``cargo build --release``::

    python3 benches/river_peer.py                        # every data/*.csv series
    python3 benches/river_peer.py --nab NAB/data         # ... and every CSV under a NAB tree
    python3 benches/river_peer.py --files 'nile*' --json out.json

Protocol. Every model sees the events in order and, for each one, first forecasts it and then
learns it, as ``tbptt replay`` does (its records score the forecast made before each event).
tbptt runs as ``tbptt replay FILE --columns COL [series flags] [--tbptt-args] -o RECORDS -q
--summary SUMMARY``; its squared error per event is ``residual_0**2`` from the records. Both
sides and the naive forecast (the previous value) are scored on exactly the same window: the
last ``n // 5`` of the ``n`` events. Missing values are held (``--missing hold``) or skipped
exactly as the series' tbptt flags say.

River models (river.time_series.SNARIMAX, river.time_series.HoltWinters, and
StandardScaler | LinearRegression on the last 10 values) are each tried in a small grid of
settings. The season is the series' known one (given below for the bundled series) or else
the events per day from the timestamps, when that is a whole number and the series holds at
least four days. Choice by rule, not by the scored window: every setting runs online over the
first 50% of the events; a setting is unstable when it raises or forecasts a non-finite value
or one further than 1,000 times the range seen so far from the last value, and is dropped
then. Per model family, the stable setting with the lowest MSE over the first 50% is chosen
and continues online over the rest; that is the family's column. "best River" is the lowest
of the three families' MSEs on the scored window, a pick made in hindsight among three, which
favours River. Until a River model has the history it needs (its lags, or a season for
Holt-Winters) it forecasts the previous value.

Geometric means are over the series where the ratio is defined: a naive MSE of 0 (a constant
series) or a best River MSE of at most 1e-9 of naive's (exact up to rounding: the noise-free
NAB waves) leaves the series out of the means it would divide, and it is named below them.

events/s: tbptt's from its summary (``events_per_sec``, which includes start-up on short
series); River's from the wall time of the chosen setting's forecast + learn calls, one
Python thread.
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import csv
import fnmatch
import glob
import json
import math
import os
import shlex
import subprocess
import sys
import tempfile
import time

try:
    import numpy as np
    from river import linear_model, optim, preprocessing, time_series
except ImportError as e:  # pragma: no cover - the skip path
    print(f"river_peer: skipped ({e}); install with: python3 -m pip install river numpy")
    sys.exit(0)

# Bundled series: file stem -> (value column, known season or None, extra tbptt flags).
BUNDLED = {
    "airline_passengers": ("passengers", 12, []),
    "sunspots_yearly": ("sunspot_activity", 11, []),
    "co2_mauna_loa_weekly": ("co2_ppm", 52, ["--missing", "hold"]),
    "nile": ("volume", None, []),
    "water_flow": ("water_flow_l_per_s", 24, []),
    "run_log": ("pace", None, []),
    "nab_ec2_cpu_utilization_24ae8d": ("value", None, []),
}
MISSING = {"", "na", "nan", "null"}
LAGS = 10
DIVERGE = 1e3
EXACT = 1e-9


# ---------------------------------------------------------------------------------------------
# Series


def read_values(path, column, hold):
    """The column's values as tbptt reads them: header detected, missing held or skipped."""
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        return []
    header = rows[0]
    if column in header:
        idx = header.index(column)
        rows = rows[1:]
    else:
        idx = int(column)
        try:
            float(rows[0][idx])
        except (ValueError, IndexError):
            rows = rows[1:]
    out, last = [], None
    for r in rows:
        cell = r[idx].strip() if idx < len(r) else ""
        if cell.lower() in MISSING:
            if hold and last is not None:
                out.append(last)
            continue
        try:
            v = float(cell)
        except ValueError:
            continue
        if not math.isfinite(v):
            continue
        out.append(v)
        last = v
    return out


def series_list(args):
    out = []
    for p in sorted(glob.glob(os.path.join(args.data, "*.csv"))):
        stem = os.path.splitext(os.path.basename(p))[0]
        col, season, flags = BUNDLED.get(stem, (None, None, []))
        out.append({"name": stem, "path": p, "column": col, "season": season, "flags": flags})
    if args.nab:
        if os.path.isdir(args.nab):
            for p in sorted(glob.glob(os.path.join(args.nab, "**", "*.csv"), recursive=True)):
                rel = os.path.relpath(p, args.nab)
                name = "nab:" + os.path.splitext(rel)[0]
                out.append({"name": name, "path": p, "column": "value", "season": None,
                            "flags": []})
        else:
            print(f"river_peer: NAB folder {args.nab} not found; NAB files skipped",
                  file=sys.stderr)
    for p in args.paths:
        out.append({"name": os.path.splitext(os.path.basename(p))[0], "path": p,
                    "column": None, "season": None, "flags": []})
    if args.files:
        out = [s for s in out if any(
            fnmatch.fnmatch(s["name"], pat) or fnmatch.fnmatch(os.path.basename(s["path"]), pat)
            or fnmatch.fnmatch(s["name"], "nab:*/" + pat) for pat in args.files)]
    return out


def default_column(path):
    """The last column of the header: the value column of a (time, value) file."""
    with open(path, newline="") as f:
        header = next(csv.reader(f), [])
    return header[-1] if header else "0"


def season_from_times(times, n):
    """Events per day from the median spacing, if whole and at least four days are held."""
    ts = [t for t in times if t is not None]
    if len(ts) < 3:
        return None
    dt = float(np.median(np.diff(np.array(ts, dtype=float))))
    if dt <= 0:
        return None
    per_day = 86400.0 / dt
    r = round(per_day)
    if r >= 2 and abs(per_day - r) < 0.01 * per_day and 4 * r <= n:
        return int(r)
    return None


# ---------------------------------------------------------------------------------------------
# tbptt


def run_tbptt(args, s, tmp):
    rec = os.path.join(tmp, "records.csv")
    summ = os.path.join(tmp, "summary.json")
    cmd = ([args.tbptt, "replay", s["path"], "--columns", s["column"]] + s["flags"]
           + (["--" + args.season_flag.lstrip("-"), str(s["season"])]
              if args.season_flag and s["season"] else [])
           + shlex.split(args.tbptt_args) + ["-o", rec, "-q", "--summary", summ])
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {p.returncode}: {p.stderr.strip()[:500]}")
    with open(summ) as f:
        summary = json.load(f)
    times, res, fc = [], [], []
    with open(rec, newline="") as f:
        rd = csv.DictReader(f)
        if "residual_0" not in (rd.fieldnames or []):
            raise RuntimeError(f"{s['name']}: records have no residual_0 column")
        for r in rd:
            t = r.get("time", "")
            times.append(float(t) if t else None)
            res.append(float(r["residual_0"]) if r["residual_0"] else math.nan)
            fc.append(float(r["forecast_0"]) if r.get("forecast_0") else math.nan)
    return {"cmd": cmd, "times": times, "residual": res, "forecast": fc,
            "events_per_sec": summary.get("events_per_sec") or len(res) / wall,
            "summary": summary}


# ---------------------------------------------------------------------------------------------
# River models: each is an object with forecast() -> float | None and learn(y).


def regressor(lr, scale_y):
    """StandardScaler | LinearRegression (SGD); with scale_y its target is standardized too and
    the loss gradient clipped to [-1, 1] (in standard deviations), else River's defaults."""
    if not scale_y:
        return preprocessing.StandardScaler() | linear_model.LinearRegression(
            optimizer=optim.SGD(lr))
    reg = preprocessing.StandardScaler() | linear_model.LinearRegression(
        optimizer=optim.SGD(lr), clip_gradient=1.0)
    return preprocessing.TargetStandardScaler(regressor=reg)


def label(lr, scale_y):
    return f"lr={lr}" + (" y-scaled clip 1" if scale_y else "")


class Snarimax:
    family = "SNARIMAX"

    def __init__(self, p, d, q, m=1, sp=0, sd=0, sq=0, lr=0.01, scale_y=False):
        self.label = f"SNARIMAX({p},{d},{q})" + (f"({sp},{sd},{sq})m={m}" if m > 1 else "") \
            + f" {label(lr, scale_y)}"
        reg = regressor(lr, scale_y)
        self.model = time_series.SNARIMAX(p=p, d=d, q=q, m=m, sp=sp, sd=sd, sq=sq, regressor=reg)
        self.warm = d + m * sd + max(p, m * sp, q, m * sq)
        self.seen = 0

    def forecast(self):
        if self.seen < self.warm:
            return None
        return self.model.forecast(horizon=1)[0]

    def learn(self, y):
        self.model.learn_one(y)
        self.seen += 1


class Holt:
    family = "HoltWinters"

    def __init__(self, alpha, beta=None, gamma=None, season=0, mult=False):
        self.label = f"HW(a={alpha},b={beta}" + (
            f",g={gamma},m={season},{'mul' if mult else 'add'})" if season else ")")
        self.model = time_series.HoltWinters(alpha=alpha, beta=beta, gamma=gamma,
                                             seasonality=season, multiplicative=mult)
        self.warm = max(2, season)
        self.seen = 0

    def forecast(self):
        if self.seen < self.warm:
            return None
        return self.model.forecast(horizon=1)[0]

    def learn(self, y):
        self.model.learn_one(y)
        self.seen += 1


class Lagged:
    family = "linear"

    def __init__(self, lr, diff=False, scale_y=False):
        self.label = (f"linear({LAGS} lags{', on differences' if diff else ''})"
                      f" {label(lr, scale_y)}")
        self.model = regressor(lr, scale_y)
        self.diff = diff
        self.hist = collections.deque(maxlen=LAGS + 1)
        self.warm = LAGS + 1 if diff else LAGS

    def _x(self):
        h = self.hist
        if self.diff:
            return {f"d{i}": h[i] - h[i + 1] for i in range(len(h) - 1)}
        return {f"y{i}": v for i, v in enumerate(h)}

    def forecast(self):
        if len(self.hist) < self.warm:
            return None
        p = self.model.predict_one(self._x())
        return self.hist[0] + p if self.diff else p

    def learn(self, y):
        if len(self.hist) >= self.warm:
            x = self._x()
            self.model.learn_one(x, y - self.hist[0] if self.diff else y)
        self.hist.appendleft(y)


def grid(season, positive, quick):
    """The settings tried per family: a few sensible ones, seasonal when a season is known.

    Regressors: SGD on standardized lags with the raw target (River's default) at lr 0.01
    (and 0.003 for the linear model), or with a standardized target and a clipped loss
    gradient at lr 0.01 and 0.001.
    """
    regs = [(0.01, False), (0.01, True)] + ([] if quick else [(0.001, True)])
    orders = [((2, 1, 1), {})] + ([] if quick else [((5, 1, 2), {})])
    if season:
        orders += [((2, 1, 1), dict(m=season, sp=1, sq=1)),
                   ((1, 1, 1), dict(m=season, sd=1, sq=1))]
    sn = [lambda o=o, kw=kw, lr=lr, sy=sy: Snarimax(*o, lr=lr, scale_y=sy, **kw)
          for o, kw in orders for lr, sy in regs]
    hw = [lambda a=a: Holt(a) for a in (0.2, 0.5, 0.9)]
    hw += [lambda a=a, b=b: Holt(a, b) for a, b in ((0.5, 0.1), (0.9, 0.05))]
    if season:
        for a, b, g in ((0.3, 0.01, 0.1), (0.5, 0.05, 0.3), (0.8, 0.01, 0.5)):
            hw.append(lambda a=a, b=b, g=g: Holt(a, b, g, season))
            if positive:
                hw.append(lambda a=a, b=b, g=g: Holt(a, b, g, season, mult=True))
    lin_regs = [(0.01, False), (0.003, False), (0.01, True), (0.001, True)]
    lin = [lambda lr=lr, d=d, sy=sy: Lagged(lr, d, sy) for d in (False, True)
           for lr, sy in lin_regs]
    return {"SNARIMAX": sn, "HoltWinters": hw, "linear": lin}


def run_model(m, y, start, stop, sq, state):
    """Forecast then learn events start..stop-1; squared errors into sq; False if diverged."""
    lo, hi = state["lo"], state["hi"]
    t0 = time.perf_counter()
    ok = True
    for i in range(start, stop):
        v = y[i]
        if i > 0:
            last = y[i - 1]
            try:
                f = m.forecast()
            except (ArithmeticError, ValueError, IndexError):
                ok = False
                break
            if f is None:
                f = last
            if not (math.isfinite(f) and abs(f - last) <= DIVERGE * max(hi - lo, abs(last), 1e-12)):
                ok = False
                break
            sq[i] = (v - f) ** 2
        try:
            m.learn(v)
        except (ArithmeticError, ValueError):
            ok = False
            break
        lo, hi = min(lo, v), max(hi, v)
    state["lo"], state["hi"] = lo, hi
    state["seconds"] += time.perf_counter() - t0
    state["events"] += stop - start
    return ok


def run_river(y, season, scored, quick):
    n = len(y)
    half = n // 2
    positive = min(y) > 0
    out = {}
    for family, makers in grid(season, positive, quick).items():
        tried = []
        best = None
        t_family = time.perf_counter()
        for make in makers:
            m = make()
            sq = np.full(n, np.nan)
            state = {"lo": math.inf, "hi": -math.inf, "seconds": 0.0, "events": 0}
            ok = run_model(m, y, 0, half, sq, state)
            sel = float(np.nanmean(sq[1:half])) if ok and half > 1 else math.inf
            tried.append({"setting": m.label, "stable": ok, "mse_first_half": sel})
            if ok and (best is None or sel < best[0]):
                best = (sel, m, sq, state)
        if best is None:
            out[family] = {"setting": None, "mse": math.inf, "diverged": True, "tried": tried,
                           "events_per_sec": None,
                           "seconds": time.perf_counter() - t_family}
            continue
        _, m, sq, state = best
        ok = run_model(m, y, half, n, sq, state)
        mse = float(np.mean(sq[n - scored:])) if ok else math.inf
        out[family] = {"setting": m.label, "mse": mse, "diverged": not ok, "tried": tried,
                       "events_per_sec": state["events"] / state["seconds"]
                       if state["seconds"] > 0 else None,
                       "seconds": time.perf_counter() - t_family}
    return out


# ---------------------------------------------------------------------------------------------
# One series


def run_series(s, args):
    t_start = time.perf_counter()
    s = dict(s)
    if s["column"] is None:
        s["column"] = default_column(s["path"])
    hold = "--missing" in s["flags"] and s["flags"][s["flags"].index("--missing") + 1] == "hold"
    y = read_values(s["path"], s["column"], hold)
    with tempfile.TemporaryDirectory(prefix="river_peer_") as tmp:
        tb = run_tbptt(args, s, tmp)
    n = len(y)
    if len(tb["residual"]) != n:
        raise RuntimeError(f"{s['name']}: tbptt wrote {len(tb['residual'])} records, "
                           f"the file holds {n} values of {s['column']}")
    # The records' forecast for event i (forecast_0 of record i-1) plus its residual is the
    # value: checks that both sides see the same events.
    for i in range(1, n):
        f, r = tb["forecast"][i - 1], tb["residual"][i]
        if math.isfinite(f) and math.isfinite(r) and abs(f + r - y[i]) > 1e-6 * (1 + abs(y[i])):
            raise RuntimeError(f"{s['name']}: event {i} is {y[i]} here, {f + r} in tbptt's records")
    season = s["season"] or season_from_times(tb["times"], n)
    scored = max(n // 5, 1)
    lo = n - scored
    ya = np.array(y)
    naive = float(np.mean((ya[lo:] - ya[lo - 1:n - 1]) ** 2))
    tail = np.array(tb["residual"][lo:])
    if not np.all(np.isfinite(tail)):
        raise RuntimeError(f"{s['name']}: tbptt's records lack a residual in the scored window")
    tb_mse = float(np.mean(tail ** 2))
    t_river = time.perf_counter()
    river = run_river(y, season, scored, args.quick)
    river_seconds = time.perf_counter() - t_river
    fams = {k: v["mse"] for k, v in river.items() if math.isfinite(v["mse"])}
    best = min(fams, key=fams.get) if fams else None
    return {
        "series": s["name"], "file": s["path"], "column": s["column"], "events": n,
        "scored": scored, "season": season, "naive_mse": naive, "tbptt_mse": tb_mse,
        "tbptt_command": " ".join(shlex.quote(c) for c in tb["cmd"]),
        "tbptt_events_per_sec": tb["events_per_sec"],
        "tbptt_summary_mse_last20": tb["summary"].get("mse_last20"),
        "river": river, "best_river": best,
        "best_river_mse": river[best]["mse"] if best else math.inf,
        "river_seconds": river_seconds, "seconds": time.perf_counter() - t_start,
    }


# ---------------------------------------------------------------------------------------------
# Table


def ratio(a, b):
    if b > 0 and math.isfinite(a) and math.isfinite(b):
        return a / b
    return math.nan


def fmt(x, digits=3):
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if isinstance(x, float) and math.isinf(x):
        return "div."
    if x != 0 and not 1e-3 <= abs(x) < 1e3:
        return f"{x:.{digits - 1}e}"
    return f"{x:.{digits}f}"


def fmt_sig(x):
    return "–" if x is None or not math.isfinite(x) else f"{x:.4g}"


def fmt_rate(x):
    if x is None:
        return "–"
    return f"{x / 1000:.1f}k" if x < 1e6 else f"{x / 1e6:.2f}M"


def geomean(xs):
    xs = [x for x in xs if math.isfinite(x) and x > 0]
    return (math.exp(sum(math.log(x) for x in xs) / len(xs)), len(xs)) if xs else (math.nan, 0)


def table(results):
    head = ["series", "events", "season", "naive MSE", "tbptt /naive", "SNARIMAX /naive",
            "HW /naive", "linear /naive", "best River", "tbptt /best River",
            "tbptt ev/s", "River ev/s"]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * 3 + "---:|" * 4 + "---|"
             + "---:|" * 3]
    for r in results:
        nv = r["naive_mse"]
        br = r["best_river"]
        lines.append("| " + " | ".join([
            r["series"], str(r["events"]), str(r["season"] or "–"), fmt_sig(nv),
            fmt(ratio(r["tbptt_mse"], nv)),
            *[fmt(ratio(r["river"][k]["mse"], nv)) if math.isfinite(r["river"][k]["mse"])
              else "div." for k in ("SNARIMAX", "HoltWinters", "linear")],
            br or "–", fmt(ratio(r["tbptt_mse"], r["best_river_mse"])),
            fmt_rate(r["tbptt_events_per_sec"]),
            fmt_rate(r["river"][br]["events_per_sec"]) if br else "–",
        ]) + " |")
    return "\n".join(lines)


def finite(o):
    """The figures for JSON: non-finite numbers (a diverged model) become null."""
    if isinstance(o, float):
        return o if math.isfinite(o) else None
    if isinstance(o, dict):
        return {k: finite(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [finite(v) for v in o]
    return o


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("paths", nargs="*", help="more CSV files (value column: the last one)")
    ap.add_argument("--tbptt", default="target/release/tbptt", help="the tbptt binary")
    ap.add_argument("--tbptt-args", default="",
                    help="extra flags for tbptt replay, one string: --tbptt-args='-T 32'")
    ap.add_argument("--season-flag", default="",
                    help="tbptt flag given each series' season (e.g. season), when it has one")
    ap.add_argument("--data", default="data", help="folder of the bundled series")
    ap.add_argument("--nab", help="a NAB data folder: every CSV under it is a series")
    ap.add_argument("--files", nargs="+", help="only series whose name or file name matches")
    ap.add_argument("--jobs", type=int, default=2, help="series run at a time (processes)")
    ap.add_argument("--quick", action="store_true",
                    help="a smaller SNARIMAX grid (no (5,1,2), no lr 0.001)")
    ap.add_argument("--json", help="write every figure as one JSON object to this file")
    args = ap.parse_args()

    if not (os.path.isfile(args.tbptt) and os.access(args.tbptt, os.X_OK)):
        print(f"river_peer: skipped, no tbptt binary at {args.tbptt} "
              "(cargo build --release, or --tbptt PATH)")
        return 0
    series = series_list(args)
    if not series:
        print("river_peer: no series selected")
        return 0
    t0 = time.perf_counter()
    results, failed = {}, []
    with concurrent.futures.ProcessPoolExecutor(max_workers=max(1, args.jobs)) as ex:
        futs = {ex.submit(run_series, s, args): s["name"] for s in series}
        for fut in concurrent.futures.as_completed(futs):
            name = futs[fut]
            try:
                r = fut.result()
            except Exception as e:  # one series failing does not stop the others
                failed.append((name, str(e)))
                print(f"river_peer: {name}: {e}", file=sys.stderr)
                continue
            results[name] = r
            print(f"river_peer: {name}: {r['events']} events in {r['seconds']:.1f} s",
                  file=sys.stderr)
    order = [s["name"] for s in series if s["name"] in results]
    res = [results[k] for k in order]
    wall = time.perf_counter() - t0
    print("MSE over the last 20% of each series' events (the same events on both sides), "
          "relative to naive (the previous value); River settings chosen on the first 50%.")
    print(table(res))
    print()
    groups = {"all": res,
              "bundled": [r for r in res if not r["series"].startswith("nab:")],
              "NAB real": [r for r in res if r["series"].startswith("nab:real")],
              "NAB artificial": [r for r in res if r["series"].startswith("nab:art")]}
    def exact(r):
        # A best River MSE at most 1e-9 of naive's is exact up to rounding: no ratio over it.
        return r["best_river_mse"] <= EXACT * r["naive_mse"]

    means = {}
    for g, rs in groups.items():
        if not rs or (g == "all" and all(len(v) in (0, len(rs)) for k, v in groups.items()
                                         if k != "all")):
            continue
        tn = geomean([ratio(r["tbptt_mse"], r["naive_mse"]) for r in rs])
        rn = geomean([math.nan if exact(r) else ratio(r["best_river_mse"], r["naive_mse"])
                      for r in rs])
        tr = geomean([math.nan if exact(r) else ratio(r["tbptt_mse"], r["best_river_mse"])
                      for r in rs])
        means[g] = {"series": len(rs), "tbptt_over_naive": tn[0], "tbptt_over_naive_n": tn[1],
                    "best_river_over_naive": rn[0], "tbptt_over_best_river": tr[0],
                    "tbptt_over_best_river_n": tr[1]}
        print(f"geometric mean, {g} ({len(rs)} series): tbptt / naive {fmt(tn[0])} "
              f"({tn[1]} series), best River / naive {fmt(rn[0])}, tbptt / best River "
              f"{fmt(tr[0])} ({tr[1]} series)")
    for r in res:
        if not r["naive_mse"] > 0 or exact(r):
            print(f"left out of the means with best River (exact) or naive (0): {r['series']} "
                  f"(MSE naive "
                  f"{fmt_sig(r['naive_mse'])}, tbptt {fmt_sig(r['tbptt_mse'])}, best River "
                  f"{fmt_sig(r['best_river_mse'])})")
    print()
    print("River settings chosen (lowest MSE over the first 50% among the stable ones):")
    for r in res:
        ch = "; ".join(f"{v['setting'] or 'none stable'}"
                       + (" (diverged later)" if v["setting"] and v["diverged"] else "")
                       + f" [{sum(not t['stable'] for t in v['tried'])}/{len(v['tried'])}"
                       " unstable]" for v in r["river"].values())
        print(f"- {r['series']}: {ch}")
    fam_s = {k: sum(r["river"][k]["seconds"] for r in res) for k in res[0]["river"]} if res \
        else {}
    print(f"\n{len(res)} series ({sum(r['events'] for r in res)} events) in {wall:.0f} s on "
          f"{args.jobs} jobs; River's grids took "
          + ", ".join(f"{k} {v:.0f} s" for k, v in fam_s.items())
          + f" (every setting over the first half, the chosen one over the rest)"
          + (f"; failed: {', '.join(n for n, _ in failed)}" if failed else ""))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(finite({"series": res,
                              "failed": [{"series": n, "error": e} for n, e in failed],
                              "geomeans": means, "river_family_seconds": fam_s,
                              "wall_seconds": wall, "tbptt_args": args.tbptt_args}),
                      f, indent=1, allow_nan=False)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
