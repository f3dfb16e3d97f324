"""Check a downloaded copy of Fashion200k and install it under $CIRLIB_DATA_DIR/fashion200k.

    python data_scripts/prepare_fashion200k.py SOURCE [--images DIR] [--check] [--copy] [--force]

A thin wrapper of ``prepare_data.py fashion200k``; see that script for what it checks and installs.
"""

from prepare_data import main

if __name__ == "__main__":
    raise SystemExit(main(dataset="fashion200k"))
