#!/usr/bin/env python3
"""send_once.py SERVER OUT MESSAGE_ID SUBJECT BODY: send one message to
SERVER:25 by SMTP (from a@client.lab.test to a@sink.lab.test) and write its
outcome to OUT: "250", or "no 250: ERROR". The same arguments always make the
same bytes, so that a second call is an exact resend, as a sending MTA's
retry of a message whose 250 it never got (tests/lab/t-27, t-29)."""
import smtplib
import sys


def main():
    server, out_path, message_id, subject, body = sys.argv[1:6]
    msg = ("From: <a@client.lab.test>\r\nTo: <a@sink.lab.test>\r\n"
           f"Message-ID: <{message_id}>\r\nSubject: {subject}\r\n\r\n{body}\r\n").encode()
    try:
        s = smtplib.SMTP(server, 25, local_hostname="client.lab.test", timeout=30)
        s.sendmail("a@client.lab.test", ["a@sink.lab.test"], msg)
        out = "250"
        s.quit()
    except Exception as e:  # the outcome is the test's to judge
        out = "no 250: %s: %s" % (type(e).__name__, e)
    with open(out_path, "w") as f:
        f.write(out + "\n")


if __name__ == "__main__":
    main()
