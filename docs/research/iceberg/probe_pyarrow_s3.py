"""Which S3 requests does pyarrow's S3FileSystem make for one small file write?"""
import pyarrow.fs as pafs
from harness import start_server, BUCKET
server = start_server()
host, port = server.get_host_and_port()
for kw in [{}, {"background_writes": False}, {"allow_delayed_open": True}]:
    try:
        fs = pafs.S3FileSystem(endpoint_override=f"{host}:{port}", scheme="http", access_key="testing", secret_key="testing", region="us-east-1", **kw)
    except TypeError as e:
        print(kw, "unsupported", e); continue
    server.counter.reset()
    with fs.open_output_stream(f"{BUCKET}/probe/x.bin") as f:
        f.write(b"x" * 2000)
    print(kw, "write:", server.counter.snapshot())
server.stop()
