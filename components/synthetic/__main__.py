"""``python -m components.synthetic --out DIR``: write synthetic data; prints the summary path."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from components.errors import Sam3Error
from components.synthetic import generate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m components.synthetic", description=__doc__)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--videos", type=int, default=16)
    parser.add_argument("--frames", type=int, default=12)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        generate(
            args.out,
            images=args.images,
            videos=args.videos,
            frames=args.frames,
            size=args.size,
            seed=args.seed,
        )
    except Sam3Error as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(args.out / "summary.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
