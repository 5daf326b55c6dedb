"""faust's own floor: an agent that only decodes the events (no tables, nothing sent), at-least-once,
taking micro-batches as callqa's stages do. Run by bench/pipeline.py as a worker process:

    python bench/noop_agent.py   # env: KAFKA_BOOTSTRAP_SERVERS, BENCH_TOPIC, BENCH_GROUP, BENCH_DATADIR
"""
import os

import faust
import orjson

app = faust.App(os.environ["BENCH_GROUP"], broker=f"kafka://{os.environ['KAFKA_BOOTSTRAP_SERVERS']}",
                store="memory://", datadir=os.environ["BENCH_DATADIR"], web_enabled=False,
                consumer_auto_offset_reset="earliest",
                broker_commit_interval=1.0, stream_buffer_maxsize=20000)
topic = app.topic(os.environ["BENCH_TOPIC"], key_serializer="raw", value_serializer="raw")


@app.agent(topic)
async def decode(stream):
    async for events in stream.take_events(5000, within=0.2):
        for event in events:
            orjson.loads(event.message.value)


if __name__ == "__main__":
    from faust.worker import Worker

    worker = Worker(app, loglevel="WARN", quiet=True)
    worker.spinner = None  # as `callqa run`: faust's spinner lowers the root logger to DEBUG
    worker.execute_from_commandline()
