"""How far the demo's training recipe clears the compatibility criterion, over seeds.

The criterion is M[w][1.0] > M[w][w] (cross-test beats the small model's self-test). A 6-epoch model moves with
every float difference between machines about as much as with a new seed, so a recipe is only fit for the demo
when its *worst* margin over seeds is well above zero. Trains each recipe x seed on the demo's data (skipping
runs whose eval.json exists), evaluates it, prints the margins and writes JSON.

    python benchmarks/demo_recipe.py --data data/synth --runs runs/demo-recipe --seeds 3,4,5 \
        --json benchmarks/demo_recipe/margins.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

RECIPES = {  # name -> swedge train arguments
    "cosine": ["--method", "sfsc", "--opt", "evidential_logits=cosine"],
    "sumexp": ["--method", "sfsc", "--opt", "merge=sum", "--opt", "evidence_fn=exp"],
    "sfsc-sum": ["--method", "sfsc-sum"],
}


def run(recipe: str, seed: int, data: Path, runs: Path) -> dict:
    out = runs / f"{recipe}-s{seed}"
    if not (out / "eval.json").is_file():
        swedge = [str(Path(sys.executable).with_name("swedge"))]  # the console script beside this python
        env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
        subprocess.run([*swedge, "train", "--data", str(data), "--out", str(out), *RECIPES[recipe], "--seed",
                        str(seed), "--workers", "0", "--quiet"], check=True, env=env)
        subprocess.run([*swedge, "eval", str(out / "model.safetensors"), "--data", str(data), "--json",
                        str(out / "eval.json"), "--workers", "0"], check=True, env=env, stdout=subprocess.DEVNULL)
    m = json.loads((out / "eval.json").read_text())
    mat, widths = m["map"], m["widths"]
    top = len(widths) - 1
    return {"recipe": recipe, "seed": seed, "self": [mat[i][i] for i in range(len(widths))],
            "margin": {f"{w:g}": mat[i][top] - mat[i][i] for i, w in enumerate(widths[:-1])}}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="data/synth")
    p.add_argument("--runs", default="runs/demo-recipe", help="one folder per recipe x seed (reused)")
    p.add_argument("--recipes", default="cosine,sumexp", help=f"comma-separated, of {', '.join(RECIPES)}")
    p.add_argument("--seeds", default="3,4,5")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    rows = [run(r, int(s), Path(args.data), Path(args.runs)) for r in args.recipes.split(",")
            for s in args.seeds.split(",")]
    for r in rows:
        print(f"{r['recipe']:>9} seed {r['seed']}: self mAP {' / '.join(f'{v:.1f}' for v in r['self'])}; "
              f"margin M[w][1]-M[w][w] {' / '.join(f'{w} {v:+.2f}' for w, v in r['margin'].items())}")
    summary = {}
    for name in dict.fromkeys(r["recipe"] for r in rows):
        mine = [r for r in rows if r["recipe"] == name]
        worst = {w: min(r["margin"][w] for r in mine) for w in mine[0]["margin"]}
        summary[name] = {"seeds": [r["seed"] for r in mine], "worst_margin": worst,
                         "holds": all(v > 0 for v in worst.values())}
        verdict = "holds on every seed" if summary[name]["holds"] else "fails on some seed"
        print(f"{name:>9}: worst margin over seeds {' / '.join(f'{w} {v:+.2f}' for w, v in worst.items())}"
              f" -> criterion {verdict}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"data": args.data, "runs": rows, "summary": summary}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
