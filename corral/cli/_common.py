"""What every command shares: settings from the environment and flags, logs on stderr."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from collections.abc import AsyncIterator

from corral.config import Settings, parse_host_dirs
from corral.sandbox_backend.store import Store
from corral.service import Services, open_services, tenancy
from corral.service.tenants import Tenants


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


@contextlib.asynccontextmanager
async def open_tenants(settings: Settings, *, read_only: bool = False) -> AsyncIterator[Tenants]:
    """Only the token table: token commands need no Docker."""
    store = await Store.open(settings.db_path, read_only=read_only)
    try:
        yield Tenants(store.tokens, settings)
    finally:
        await store.close()


@contextlib.asynccontextmanager
async def operator_services(args: argparse.Namespace, *, read_only: bool) -> AsyncIterator[Services]:
    """The services as the operator (every tenant), next to a live server on the same data dir:
    nothing is started or restored; `read_only` opens the database so that it cannot change."""
    async with open_services(settings_from(args), serve=False, read_only=read_only) as services:
        with tenancy.acting_as(tenancy.OPERATOR):
            yield services
