"""Execution price on Coinbase and Binance: REST plumbing, the dimensional model and its questions.

The walk-the-book arithmetic is :mod:`marketpipe.execution.walk`; the venues' wire facts are
:mod:`marketpipe.execution.coinbase` and :mod:`marketpipe.execution.binance_rest`, their REST clients
:mod:`marketpipe.execution.clients`; the ``marketpipe
run`` service is :mod:`marketpipe.execution.service`. See docs/EXECUTION.md.
"""
