"""Check a downloaded copy of CIRR and install it under $CIRLIB_DATA_DIR/cirr.

    python data_scripts/prepare_cirr.py SOURCE [--images DIR] [--check] [--copy] [--force]

A thin wrapper of ``prepare_data.py cirr``; see that script for what it checks and installs.
"""

from prepare_data import main

if __name__ == "__main__":
    raise SystemExit(main(dataset="cirr"))
