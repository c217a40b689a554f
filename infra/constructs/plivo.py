"""Alerting settings the liveness capability consumes: the Plivo credentials secret and the phone number.

The secret is created with a placeholder ``auth_id`` and a random ``auth_token`` so that no credential
is ever committed or passed on a command line that ends up in shell history; operators overwrite it
once with ``aws secretsmanager put-secret-value`` (see the README). The phone number comes from
context (``alarmPhoneNumber``) and defaults to empty, which means "no SMS, alarms only".
"""

from __future__ import annotations

import json

from aws_cdk import Acknowledgment, RemovalPolicy, Validations
from aws_cdk import aws_secretsmanager as secretsmanager

from constructs import Construct
from infra.config import MarketpipeConfig
from marketpipe import envnames


class PlivoSettings(Construct):
    """Exposes ``secret`` (JSON ``{"auth_id", "auth_token"}``) and ``alarm_phone_number`` ('' = none)."""

    def __init__(self, scope: Construct, construct_id: str, *, config: MarketpipeConfig) -> None:
        super().__init__(scope, construct_id)
        self.alarm_phone_number = config.alarm_phone_number
        self.secret = secretsmanager.Secret(
            self,
            "Credentials",
            description="Plivo API credentials for marketpipe SMS alerts: set auth_id and auth_token",
            generate_secret_string=secretsmanager.SecretStringGenerator(
                secret_string_template=json.dumps({"auth_id": envnames.PLIVO_PLACEHOLDER_AUTH_ID}),
                generate_string_key="auth_token",
                exclude_punctuation=True,
            ),
            removal_policy=RemovalPolicy.DESTROY,
        )
        Validations.of(self.secret).acknowledge(
            Acknowledgment(
                id="AwsSolutions-SMG4",
                reason="Plivo auth tokens are issued and rotated in Plivo's console, not by AWS; a"
                " rotation Lambda has nothing to call.",
            )
        )
