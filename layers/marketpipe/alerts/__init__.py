"""Alerts: the notifier port and its adapters (log, Plivo SMS), and the liveness alarm.

``marketpipe check`` (``alerts.cli``) watches a local run; on AWS the notifier Lambda
(``marketpipe.aws.notifier``) turns CloudWatch alarm notifications into the texts of ``alerts.alarms``.
Both send through ``alerts.sms.PlivoSms``.
"""
