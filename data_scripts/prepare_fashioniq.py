"""Check a downloaded copy of FashionIQ and install it under $CIRLIB_DATA_DIR/fashioniq.

    python data_scripts/prepare_fashioniq.py SOURCE [--images DIR] [--check] [--copy] [--force]

A thin wrapper of ``prepare_data.py fashioniq``; see that script for what it checks and installs.
"""

from prepare_data import main

if __name__ == "__main__":
    raise SystemExit(main(dataset="fashioniq"))
