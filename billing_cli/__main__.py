"""``python -m billing_cli`` is the ``billing`` command (``billing run`` starts its children this way)."""

from billing_cli.main import cli

cli()
