"""Checkout errors.

Symptoms: the checkout service answers 5xx; customers cannot pay; the error-rate alert
for `checkout` fires.
"""

from typing import Any

from runbook import Host, action, check, evidence, hypothesis

PARAMS = {
    "log_file": "/var/log/checkout/app.log",
    "data_path": "/var/lib/checkout",
    "max_errors": 20,
    "max_used_percent": 90.0,
}
TAGS = ["checkout", "payments"]
SEVERITY = "P2"

payment_errors = hypothesis("payment-gateway", "The payment gateway refuses our requests")
disk_full = hypothesis("data-disk-full", "The disk holding the checkout data is full")


@check
def errors_are_logged(host: Host, params: Any) -> None:
    """Symptom check: the log shows errors at all."""
    count = host.run("grep -c -e ' ERROR ' %s", params.log_file)
    evidence("ERROR lines", count)
    assert count.exit_status in (0, 1), f"cannot read {params.log_file}: {count.stderr.strip()}"


@check(tests=payment_errors)
def gateway_accepts_payments(host: Host, params: Any) -> None:
    """Rule the gateway out when few requests to it failed."""
    failed = host.run("grep -c -e 'payment gateway refused' %s", params.log_file)
    refusals = int(failed.stdout.strip() or 0)
    evidence("Gateway refusals", failed)
    assert refusals <= params.max_errors, f"{refusals} payments refused by the gateway"


@check(tests=disk_full)
def data_disk_has_room(host: Host, params: Any) -> None:
    """Rule a full data disk out."""
    df = host.run("df -P -k %s", params.data_path)
    used = int(df.stdout.splitlines()[1].split()[4].rstrip("%"))
    evidence("Data disk", df)
    assert used < params.max_used_percent, f"{params.data_path} is {used}% full"


@action(mitigates=payment_errors)
def switch_to_backup_gateway(host: Host, params: Any) -> None:
    """Point checkout at the backup payment gateway (a feature flag)."""
    host.run("checkoutctl gateway use backup")
