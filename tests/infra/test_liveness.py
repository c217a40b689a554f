"""Liveness alarms -> encrypted SNS topic -> notifier Lambda (Powertools idempotency, Plivo secret)."""

from __future__ import annotations

from typing import Any

from aws_cdk.assertions import Match, Template
from infra.stack import MarketpipeStack

from tests.infra.conftest import as_list, build, dumps, logical_id, only, policy_statements


def _alarms(resources: dict[str, Any], name_part: str) -> list[dict[str, Any]]:
    return [
        r["Properties"]
        for r in resources.values()
        if r["Type"] == "AWS::CloudWatch::Alarm" and name_part in str(r["Properties"].get("AlarmName", ""))
    ]


def test_frames_and_rows_alarms_per_exchange_treat_missing_data_as_breaching(
    resources: dict[str, Any],
) -> None:
    (frames,) = _alarms(resources, "-bitfinex-frames-in")
    (rows,) = _alarms(resources, "-bitfinex-rows-written")
    for alarm in (frames, rows):
        assert alarm["TreatMissingData"] == "breaching"
        assert alarm["ComparisonOperator"] == "LessThanThreshold" and alarm["Threshold"] == 1
        assert alarm["EvaluationPeriods"] == 2 and alarm["DatapointsToAlarm"] == 2
        assert "AlarmActions" not in alarm  # the composite alarm carries the actions
    # one series per exchange, whatever the symbols (a metric-math alarm could sum at most ten)
    assert frames["MetricName"] == "FramesIn" and frames["Namespace"] == "marketpipe"
    assert frames["Dimensions"] == [{"Name": "Exchange", "Value": "bitfinex"}]
    assert frames["Statistic"] == "Sum" and frames["Period"] == 60
    rows_text = dumps(rows["Metrics"])
    assert '"Expression": "SUM([m0,m1,m2])"' in rows_text and '"MetricName": "RowsWritten"' in rows_text
    for table in ("bitfinex_trades", "bitfinex_quotes", "bitfinex_book"):
        assert f'{{"Name": "Table", "Value": "{table}"}}' in rows_text


def test_composite_alarm_sends_alarm_and_ok_to_the_topic(
    stack: MarketpipeStack, resources: dict[str, Any]
) -> None:
    _, composite = only(resources, "AWS::CloudWatch::CompositeAlarm")
    props = composite["Properties"]
    topic = logical_id(stack, stack.liveness.topic)
    assert props["AlarmName"] == "Marketpipe-liveness-bitfinex"
    assert props["AlarmActions"] == [{"Ref": topic}] and props["OKActions"] == [{"Ref": topic}]
    rule = dumps(props["AlarmRule"])
    for child in (stack.liveness.frames_alarms["bitfinex"], stack.liveness.rows_alarms["bitfinex"]):
        assert logical_id(stack, child) in rule
    assert "OR" in rule


def test_topic_is_encrypted_tls_only_and_cloudwatch_may_use_its_key(
    stack: MarketpipeStack, template: Template, resources: dict[str, Any]
) -> None:
    key = logical_id(stack, stack.liveness.key)
    template.has_resource_properties(
        "AWS::SNS::Topic",
        {"KmsMasterKeyId": {"Fn::GetAtt": [key, "Arn"]}, "DisplayName": "marketpipe liveness"},
    )
    template.has_resource_properties("AWS::KMS::Key", {"EnableKeyRotation": True})
    key_policy = dumps(resources[key]["Properties"]["KeyPolicy"])
    assert '"Service": "cloudwatch.amazonaws.com"' in key_policy and "kms:GenerateDataKey*" in key_policy
    _, topic_policy = only(resources, "AWS::SNS::TopicPolicy", contains="Liveness")
    assert '"aws:SecureTransport": "false"' in dumps(topic_policy)


def test_lambda_is_subscribed_to_the_topic(stack: MarketpipeStack, template: Template) -> None:
    function = logical_id(stack, stack.liveness.function)
    template.has_resource_properties(
        "AWS::SNS::Subscription",
        {
            "Protocol": "lambda",
            "TopicArn": {"Ref": logical_id(stack, stack.liveness.topic)},
            "Endpoint": {"Fn::GetAtt": [function, "Arn"]},
        },
    )
    template.has_resource_properties(
        "AWS::Lambda::Permission",
        {"Principal": "sns.amazonaws.com", "FunctionName": {"Fn::GetAtt": [function, "Arn"]}},
    )


def test_notifier_lambda_environment_and_layer(stack: MarketpipeStack, resources: dict[str, Any]) -> None:
    props = resources[logical_id(stack, stack.liveness.function)]["Properties"]
    assert props["Handler"] == "handler.handler" and props["Runtime"] == "python3.12"
    env = props["Environment"]["Variables"]
    assert env["MARKETPIPE_IDEMPOTENCY_TABLE"] == {"Ref": logical_id(stack, stack.liveness.idempotency_table)}
    assert env["MARKETPIPE_PLIVO_SECRET_ARN"] == {"Ref": logical_id(stack, stack.plivo.secret)}
    assert env["MARKETPIPE_ALERT_SMS_TO"] == ""  # cdk.json default: alarms only, no SMS
    assert props["Layers"] == [{"Ref": logical_id(stack, stack.layer.layer)}]
    assert props["Timeout"] >= 60


def test_idempotency_table_is_keyed_on_id_with_ttl(stack: MarketpipeStack, resources: dict[str, Any]) -> None:
    props = resources[logical_id(stack, stack.liveness.idempotency_table)]["Properties"]
    assert props["KeySchema"] == [{"AttributeName": "id", "KeyType": "HASH"}]
    assert props["TimeToLiveSpecification"] == {"AttributeName": "expiration", "Enabled": True}
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
    assert props["SSESpecification"]["SSEEnabled"] is True


def test_notifier_role_is_least_privilege(stack: MarketpipeStack, resources: dict[str, Any]) -> None:
    role = logical_id(stack, stack.liveness.function.role)
    statements = policy_statements(resources, role)
    table = logical_id(stack, stack.liveness.idempotency_table)
    secret = logical_id(stack, stack.plivo.secret)
    by_action: dict[str, list[Any]] = {}
    for statement in statements:
        assert statement["Effect"] == "Allow"
        for action in as_list(statement["Action"]):
            by_action.setdefault(action, []).extend(as_list(statement["Resource"]))
    assert set(by_action) == {
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "dynamodb:DeleteItem",
        "secretsmanager:GetSecretValue",
        "secretsmanager:DescribeSecret",
    }
    for action in ("dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"):
        assert by_action[action] == [{"Fn::GetAtt": [table, "Arn"]}]
    assert by_action["secretsmanager:GetSecretValue"] == [{"Ref": secret}]
    assert "*" not in dumps(statements)


def test_phone_number_from_context_reaches_the_lambda() -> None:
    _, stack = build({"alarmPhoneNumber": "+15551234567", "exchanges": "bitfinex"})
    template = Template.from_stack(stack)
    template.has_resource_properties(
        "AWS::Lambda::Function",
        {"Environment": {"Variables": Match.object_like({"MARKETPIPE_ALERT_SMS_TO": "+15551234567"})}},
    )
