"""Every setting and option value a user can get wrong is one line on stderr naming it and the bad value
(never a password), with README's exit code (2 something to fix, 3 a server that does not answer) and no
traceback. The CLI runs as a user runs it, in a subprocess; each case fails before any real work."""
from __future__ import annotations

import shutil
import socket
import subprocess

import pytest

from callqa.config import Config, ConfigError
from tests.conftest import callqa_env, run_callqa

SECRET = "s3cret-pw"  # in every URL below that has a password: it must never be printed
CH = f"clickhouse://callqa:{SECRET}@127.0.0.1"

# (arguments, settings, exit code, what stderr says); {tmp} is the test's folder, which holds the files
# made by ``files`` below; SIMULATE is a tiny simulate run that writes nothing before its checks.
SIMULATE = ["simulate", "--sites", "1", "--agents-per-site", "1", "--days", "1"]
CASES = {
    # the cases a reviewer found: a traceback each before
    "data dir is a file": (["check"], {"CALLQA_DATA_DIR": "{tmp}/afile"}, 2,
                           "CALLQA_DATA_DIR={tmp}/afile is a file, not a folder"),
    "data dir inside a file": (["query", "SELECT 1"], {"CALLQA_DATA_DIR": "{tmp}/afile/data"}, 2,
                               "CALLQA_DATA_DIR={tmp}/afile/data is inside {tmp}/afile, which is a file"),
    "data dir cannot be made": (["query", "SELECT 1"], {"CALLQA_DATA_DIR": "/proc/callqa-data"}, 2,
                                "cannot create its folder /proc/callqa-data/chdb"),
    "clickhouse port out of range": (["check"], {"CLICKHOUSE_URL": f"{CH}:99999/db"}, 2,
                                     "CLICKHOUSE_URL: '127.0.0.1:99999': the port '99999' is not a number from 1 to 65535"),
    "clickhouse port not a number": (["query", "SELECT 1"], {"CLICKHOUSE_URL": f"{CH}:abc/db"}, 2,
                                     "CLICKHOUSE_URL: '127.0.0.1:abc': the port 'abc'"),
    "clickhouse port negative": (["report"], {"CLICKHOUSE_URL": f"{CH}:-1/db"}, 2, "the port '-1'"),
    "clickhouse ipv6 unclosed": (["check"], {"CLICKHOUSE_URL": f"clickhouse://u:{SECRET}@[::1/db"}, 2,
                                 "CLICKHOUSE_URL is not a URL"),
    "clickhouse option not boolean": (["check"], {"CLICKHOUSE_URL": f"{CH}:9000/db?compression=maybe"}, 2,
                                      "CLICKHOUSE_URL: compression=maybe must be True or False"),
    "clickhouse timeout not a number": (["check"], {"CLICKHOUSE_URL": f"{CH}:9000/db?connect_timeout=nan"}, 2,
                                        "CLICKHOUSE_URL: connect_timeout=nan must be a number of seconds"),
    "clickhouse ssl version": (["check"], {"CLICKHOUSE_URL": f"{CH}:9000/db?secure=True&ssl_version=TLS9"}, 2,
                               "CLICKHOUSE_URL: ssl_version=TLS9 is not one of Python's ssl.PROTOCOL_*"),
    "clickhouse keepalive": (["check"], {"CLICKHOUSE_URL": f"{CH}:9000/db?tcp_keepalive=1,2"}, 2,
                             "CLICKHOUSE_URL: tcp_keepalive=1,2"),
    "clickhouse alt host port": (["check"], {"CLICKHOUSE_URL": f"{CH}:9000/db?alt_hosts=other:x"}, 2,
                                 "CLICKHOUSE_URL alt_hosts: 'other:x': the port 'x'"),
    "clickhouse block size": (["check"], {"CLICKHOUSE_URL": f"{CH}:9000/db?insert_block_size=lots"}, 2,
                              "CLICKHOUSE_URL: insert_block_size=lots must be a whole number"),
    "clickhouse over http": (["check"], {"CLICKHOUSE_URL": f"http://u:{SECRET}@127.0.0.1:8123/db"}, 2,
                             "CLICKHOUSE_URL must start with clickhouse://"),
    "clickhouse option twice": (["check"], {"CLICKHOUSE_URL": f"{CH}:9440/db?secure=False&secure=True"}, 2,
                                "CLICKHOUSE_URL: secure= given more than once"),
    "kafka port not a number": (["check"], {"KAFKA_BOOTSTRAP_SERVERS": "localhost:notaport"}, 2,
                                "KAFKA_BOOTSTRAP_SERVERS: 'localhost:notaport': the port 'notaport' is not a number"),
    "kafka port out of range": (["run"], {"KAFKA_BOOTSTRAP_SERVERS": "host:70000"}, 2,
                                "KAFKA_BOOTSTRAP_SERVERS: 'host:70000': the port '70000'"),
    "kafka empty entry": (["sink"], {"KAFKA_BOOTSTRAP_SERVERS": "a:9092,,b:9092"}, 2,
                          "KAFKA_BOOTSTRAP_SERVERS='a:9092,,b:9092' has an empty entry"),
    "kafka with a scheme": (SIMULATE, {"KAFKA_BOOTSTRAP_SERVERS": "kafka://a:9092"}, 2,
                            "KAFKA_BOOTSTRAP_SERVERS: 'kafka://a:9092': give host:port without a scheme"),
    "metrics port too large": (["run"], {"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1", "CALLQA_METRICS_PORT": "70000"}, 2,
                               "CALLQA_METRICS_PORT='70000' is too large (at most 65535)"),
    # settings whose files hold what the code did not expect
    "queue rules not objects": (["query", "SELECT 1"], {"CALLQA_QUEUE_RULES": "{tmp}/rules_int.json"}, 2,
                                "CALLQA_QUEUE_RULES['sales']=5: each queue's rules are a JSON object"),
    "queue rules null": (["query", "SELECT 1"], {"CALLQA_QUEUE_RULES": "{tmp}/rules_null.json"}, 2,
                         "CALLQA_QUEUE_RULES['sales'].sl_threshold_s=None is not a whole number"),
    "policy string": (["query", "SELECT 1"], {"CALLQA_SAMPLING_POLICY": "{tmp}/policy_str.json"}, 2,
                      "CALLQA_SAMPLING_POLICY.base_rate='high': a number, not str"),
    "policy nested string": (["query", "SELECT 1"], {"CALLQA_SAMPLING_POLICY": "{tmp}/policy_tier.json"}, 2,
                             "CALLQA_SAMPLING_POLICY.tier_factor.high='a': a number"),
    "policy too deep": (["query", "SELECT 1"], {"CALLQA_SAMPLING_POLICY": "{tmp}/deep.json"}, 2,
                        "CALLQA_SAMPLING_POLICY={tmp}/deep.json: not a readable JSON object"),
    "reviewers too deep": (["query", "SELECT 1"], {"CALLQA_REVIEWERS_FILE": "{tmp}/deep.json"}, 2,
                           "CALLQA_REVIEWERS_FILE={tmp}/deep.json: not a readable JSON file"),
    # numbers and names the settings took before and broke on later (or silently)
    "windows in other digits": (["query", "SELECT 1"], {"CALLQA_KPI_WINDOWS": "900,٣٦٠٠"}, 2,
                                "CALLQA_KPI_WINDOWS='٣٦٠٠' is not a whole number"),
    "window twice": (["query", "SELECT 1"], {"CALLQA_KPI_WINDOWS": "3600,3600"}, 2,
                     "CALLQA_KPI_WINDOWS='3600,3600' names a window size twice"),
    "window of centuries": (["query", "SELECT 1"], {"CALLQA_KPI_WINDOWS": "3600,1000000000000"}, 2,
                            "CALLQA_KPI_WINDOWS='1000000000000' is too large (at most 31622400)"),
    "partitions by the thousand": (["query", "SELECT 1"], {"CALLQA_TOPIC_PARTITIONS": "100000"}, 2,
                                   "CALLQA_TOPIC_PARTITIONS='100000' is too large (at most 256)"),
    "events larger than the topics take": (["query", "SELECT 1"], {"CALLQA_MAX_EVENT_BYTES": "4194304"}, 2,
                                           "CALLQA_MAX_EVENT_BYTES='4194304' is too large (at most 2097152)"),
    "topic name": (["query", "SELECT 1"], {"CALLQA_TOPIC_ALERTS": "alerts/today"}, 2,
                   "CALLQA_TOPIC_ALERTS='alerts/today' is not a Kafka topic name"),
    "two settings one topic": (["query", "SELECT 1"], {"CALLQA_TOPIC_ALERTS": "same", "CALLQA_TOPIC_KPIS": "same"}, 2,
                               "CALLQA_TOPIC_ALERTS and CALLQA_TOPIC_KPIS name the same topic 'same'"),
    "service level rule named": (["query", "SELECT 1"], {"CALLQA_SHORT_ABANDON_S": "five"}, 2,
                                 "CALLQA_SHORT_ABANDON_S='five' is not a whole number"),
    # options
    "month in other digits": (["evaluations", "--month", "２０２４-03"], {}, 2, "--month '２０２４-03': use YYYY-MM"),
    "day as a week": (["plan", "--day", "2024-W10"], {}, 2, "--day '2024-W10' is not a date (YYYY-MM-DD)"),
    "day without dashes": (["test-calls", "--week", "20240304"], {}, 2, "--week '20240304' is not a date"),
    "empty day": (["report", "--day", ""], {}, 2, "--day '' is not a date"),
    "threshold nan": (["calibration", "--month", "2024-03", "--threshold", "nan"], {}, 2,
                      "--threshold nan: a number of percentage points from 0 to 100"),
    "threshold negative": (["calibration", "--month", "2024-03", "--threshold", "-1"], {}, 2, "--threshold -1.0"),
    "empty expert": (["calibration", "--month", "2024-03", "--expert", ""], {}, 2, "--expert '': give an evaluator id"),
    "report inside a file": (["report", "--out", "{tmp}/afile/report.html"], {}, 2,
                             "--out {tmp}/afile/report.html: {tmp}/afile is a file, not a folder"),
    "report to no file name": (["report", "--out", ""], {}, 2, "--out '.' is a folder: give a file name"),
    "simulate out inside a file": (SIMULATE + ["--out", "{tmp}/afile/events.jsonl"], {}, 2,
                                   "--out {tmp}/afile/events.jsonl: {tmp}/afile is a file"),
    "simulate truth inside a file": (SIMULATE + ["--out", "{tmp}/events.jsonl", "--truth", "{tmp}/afile/t.json"], {}, 2,
                                     "--truth {tmp}/afile/t.json: {tmp}/afile is a file"),
    "simulate truth nowhere": (SIMULATE + ["--out", "{tmp}/events.jsonl", "--truth", "/proc/callqa/t.json"], {}, 2,
                               "--truth /proc/callqa/t.json: cannot write it"),
    "speed too slow": (SIMULATE + ["--speed", "1e-300", "--out", "{tmp}/events.jsonl"], {}, 2,
                       "--speed '1e-300': use 'max', 'live' or a number of simulated seconds per second"),
    "speed infinite": (SIMULATE + ["--speed", "inf", "--out", "{tmp}/events.jsonl"], {}, 2, "--speed 'inf'"),
    "demo report inside a file": (["demo", "--report", "{tmp}/afile/r.html"], {}, 2,
                                  "--report {tmp}/afile/r.html: {tmp}/afile is a file"),
    "evaluate default drift on a tiny center": (["evaluate", "--sites", "1", "--agents-per-site", "1", "--days", "1"], {},
                                                2, "a default drift does not fit a center this small; pass --drift"),
    "click usage error": (["demo", "--sites", "0"], {}, 2,
                          "Invalid value for '--sites': 0 is not in the range 1<=x<=20."),
    "unknown command": (["reprot"], {}, 2, "No such command 'reprot'"),
    # what worked and must stay so
    "clickhouse unreachable": (["query", "SELECT 1"], {"CLICKHOUSE_URL": f"{CH}:1/db"}, 3,
                               "ClickHouse server 127.0.0.1:1 unreachable"),
    "bad number setting": (["check"], {"CALLQA_SINK_BATCH_ROWS": "nan"}, 2, "CALLQA_SINK_BATCH_ROWS='nan' is not a whole number"),
}


