"""The README, configuration table and CI script agree with the code."""
import re

import pytest

from callqa.config import SETTINGS, Config, ConfigError
from tests.conftest import ROOT

README = (ROOT / "README.md").read_text()


def test_readme_documents_every_setting_with_its_default():
    for setting in SETTINGS:
        row = next((line for line in README.splitlines() if line.startswith(f"| `{setting.env}`")), None)
        assert row is not None, f"{setting.env} missing from README configuration table"
        assert (setting.default or "unset") in row


def test_readme_main_command_is_the_demo_with_valid_options():
    from callqa.cli import main

    command = re.search(r"<!-- main-command -->\n```sh\n(.+?)\n```", README, re.S).group(1).strip()
    install, run = command.split(" && ")
    assert install == "python3 -m pip install -e ." and run.split()[:2] == ["callqa", "demo"]
    main.get_command(main.make_context("callqa", [], resilient_parsing=True), "demo").make_context("demo", run.split()[2:])
    assert (ROOT / "docs" / "report.png").exists() and "docs/report.png" in README


def test_ci_runs_the_readme_test_command():
    command = re.search(r"<!-- test-command -->\n```sh\n(.+?)\n```", README, re.S).group(1).strip()
    assert command in (ROOT / ".ci" / "run").read_text()


def test_defaults_are_the_embedded_default():
    config = Config.from_env({})
    assert config.embedded and config.kafka_bootstrap_servers is None
    assert config.kpi_windows == (900, 3600, 86400) and config.kpi.fcr_horizon_s == 72 * 3600


@pytest.mark.parametrize("name,value", [("CALLQA_TOPIC_PARTITIONS", "0"), ("CALLQA_KPI_WINDOWS", "900,x"),
                                        ("CALLQA_SINK_BATCH_SECONDS", "-1"), ("CALLQA_KPI_WINDOWS", ",")])
def test_bad_values_name_the_variable(name, value):
    with pytest.raises(ConfigError, match=name):
        Config.from_env({name: value})
