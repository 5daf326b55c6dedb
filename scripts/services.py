"""Start and stop the real servers the tests use: Apache Kafka (KRaft, one node) and Debian's clickhouse-server.

Kafka jars come from Maven Central through ``services/kafka/pom.xml`` and are cached under
``$CALLQA_SERVICES_HOME`` (default ``~/.cache/callqa/services``). Everything listens on loopback only.

    python scripts/services.py start      # prints the env vars to export
    python scripts/services.py stop
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HOME = Path(os.environ.get("CALLQA_SERVICES_HOME", Path.home() / ".cache" / "callqa" / "services"))
KAFKA_VERSION = "3.9.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen, timeout: float, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}; see {log}:\n{log.read_text()[-3000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"port {port} not open after {timeout}s; see {log}")


def kafka_libs() -> Path:
    """Resolve the broker jars once (mvn caches downloads in ~/.m2); return the libs folder."""
    libs = HOME / f"kafka-{KAFKA_VERSION}" / "libs"
    if not (libs / f"kafka_2.13-{KAFKA_VERSION}.jar").exists():
        tmp = libs.with_name("libs.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        subprocess.run(
            ["mvn", "-q", "-B", "-f", str(ROOT / "services" / "kafka" / "pom.xml"),
             f"-Dkafka.version={KAFKA_VERSION}", "dependency:copy-dependencies",
             f"-DoutputDirectory={tmp}", "-DincludeScope=runtime"],
            check=True, stdout=sys.stderr,
        )
        tmp.rename(libs)
    return libs


@dataclass
class Server:
    name: str
    proc: subprocess.Popen
    port: int
    workdir: Path
    command: list[str]
    tls_port: int | None = None  # Kafka's TLS listener (SSL, or SASL_SSL with users), when started with one

    def restart(self, down_s: float = 0) -> None:
        """Stop the server, stay down ``down_s`` seconds, start it again on the same port and data."""
        self.stop()
        time.sleep(down_s)
        log = self.workdir / "stdout.log"
        self.proc = subprocess.Popen(self.command, stdout=log.open("a"), stderr=subprocess.STDOUT,
                                     start_new_session=True, cwd=self.workdir)
        wait_port(self.port, self.proc, 90, log)

    def stop(self, timeout: float = 20) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def tls_files(workdir: Path) -> dict[str, Path]:
    """A test CA and a server certificate for 127.0.0.1 and localhost signed by it (openssl): PEM files
    ``ca`` (the clients' CA file), ``cert`` and ``key`` (the server's), ``server`` (key and certificate in
    one file, Kafka's PEM keystore)."""
    workdir.mkdir(parents=True, exist_ok=True)
    files = {name: workdir / f"{name}.pem" for name in ("ca", "ca-key", "cert", "key", "server")}
    csr, ext = workdir / "server.csr", workdir / "server.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")

    def run(*args) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", files["ca-key"], "-out", files["ca"], "-days", "7",
        "-subj", "/CN=callqa test CA")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", files["key"], "-out", csr, "-subj", "/CN=127.0.0.1")
    run("x509", "-req", "-in", csr, "-CA", files["ca"], "-CAkey", files["ca-key"], "-CAcreateserial", "-days", "7",
        "-out", files["cert"], "-extfile", ext)
    files["server"].write_text(files["key"].read_text() + files["cert"].read_text())
    return files


