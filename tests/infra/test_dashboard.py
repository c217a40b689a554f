"""Dashboard and IteratorAge alarm: the contract metric names/dimensions, wired to the real resources."""

from __future__ import annotations

import json
from typing import Any

from aws_cdk.assertions import Template
from infra.stack import MarketpipeStack

from tests.infra.conftest import build, logical_id, only


def _body(stack: MarketpipeStack, resources: dict[str, Any]) -> str:
    """Dashboard body with references rendered as ``<LogicalId>`` so it can be searched as JSON."""
    _, dashboard = only(resources, "AWS::CloudWatch::Dashboard")
    parts = dashboard["Properties"]["DashboardBody"]["Fn::Join"][1]
    return "".join(p if isinstance(p, str) else f"<{json.dumps(p)}>" for p in parts)


def test_dashboard_graphs_every_contract_metric(stack: MarketpipeStack, resources: dict[str, Any]) -> None:
    body = _body(stack, resources)
    assert '"marketpipe","FramesIn","Exchange","bitfinex"' in body
    assert '"marketpipe","FramesIn","Exchange","bitfinex","Partition","slot-000"' in body  # BTC and ETH
    assert '"slot-001"' not in body
    assert '"marketpipe","CollectorHeartbeat","Exchange","bitfinex"' in body
    for table in ("bitfinex_trades", "bitfinex_quotes", "bitfinex_book"):
        assert f'"marketpipe","RowsWritten","Table","{table}"' in body
    assert '"marketpipe","Resyncs","Exchange","bitfinex"' in body
    assert '"marketpipe","ChecksumMismatches","Exchange","bitfinex"' in body
    assert '"marketpipe","Errors"' in body
    assert '"AWS/Lambda","Errors","FunctionName"' in body
    assert logical_id(stack, stack.book_builder.function) in body
    for title in (
        "Frames in",
        "Rows written per table",
        "Resyncs",
        "Checksum mismatches",
        "Errors",
        "iterator age",
    ):
        assert title in body


def test_iterator_age_alarm_watches_the_stream(stack: MarketpipeStack, template: Template) -> None:
    template.has_resource_properties(
        "AWS::CloudWatch::Alarm",
        {
            "Namespace": "AWS/Kinesis",
            "MetricName": "GetRecords.IteratorAgeMilliseconds",
            "Dimensions": [{"Name": "StreamName", "Value": {"Ref": logical_id(stack, stack.stream.stream)}}],
            "Statistic": "Maximum",
            "Period": 60,
            "Threshold": 300000,
            "ComparisonOperator": "GreaterThanThreshold",
            "EvaluationPeriods": 5,
            "DatapointsToAlarm": 3,
            "TreatMissingData": "notBreaching",
        },
    )
    assert stack.dashboard.alarms == [stack.dashboard.iterator_age_alarm]


def test_dashboard_shows_the_alarm(stack: MarketpipeStack, resources: dict[str, Any]) -> None:
    body = _body(stack, resources)
    assert logical_id(stack, stack.dashboard.iterator_age_alarm) in body


def test_frames_per_slot_are_one_line_per_slot_or_a_search_for_all_symbols() -> None:
    symbols = [f"S{i:03d}-USD" for i in range(13)]  # 6 + 6 + 1
    _, listed = build({"symbols": symbols})
    body = _body(listed, Template.from_stack(listed).to_json()["Resources"])
    for slot in ("slot-000", "slot-001", "slot-002"):
        assert f'"Partition","{slot}"' in body
    assert '"slot-003"' not in body and "SEARCH(" not in body
    _, every = build({"symbols": "all"})
    body = _body(every, Template.from_stack(every).to_json()["Resources"])
    assert '"Partition","slot-' not in body
    assert (
        'SEARCH(\'{marketpipe,Exchange,Partition} MetricName=\\"FramesIn\\" Exchange=\\"bitfinex\\"\'' in body
    )
