"""Generate the offline toy world of a run profile, exported in the real CIRR and FashionIQ formats.

    python data_scripts/make_toyworld.py --profile toy
    python data_scripts/make_toyworld.py --profile smoke --circo   # also the CIRCO export

The world lands under ``$CIRLIB_DATA_DIR/toyworld/`` (default ``~/.cache/cirlib``); running it
again reuses a finished world. Chapters call the same function, so this script is only needed
to prepare data ahead of time, to look at the files, or to install the exports as the real
datasets are installed (the script prints the two commands)::

    python data_scripts/prepare_data.py cirr <world>/cirr_dataset
    python data_scripts/prepare_data.py fashioniq <world>/fashionIQ_dataset
    python data_scripts/prepare_data.py circo <world>/circo_dataset     (with --circo)

``--circo`` also writes the test split in CIRCO's format (``cirlib.data.toy_circo``), derived
from the finished world without changing it.
``<world>/private/`` holds what the real releases keep back (test targets, the toy's labels).
"""

from __future__ import annotations

import argparse
import json
import time

from cirlib.config import resolve
from cirlib.data.toy import prepare_toyworld
from cirlib.data.toy_circo import export_toy_circo


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="toy", choices=["smoke", "toy"])
    ap.add_argument("--seed", type=int, default=0, help="world seed")
    ap.add_argument(
        "--circo", action="store_true", help="also export the test split in CIRCO's format"
    )
    args = ap.parse_args(argv)
    cfg = resolve(args.profile, world_seed=args.seed)
    t0 = time.time()
    world = prepare_toyworld(cfg)
    manifest = json.loads((world / "manifest.json").read_text())
    print(f"{world} ({time.time() - t0:.1f} s)")
    print(json.dumps({k: manifest[k] for k in ("images", "queries")}))
    print("install the exports as the real datasets are installed:")
    print(f"  python data_scripts/prepare_data.py cirr {world / 'cirr_dataset'}")
    print(f"  python data_scripts/prepare_data.py fashioniq {world / 'fashionIQ_dataset'}")
    if args.circo:
        print(f"  python data_scripts/prepare_data.py circo {export_toy_circo(world)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
