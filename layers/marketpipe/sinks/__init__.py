"""Where rows go: CSV files, a SQL database, a Parquet lake (and, on AWS, Kinesis/S3)."""
