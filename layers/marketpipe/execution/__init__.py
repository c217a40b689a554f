"""Execution price on Coinbase and Binance: REST plumbing, the dimensional model and its questions.

The walk-the-book arithmetic is :mod:`marketpipe.processing.execution`; the exchange clients are
:mod:`marketpipe.exchanges.coinbase` and :mod:`marketpipe.exchanges.binance_rest`; the ``marketpipe
run`` service is :mod:`marketpipe.services.execution`. See docs/EXECUTION.md.
"""
