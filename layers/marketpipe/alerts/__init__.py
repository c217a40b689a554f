"""Notification adapters: the alert message, its channels (log, webhook, Plivo SMS, SNS), the notifier
port (``notifiers``) and the alerting-service base the Bitso and Binance services share.

The liveness check that also texts through Plivo is :mod:`marketpipe.liveness`.
"""
