"""Verbs ``push`` and ``download``: thin wrappers over :mod:`mv2d3d.hub`."""

from __future__ import annotations

import argparse


def register(sub: "argparse._SubParsersAction") -> None:
    p = sub.add_parser(
        "push",
        help="upload a saved model folder to the Hugging Face Hub (one commit)",
        description="Validate a folder written by save_pretrained (config.json parses, model.safetensors "
        "loads strictly into that architecture) and upload config.json, model.safetensors and README.md "
        "to REPO_ID as one commit, creating the repository if needed. A broken folder is refused before "
        "anything is sent. Honours HF_ENDPOINT and HF_TOKEN.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  mv2d3d push my-classifier user/my-classifier --private",
    )
    p.add_argument("folder", metavar="DIR", help="folder written by save_pretrained / mv2d3d finetune")
    p.add_argument("repo_id", metavar="REPO_ID", help="Hub repository, 'user/name'")
    p.add_argument("--private", action="store_true", default=None, help="create the repository as private")
    p.add_argument("--revision", default=None, help="branch to commit to (created if missing; default: main)")
    p.add_argument("--message", default=None, help="commit message")
    p.add_argument("--token", default=None, help="Hub token with write access (default: HF_TOKEN / `hf auth login`)")
    p.add_argument("--create-pr", action="store_true", help="open a pull request instead of committing to the branch")
    p.set_defaults(func=_push)

    p = sub.add_parser(
        "download",
        help="prefetch a model into the Hub cache for offline use",
        description="Fetch config.json and model.safetensors of a zoo name or Hub repo id into the "
        "huggingface_hub cache (zoo entries: pinned commit, sha256-verified), so that later runs work with "
        "HF_HUB_OFFLINE=1. Prints the local folder.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  mv2d3d download mv-m3ae-base && HF_HUB_OFFLINE=1 mv2d3d extract scans/ --model mv-m3ae-base --out f.npz",
    )
    p.add_argument("name", metavar="NAME", help="zoo name or Hub repo id")
    p.add_argument("--revision", default=None, help="branch, tag or commit sha (Hub repo ids only)")
    p.add_argument("--cache-dir", default=None, help="cache folder (default: HF_HUB_CACHE or HF_HOME/hub)")
    p.add_argument("--token", default=None, help="Hub token for private or gated repositories")
    p.set_defaults(func=_download)


def _push(args: argparse.Namespace) -> int:
    from ..hub import push_folder

    url = push_folder(
        args.folder,
        args.repo_id,
        private=args.private,
        token=args.token,
        revision=args.revision,
        commit_message=args.message,
        create_pr=args.create_pr,
    )
    print(f"pushed {args.folder} to {args.repo_id}: {url}")
    return 0


def _download(args: argparse.Namespace) -> int:
    from ..hub import download

    folder = download(args.name, revision=args.revision, cache_dir=args.cache_dir, token=args.token)
    print(folder)
    return 0
