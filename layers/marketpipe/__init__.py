"""marketpipe: crypto market data captured exactly, stored in CSV, SQL and a Parquet lake."""

__version__ = "0.1.0"
