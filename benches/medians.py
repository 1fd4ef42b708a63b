#!/usr/bin/env python3
"""Prints criterion's median estimates under a directory as a table: benches/medians.py DIR."""
import glob, json, os, sys

root = sys.argv[1] if len(sys.argv) > 1 else "target/criterion"
for f in sorted(glob.glob(os.path.join(root, "**", "new", "estimates.json"), recursive=True)):
    name = os.path.relpath(os.path.dirname(os.path.dirname(f)), root)
    if name.endswith("report"):
        continue
    med = json.load(open(f))["median"]["point_estimate"]
    print(f"{name:55s} {med:10.2f} ns")
