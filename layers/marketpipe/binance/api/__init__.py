"""Read API over the Binance tables: one pure handler, served by ``marketpipe serve`` and API Gateway."""
