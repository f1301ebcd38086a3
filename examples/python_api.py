"""swedge as a library: tiny synthetic data -> train -> export -> verify -> bench (about a minute on 2 CPU cores).

    python examples/python_api.py [WORK_DIR]      # default: a new temporary folder

Exit code 0 when every exported artifact passes `verify`'s gate, else 1.
"""

import sys
import tempfile
from pathlib import Path

import swedge
from swedge.data.synth import generate

work = Path(sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="swedge-api-"))
data = work / "data"
generate(data, train_ids=8, test_ids=6, cameras=3, images_per_camera=2, size=(64, 32), seed=1, progress=False)

run = swedge.train(data, work / "run", epochs=2, widths="0.5,1.0", embedding_dim=16, ids_per_batch=4,
                   images_per_id=2, workers=0, progress=False)
bundle = swedge.export(run.checkpoint, work / "bundle", formats="onnx", precisions="fp32", probe=data,
                       progress=False)
report = swedge.verify(bundle.root, runtimes="onnxruntime", progress=False)
print(report.table())
print(swedge.bench(bundle.root, batches=1, iters=5, warmup=1, progress=False).table())
print(f"checkpoint: {run.checkpoint}\nbundle: {bundle.root} ({len(bundle.artifacts)} artifacts)")
sys.exit(0 if report.passed else 1)
