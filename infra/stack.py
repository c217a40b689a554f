"""The marketpipe stack: wires one construct per capability, in data-flow order.

collector (Fargate) -> stream (Kinesis) -> book builder (Lambda) -> Iceberg lake (S3/Glue/Athena) +
database (RDS MySQL), watched by the dashboard. The ledger ETL, owned by another capability, is attached when
its construct module exists, so this stack deploys with or without it.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any, TypeVar

from aws_cdk import CfnOutput, Stack, Tags

from constructs import Construct
from infra.config import MarketpipeConfig, log_retention
from infra.constructs.binance import attach_binance
from infra.constructs.bitso_spreads import BitsoSpreads
from infra.constructs.book_builder import BookBuilder
from infra.constructs.collector import Collector
from infra.constructs.dashboard import Dashboard
from infra.constructs.database import Database
from infra.constructs.execution import ExecutionPrice
from infra.constructs.iceberg_lake import IcebergLake
from infra.constructs.lake import Lake
from infra.constructs.layer import MarketpipeLayer
from infra.constructs.liveness import Liveness
from infra.constructs.network import Network
from infra.constructs.plivo import PlivoSettings
from infra.constructs.stream import MarketStream

LEDGER_ETL_MODULE = "infra.constructs.ledger_etl"
C = TypeVar("C", bound=Construct)


class MarketpipeStack(Stack):
    """Everything ``cdk deploy`` creates; attributes expose each construct for tests and extensions."""

    def __init__(
        self, scope: Construct, construct_id: str, *, config: MarketpipeConfig, **kwargs: Any
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.config = config
        for key, value in config.tags.items():
            Tags.of(self).add(key, value)
        retention = log_retention(config.log_retention_days)

        self.network = Network(self, "Network", config=config)
        self.layer = MarketpipeLayer(self, "Layer")
        self.lake = Lake(self, "Lake", config=config)
        self.iceberg_lake = IcebergLake(
            self,
            "IcebergLake",
            config=config,
            data_bucket=self.lake.data_bucket,
            glue_database=self.lake.glue_database,
            glue_database_name=self.lake.glue_database_name,
            warehouse=self.lake.iceberg_warehouse,
            layer=self.layer.layer,
            log_retention=retention,
        )
        self.stream = MarketStream(self, "Stream", config=config)
        self.plivo = PlivoSettings(self, "Plivo", config=config)
        self.database = Database(
            self,
            "Database",
            config=config,
            network=self.network,
            layer=self.layer.layer,
            log_retention=retention,
        )
        self.collector = Collector(
            self,
            "Collector",
            config=config,
            vpc=self.network.vpc,
            stream=self.stream.stream,
            data_bucket=self.lake.data_bucket,
            raw_uri=self.lake.raw_uri,
        )
        self.book_builder = BookBuilder(
            self,
            "BookBuilder",
            config=config,
            database=self.database.access,
            stream=self.stream.stream,
            layer=self.layer.layer,
            data_bucket=self.lake.data_bucket,
            lake_uri=self.lake.lake_uri,
            iceberg=self.iceberg_lake.catalog,
            access_logs_bucket=self.lake.access_logs_bucket,
        )
        # The Glue API from the isolated subnets; the first batch only once the tables exist.
        self.network.allow_glue_access(self.book_builder.security_group, "book builder")
        self.book_builder.event_source_mapping.node.add_dependency(*self.iceberg_lake.ready)
        self.dashboard = Dashboard(
            self,
            "Dashboard",
            config=config,
            stream=self.stream.stream,
            book_builder=self.book_builder.function,
            tables=self.lake.table_names,
        )
        self.liveness = Liveness(
            self,
            "Liveness",
            config=config,
            layer=self.layer.layer,
            plivo_secret=self.plivo.secret,
            alarm_phone_number=self.plivo.alarm_phone_number,
            tables=self.lake.table_names,
        )
        self.ledger_etl = self._attach_ledger_etl()
        lake_capability: dict[str, Any] = {
            "data_bucket": self.lake.data_bucket,
            "layer": self.layer.layer,
            "glue_database_name": self.lake.glue_database_name,
            "athena_workgroup_name": self.lake.workgroup_name,
            "start_date": config.lake_start_date,
        }
        # Each capability is on when marketpipe.toml's [run] exchanges lists it (all are, by default), with
        # the same settings as `marketpipe run`; `-c binance=false` (bitsoSpreads, executionPrice) overrides.
        self.bitso_spreads = (
            self.after_catalog(
                BitsoSpreads(
                    self,
                    "BitsoSpreads",
                    books=config.bitso_books,
                    thresholds=config.spread_thresholds,
                    window_seconds=config.bitso_window_seconds,
                    **lake_capability,
                )
            )
            if config.bitso_spreads
            else None
        )
        self.execution = (
            self.after_catalog(
                ExecutionPrice(
                    self,
                    "ExecutionPrice",
                    markets=config.execution_markets,
                    notionals=config.execution_notionals,
                    **lake_capability,
                )
            )
            if config.execution_price
            else None
        )
        # Binance (collector streams, metrics Lambda, read API).
        self.binance = attach_binance(self) if config.binance else None
        self._outputs()

    def _attach_ledger_etl(self) -> Construct | None:
        """Instantiate the ledger ETL construct if its module is present (it ships separately)."""
        if importlib.util.find_spec(LEDGER_ETL_MODULE) is None:
            return None
        module = importlib.import_module(LEDGER_ETL_MODULE)
        ledger_etl: Construct = module.LedgerEtl(
            self,
            "LedgerEtl",
            lake_bucket=self.lake.data_bucket,
            layer=self.layer.layer,
            glue_database_name=self.lake.glue_database_name,
            athena_workgroup_name=self.lake.workgroup_name,
        )
        return self.after_catalog(ledger_etl)

    def after_catalog(self, construct: C) -> C:
        """``construct``'s Glue tables and named queries need the Glue database and workgroup first."""
        construct.node.add_dependency(self.lake.glue_database, self.lake.workgroup)
        return construct

    def _outputs(self) -> None:
        outputs = {
            "StreamName": self.stream.stream.stream_name,
            "DataBucketName": self.lake.data_bucket.bucket_name,
            "LakeUri": self.lake.lake_uri,
            "RawUri": self.lake.raw_uri,
            "GlueDatabase": self.lake.glue_database_name,
            "IcebergCatalog": self.iceberg_lake.catalog.uri,
            "AthenaWorkgroup": self.lake.workgroup_name,
            "DbSecretArn": self.database.secret.secret_arn,
            "DbEndpoint": self.database.instance.db_instance_endpoint_address,
            "PlivoSecretArn": self.plivo.secret.secret_arn,
            "CheckpointTable": self.book_builder.checkpoint_table.table_name,
            "FailedBatchesBucket": self.book_builder.failure_bucket.bucket_name,
            "CollectorCluster": self.collector.cluster.cluster_name,
            "CollectorService": self.collector.service.service_name,
            "DashboardName": self.dashboard.dashboard.dashboard_name,
        }
        if self.bitso_spreads is not None:
            outputs["BitsoAlertTopicArn"] = self.bitso_spreads.topic.topic_arn
        for name, value in outputs.items():
            CfnOutput(self, name, value=value)
