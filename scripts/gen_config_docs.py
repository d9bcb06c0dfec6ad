"""Write docs/config.md from the config schema (lepton_platform/config.py).

python scripts/gen_config_docs.py           # rewrite docs/config.md
python scripts/gen_config_docs.py --check   # exit 1 when docs/config.md is out of date
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lepton_platform.api.config import config_reference

TARGET = Path(__file__).resolve().parent.parent / "docs" / "config.md"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check, write nothing")
    args = parser.parse_args()
    text = config_reference()
    if args.check:
        current = TARGET.read_text(encoding="utf-8") if TARGET.is_file() else ""
        if current != text:
            print(
                f"{TARGET} is out of date: run python scripts/gen_config_docs.py", file=sys.stderr
            )
            return 1
        return 0
    TARGET.write_text(text, encoding="utf-8")
    print(f"wrote {TARGET}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
