"""docs/alerts.yml is valid Prometheus and its rules do what docs/alerts_test.yml says (promtool).

promtool comes with Debian's ``prometheus`` package (.ci/run installs it). Without it these tests
skip with the reason, unless BLOGIMG_TEST_REQUIRE_PROMTOOL=1 (CI), where that is a failure.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.support import required_tool

DOCS = Path(__file__).resolve().parents[2] / "docs"


def promtool() -> str:
    return required_tool("promtool", "apt-get install prometheus", "BLOGIMG_TEST_REQUIRE_PROMTOOL")


def test_the_alerting_rules_are_valid() -> None:
    checked = subprocess.run([promtool(), "check", "rules", str(DOCS / "alerts.yml")], capture_output=True,
                             text=True, timeout=120)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS" in checked.stdout


def test_the_alerting_rules_pass_their_unit_tests() -> None:
    tested = subprocess.run([promtool(), "test", "rules", "alerts_test.yml"], cwd=DOCS, capture_output=True,
                            text=True, timeout=120)
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_every_alert_has_a_severity_a_summary_and_a_runbook() -> None:
    import yaml

    groups = yaml.safe_load((DOCS / "alerts.yml").read_text())["groups"]
    alerts = [rule for group in groups for rule in group["rules"] if "alert" in rule]
    assert len(alerts) >= 8
    for rule in alerts:
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["runbook"], rule["alert"]
