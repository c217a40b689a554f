"""The composition root: which capabilities run, and settings refused before anything opens."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from marketpipe.capabilities import (
    DEFAULT_EXCHANGES,
    EXCHANGE_MODULES,
    UNSET_EXCHANGES,
    check_settings,
    exchange_module,
)
from marketpipe.config import RunConfig
from marketpipe.errors import ConfigError
from marketpipe.pipeline import run_live
from marketpipe.runtime import Partitioned


def test_every_capability_module_has_the_factories_and_its_settings_reader() -> None:
    for name in EXCHANGE_MODULES:
        module = exchange_module(name)
        assert callable(module.create_service) and callable(module.create_replayer), name
        assert callable(module.settings_from), name
    assert set(DEFAULT_EXCHANGES) == set(EXCHANGE_MODULES)  # everything on by default


def test_unknown_capability_and_bad_settings_are_one_clear_error() -> None:
    with pytest.raises(ConfigError, match="unknown exchange 'kraken'"):
        check_settings(["kraken"], {}, {})
    with pytest.raises(ConfigError, match="invalid Bitfinex symbol 'NOPE'"):
        check_settings(["bitfinex"], {"opt_symbols": "BTC-USD,NOPE"}, {})
    with pytest.raises(ConfigError, match="invalid Bitfinex symbol"):
        check_settings(["bitfinex"], {}, {"MARKETPIPE_SYMBOLS": "??"})
    check_settings(["bitso"], {}, {"MARKETPIPE_SYMBOLS": "??"})  # only the capabilities that run


def test_run_refuses_bad_settings_before_opening_any_store(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    config = RunConfig(data_dir=data_dir, options={"opt_symbols": "NOPE"}, duration=1)
    with pytest.raises(ConfigError, match="invalid Bitfinex symbol"):
        asyncio.run(run_live(config))
    assert not data_dir.exists()  # no raw capture, no SQLite file, no lake folder
    assert config.exchanges == list(UNSET_EXCHANGES)  # a RunConfig built in code: Bitfinex alone


def test_services_that_publish_to_kinesis_name_their_partitions() -> None:
    from marketpipe.binance.service import BinanceService
    from marketpipe.bitfinex.service import BitfinexService
    from marketpipe.runtime import RunContext

    ctx = RunContext(RunConfig(options={"opt_symbols": "BTC-USD,ETH-USD,BTC-USD"}), lambda t, r: None,
                     lambda f: None, [], lambda: 0)  # fmt: skip
    bitfinex = BitfinexService(ctx, env={})
    assert isinstance(bitfinex, Partitioned) and isinstance(BinanceService(ctx, env={}), Partitioned)
    assert bitfinex.all_partitions() == ["slot-000"]  # two symbols: one Kinesis slot
