"""`python -m training.experts ENV_ID --episodes N [--first-seed S]`: the expert's success rate."""
import argparse
import json

from .rollout import evaluate_expert


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("env_id")
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--quiet", action="store_true", help="no per-episode lines")
    args = parser.parse_args()
    result = evaluate_expert(args.env_id, args.episodes, args.first_seed, progress=not args.quiet)
    print(json.dumps({"env_id": args.env_id, "first_seed": args.first_seed, **result}))


if __name__ == "__main__":
    main()
