"""CDK entry point (``cdk.json``: ``.venv/bin/python -m infra.app``; ``python infra/app.py`` works too).

cdk-nag's AwsSolutions pack is registered here as a policy-validation plugin (cdk-nag 3.x), not inside
the stack: every ``cdk synth``/``cdk deploy`` fails on an unacknowledged finding, while unit tests can
build the same app without it and a dedicated test runs it with the plugin on.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
# Run as a script (``python infra/app.py``), Python puts infra/ first on sys.path, where our
# ``infra/constructs`` package would shadow the ``constructs`` library: drop it. The app needs the repo
# root (``infra``) and the domain package (``layers/marketpipe``, whose table schemas generate the Glue
# catalog) instead.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
for _path in (REPO_ROOT / "layers", REPO_ROOT):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))
os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

from aws_cdk import App, Environment, Validations  # noqa: E402
from cdk_nag import AwsSolutionsChecks  # noqa: E402

from infra.config import ConfigError, MarketpipeConfig  # noqa: E402
from infra.stack import MarketpipeStack  # noqa: E402
from marketpipe.config import CONFIG_FILE_NAME, ConfigFile, load_config_file  # noqa: E402
from marketpipe.errors import ConfigError as LocalConfigError  # noqa: E402


def cdk_json_context() -> dict[str, Any]:
    """The ``context`` block of cdk.json, so apps built outside the CLI (tests) see the same flags."""
    path = REPO_ROOT / "cdk.json"
    if not path.exists():
        return {}
    context: dict[str, Any] = json.loads(path.read_text()).get("context", {})
    return context


def config_file(path: str | None = None) -> ConfigFile:
    """``marketpipe.toml`` (the file ``marketpipe run`` reads; context ``configFile`` names another)."""
    named = Path(path) if path else REPO_ROOT / CONFIG_FILE_NAME
    if not named.is_absolute():
        named = REPO_ROOT / named
    if not path and not named.exists():
        return ConfigFile()
    try:
        return load_config_file(named)
    except LocalConfigError as exc:
        raise ConfigError(str(exc)) from None


def create_app(context: dict[str, Any] | None = None, *, nag: bool = True) -> tuple[App, MarketpipeStack]:
    """Build the app; ``context`` overrides cdk.json (the CLI's ``-c`` values override both)."""
    app = App(context={**cdk_json_context(), **(context or {})})
    config = MarketpipeConfig.from_context(app.node, config_file(app.node.try_get_context("configFile")))
    env = Environment(
        account=os.environ.get("CDK_DEFAULT_ACCOUNT"), region=os.environ.get("CDK_DEFAULT_REGION")
    )
    stack = MarketpipeStack(
        app,
        config.stack_name,
        config=config,
        env=env,
        description="marketpipe: Fargate collector -> Kinesis -> book-builder Lambda -> S3 lake + RDS MySQL",
    )
    if nag:
        Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    return app, stack


def main() -> None:
    app, _ = create_app()
    app.synth()


if __name__ == "__main__":
    main()
