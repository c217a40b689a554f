"""Configuration: marketpipe.toml (shared with ``marketpipe run``) under cdk.json/-c context, sane defaults,
typed overrides, nothing account-specific."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
from aws_cdk import App
from aws_cdk.assertions import Template
from infra.app import config_file
from infra.config import ConfigError, MarketpipeConfig

from marketpipe.config import load_config_file
from tests.infra.conftest import REPO_ROOT, build


def _config(context: dict[str, Any]) -> MarketpipeConfig:
    return MarketpipeConfig.from_context(App(context=context).node)


def test_defaults_deploy_the_small_pipeline() -> None:
    config = _config({})
    assert config.symbols == ("BTC-USD", "ETH-USD")
    assert config.shard_count == 1
    assert config.db_instance_class == "t4g.micro"
    assert config.retry_attempts == 10
    assert config.alarm_phone_number == ""
    assert config.partitions == [("bitfinex", "slot-000")]  # two books share one connection slot
    assert config.slots == 1 and config.shards_needed == 1
    assert config.sql_scope == ("bitfinex_trades,bitfinex_quotes,bitfinex_book", "BTC-USD,ETH-USD")


def test_sql_can_be_scoped_to_some_tables_and_symbols() -> None:
    config = _config(
        {"symbols": "BTC-USD,ETH-USD,SOL-USD", "sqlTables": "bitfinex_trades", "sqlSymbols": "btc-usd"}
    )
    assert config.sql_scope == ("bitfinex_trades", "BTC-USD")


def test_hundreds_of_symbols_get_slots_and_need_enough_shards() -> None:
    symbols = [f"S{i:03d}-USD" for i in range(300)]
    config = _config({"symbols": symbols, "shardCount": 3})
    assert config.slots == 50 and config.shards_needed == 3
    assert config.partitions[0] == ("bitfinex", "slot-000") and config.partitions[-1] == (
        "bitfinex",
        "slot-049",
    )
    with pytest.raises(ConfigError, match="shardCount: 300 symbols need at least 3 Kinesis shards"):
        _config({"symbols": symbols, "shardCount": 2})
    assert _config({"symbols": symbols[:100]}).shard_count == 1


@pytest.mark.parametrize("value", ["all", "ALL", ["all"], '["all"]'])
def test_all_symbols_is_resolved_by_the_collector(value: Any) -> None:
    config = _config({"symbols": value, "shardCount": 3})
    assert config.symbols == ("all",) and config.all_symbols
    assert config.slots is None and config.shards_needed is None and config.partitions == []
    assert config.sql_scope[1] == "all"  # the book builder reads it as: every symbol
    scoped = _config({"symbols": "all", "sqlSymbols": "btc-usd,SOL-USD"})
    assert scoped.sql_scope[1] == "BTC-USD,SOL-USD"


def test_cdk_json_context_matches_the_defaults() -> None:
    context = json.loads((REPO_ROOT / "cdk.json").read_text())["context"]
    assert _config(context) == MarketpipeConfig()


def test_cli_style_string_overrides_are_typed() -> None:
    config = _config(
        {
            "symbols": "btc-usd, SOL-USD",
            "shardCount": "3",
            "dbMultiAz": "true",
            "dbDeletionProtection": "false",
            "logRetentionDays": "90",
            "alarmPhoneNumber": "+15555550100",
            "tags": '{"team": "data"}',
        }
    )
    assert config.symbols == ("BTC-USD", "SOL-USD")
    assert config.shard_count == 3
    assert config.db_multi_az is True and config.db_deletion_protection is False
    assert config.log_retention_days == 90
    assert config.alarm_phone_number == "+15555550100"
    assert config.tags == {"team": "data"}


@pytest.mark.parametrize(
    ("context", "message"),
    [
        ({"alarmPhoneNumber": "555-0100"}, "E.164"),
        ({"retryAttempts": "-1"}, "bounded"),
        ({"shardCount": "zero"}, "integer"),
        ({"symbols": "BTCUSD"}, "BASE-QUOTE"),
        ({"symbols": "BTC-USD,all"}, "'all' stands alone"),
        ({"symbols": "BTC-USD,btc-usd"}, "each symbol once"),
        ({"symbols": "all", "sqlSymbols": "BTCUSD"}, "sqlSymbols: 'BTCUSD' is not a normalized"),
        ({"symbols": [f"S{i:03d}-USD" for i in range(101)]}, "101 symbols need at least 2 Kinesis shards"),
        ({"logRetentionDays": "31"}, "logRetentionDays"),
        ({"maxRecordAgeSeconds": "172800"}, "stream retention"),
        ({"dbMultiAz": "maybe"}, "boolean"),
        ({"dbEngineVersion": "5.7"}, "MySQL 8"),
        ({"parallelizationFactor": "11"}, "parallelizationFactor must be between 1 and 10"),
        ({"sqlTables": "bitfinex_book,binance_depth20"}, "sqlTables: binance_depth20 not written"),
        ({"sqlSymbols": "SOL-USD"}, "sqlSymbols: SOL-USD not among the collected symbols"),
    ],
)
def test_bad_values_fail_at_synth_with_a_clear_message(context: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _config(context)


def test_nothing_account_specific_is_committed() -> None:
    text = (REPO_ROOT / "cdk.json").read_text()
    shipped = (REPO_ROOT / "marketpipe.toml").read_text()
    for committed in (text, shipped):
        assert not re.search(r"\b\d{12}\b", committed), "no AWS account ids"
        assert "arn:aws" not in committed
    assert tomllib.loads(shipped)["alerts"]["sms_to"] == ""
    assert json.loads(text)["app"] == ".venv/bin/python -m infra.app"


def _file_config(tmp_path: Path, text: str, context: dict[str, Any] | None = None) -> MarketpipeConfig:
    path = tmp_path / "marketpipe.toml"
    path.write_text(text)
    return MarketpipeConfig.from_context(App(context=context or {}).node, load_config_file(path))


def test_the_shipped_marketpipe_toml_deploys_the_defaults() -> None:
    """The file `marketpipe run` reads is the one the app reads; as shipped it changes nothing."""
    assert MarketpipeConfig.from_context(App().node, config_file()) == MarketpipeConfig()
    assert config_file().path == REPO_ROOT / "marketpipe.toml"


def test_a_local_run_and_the_deployment_are_described_once(tmp_path: Path) -> None:
    config = _file_config(
        tmp_path,
        '[run]\nexchanges = ["bitfinex", "bitso"]\n'
        '[bitfinex]\nsymbols = ["BTC-USD", "SOL-USD", "ETH-USD"]\n'
        '[bitso]\nbooks = ["eth_mxn"]\nthresholds = [2.0, 0.25]\nwindow_seconds = 300\n'
        '[execution]\nnotionals = [250000, 100000]\nmarkets = ["binance:BTCUSDT"]\n'
        '[binance]\nsymbols = ["SOLUSDT"]\nwatch = ["SOLUSDT>300"]\n'
        '[alerts]\nsms_to = "+15555550100"\n'
        '[aws]\nsql_tables = ["bitfinex_trades"]\nsql_symbols = ["SOL-USD"]\nshard_count = 2\n',
    )
    assert config.symbols == ("BTC-USD", "SOL-USD", "ETH-USD") and config.exchanges == ("bitfinex",)
    assert config.bitso_spreads and not config.binance and not config.execution_price
    assert config.bitso_books == ("eth_mxn",) and config.spread_thresholds == ("2.0", "0.25")
    assert config.bitso_window_seconds == 300
    assert config.execution_notionals == ("250000", "100000")
    assert config.execution_markets == ("binance:BTCUSDT",)
    assert config.binance_symbols == ("SOLUSDT",) and config.binance_watch == ("SOLUSDT>300",)
    assert config.alarm_phone_number == "+15555550100"
    assert config.sql_scope == ("bitfinex_trades", "SOL-USD") and config.shard_count == 2


def test_context_overrides_the_file(tmp_path: Path) -> None:
    text = '[bitfinex]\nsymbols = ["SOL-USD"]\n[aws]\nshard_count = 2\n[bitso]\nthresholds = [3]\n'
    context = {"symbols": "btc-usd", "shardCount": "3", "spreadThresholds": "0.7"}
    config = _file_config(tmp_path, text, context)
    assert config.symbols == ("BTC-USD",) and config.shard_count == 3 and config.spread_thresholds == ("0.7",)
    assert _file_config(tmp_path, '[run]\nexchanges = ["bitfinex"]\n', {"binance": "true"}).binance


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[aws]\nshard_cnt = 2\n", "marketpipe.toml: aws.shard_cnt: unknown key"),
        ('[aws]\nsymbols = ["BTC-USD"]\n', "marketpipe.toml: aws.symbols: unknown key"),
        ("[aws]\nshard_count = 0\n", "shardCount must be between 1 and 500"),
        ('[bitso]\nthresholds = "1"\n', "marketpipe.toml: bitso.thresholds: expected a list of numbers"),
        ("[execution]\nnotionals = [-1]\n", "marketpipe.toml: execution.notionals: invalid notional '-1'"),
        ("[bitfinex]\nsymbol = []\n", "marketpipe.toml: bitfinex.symbol: unknown key"),
    ],
)
def test_a_bad_file_fails_at_synth_naming_the_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        _file_config(tmp_path, text)


def test_the_synthesized_stack_carries_the_files_settings(tmp_path: Path) -> None:
    path = tmp_path / "deploy.toml"
    path.write_text(
        '[run]\nexchanges = ["bitfinex", "bitso", "binance"]\n[bitso]\nthresholds = [2.0]\n'
        '[binance]\nsymbols = ["SOLUSDT"]\n'
    )
    _, stack = build({"configFile": str(path)})
    assert stack.execution is None and stack.bitso_spreads is not None and stack.binance is not None
    functions = Template.from_stack(stack).find_resources("AWS::Lambda::Function")
    envs = [f["Properties"].get("Environment", {}).get("Variables", {}) for f in functions.values()]
    assert any(env.get("MARKETPIPE_SPREAD_THRESHOLDS") == "2.0" for env in envs)
    assert not any("MARKETPIPE_EXECUTION_NOTIONALS" in env for env in envs)
    assert stack.binance.symbols == ("SOLUSDT",)


def test_cdk_cli_is_pinned_to_v2() -> None:
    package = json.loads((REPO_ROOT / "package.json").read_text())
    spec = package["devDependencies"]["aws-cdk"]
    match = re.match(r"^[~^]?2\.(\d+)\.\d+$", spec)
    assert match and int(match.group(1)) >= 1148, spec
