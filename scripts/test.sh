#!/usr/bin/env bash
# Install everything the tests need on a fresh machine, then run them against real servers.
# The tests start Kafka 3.9 (jars from Maven Central, cached) and Debian's clickhouse-server themselves.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v clickhouse-server >/dev/null && [ ! -x /usr/sbin/clickhouse-server ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq clickhouse-server >/dev/null
fi
python3 -m pip install -q --disable-pip-version-check -e '.[test]'
python3 scripts/services.py fetch >/dev/null   # resolve the Kafka jars once (mvn, ~/.m2)
exec python3 -m pytest "$@"
