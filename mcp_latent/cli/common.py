"""What every command shares: settings from flags and environment, a service, JSON output, the exit path."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import Any

from mcp_latent.errors import InvalidInput


def quiet_libraries() -> None:
    # stdout belongs to the MCP protocol; keep library chatter and progress bars off it (and mostly off stderr).
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def settings_from_args(args: argparse.Namespace) -> Any:
    from pydantic import ValidationError

    from mcp_latent.settings import Settings

    overrides = {
        key: getattr(args, key)
        for key in getattr(args, "setting_flags", ())  # the options that mirror a setting (see setting_option)
        if getattr(args, key, None) is not None
    }
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:  # a bad flag or MCP_LATENT_* variable: name it, no traceback
        problems = "; ".join(
            f"MCP_LATENT_{'_'.join(map(str, err['loc'])).upper()}: {err['msg']}" for err in exc.errors()
        )
        raise InvalidInput(f"invalid setting: {problems}.") from exc
    logging.basicConfig(
        level=settings.log_level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    return settings


ONE_SHOT_PROFILE_WAIT = 24 * 3600.0


def service_from_args(args: argparse.Namespace) -> Any:
    from mcp_latent.service.api import LatentService

    settings = settings_from_args(args)
    settings.profile_wait_seconds = ONE_SHOT_PROFILE_WAIT  # no event loop to keep free: wait for a fit
    service = LatentService(settings)
    service.start(fit_profiles=False)  # one-shot commands fit only the profiles they use, when they use them
    service.wait_ready()
    return service


def print_json(data: Any) -> None:
    print(json.dumps(data, separators=(",", ":"), ensure_ascii=False))


def end_process_now(code: int) -> None:
    """End a finished `serve` without Python's finalisation. Profile fits may still run in background threads inside
    native code (ONNX Runtime, BLAS, hnswlib); finalisation ends such threads by unwinding them through C++ frames,
    which aborts the process (SIGABRT, 'terminate called without an active exception') where a client left while
    profiles fitted. Nothing is lost by skipping it: the store is closed, fits are written atomically and an
    unfinished one is fitted again at the next start, and output is flushed here."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # the client may have closed the pipe already
            pass
    os._exit(code)


def setting_option(parser: argparse.ArgumentParser, flag: str, field: str, **kwargs: Any) -> None:
    """An option that overrides setting `field`; its help is the setting's description plus its variable."""
    from mcp_latent.settings import Settings, default_text

    info = Settings.model_fields[field]
    default = default_text(field)
    shown = "" if default is None else f"default {default}; "
    help_text = f"{info.description} ({shown}env MCP_LATENT_{field.upper()})"
    parser.add_argument(flag, dest=field, help=help_text.replace("%", "%%"), **kwargs)
    flags = parser.get_default("setting_flags") or ()
    parser.set_defaults(setting_flags=(*flags, field))


def add_common_options(parser: argparse.ArgumentParser) -> None:
    setting_option(parser, "--data-dir", "data_dir", metavar="DIR")
    setting_option(parser, "--profiles-dir", "profiles_dir", metavar="DIR")
    setting_option(parser, "--model", "model", metavar="NAME_OR_PATH")
    setting_option(parser, "--log-level", "log_level", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    setting_option(parser, "--store-url", "store_url", metavar="URL")


def add_data_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--from", dest="source", required=True, metavar="FILE", help="labeled data: .jsonl or .csv")
    parser.add_argument("--text-field", default="text", help="field (column) holding the text (default: text)")
    parser.add_argument("--label-field", default="label", help="field (column) holding the label (default: label)")
    parser.add_argument(
        "--split-field", default="split", help="field (column) naming each row's split (default: split)"
    )
