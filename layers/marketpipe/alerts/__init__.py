"""Alerts: the notifier port and its adapters (log, Plivo SMS), and the liveness alarm.

``marketpipe check`` (``alerts.cli``) watches a local run; ``alerts.aws_notifier`` turns CloudWatch
alarm notifications into texts on AWS. Both send through ``alerts.sms.PlivoSms``.
"""
