"""Generate the offline toy world of a run profile (images + CIRR and FashionIQ layouts).

    python data_scripts/make_toyworld.py --profile toy

The world lands under ``$CIRLIB_DATA_DIR/toyworld/`` (default ``~/.cache/cirlib``); running it
again reuses a finished world. Chapters call the same function, so this script is only needed
to prepare data ahead of time or to look at the files.
"""

from __future__ import annotations

import argparse
import json
import time

from cirlib.config import resolve
from cirlib.data.toy import prepare_toyworld


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="toy", choices=["smoke", "toy"])
    ap.add_argument("--seed", type=int, default=0, help="world seed")
    args = ap.parse_args(argv)
    cfg = resolve(args.profile, world_seed=args.seed)
    t0 = time.time()
    world = prepare_toyworld(cfg)
    manifest = json.loads((world / "manifest.json").read_text())
    print(f"{world} ({time.time() - t0:.1f} s)")
    print(json.dumps({k: manifest[k] for k in ("images", "queries")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
