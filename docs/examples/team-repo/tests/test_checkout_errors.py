"""Tests of the checkout-errors runbook: canned outputs for each hypothesis, and the
cassette of the 2026-11-20 incident replayed on every change."""

from pathlib import Path

CASSETTES = Path(__file__).resolve().parent.parent / "cassettes"

LOG = "/var/log/checkout/app.log"
DF = (
    "Filesystem     1024-blocks     Used Available Capacity Mounted on\n"
    "/dev/vda          1000000   {used}000    {free}000      {used}% /var/lib/checkout\n"
)


def outputs(errors: int, refusals: int, used: int) -> dict:
    """What the target answers: ``errors`` ERROR lines, ``refusals`` of them from the gateway."""
    return {
        f"grep -c -e ' ERROR ' {LOG}": f"{errors}\n",
        f"grep -c -e 'payment gateway refused' {LOG}": f"{refusals}\n",
        "df -P -k /var/lib/checkout": DF.format(used=used, free=100 - used),
    }


def test_gateway_refusals_rule_the_gateway_in(runbook_runner):
    result = runbook_runner.run("checkout-errors", outputs=outputs(120, 100, 40))
    result.assert_statuses({"payment-gateway": "ruled_in", "data-disk-full": "ruled_out"})
    assert result.check("gateway_accepts_payments")["message"] == (
        "100 payments refused by the gateway"
    )


def test_a_full_data_disk_is_ruled_in(runbook_runner):
    result = runbook_runner.run("checkout-errors", outputs=outputs(5, 0, 97))
    result.assert_statuses({"payment-gateway": "ruled_out", "data-disk-full": "ruled_in"})


def test_a_healthy_service_rules_everything_out(runbook_runner):
    result = runbook_runner.run(
        "checkout-errors", outputs=outputs(3, 2, 40), params={"max_errors": 5}
    )
    assert result.exit_code == 0
    assert set(result.statuses.values()) == {"ruled_out"}


def test_the_incident_of_2026_11_20_replays(runbook_runner):
    result = runbook_runner.run(
        "checkout-errors", cassette=CASSETTES / "checkout-errors-2026-11-20.yaml"
    )
    result.assert_statuses({"payment-gateway": "ruled_in", "data-disk-full": "ruled_out"})
    assert "77 payments refused" in result.hypothesis("payment-gateway")["evidence"][0]
