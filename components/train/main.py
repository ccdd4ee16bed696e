"""The torchrun target of every training stage.

    torchrun --nproc-per-node 2 -m components.train.main --config-json '{"stage": "detector", ...}'

Logging, config, build, train, close; a known error becomes one line and a non-zero exit.
The last stdout line (rank 0) is the committed checkpoint's URI.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from pydantic import ValidationError

from components.errors import ConfigError, Sam3Error


def parse_config(argv: list[str] | None = None) -> object:
    from components.train.config import TrainConfig

    ap = argparse.ArgumentParser(prog="python -m components.train.main", description=__doc__)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--config-json", help="TrainConfig as JSON")
    src.add_argument("--config", help="path to a TrainConfig JSON file")
    args = ap.parse_args(argv)
    raw = args.config_json if args.config_json is not None else Path(args.config).read_text()
    try:
        return TrainConfig.model_validate(json.loads(raw))
    except (ValidationError, json.JSONDecodeError) as exc:
        raise ConfigError(f"invalid training config: {exc}") from None


def main(argv: list[str] | None = None) -> int:
    rank = int(os.environ.get("RANK", "0"))
    logging.basicConfig(
        level=os.environ.get("SAM3_LOG_LEVEL", "INFO").upper(),
        stream=sys.stderr,
        format=f"%(asctime)s %(levelname)s [rank {rank}] %(name)s: %(message)s",
    )
    try:
        from components.embedded_store import default_store
        from components.train.config import TrainConfig
        from components.train.trainer import Trainer

        cfg = parse_config(argv)
        assert isinstance(cfg, TrainConfig)
        pointer = Trainer(cfg, default_store()).train()
    except Sam3Error as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    finally:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()
    if rank == 0:
        print(pointer.weights.rsplit("/", 1)[0])
    return 0


if __name__ == "__main__":
    sys.exit(main())