@pytest.fixture
def files(tmp_path):
    """The files the cases name: a plain file where a folder is expected, and JSON settings files."""
    (tmp_path / "afile").write_text("not a folder\n")
    (tmp_path / "rules_int.json").write_text('{"sales": 5}')
    (tmp_path / "rules_null.json").write_text('{"sales": {"sl_threshold_s": null}}')
    (tmp_path / "policy_str.json").write_text('{"base_rate": "high"}')
    (tmp_path / "policy_tier.json").write_text('{"tier_factor": {"high": "a"}}')
    (tmp_path / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    return tmp_path


def _one_line_error(done: subprocess.CompletedProcess, code: int, message: str) -> None:
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == code, (done.returncode, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert message in lines[0], lines[0]
    assert SECRET not in done.stderr + done.stdout


@pytest.mark.parametrize("args,settings,code,message", list(CASES.values()), ids=list(CASES))
def test_a_bad_value_is_one_line_naming_it(files, args, settings, code, message):
    fill = lambda text: text.replace("{tmp}", str(files))
    env = callqa_env(files, CALLQA_CALLER_HASH_KEY="k", **{name: fill(value) for name, value in settings.items()})
    done = run_callqa([fill(a) for a in args], env, timeout=60)
    _one_line_error(done, code, fill(message))


@pytest.fixture
def busy_port():
    """A port another process (here: this one) is listening on."""
    with socket.socket() as held:
        held.bind(("0.0.0.0", 0))
        held.listen()
        yield held.getsockname()[1]


@pytest.mark.parametrize("command", [["sink"], ["run", "--no-sink"]])
def test_a_metrics_port_in_use_is_one_line_before_kafka_is_asked(tmp_path, busy_port, command):
    """The port is taken before Kafka is asked (127.0.0.1:1 would take 10 s to give up)."""
    env = callqa_env(tmp_path, KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:1", CALLQA_METRICS_PORT=str(busy_port))
    done = run_callqa(command, env, timeout=30)
    _one_line_error(done, 2, f"CALLQA_METRICS_PORT={busy_port}: cannot serve metrics on it: Address already in use")


@pytest.fixture
def unwritable(tmp_path):
    """A folder nobody may write in: chmod for a user, the immutable flag for root (chattr), else skip."""
    import os

    folder = tmp_path / "locked"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    if not shutil.which("chattr") or subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode:
        pytest.skip("running as root without chattr +i: no folder root cannot write in")
    try:
        yield folder
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)


@pytest.mark.parametrize("args,message", [
    (["query", "SELECT 1"], "embedded ClickHouse: cannot create its folder {dir}/data/chdb"),
    (SIMULATE + ["--out", "{tmp}/events.jsonl"],
     "the ground truth (CALLQA_DATA_DIR) {dir}/data/simulation-truth.json: cannot write in {dir} (not writable)"),
    (["demo"], "embedded ClickHouse: cannot create its folder {dir}/data/demo/chdb"),
])
def test_a_data_dir_that_cannot_be_written_is_one_line(tmp_path, unwritable, args, message):
    fill = lambda text: text.replace("{dir}", str(unwritable)).replace("{tmp}", str(tmp_path))
    done = run_callqa([fill(a) for a in args], callqa_env(tmp_path, CALLQA_DATA_DIR=str(unwritable / "data")), timeout=60)
    _one_line_error(done, 2, fill(message))
    assert "CALLQA_DATA_DIR" in done.stderr


# In process (fast): more values of the settings, each a ConfigError of one line naming the setting.
BAD_SETTINGS = [
    ("KAFKA_BOOTSTRAP_SERVERS", " ", "names no broker"),
    ("KAFKA_BOOTSTRAP_SERVERS", "host", "'host' has no port"),
    ("KAFKA_BOOTSTRAP_SERVERS", "host:0", "the port '0'"),
    ("KAFKA_BOOTSTRAP_SERVERS", ":9092", "':9092' is not host:port"),
    ("KAFKA_BOOTSTRAP_SERVERS", "a b:9092", "'a b:9092' is not host:port"),
    ("CLICKHOUSE_URL", " ", "CLICKHOUSE_URL is blank"),
    ("CLICKHOUSE_URL", "localhost:9000", "must start with clickhouse://"),
    ("CLICKHOUSE_URL", "clickhouse:///db", "CLICKHOUSE_URL has no host"),
    ("CLICKHOUSE_URL", f"{CH}:0/db", "the port '0'"),
    ("CLICKHOUSE_URL", f"{CH}:9000/a/b", "must be one database name"),
    ("CLICKHOUSE_URL", f"{CH}:9000/db?verify=maybe", "verify=maybe must be True or False"),
    ("CLICKHOUSE_URL", f"{CH}:9000/db?connect_timeout=-1", "connect_timeout=-1"),
    ("CLICKHOUSE_URL", f"{CH}:9000/db?client_revision=x", "client_revision=x"),
    ("CLICKHOUSE_URL", f"clickhouse://callqa:{SECRET}/x@db:9000/callqa", "must be percent-encoded (/ ? # as %2F %3F %23)"),
    ("CLICKHOUSE_URL", f"clickhouse://callqa:{SECRET}?x=1@db:9000/callqa", "no valid host:port (if the password holds"),
    ("CALLQA_RECORDING_URL", f"https://bob:{SECRET}@rec.example/{{nope}}", "CALLQA_RECORDING_URL='https://***@rec.example/{nope}'"),
    ("CALLQA_DATA_DIR", " ", "CALLQA_DATA_DIR=' ' is blank"),
    ("CALLQA_APP_ID", "my app", "CALLQA_APP_ID='my app' is not a Kafka topic name"),
    ("CALLQA_APP_ID", "x" * 200, "is not a Kafka topic name: 1 to 189"),
    ("CALLQA_TOPIC_EVENTS", "..", "CALLQA_TOPIC_EVENTS='..' is not a Kafka topic name"),
    ("CALLQA_TOPIC_EVENTS", "callqa.alerts", "CALLQA_TOPIC_ALERTS and CALLQA_TOPIC_EVENTS name the same topic"),
    ("CALLQA_METRICS_PORT", "-1", "CALLQA_METRICS_PORT='-1' must be at least 0"),
    ("CALLQA_BATCH_EVENTS", "1_000", "CALLQA_BATCH_EVENTS='1_000' is not a whole number"),
    ("CALLQA_BATCH_EVENTS", "9" * 5000, "is too large (at most 10^12)"),
    ("CALLQA_BATCH_SECONDS", "١.٥", "CALLQA_BATCH_SECONDS='١.٥' is not a number"),
    ("CALLQA_BATCH_SECONDS", "infinity", "must be a positive finite number"),
    ("CALLQA_SL_THRESHOLD_S", "-1", "CALLQA_SL_THRESHOLD_S='-1' must be at least 0"),
    ("CALLQA_SL_FORMULA", "sometimes", "CALLQA_SL_FORMULA='sometimes' must be one of"),
]


@pytest.mark.parametrize("name,value,message", BAD_SETTINGS, ids=[f"{n}={v[:20]!r}" for n, v, _ in BAD_SETTINGS])
def test_bad_settings_are_config_errors_of_one_line(name, value, message):
    with pytest.raises(ConfigError) as raised:
        Config.from_env({name: value, "CALLQA_CALLER_HASH_KEY": "k"})
    assert message in str(raised.value) and "\n" not in str(raised.value) and SECRET not in str(raised.value)


@pytest.mark.parametrize("name,spec,message", [
    ("CALLQA_SAMPLING_POLICY", '{"min_per_month": 2.5}', "CALLQA_SAMPLING_POLICY.min_per_month=2.5: a whole number"),
    ("CALLQA_SAMPLING_POLICY", '{"factor_clip": [4, 0.25]}', "CALLQA_SAMPLING_POLICY.factor_clip=[4, 0.25]: low above high"),
    ("CALLQA_SAMPLING_POLICY", '{"factor_clip": [1]}', "factor_clip=[1]: [low, high], two numbers"),
    ("CALLQA_SAMPLING_POLICY", '{"drift_factor": {"agent": 2}}', "drift_factor: keys must be agent, team, site (missing: site, team)"),
    ("CALLQA_SAMPLING_POLICY", '{"tier_factor": {"top": 1}}', "tier_factor: keys must be high, middle, low (unknown: top)"),
    ("CALLQA_SAMPLING_POLICY", '{"reviewers": 40}', "CALLQA_SAMPLING_POLICY.reviewers: review capacity is set by CALLQA_QA_REVIEWERS"),
    ("CALLQA_QUEUE_RULES", '{"q": {"sl_threshold": 30}}', "CALLQA_QUEUE_RULES['q']: unknown fields sl_threshold"),
    ("CALLQA_QUEUE_RULES", '{"q": {"short_abandon_s": 2.5}}', "CALLQA_QUEUE_RULES['q'].short_abandon_s=2.5 is not a whole number"),
    ("CALLQA_QUEUE_RULES", "[]", "CALLQA_QUEUE_RULES=", ),
])
def test_json_settings_files_of_the_wrong_shape(tmp_path, name, spec, message):
    path = tmp_path / "settings.json"
    path.write_text(spec)
    with pytest.raises(ConfigError) as raised:
        Config.from_env({name: str(path)})
    assert message in str(raised.value) and "\n" not in str(raised.value)


def test_good_values_still_pass():
    config = Config.from_env({"KAFKA_BOOTSTRAP_SERVERS": " kafka-1:9092 , [::1]:9093", "CALLQA_CALLER_HASH_KEY": "k",
                              "CLICKHOUSE_URL": f"clickhouses://u:{SECRET}@db.example/x?verify=False&tcp_keepalive=10,5,3",
                              "CALLQA_KPI_WINDOWS": "900, 3600,86400", "CALLQA_METRICS_PORT": "65535",
                              "CALLQA_TOPIC_PARTITIONS": "256"})
    assert config.kafka_bootstrap_servers == "kafka-1:9092,[::1]:9093"
    assert config.kpi_windows == (900, 3600, 86400) and config.metrics_port == 65535
