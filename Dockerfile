# The callqa image: the worker (`callqa run`), `callqa migrate`, the simulator and every other command.
FROM python:3.11.11-slim-bookworm
WORKDIR /app
COPY pyproject.toml README.md ./
COPY callqa callqa
COPY schemas schemas
COPY sinks sinks
COPY sources sources
COPY streams streams
RUN pip install --no-cache-dir . && useradd --create-home callqa
USER callqa
ENV CALLQA_DATA_DIR=/home/callqa/data
ENTRYPOINT ["callqa"]
CMD ["--help"]
