"""The real ``billing`` console script, run as a subprocess against SQLite files and the private MariaDB."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from tests.conftest import empty_mariadb
from tests.support.processes import clean_env, find_billing

BILLING = find_billing()

# The demo data: company name -> balance in cents after `billing demo`.
# Weber: 150.00 - 1.72 (245 s) - 0.43 (61 s); Berger: 500.00 + 50.00 bonus - 12.81 (1830 s); Physio: 25.00 - 14.70.
DEMO_BALANCES = {
    "Zahnarztpraxis Dr. Weber": 14785,
    "Autohaus Berger GmbH": 53719,
    "Alpine Physio AG": 1030,
    # The first weeks (billing_cli/demo.py, seeded): bank transfers, three weeks of calls, a card payment
    # with Hofmann's own 5% bonus, a declined card, Seeblick's disputed 120.00 (held, still in the
    # balance), Gruber's call refunded by 0.50.
    "Hausarztpraxis Dr. Gruber": 4798,
    "Kanzlei Hofmann & Partner": 53880,
    "Hotel Seeblick Luzern": 20537,
}


class Cli:
    """Runs ``billing`` with only DATABASE_URL set, from an empty working directory (no stray .env)."""

    def __init__(self, database_url: str, cwd: Path) -> None:
        self.database_url = database_url
        self.cwd = cwd
        self.env = clean_env(DATABASE_URL=database_url)

    def run(self, *args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [BILLING, *args], cwd=self.cwd, env=self.env, capture_output=True, text=True, timeout=120, check=False
        )
        assert done.returncode == code, f"billing {' '.join(args)} -> {done.returncode}\n{done.stdout}{done.stderr}"
        assert "Traceback" not in done.stderr, done.stderr
        return done

    def json(self, *args: str, code: int = 0) -> Any:
        done = self.run(*args, "--json", code=code)
        if code == 0:
            assert done.stderr == "", done.stderr
        data = json.loads(done.stdout)
        assert_money_is_minor_units(data)
        return data

    def fails(self, *args: str) -> str:
        """A rejected command: exit 1, nothing on stdout, one line on stderr; returns that line."""
        done = self.run(*args, code=1)
        assert done.stdout == ""
        lines = done.stderr.splitlines()
        assert len(lines) == 1, done.stderr
        return lines[0]


def assert_money_is_minor_units(data: Any, currency: str = "EUR") -> int:
    """Every amount is {"cents": int, "currency": "EUR"} and no float appears anywhere; returns how many."""
    if isinstance(data, float):
        raise AssertionError(f"float {data!r} in JSON output")
    if isinstance(data, list):
        return sum(assert_money_is_minor_units(item, currency) for item in data)
    if not isinstance(data, dict):
        return 0
    if "cents" in data:
        assert set(data) == {"cents", "currency"}, data
        assert type(data["cents"]) is int, data
        assert data["currency"] == currency, data
        return 1
    return sum(assert_money_is_minor_units(value, currency) for value in data.values())


def eur(cents: int) -> dict[str, Any]:
    return {"cents": cents, "currency": "EUR"}


@pytest.fixture
def sqlite_path(tmp_path: Path) -> Path:
    return tmp_path / "var" / "billing.db"


@pytest.fixture
def cli(sqlite_path: Path, tmp_path: Path) -> Cli:
    work = tmp_path / "work"
    work.mkdir()
    return Cli(f"sqlite:///{sqlite_path}", work)


@pytest.fixture
def migrated(cli: Cli) -> Cli:
    cli.run("db", "upgrade")
    return cli


@pytest.fixture
def demo(migrated: Cli) -> dict[str, int]:
    """The demo data loaded; company name -> id."""
    data = migrated.json("demo")
    return {c["name"]: c["id"] for c in data["companies"]}


def tamper_sqlite(path: Path) -> Callable[[int], None]:
    def tamper(company_id: int) -> None:
        conn = sqlite3.connect(path)
        try:
            conn.execute("UPDATE prepaid_balances SET balance = balance + 1 WHERE company_id = ?", (company_id,))
            conn.commit()
        finally:
            conn.close()

    return tamper


def tamper_sqlalchemy(url: str) -> Callable[[int], None]:
    def tamper(company_id: int) -> None:
        engine = create_engine(url)
        try:
            with engine.begin() as conn:
                conn.execute(
                    text("UPDATE prepaid_balances SET balance = balance + 1 WHERE company_id = :id"), {"id": company_id}
                )
        finally:
            engine.dispose()

    return tamper


# -- steps shared by the SQLite tests and the MariaDB session ------------------------------------------


def demo_seeds_once(cli: Cli) -> dict[str, int]:
    first = cli.json("demo")
    assert first["seeded"] is True
    assert {c["name"]: c["balance"] for c in first["companies"]} == {
        name: eur(cents) for name, cents in DEMO_BALANCES.items()
    }
    assert [c["id"] for c in first["companies"]] == sorted(c["id"] for c in first["companies"])
    second = cli.json("demo")
    assert second["seeded"] is False
    assert second["companies"] == first["companies"]
    listing = cli.json("companies", "list")
    assert [(c["name"], c["balance"]) for c in listing] == [(c["name"], c["balance"]) for c in first["companies"]]
    return {c["name"]: c["id"] for c in first["companies"]}


def company_commands_work(cli: Cli) -> int:
    added = cli.json(
        "companies",
        "add",
        "--name",
        "Praxis Neumann",
        "--email",
        "buchhaltung@neumann.example",
        "--rate",
        "0.35",
        "--low-balance-threshold",
        "15.00",
        "--city",
        "Köln",
        "--country",
        "de",
        "--actor",
        "cli:test",
    )
    company_id = added["id"]
    assert type(company_id) is int
    assert (added["name"], added["email"], added["currency"], added["country"]) == (
        "Praxis Neumann",
        "buchhaltung@neumann.example",
        "EUR",
        "DE",
    )
    assert (added["balance"], added["reserved"], added["available"]) == (eur(0), eur(0), eur(0))
    assert added["low_balance_threshold"] == eur(1500)
    assert [(r["rate_per_minute"], r["billing_increment_seconds"]) for r in added["rates"]] == [("0.350000", 1)]

    listed = {c["id"]: c for c in cli.json("companies", "list")}
    assert listed[company_id]["name"] == "Praxis Neumann"
    assert listed[company_id]["rates"] == []
    assert cli.json("companies", "show", str(company_id)) == added

    changed = cli.json(
        "companies",
        "set",
        str(company_id),
        "--rate",
        "0.50",
        "--increment",
        "60",
        "--low-balance-threshold",
        "30.00",
        "--auto-topup",
        "--auto-topup-amount",
        "100.00",
        "--auto-topup-monthly-limit",
        "400.00",
        "--actor",
        "cli:test",
    )
    assert [(r["rate_per_minute"], r["billing_increment_seconds"]) for r in changed["rates"]] == [
        ("0.350000", 1),
        ("0.500000", 60),
    ]
    assert changed["rates"][0]["effective_from"] == "1970-01-01T00:00:00+00:00"
    assert changed["low_balance_threshold"] == eur(3000)
    assert changed["auto_topup_enabled"] is True
    assert changed["auto_topup_amount"] == eur(10000)
    assert changed["auto_topup_monthly_limit"] == eur(40000)
    assert cli.json("companies", "show", str(company_id)) == changed

    switched = cli.json(
        "companies", "set", str(company_id), "--no-billing", "--no-auto-topup", "--auto-topup-monthly-limit", "none"
    )
    assert switched["prepaid_billing_enabled"] is False
    assert switched["auto_topup_enabled"] is False
    assert switched["auto_topup_monthly_limit"] is None
    assert switched["rates"] == changed["rates"]
    return company_id


def money_commands_work(cli: Cli, ids: dict[str, int]) -> None:
    weber = ids["Zahnarztpraxis Dr. Weber"]
    physio = ids["Alpine Physio AG"]

    adjusted = cli.json(
        "adjust",
        str(weber),
        "--amount",
        "5.00",
        "--reason",
        "goodwill for outage",
        "--actor",
        "support:ben",
        "--idempotency-key",
        "ticket-7",
    )
    assert adjusted["type"] == "adjustment" and adjusted["replayed"] is False
    assert (adjusted["amount"], adjusted["balance_after"]) == (eur(500), eur(15285))
    assert (adjusted["description"], adjusted["actor"]) == ("goodwill for outage", "support:ben")
    again = cli.json(
        "adjust", str(weber), "--amount", "5.00", "--reason", "goodwill for outage", "--idempotency-key", "ticket-7"
    )
    assert again["replayed"] is True and again["id"] == adjusted["id"]
    debited = cli.json("adjust", str(weber), "--amount", "-2.85", "--reason", "correction")
    assert debited["balance_after"] == eur(15000)

    partial = cli.json("calls", "refund", "demo-call-1", "--amount", "0.50", "--reason", "echo on the line")
    assert (partial["amount"], partial["refunded_total"], partial["charged"]) == (eur(50), eur(50), eur(172))
    assert partial["refund_status"] == "partial" and partial["company_id"] == weber
    rest = cli.json("calls", "refund", "demo-call-1", "--reason", "dropped", "--idempotency-key", "ref-1")
    assert (rest["amount"], rest["refunded_total"], rest["refund_status"]) == (eur(122), eur(172), "full")
    assert rest["balance_after"] == eur(15172)
    assert (
        cli.json("calls", "refund", "demo-call-1", "--reason", "dropped", "--idempotency-key", "ref-1")["replayed"]
        is True
    )

    recorded = cli.json("topups", "record", "--company", str(physio), "--amount", "100.00", "--reference", "X")
    assert recorded["credited_now"] is True
    assert (recorded["amount"], recorded["bonus"], recorded["status"]) == (eur(10000), eur(0), "succeeded")
    assert (recorded["source"], recorded["reference"]) == ("bank_transfer", "X")
    assert recorded["balance_after"] == eur(11030)
    repeated = cli.json("topups", "record", "--company", str(physio), "--amount", "100.00", "--reference", "X")
    assert repeated["credited_now"] is False and repeated["id"] == recorded["id"]
    assert repeated["balance_after"] == eur(11030)

    assert cli.json("ledger", "balance", str(weber)) == {
        "company_id": weber,
        "balance": eur(15172),
        "reserved": eur(0),
        "available": eur(15172),
        "low_balance_threshold": eur(2000),
        "is_low": False,
    }

    first = cli.json("ledger", "history", str(weber), "--limit", "3")
    assert [e["type"] for e in first["entries"]] == ["refund", "refund", "adjustment"]
    assert [e["amount"] for e in first["entries"]] == [eur(122), eur(50), eur(-285)]
    assert first["next_cursor"]
    rest_page = cli.json("ledger", "history", str(weber), "--limit", "3", "--cursor", first["next_cursor"])
    assert [e["type"] for e in rest_page["entries"]] == ["adjustment", "charge", "charge"]
    last = cli.json("ledger", "history", str(weber), "--limit", "3", "--cursor", rest_page["next_cursor"])
    assert [e["type"] for e in last["entries"]] == ["topup"] and last["next_cursor"] is None
    ids_seen = [e["id"] for page in (first, rest_page, last) for e in page["entries"]]
    assert len(ids_seen) == len(set(ids_seen)) == 7
    refunds = cli.json("ledger", "history", str(weber), "--type", "refund")
    assert [e["amount"] for e in refunds["entries"]] == [eur(122), eur(50)]

    low = cli.json("ledger", "low-balance")
    assert low == []
    cli.json("adjust", str(physio), "--amount", "-100.00", "--reason", "transfer bounced")
    low = cli.json("ledger", "low-balance")
    assert [(r["company_id"], r["balance"], r["low_balance_threshold"]) for r in low] == [
        (physio, eur(1030), eur(2000))
    ]

    assert cli.run("ledger", "check").stdout.endswith(" companies checked, 0 failing\n")
    assert cli.json("ledger", "check")["ok"] is True


def ledger_check_names_the_tampered_company(cli: Cli, tamper: Callable[[int], None], company_id: int) -> None:
    assert cli.run("ledger", "check").returncode == 0
    tamper(company_id)
    done = cli.run("ledger", "check", code=1)
    assert f"company {company_id}: FAILED" in done.stderr
    assert "!= ledger sum" in done.stderr
    assert done.stdout.endswith(", 1 failing\n")
    report = cli.json("ledger", "check", code=1)
    assert report["ok"] is False
    assert [c["company_id"] for c in report["failing"]] == [company_id]
    assert report["failing"][0]["balance"]["cents"] == report["failing"][0]["ledger_sum"]["cents"] + 1


# -- SQLite ----------------------------------------------------------------------------------------------


def test_db_upgrade_creates_the_database_and_its_folder_and_can_run_again(cli, sqlite_path):
    assert not sqlite_path.parent.exists()
    done = cli.run("db", "upgrade")
    assert done.stdout == "database is at the latest schema\n"
    assert sqlite_path.is_file()
    assert cli.run("db", "upgrade").stdout == "database is at the latest schema\n"
    assert cli.json("companies", "list") == []


def test_demo_seeds_an_empty_database_once(migrated):
    demo_seeds_once(migrated)
    assert migrated.run("ledger", "check").stdout == "6 companies checked, 0 failing\n"


def test_demo_without_json_prints_a_balance_table(migrated):
    done = migrated.run("demo")
    assert done.stdout.splitlines()[0] == "demo data loaded"
    assert "147.85 EUR" in done.stdout and "537.19 EUR" in done.stdout and "10.30 EUR" in done.stdout


def test_company_commands_add_list_show_and_set(migrated):
    company_id = company_commands_work(migrated)
    shown = migrated.run("companies", "show", str(company_id))
    assert shown.stdout.startswith(f"#{company_id} Praxis Neumann <buchhaltung@neumann.example>")


def test_money_commands_move_balances_and_keep_the_ledger_consistent(migrated, demo):
    money_commands_work(migrated, demo)


def test_lists_are_pages_whose_next_cursor_goes_to_stderr(migrated, demo):
    done = migrated.run("companies", "list", "--limit", "2", "--json")
    first = json.loads(done.stdout)
    assert len(first) == 2
    assert done.stderr.startswith("more results: repeat with --cursor ")
    cursor = first_cursor = done.stderr.split("--cursor ")[1].strip()
    rest: list[dict[str, object]] = []
    while cursor:  # six demo companies: three pages of two
        page = migrated.run("companies", "list", "--limit", "2", "--cursor", cursor, "--json")
        rest += json.loads(page.stdout)
        cursor = page.stderr.split("--cursor ")[1].strip() if page.stderr else ""
    assert [c["id"] for c in first + rest] == sorted(demo.values())
    assert all(c["current_rate"] and c["balance"].keys() == {"cents", "currency"} for c in first + rest)

    transfers = migrated.json("topups", "list", "--method", "bank_transfer")
    assert transfers and {t["source"] for t in transfers} == {"bank_transfer"}
    # the demo's declined card
    assert [t["failure_code"] for t in migrated.json("topups", "list", "--status", "failed")] == ["insufficient_funds"]
    # the demo's card payments and dispute came as Stripe events (processing times are seconds, not money)
    stats = json.loads(migrated.run("webhooks", "stats", "--json").stdout)
    assert stats["backlog"] == {}
    assert {r["event_type"] for r in stats["processing_times"]} == {
        "payment_intent.succeeded",
        "payment_intent.payment_failed",
        "charge.dispute.created",
    }
    assert "--limit" in migrated.fails("topups", "list", "--limit", "1001")  # one line, exit 1, like any bad input
    line = migrated.fails("topups", "list", "--status", "paid")
    assert line.startswith("error (invalid_input): statuses.0: Input should be")
    line = migrated.fails("companies", "list", "--cursor", first_cursor + "x")
    assert line == "error (invalid_cursor): the company list cursor is not one this server issued"


def test_ledger_check_exits_1_naming_the_company_whose_balance_was_tampered_with(migrated, demo, sqlite_path):
    ledger_check_names_the_tampered_company(migrated, tamper_sqlite(sqlite_path), demo["Autohaus Berger GmbH"])


@pytest.fixture(scope="module")
def demo_for_errors(tmp_path_factory: pytest.TempPathFactory) -> tuple[Cli, Path, dict[str, int]]:
    """One demo database shared by the rejected commands (each proves it changed nothing)."""
    base = tmp_path_factory.mktemp("errors")
    path = base / "billing.db"
    cli = Cli(f"sqlite:///{path}", base)
    cli.run("db", "upgrade")
    return cli, path, {c["name"]: c["id"] for c in cli.json("demo")["companies"]}


def sqlite_rows(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    tables = (
        "companies",
        "prepaid_balances",
        "balance_transactions",
        "call_charges",
        "balance_topups",
        "billing_rates",
        "bonus_rules",
        "audit_log",
    )
    conn = sqlite3.connect(path)
    try:
        return {table: conn.execute(f"SELECT * FROM {table} ORDER BY id").fetchall() for table in tables}
    finally:
        conn.close()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("companies", "show", "999"), "error (company_not_found): company 999 does not exist"),
        (("companies", "set", "999", "--name", "X"), "error (company_not_found): company 999 does not exist"),
        (("ledger", "balance", "999"), "error (company_not_found): company 999 does not exist"),
        (("ledger", "history", "999"), "error (company_not_found): company 999 does not exist"),
        (
            ("adjust", "999", "--amount", "1.00", "--reason", "r"),
            "error (company_not_found): company 999 does not exist",
        ),
        (
            ("topups", "record", "--company", "999", "--amount", "1.00", "--reference", "X"),
            "error (company_not_found): company 999 does not exist",
        ),
        (
            ("adjust", "{weber}", "--amount", "12.345", "--reason", "r"),
            "error (invalid_amount): '12.345' has more than 2 decimal places for EUR",
        ),
        (
            ("topups", "record", "--company", "{weber}", "--amount", "12.345", "--reference", "X"),
            "error (invalid_amount): '12.345' has more than 2 decimal places for EUR",
        ),
        (
            ("calls", "refund", "demo-call-1", "--amount", "12.345", "--reason", "r"),
            "error (invalid_amount): '12.345' has more than 2 decimal places for EUR",
        ),
        (
            ("adjust", "{weber}", "--amount", "ten", "--reason", "r"),
            "error (invalid_amount): 'ten' is not a decimal amount like 50.00 (ASCII digits)",
        ),
        (
            ("adjust", "{weber}", "--amount", "0", "--reason", "r"),
            "error (invalid_amount): an adjustment needs a non-zero amount",
        ),
        (
            ("adjust", "{weber}", "--amount", "-1000.00", "--reason", "r"),
            "error (insufficient_balance): company {weber} has 14785 minor units EUR available, 100000 needed",
        ),
        (
            ("calls", "refund", "no-such-call", "--reason", "r"),
            "error (call_charge_not_found): no charge for call no-such-call",
        ),
        (
            ("calls", "refund", "demo-call-1", "--amount", "5.00", "--reason", "r"),
            "error (refund_exceeds_charge): refund of 500 minor units EUR exceeds the 172 still refundable",
        ),
        (
            ("companies", "add", "--name", "X", "--email", "not-an-email"),
            "error (invalid_input): 'not-an-email' is not an email address",
        ),
        (
            ("companies", "set", "{weber}", "--low-balance-threshold", "-1.00"),
            "error (invalid_input): low_balance_threshold cannot be negative",
        ),
        (
            ("companies", "set", "{weber}", "--rate", "0.4200001"),
            "error (invalid_input): rate per minute has more than 6 decimal places",
        ),
        (
            ("ledger", "history", "{weber}", "--cursor", "garbage"),
            "error (invalid_cursor): the history cursor is not one this server issued",
        ),
    ],
)
def test_rejected_command_exits_1_with_one_line_and_changes_nothing(demo_for_errors, args, expected):
    cli, path, ids = demo_for_errors
    weber = str(ids["Zahnarztpraxis Dr. Weber"])
    before = sqlite_rows(path)
    line = cli.fails(*(a.replace("{weber}", weber) for a in args))
    assert line == expected.replace("{weber}", weber)
    assert sqlite_rows(path) == before


def test_command_on_an_unmigrated_database_exits_1_with_one_line(cli):
    line = cli.fails("companies", "list")
    assert line.startswith("error (database_not_migrated): ")
    assert "run `billing db upgrade`" in line


@pytest.mark.parametrize("command", [("companies", "list"), ("db", "upgrade")])
def test_command_on_an_unreachable_database_exits_1_saying_it_is_unavailable(tmp_path, command):
    unreachable = Cli("mysql+pymysql://billing:secret-pw@127.0.0.1:1/billing", tmp_path)
    line = unreachable.fails(*command)
    assert line.startswith("error (database_unavailable): ")
    assert "secret-pw" not in line


@pytest.mark.parametrize("url", ["not a database url", "nosuchdb://billing:secret-pw@db.example/billing"])
def test_command_with_a_database_url_that_cannot_work_exits_1_saying_so(tmp_path, url):
    line = Cli(url, tmp_path).fails("companies", "list")
    assert line.startswith("error (database_misconfigured): DATABASE_URL cannot be used (")
    assert "secret-pw" not in line


def test_second_rate_for_the_same_instant_exits_1_with_one_line(migrated, demo):
    weber = str(demo["Zahnarztpraxis Dr. Weber"])
    migrated.json("companies", "set", weber, "--rate", "0.50", "--effective-from", "2030-01-01T00:00:00+00:00")
    line = migrated.fails("companies", "set", weber, "--rate", "0.60", "--effective-from", "2030-01-01T00:00:00+00:00")
    assert line.startswith("error (")


# -- MariaDB ---------------------------------------------------------------------------------------------


def test_whole_operator_session_on_mariadb(mariadb_template_url, tmp_path):
    empty_mariadb(mariadb_template_url)
    cli = Cli(mariadb_template_url, tmp_path)
    assert cli.run("db", "upgrade").stdout == "database is at the latest schema\n"
    ids = demo_seeds_once(cli)
    money_commands_work(cli, ids)
    new_id = company_commands_work(cli)
    assert cli.fails("companies", "show", str(new_id + 1000)) == (
        f"error (company_not_found): company {new_id + 1000} does not exist"
    )
    assert cli.fails("adjust", str(new_id), "--amount", "12.345", "--reason", "r") == (
        "error (invalid_amount): '12.345' has more than 2 decimal places for EUR"
    )
    ledger_check_names_the_tampered_company(cli, tamper_sqlalchemy(mariadb_template_url), ids["Alpine Physio AG"])


def test_help_lists_every_command_without_importing_any_command_module() -> None:
    # The group loads a command's module when that command runs (billing_cli.main.COMMANDS), so a start
    # of `billing mcp` does not pay for the Stripe, PDF and server code of the others.
    probe = (
        "import sys; from billing_cli.main import COMMANDS, cli; cli.main(['--help'], standalone_mode=False); "
        "print(sorted({path.split(':')[0] for path, _ in COMMANDS.values()} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert "  mcp " in out and "  worker " in out
    assert out.strip().splitlines()[-1] == "[]"
