"""billing run's SMTP sink as a real process: every accepted mail becomes one .eml file."""

from __future__ import annotations

import signal
import smtplib
import subprocess
import sys
import time
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import default

from tests.support.mariadb import free_port


def test_every_mail_becomes_an_eml_file_and_sigterm_stops_the_sink(tmp_path):
    port = free_port()
    mail_dir = tmp_path / "mail"
    command = [sys.executable, "-m", "billing_cli.mail_sink", "--port", str(port), "--dir", str(mail_dir)]
    sink = subprocess.Popen(command)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                client = smtplib.SMTP("127.0.0.1", port, timeout=5)
                break
            except OSError:
                assert time.monotonic() < deadline, "the sink did not start"
                time.sleep(0.1)
        with client:
            for n in (1, 2):
                message = EmailMessage()
                message["From"] = "billing@example.com"
                message["To"] = "praxis@example.com"
                message["Subject"] = f"Rechnung {n}"
                message.set_content("Guten Tag")
                client.send_message(message)
        files = sorted(mail_dir.glob("*.eml"))
        assert len(files) == 2
        subjects = {BytesParser(policy=default).parsebytes(f.read_bytes())["Subject"] for f in files}
        assert subjects == {"Rechnung 1", "Rechnung 2"}
        assert not list(mail_dir.glob(".*.tmp"))
    finally:
        sink.send_signal(signal.SIGTERM)
        assert sink.wait(timeout=20) == 0
