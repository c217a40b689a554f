"""One CDK construct per capability (network, stream, collector, book builder, database, lake, ...)."""
