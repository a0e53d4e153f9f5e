"""Per-repeat ratios (variant / baseline within the same interleaved repeat): robust to slow load drift."""
import json, sys, statistics
d = json.load(open(sys.argv[1])); base = sys.argv[2]
if sys.argv[3:]:
    d = d[sys.argv[3]]
for k, v in d.items():
    r = sorted(a / b for a, b in zip(v, d[base]))
    print(f"  {k:50s} x{statistics.median(r):.2f} [{r[0]:.2f}-{r[-1]:.2f}]")
