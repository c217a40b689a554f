"""marketpipe.toml and ``marketpipe config``: precedence flag > environment > file > default, where each
value came from, and one error line naming the key for anything the file gets wrong."""

from __future__ import annotations

import logging
import tomllib
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from marketpipe.capabilities import DEFAULT_EXCHANGES, RUN, sections
from marketpipe.cli import build_parser, main
from marketpipe.config import load_config_file

REPO_ROOT = Path(__file__).resolve().parents[2]
SHIPPED = REPO_ROOT / "marketpipe.toml"


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No ./marketpipe.toml, no MARKETPIPE_* settings from the caller's environment; the CLI's log
    handler is put back afterwards."""
    monkeypatch.chdir(tmp_path)
    for section in sections():
        for setting in section.settings:
            if setting.env:
                monkeypatch.delenv(setting.env, raising=False)
    monkeypatch.delenv("MARKETPIPE_CONFIG", raising=False)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def config_lines(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, str]:
    """``marketpipe config`` output as {"section.key": "value  # source"}."""
    assert main(["config", *argv]) == 0
    out, section = {}, ""
    for line in capsys.readouterr().out.splitlines():
        if line.startswith("["):
            section = line[1 : line.index("]")]
        elif "=" in line and not line.startswith("#"):
            key, rest = line.split("=", 1)
            out[f"{section}.{key.strip()}"] = rest.strip()
    return out


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_precedence_flag_over_env_over_file_over_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    write(
        tmp_path / "marketpipe.toml",
        '[bitso]\nbooks = ["eth_mxn"]\nthresholds = [2.5, 0.25]\nwindow_seconds = 300\n'
        '[bitfinex]\nsymbols = ["SOL-USD"]\n[run]\nsinks = ["db"]\n',
    )
    monkeypatch.setenv("MARKETPIPE_BITSO_BOOKS", "xrp_mxn")
    monkeypatch.setenv("MARKETPIPE_SPREAD_THRESHOLDS", "3")
    shown = config_lines(capsys, "--bitso-books", "btc_mxn,usd_mxn")
    assert shown["bitso.books"] == '["btc_mxn", "usd_mxn"]  # flag --bitso-books'
    assert shown["bitso.thresholds"] == "[3]  # env MARKETPIPE_SPREAD_THRESHOLDS"
    assert shown["bitso.window_seconds"] == "300  # file marketpipe.toml"
    assert shown["bitfinex.symbols"] == '["SOL-USD"]  # file marketpipe.toml'
    assert shown["run.sinks"] == '["db"]  # file marketpipe.toml'
    assert shown["bitso.rest_per_minute"] == "50  # default"
    assert shown["run.exchanges"] == '["bitfinex", "bitso", "binance", "execution"]  # default'

    # The services read the same values.
    from marketpipe.bitso.service import settings_from

    file = load_config_file()
    s = settings_from({"opt_bitso_books": "btc_mxn"}, {"MARKETPIPE_SPREAD_THRESHOLDS": "3"}, file)
    assert s.books == ("btc_mxn",) and s.thresholds == (Decimal(3),) and s.window_seconds == 300
    s = settings_from({}, {}, file)
    assert s.books == ("eth_mxn",) and s.thresholds == (Decimal("2.5"), Decimal("0.25"))


def test_the_file_is_named_by_flag_then_environment_then_found_in_the_current_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert config_lines(capsys)["bitfinex.symbols"].endswith("# default")  # no file at all
    write(tmp_path / "marketpipe.toml", '[bitfinex]\nsymbols = ["LTC-USD"]\n')
    by_env = write(tmp_path / "env.toml", '[bitfinex]\nsymbols = ["XRP-USD"]\n')
    by_flag = write(tmp_path / "flag.toml", '[bitfinex]\nsymbols = ["DOT-USD"]\n')
    assert config_lines(capsys)["bitfinex.symbols"] == '["LTC-USD"]  # file marketpipe.toml'
    monkeypatch.setenv("MARKETPIPE_CONFIG", str(by_env))
    assert config_lines(capsys)["bitfinex.symbols"] == f'["XRP-USD"]  # file {by_env}'
    assert config_lines(capsys, "--config", str(by_flag))["bitfinex.symbols"].startswith('["DOT-USD"]')


def test_secrets_and_numbers_are_masked_and_aws_keys_shown_as_the_cdk_apps(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    write(tmp_path / "marketpipe.toml", '[alerts]\nsms_to = "+15551234567"\n[aws]\nshard_count = 2\n')
    shown = config_lines(capsys, "--db", "mysql+pymysql://user:hunter2@db:3306/marketpipe")
    assert shown["run.db"] == '"mysql+pymysql://user:***@db:3306/marketpipe"  # flag --db'
    assert shown["alerts.sms_to"] == '"+*******4567"  # file marketpipe.toml'
    assert shown["aws.shard_count"] == "2  # file marketpipe.toml"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[bitso]\nthresholds = "1"\n', "marketpipe.toml: bitso.thresholds: expected a list of numbers"),
        (
            "[bitso]\nthresholds = [1, true]\n",
            "marketpipe.toml: bitso.thresholds: expected a list of numbers",
        ),
        ("[bitso]\nthreshold = [1]\n", "marketpipe.toml: bitso.threshold: unknown key"),
        ("[kraken]\nsymbols = []\n", "marketpipe.toml: kraken: unknown table"),
        ("symbols = []\n", "marketpipe.toml: symbols: unknown key"),
        ('[run]\nexchanges = "bitso"\n', "marketpipe.toml: run.exchanges: expected a list of strings"),
        ('[run]\nexchanges = ["kraken"]\n', "marketpipe.toml: run.exchanges: unknown exchange 'kraken'"),
        (
            "[bitso]\nrest_per_minute = 61\n",
            "marketpipe.toml: bitso.rest_per_minute: Bitso allows at most 60",
        ),
        ("[bitso]\nwindow_seconds = 45\n", "marketpipe.toml: bitso.window_seconds: window of 45 s"),
        ("[bitso]\nwindow_seconds = 60.5\n", "marketpipe.toml: bitso.window_seconds: expected an integer"),
        (
            '[bitfinex]\nsymbols = ["BTC-USD", "all"]\n',
            "marketpipe.toml: bitfinex.symbols: 'all' stands alone",
        ),
        ("[execution]\nnotionals = [0]\n", "marketpipe.toml: execution.notionals: invalid notional '0'"),
        ("[execution]\ninterval = 0.5\n", "marketpipe.toml: execution.interval: 0.5: must be at least 1"),
        ('[binance]\nwatch = ["BTCUSDT=1"]\n', "marketpipe.toml: binance.watch:"),
        ('[alerts]\nsms_to = "555-0100"\n', "marketpipe.toml: alerts.sms_to: expected E.164"),
        ('[alerts]\nwebhooks = ["ftp://x"]\n', "marketpipe.toml: alerts.webhooks:"),
        ("[liveness]\nthreshold = -1\n", "marketpipe.toml: liveness.threshold: must be positive"),
        ("[bitso\n", "marketpipe.toml: not valid TOML"),
    ],
)
@pytest.mark.parametrize("command", ["config", "run"])
def test_a_bad_file_is_one_error_line_naming_the_key_and_exit_2(
    text: str, message: str, command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(tmp_path / "marketpipe.toml", text)
    code = main([command, "--data-dir", str(tmp_path / "data")])
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"marketpipe: error: {message}"), err
    assert not (tmp_path / "data").exists()  # refused before any store opens


def test_bad_flag_or_environment_values_name_their_source(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["config", "--bitso-window-seconds", "x"]) == 2
    assert capsys.readouterr().err.strip() == (
        "marketpipe: error: --bitso-window-seconds: expected an integer, got 'x'"
    )
    monkeypatch.setenv("MARKETPIPE_EXECUTION_NOTIONALS", "100000,-5")
    assert main(["config"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "marketpipe: error: MARKETPIPE_EXECUTION_NOTIONALS: invalid notional '-5': must be positive"
    assert main(["config", "--config", "missing.toml"]) == 2
    assert capsys.readouterr().err.startswith("marketpipe: error: missing.toml: cannot read the config file")


def test_the_shipped_file_holds_every_key_at_its_default_and_enables_everything(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = tomllib.loads(SHIPPED.read_text())
    file = load_config_file(SHIPPED)
    for section in sections():
        assert set(data[section.name]) == {s.key for s in section.settings}, section.name
        for key, resolved in section.resolve({}, {}, file).items():
            assert resolved.value == section.resolve({}, {}, None)[key].value, f"{section.name}.{key}"
    assert data["run"]["exchanges"] == list(DEFAULT_EXCHANGES) == RUN["exchanges"].default
    assert "aws" in data  # the CDK app's keys, in the same file (tests/infra/test_config.py)


def test_help_shows_each_settings_environment_file_key_and_default() -> None:
    run = build_parser()._subparsers._group_actions[0].choices["run"]  # type: ignore[union-attr]
    text = run.format_help()
    assert "OPT_" not in text
    assert "env MARKETPIPE_SPREAD_THRESHOLDS, file bitso.thresholds; default 1.0,0.5,0.1" in " ".join(
        text.split()
    )
    for flag in ("--config", "--webhook", "--binance-watch", "--execution-notionals", "--compress-raw"):
        assert flag in text


def test_check_reads_the_liveness_table_and_the_run_data_dir(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(tmp_path / "marketpipe.toml", "[liveness]\nthreshold = 0\n")
    assert main(["check"]) == 2
    assert capsys.readouterr().err.strip() == (
        "marketpipe: error: marketpipe.toml: liveness.threshold: must be positive, got 0.0"
    )
    write(tmp_path / "marketpipe.toml", '[run]\ndata_dir = "elsewhere"\n[liveness]\nthreshold = 1e9\n')
    main(["check"])
    assert "elsewhere/check-state.json" in capsys.readouterr().err
