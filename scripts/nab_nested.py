#!/usr/bin/env python3
"""Nested category cross-validation of detector settings on NAB.

`nab_score.py --cv category` chooses the threshold without the category it scores. This
script also chooses the detector's *settings* that way: given the results of several
settings (one `tbptt nab` output directory each), for each category it

1. scores every setting on the other categories only, each of them with the threshold
   optimised on the rest of those others (an inner category cross-validation),
2. takes the setting with the best inner score, and
3. scores the held-out category with that setting at the threshold optimised on all the
   other categories.

The held-out raw scores are summed and normalised over all windows, per profile. The
result is the score of the *rule* "pick the best setting by cross-validation", which is
what carries over to data nobody tuned on; a single setting's plain or cross-validated
score flatters it when it was itself picked on the same files.

It uses the NAB scorer's own functions (windows, profiles, corpus, threshold optimiser and
scoring), so its figures are that scorer's. Example:

    tbptt nab NAB/data out/default -q
    tbptt nab NAB/data out/warm300 -q --likelihood '{"error_warmup": 300}'
    python3 scripts/nab_nested.py --scorer nab_score.py --nab-root NAB \
        default=out/default warm300=out/warm300
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys


def load_scorer(path: str):
    """Imports the NAB scorer from its file."""
    if not os.path.isfile(path):
        raise SystemExit(f"{path}: no such file (--scorer is the path of nab_score.py)")
    spec = importlib.util.spec_from_file_location("nab_score", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"{path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules["nab_score"] = module  # its dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


def prefix_of(results_dir: str, key: str) -> str:
    """The result files' prefix, found as the scorer finds it."""
    detector = os.path.basename(os.path.normpath(results_dir))
    cat, name = key.split("/")
    return detector + "_" if os.path.isfile(os.path.join(results_dir, cat, detector + "_" + name)) else ""


class Setting:
    """One setting's result files, loaded as corpora of category sets on demand."""

    def __init__(self, ns, path, keys, windows, data_dir):
        self.ns, self.path, self.keys, self.windows, self.data_dir = ns, path, keys, windows, data_dir
        self.prefix = prefix_of(path, keys[0])
        self.cache = {}

    def corpus(self, cats):
        """The corpus of the files of the categories `cats`, as the scorer loads it."""
        cats = tuple(sorted(cats))
        if cats not in self.cache:
            ks = [k for k in self.keys if k.split("/")[0] in cats]
            self.cache[cats] = self.ns.load_corpus(self.path, ks, self.windows, self.data_dir,
                                                   self.prefix, 0.15)
        return self.cache[cats]

    def cv_raw(self, cats, cm) -> float:
        """Category cross-validated raw score over `cats`: each category scored at the
        threshold optimised on the others of `cats`."""
        total = 0.0
        for cat in cats:
            thr, _, _ = self.ns.optimise(self.corpus([c for c in cats if c != cat]), cm)
            total += self.ns.score_at(self.corpus([cat]), cm, thr)["raw_score"]
        return total


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("settings", nargs="+", metavar="NAME=DIR",
                    help="a setting's name and its `tbptt nab` output directory")
    ap.add_argument("--scorer", required=True, help="path of nab_score.py")
    ap.add_argument("--nab-root", help="NAB root with data/, labels/, config/ "
                    "(default: the scorer's own default)")
    ap.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = ap.parse_args(argv)

    ns = load_scorer(args.scorer)
    root = args.nab_root or ns.DEFAULT_NAB_ROOT
    windows = ns.load_windows(os.path.join(root, "labels", "combined_windows.json"))
    profiles = ns.load_profiles(os.path.join(root, "config", "profiles.json"))
    names = [p for p in ns.PROFILE_ORDER if p in profiles]
    keys = sorted(windows)
    cats = sorted({k.split("/")[0] for k in keys})
    if len(cats) < 3:
        raise SystemExit("nested cross-validation needs files from at least three categories")

    settings = {}
    for item in args.settings:
        name, sep, path = item.partition("=")
        if not sep or not name or not os.path.isdir(path):
            raise SystemExit(f"{item!r}: expected NAME=DIR with an existing directory")
        settings[name] = Setting(ns, path, keys, windows, os.path.join(root, "data"))

    n_windows = next(iter(settings.values())).corpus(cats).n_windows
    out = {"settings": list(settings), "n_windows": n_windows, "profiles": {}}
    for p in names:
        cm = profiles[p]
        raw, chosen = 0.0, {}
        for cat in cats:
            others = [c for c in cats if c != cat]
            best = max(settings, key=lambda s: settings[s].cv_raw(others, cm))
            thr, _, _ = ns.optimise(settings[best].corpus(others), cm)
            raw += ns.score_at(settings[best].corpus([cat]), cm, thr)["raw_score"]
            chosen[cat] = best
        out["profiles"][p] = {
            "nested": ns.normalise(raw, n_windows, cm),
            "chosen": chosen,
            "cv": {s: ns.normalise(v.cv_raw(cats, cm), n_windows, cm)
                   for s, v in settings.items()},
        }

    if args.json:
        json.dump(out, sys.stdout, indent=2)
        print()
        return 0
    for p, e in out["profiles"].items():
        cvs = "  ".join(f"{s} {v:.2f}" for s, v in e["cv"].items())
        print(f"{p}: nested {e['nested']:.2f}   cv by setting: {cvs}")
        for cat, s in e["chosen"].items():
            print(f"  {cat:<24} chosen without it: {s}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
