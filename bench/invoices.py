"""Invoices rendered per second with a process pool, beside the bare WeasyPrint render of the same HTML.

    python -m bench.invoices [--invoices 60] [--workers 2]

"full" is what the worker does per invoice: Jinja2 HTML, WeasyPrint PDF/A-3, the EN 16931 XML built and
checked against the official schema, and both joined into a Factur-X PDF. "bare" renders the same HTML
with WeasyPrint alone (plain PDF), in the same pool and the same run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from billing_core.adapters.pdf import html_to_pdf, invoice_html, render_invoice_pdf
from billing_core.domain.invoice_document import InvoiceDocument


def document(i: int) -> InvoiceDocument:
    net, vat = 4202 + i, 798
    return InvoiceDocument.model_validate(
        {
            "kind": "invoice",
            "number": f"RE-2026-{i:06d}",
            "issue_date": "2026-11-27",
            "locale": "de_DE",
            "currency": "EUR",
            "seller": {
                "name": "AskProAI GmbH",
                "address_line1": "Friedrichstraße 123",
                "postal_code": "10117",
                "city": "Berlin",
                "country": "DE",
                "vat_id": "DE136695976",
                "tax_number": None,
                "email": "billing@askproai.example",
            },
            "buyer": {
                "name": f"Zahnarztpraxis {i}",
                "address_line1": "Königsallee 12",
                "address_line2": None,
                "postal_code": "40212",
                "city": "Düsseldorf",
                "country": "DE",
                "vat_id": None,
                "email": "praxis@example.com",
                "customer_number": f"K{i:06d}",
            },
            "period": {"start": "2026-11-27", "end": "2026-11-27"},
            "vat": {"category": "S", "rate": "19", "note": None, "exemption_code": None},
            "totals": {"net": net, "vat": vat, "gross": net + vat, "paid": net + vat},
            "notes": [],
            "lines": [
                {"id": "1", "name": "Aufladung Prepaid-Guthaben", "net": net, "description": f"#{i} · Stripe Checkout"}
            ],
            "bonus": 500,
            "payment_terms": "Der Betrag wurde bereits beglichen.",
        }
    )


def bare(html: str) -> bytes:
    return html_to_pdf(html)


def timed(pool: ProcessPoolExecutor, fn: Any, items: list[Any]) -> tuple[float, list[float]]:
    """Wall time for the whole batch, and each item's render time inside its process."""
    start = time.perf_counter()
    latencies = list(pool.map(_timed_call, [(fn, item) for item in items]))
    return time.perf_counter() - start, latencies


def _timed_call(args: tuple[Any, Any]) -> float:
    fn, item = args
    t0 = time.perf_counter()
    fn(item)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--invoices", type=int, default=60)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    args = parser.parse_args()
    docs = [document(i) for i in range(1, args.invoices + 1)]
    htmls = [invoice_html(d) for d in docs]
    results = {}
    with ProcessPoolExecutor(args.workers) as pool:
        list(pool.map(bare, htmls[: args.workers * 2]))  # warm every process: imports, fonts
        list(pool.map(render_invoice_pdf, docs[: args.workers * 2]))
        for name, fn, items in (
            ("bare WeasyPrint", bare, htmls),
            ("full invoice", render_invoice_pdf, docs),
            ("bare WeasyPrint (again)", bare, htmls),
        ):
            results[name] = timed(pool, fn, items)
    base = (results["bare WeasyPrint"][0] + results["bare WeasyPrint (again)"][0]) / 2
    print(f"\nInvoice PDFs, {args.invoices} per run, process pool of {args.workers} ({os.cpu_count()} cores)\n")
    print("| path                     | invoices/s | p50 ms | p99 ms | time vs bare |")
    print("|--------------------------|------------|--------|--------|--------------|")
    for name, (seconds, latencies) in results.items():
        ordered = sorted(latencies)
        p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
        print(
            f"| {name:<24} | {args.invoices / seconds:>10.1f} | {statistics.median(ordered) * 1000:>6.0f} | "
            f"{p99 * 1000:>6.0f} | {seconds / base:>11.2f}x |"
        )


if __name__ == "__main__":
    main()
