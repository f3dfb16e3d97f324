"""Check a downloaded copy of Shoes and install it under $CIRLIB_DATA_DIR/shoes.

    python data_scripts/prepare_shoes.py SOURCE [--images DIR] [--check] [--copy] [--force]

A thin wrapper of ``prepare_data.py shoes``; see that script for what it checks and installs.
"""

from prepare_data import main

if __name__ == "__main__":
    raise SystemExit(main(dataset="shoes"))