def start_kafka(workdir: Path, port: int | None = None, users: dict[str, str] | None = None,
                tls: dict[str, Path] | None = None) -> Server:
    """A single KRaft node (broker + controller) on 127.0.0.1, with a fresh log dir.

    By default its client listener is PLAINTEXT. With ``users`` ({name: password}) it is SASL_PLAINTEXT,
    with the mechanisms PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512 for those users (broker-to-broker traffic
    on a PLAINTEXT listener of its own). With ``tls`` (``tls_files``) a second client listener on
    ``Server.tls_port`` speaks TLS: SASL_SSL with ``users``, else SSL."""
    libs = kafka_libs()
    port = port or free_port()
    controller = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    props = workdir / "server.properties"
    client = "SASL_PLAINTEXT" if users else "PLAINTEXT"
    listeners = {"PLAINTEXT" if not users else "CLIENT": (client, port)}
    if users:
        listeners["INTERNAL"] = ("PLAINTEXT", free_port())
    tls_port = free_port() if tls else None
    if tls:
        listeners["SECURE"] = ("SASL_SSL" if users else "SSL", tls_port)
    secured = [
        "inter.broker.listener.name=INTERNAL" if users else "",
        "sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512" if users else "",
        f"ssl.keystore.type=PEM\nssl.keystore.location={tls['server']}" if tls else "",
    ]
    for name, (protocol, _) in listeners.items():
        if protocol.startswith("SASL_"):
            plain = " ".join(f'user_{user}="{password}"' for user, password in users.items())
            secured.append(f"listener.name.{name.lower()}.plain.sasl.jaas.config="
                           f"org.apache.kafka.common.security.plain.PlainLoginModule required {plain};")
            for scram in ("scram-sha-256", "scram-sha-512"):
                secured.append(f"listener.name.{name.lower()}.{scram}.sasl.jaas.config="
                               "org.apache.kafka.common.security.scram.ScramLoginModule required;")
    props.write_text("\n".join([
        "process.roles=broker,controller",
        "node.id=1",
        f"controller.quorum.voters=1@127.0.0.1:{controller}",
        "listeners=" + ",".join(f"{name}://127.0.0.1:{p}" for name, (_, p) in listeners.items())
        + f",CONTROLLER://127.0.0.1:{controller}",
        "advertised.listeners=" + ",".join(f"{name}://127.0.0.1:{p}" for name, (_, p) in listeners.items()),
        "controller.listener.names=CONTROLLER",
        "listener.security.protocol.map=CONTROLLER:PLAINTEXT,"
        + ",".join(f"{name}:{protocol}" for name, (protocol, _) in listeners.items()),
        *[line for line in secured if line],
        f"log.dirs={workdir / 'data'}",
        "num.partitions=4",
        "offsets.topic.replication.factor=1",
        "offsets.topic.num.partitions=4",
        "transaction.state.log.replication.factor=1",
        "transaction.state.log.min.isr=1",
        "group.initial.rebalance.delay.ms=0",
        "auto.create.topics.enable=true",
        "",
    ]))
    (workdir / "log4j.properties").write_text(
        "log4j.rootLogger=WARN, file\n"
        "log4j.appender.file=org.apache.log4j.FileAppender\n"
        f"log4j.appender.file.File={workdir / 'kafka.log'}\n"
        "log4j.appender.file.layout=org.apache.log4j.PatternLayout\n"
        "log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n\n"
    )
    java = ["java", "-Xmx512m", "-Xms256m", "-XX:+UseG1GC",
            f"-Dlog4j.configuration=file:{workdir / 'log4j.properties'}",
            "-cp", f"{libs}/*"]
    scram = [arg for user, password in (users or {}).items() for mechanism in ("SCRAM-SHA-256", "SCRAM-SHA-512")
             for arg in ("--add-scram", f"{mechanism}=[name={user},password={password}]")]
    subprocess.run(java + ["kafka.tools.StorageTool", "format", "-t", uuid.uuid4().hex[:22],
                           "-c", str(props), "--ignore-formatted", *scram],
                   check=True, stdout=subprocess.DEVNULL)
    log = workdir / "stdout.log"
    command = java + ["kafka.Kafka", str(props)]
    proc = subprocess.Popen(command, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True,
                            cwd=workdir)
    wait_port(port, proc, 90, log)
    return Server("kafka", proc, port, workdir, command, tls_port)


def start_clickhouse(workdir: Path, port: int | None = None, tls: dict[str, Path] | None = None) -> Server:
    """Debian's clickhouse-server on 127.0.0.1 with its data under ``workdir``; with ``tls`` (``tls_files``)
    also a TLS native-protocol port, ``Server.tls_port``."""
    binary = shutil.which("clickhouse-server") or "/usr/sbin/clickhouse-server"
    if not Path(binary).exists():
        raise RuntimeError("clickhouse-server not installed: apt-get install -y clickhouse-server")
    port = port or free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    for sub in ("data", "tmp", "user_files", "format_schemas"):
        (workdir / sub).mkdir(exist_ok=True)
    config = workdir / "config.xml"
    tls_port = free_port() if tls else None
    secure = "" if not tls else f"""  <tcp_port_secure>{tls_port}</tcp_port_secure>
  <openSSL><server><certificateFile>{tls['cert']}</certificateFile><privateKeyFile>{tls['key']}</privateKeyFile>
    <verificationMode>none</verificationMode><loadDefaultCAFile>false</loadDefaultCAFile></server></openSSL>
"""
    config.write_text(f"""<?xml version="1.0"?>
<yandex>
  <logger><level>warning</level><log>{workdir}/server.log</log><errorlog>{workdir}/server.err.log</errorlog></logger>
  <listen_host>127.0.0.1</listen_host>
  <tcp_port>{port}</tcp_port>
  <http_port>{free_port()}</http_port>
  <path>{workdir}/data/</path>
  <tmp_path>{workdir}/tmp/</tmp_path>
  <user_files_path>{workdir}/user_files/</user_files_path>
  <format_schema_path>{workdir}/format_schemas/</format_schema_path>
  <users_config>/etc/clickhouse-server/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <mark_cache_size>67108864</mark_cache_size>
{secure}</yandex>
""")
    log = workdir / "stdout.log"
    command = [binary, f"--config-file={config}"]
    proc = subprocess.Popen(command, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True,
                            cwd=workdir)
    wait_port(port, proc, 60, log)
    if tls_port:
        wait_port(tls_port, proc, 60, log)
    return Server("clickhouse", proc, port, workdir, command, tls_port)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["start", "stop", "fetch"])
    parser.add_argument("--dir", type=Path, default=HOME / "run")
    args = parser.parse_args()
    pids = args.dir / "pids"
    if args.action == "fetch":
        print(kafka_libs())
    elif args.action == "start":
        shutil.rmtree(args.dir, ignore_errors=True)
        kafka = start_kafka(args.dir / "kafka")
        ch = start_clickhouse(args.dir / "clickhouse")
        pids.write_text(f"{kafka.proc.pid}\n{ch.proc.pid}\n")
        print(f"export KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:{kafka.port}")
        print(f"export CLICKHOUSE_URL=clickhouse://default@127.0.0.1:{ch.port}/default")
    else:
        for pid in pids.read_text().split() if pids.exists() else []:
            try:
                os.killpg(int(pid), signal.SIGTERM)
            except ProcessLookupError:
                pass


if __name__ == "__main__":
    sys.exit(main())
