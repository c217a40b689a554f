"""Render docs/architecture.png from code (``pip install -e '.[docs]'`` and graphviz, then run this).

The picture mirrors infra/stack.py: one node group per construct, arrows in data-flow order.
"""

from __future__ import annotations

from pathlib import Path

from diagrams import Cluster, Diagram, Edge
from diagrams.aws.analytics import Athena, GlueDataCatalog, KinesisDataStreams
from diagrams.aws.compute import Fargate, Lambda
from diagrams.aws.database import Dynamodb, RDSMysqlInstance
from diagrams.aws.management import Cloudwatch, CloudwatchAlarm
from diagrams.aws.network import Endpoint
from diagrams.aws.security import SecretsManager
from diagrams.aws.storage import S3
from diagrams.onprem.network import Internet

OUT = Path(__file__).resolve().parent / "architecture"


def render() -> Path:
    graph_attr = {"fontsize": "14", "pad": "0.4", "splines": "spline", "nodesep": "0.6", "ranksep": "0.9"}
    with Diagram(
        "marketpipe on AWS",
        filename=str(OUT),
        outformat="png",
        show=False,
        direction="LR",
        graph_attr=graph_attr,
    ):
        exchange = Internet("Bitfinex\nwebsocket")
        with Cluster("VPC (2 AZs, no NAT gateway)"):
            with Cluster("public subnets"):
                collector = Fargate("collector\nmarketpipe run\n--transport kinesis")
            with Cluster("isolated subnets"):
                book_builder = Lambda("book builder\n(ordered, checkpointed)")
                migrate = Lambda("schema migration\n(custom resource)")
                mysql = RDSMysqlInstance("RDS MySQL 8\n(encrypted, private)")
                secrets_endpoint = Endpoint("Secrets Manager\nendpoint")
        stream = KinesisDataStreams("Kinesis stream\n(encrypted)")
        checkpoints = Dynamodb("checkpoints\n(stream_key)")
        db_secret = SecretsManager("DB credentials")
        with Cluster("S3 (private, SSE, TLS-only)"):
            data = S3("data bucket\nraw/  lake/")
            failed = S3("failed batches")
        with Cluster("query"):
            glue = GlueDataCatalog("Glue tables\n(partition projection)")
            athena = Athena("Athena workgroup\n+ named queries")
        with Cluster("observe"):
            dashboard = Cloudwatch("dashboard\nnamespace marketpipe")
            alarm = CloudwatchAlarm("IteratorAge alarm")

        exchange >> Edge(label="wss") >> collector
        collector >> Edge(label="PutRecord(s)\nkey exchange:symbol") >> stream
        collector >> Edge(label="raw frames", style="dashed") >> data
        stream >> Edge(label="TRIM_HORIZON\nparallelization 1") >> book_builder
        book_builder >> Edge(label="lake/ parquet") >> data
        book_builder >> Edge(label="upserts") >> mysql
        book_builder >> checkpoints
        book_builder >> Edge(label="on failure", style="dotted") >> failed
        book_builder >> secrets_endpoint >> db_secret
        migrate >> mysql
        data >> glue >> athena
        stream >> Edge(style="dotted") >> alarm
        collector >> Edge(label="heartbeat", style="dotted") >> dashboard
    return OUT.with_suffix(".png")


if __name__ == "__main__":
    print(render())
