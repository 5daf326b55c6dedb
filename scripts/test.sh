#!/usr/bin/env bash
# Install everything the tests need on a fresh machine, then run them against real servers.
# The tests start Kafka 3.9 (jars from Maven Central, cached), Debian's clickhouse-server and chromium themselves.
set -euo pipefail
cd "$(dirname "$0")/.."
missing=()
if ! command -v clickhouse-server >/dev/null && [ ! -x /usr/sbin/clickhouse-server ]; then missing+=(clickhouse-server); fi
if ! command -v chromium >/dev/null; then missing+=(chromium); fi  # the HTML report is tested in headless Chromium
if ! command -v openssl >/dev/null; then missing+=(openssl); fi  # test certificates of the TLS brokers and servers
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
python3 -m pip install -q --disable-pip-version-check -e '.[test]'
python3 scripts/services.py fetch >/dev/null   # resolve the Kafka jars once (mvn, ~/.m2)
# two test processes (CALLQA_TEST_PROCESSES), each test file in one of them (its fixtures built once): the
# Kafka tests mostly wait on servers, so the other process runs the CPU-bound ones meanwhile
exec python3 -m pytest -n "${CALLQA_TEST_PROCESSES:-2}" --dist loadfile "$@"
