"""What every command shares: settings from the environment and flags, logs on stderr."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from corral.config import Settings, parse_host_dirs


def settings_from(args: argparse.Namespace) -> Settings:
    settings = Settings.from_env()
    if getattr(args, "image", None):
        settings = settings.with_(image=args.image)
    if getattr(args, "unsafe_runc_no_gvisor", False):
        settings = settings.with_(unsafe_runc=True)
    if getattr(args, "unsafe_no_disk_limit", False):
        settings = settings.with_(unsafe_no_disk_limit=True)
    if getattr(args, "allow_host_dir", None):
        extra = parse_host_dirs(os.pathsep.join(args.allow_host_dir))
        settings = settings.with_(host_dirs=settings.host_dirs + extra)
    return settings


def log_to_stderr(level: str) -> None:
    # stdout belongs to the protocol in stdio mode: every log line goes to stderr.
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        force=True,
    )
