"""``billing invoices list|show|regenerate|render|issue-missing|statement``."""

from __future__ import annotations

from pathlib import Path

import click

from billing_cli.main import (
    ID,
    cursor_option,
    emit,
    emit_page,
    handles_errors,
    money_text,
    script_json,
    services,
)
from billing_core.read_models.base import MAX_LIMIT, build
from billing_core.read_models.invoices import InvoiceFilters

json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")


@click.group()
def invoices() -> None:
    """Invoices, credit notes and monthly usage statements."""


@invoices.command(name="list")
@click.option("--company", "company_id", type=ID, default=None)
@click.option("--type", "kind", type=click.Choice(["invoice", "credit_note"]), default=None)
@click.option("--limit", type=click.IntRange(1, MAX_LIMIT), default=MAX_LIMIT, show_default=True)
@cursor_option
@json_option
@handles_errors
def list_invoices(company_id: int | None, kind: str | None, limit: int, cursor: str | None, as_json: bool) -> None:
    """Invoices and credit notes, newest first (number, company, type, amounts in minor units, issued at)."""
    filters = build(InvoiceFilters, company_id=company_id, type=kind)
    with services() as svc:
        page = svc.queries.invoices(filters, limit=limit, cursor=cursor)

    def human() -> None:
        for r in page.items:
            click.echo(
                f"{r.number}  {r.issued_at:%Y-%m-%d}  company {r.company_id:<5} {r.type:<12} "
                f"net {money_text(r.net):>12}  VAT {money_text(r.vat):>10}  gross {money_text(r.gross):>12}"
                f"{'' if r.pdf_sha256 else '  (PDF pending)'}"
            )

    emit_page(page, as_json, human)


@invoices.command()
@click.argument("number")
@click.option(
    "--pdf",
    "pdf_path",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    default=None,
    help="Write the PDF (PDF/A-3 with the Factur-X XML) to this file.",
)
@json_option
@handles_errors
def show(number: str, pdf_path: Path | None, as_json: bool) -> None:
    """One invoice; --pdf writes out the stored PDF."""
    with services() as svc:
        invoice = svc.queries.invoice(number)
        if pdf_path is not None:
            pdf_path.write_bytes(svc.invoice_files.pdf(number))
            invoice = svc.queries.invoice(number)
    emit(
        script_json(invoice),
        as_json,
        lambda: click.echo(
            f"{invoice.number} ({invoice.type}) for company {invoice.company_id}: gross {money_text(invoice.gross)}"
            f"{f', PDF written to {pdf_path}' if pdf_path else ''}"
        ),
    )


@invoices.command()
@click.argument("number")
@json_option
@handles_errors
def regenerate(number: str, as_json: bool) -> None:
    """Render the PDF again from the stored data; the number and amounts never change."""
    with services() as svc:
        invoice = svc.invoice_files.regenerate(number)
    emit(invoice.as_json(), as_json, lambda: click.echo(f"{number} rendered again (sha256 {invoice.pdf_sha256})"))


@invoices.command()
@click.option("--limit", type=click.IntRange(1, 1000), default=100, show_default=True)
@handles_errors
def render(limit: int) -> None:
    """Render PDFs that are still pending (the worker does this on its own) and queue their mails."""
    with services() as svc:
        numbers = svc.invoice_files.render_pending(limit=limit)
    click.echo(f"{len(numbers)} rendered" + (f": {', '.join(numbers)}" if numbers else ""))


@invoices.command(name="issue-missing")
@handles_errors
def issue_missing() -> None:
    """Invoice credited top-ups that have no invoice yet (after missing company or seller data was added)."""
    with services() as svc:
        missing = svc.ctx.settings.missing_seller_settings()
        if missing:
            raise click.ClickException(f"the seller is not configured; set {', '.join(missing)}")
        numbers = svc.invoices.issue_missing()
    click.echo(f"{len(numbers)} issued" + (f": {', '.join(numbers)}" if numbers else ""))


@invoices.command()
@click.option("--company", "company_id", type=ID, required=True)
@click.option("--month", required=True, help="YYYY-MM")
@click.option("--pdf", "pdf_path", type=click.Path(dir_okay=False, writable=True, path_type=Path), required=True)
@json_option
@handles_errors
def statement(company_id: int, month: str, pdf_path: Path, as_json: bool) -> None:
    """The monthly usage statement of a company: calls, refunds, adjustments, top-ups, totals."""
    try:
        year, number = (int(part) for part in month.split("-"))
    except ValueError:
        raise click.BadParameter("use YYYY-MM, e.g. 2026-11", param_hint="--month") from None
    with services() as svc:
        doc, pdf = svc.statements.statement(company_id, year, number)
    pdf_path.write_bytes(pdf)
    emit(
        {"month": doc["month"], "totals": doc["totals"], "calls": len(doc["calls"]), "pdf": str(pdf_path)},
        as_json,
        lambda: click.echo(f"{len(doc['calls'])} calls in {doc['month']}, statement written to {pdf_path}"),
    )
