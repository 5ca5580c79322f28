"""Fake credentials and personal data that look real: right prefixes, lengths and checksums.

Every value comes from a seeded ``random.Random``; none is, or was, a live
credential. Checksummed kinds are valid (Luhn for cards, ISO 13616 mod-97 for
IBANs, base58check for Bitcoin addresses, python-phonenumbers' validity for
phone numbers) because a detector that checks them would rightly skip an
invalid one, and a real leak is valid.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import string

import phonenumbers

ALNUM = string.ascii_letters + string.digits
B64 = ALNUM + "+/"
B64URL = ALNUM + "-_"
HEX = "0123456789abcdef"


class Fakes:
    """One seeded source of fake values; the same seed gives the same corpus."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def chars(self, alphabet: str, n: int) -> str:
        return "".join(self.rng.choice(alphabet) for _ in range(n))

    def digits(self, n: int) -> str:
        return str(self.rng.randint(1, 9)) + self.chars(string.digits, n - 1)

    # Credentials -----------------------------------------------------------------
    def aws_key_id(self, prefix: str = "AKIA") -> str:
        return prefix + self.chars(string.ascii_uppercase + "234567", 16)

    def aws_secret(self) -> str:
        return self.chars(B64, 40)

    def github_token(self, prefix: str = "ghp") -> str:
        return f"{prefix}_{self.chars(ALNUM, 36)}"

    def github_pat(self) -> str:
        head = self.chars(string.ascii_uppercase + string.digits, 20)
        return f"github_pat_11{head}_{self.chars(ALNUM, 59)}"

    def gitlab_token(self) -> str:
        return "glpat-" + self.chars(ALNUM + "-_", 20)

    def slack_token(self, prefix: str = "xoxb") -> str:
        if prefix == "xoxp":
            return f"xoxp-{self.digits(12)}-{self.digits(12)}-{self.digits(13)}-{self.chars(HEX, 32)}"
        return f"{prefix}-{self.digits(12)}-{self.digits(13)}-{self.chars(ALNUM, 24)}"

    def slack_webhook(self) -> str:
        upper = string.ascii_uppercase + string.digits
        return (f"https://hooks.slack.com/services/T{self.chars(upper, 8)}/B{self.chars(upper, 10)}/"
                f"{self.chars(ALNUM, 24)}")

    def stripe_key(self, prefix: str = "sk_live_", long: bool = False) -> str:
        return prefix + ("51" + self.chars(ALNUM, 97) if long else self.chars(ALNUM, 24))

    def openai_key(self, project: bool = True) -> str:
        core = self.chars(ALNUM, 20) + "T3BlbkFJ" + self.chars(ALNUM, 20)
        return f"sk-proj-{self.chars(B64URL, 40)}{core}" if project else f"sk-{core}"

    def anthropic_key(self) -> str:
        return f"sk-ant-api03-{self.chars(B64URL, 93)}AA"

    def sendgrid_key(self) -> str:
        return f"SG.{self.chars(B64URL, 22)}.{self.chars(B64URL, 43)}"

    def npm_token(self) -> str:
        return "npm_" + self.chars(ALNUM, 36)

    def pypi_token(self) -> str:
        return "pypi-AgEIcHlwaS5vcmc" + self.chars(B64URL, 120)

    def twilio_key(self, prefix: str = "AC") -> str:
        return prefix + self.chars(HEX, 32)

    def mailchimp_key(self) -> str:
        return f"{self.chars(HEX, 32)}-us{self.rng.randint(1, 21)}"

    def telegram_token(self) -> str:
        return f"{self.digits(10)}:AA{self.chars(B64URL, 33)}"

    def discord_token(self) -> str:
        return f"M{self.chars(ALNUM, 23)}.{self.chars(B64URL, 6)}.{self.chars(B64URL, 27)}"

    def azure_account_key(self) -> str:
        return self.chars(B64, 86) + "=="

    def artifactory_key(self) -> str:
        return "AKCp8" + self.chars(ALNUM, 68)

    def square_secret(self) -> str:
        return "sq0csp-" + self.chars(B64URL, 43)

    def ibm_iam_key(self) -> str:
        return self.chars(B64URL, 44)

    def jwt(self) -> str:
        def part(obj: object) -> str:
            raw = json.dumps(obj, separators=(",", ":")).encode()
            return base64.urlsafe_b64encode(raw).decode().rstrip("=")
        issued = self.rng.randint(1_700_000_000, 1_760_000_000)
        header = {"alg": self.rng.choice(["HS256", "RS256"]), "typ": "JWT"}
        payload = {"sub": self.digits(8), "name": "svc-deployer", "iat": issued, "exp": issued + 3600}
        return f"{part(header)}.{part(payload)}.{self.chars(B64URL, 43)}"

    def pem_body(self, n_bytes: int) -> list[str]:
        body = base64.b64encode(self.rng.randbytes(n_bytes)).decode()
        return [body[i:i + 64] for i in range(0, len(body), 64)]

    def password(self) -> str:
        words = ["Harbor", "Maple", "Quartz", "Velvet", "Copper", "Falcon", "Juniper", "Onyx", "Tundra"]
        return (self.rng.choice(words) + self.rng.choice("!#%&*@?") + self.digits(4)
                + self.chars(string.ascii_lowercase, 3))

    # Personal data ---------------------------------------------------------------
    def email(self) -> str:
        first = self.rng.choice(["jane", "omar", "li", "priya", "marek", "sofia", "kwame", "elena", "tomas"])
        last = self.rng.choice(["doe", "haddad", "wei", "raman", "novak", "rossi", "mensah", "ivanova"])
        domain = self.rng.choice(["acme-corp.com", "example-bank.de", "northwind.io", "contoso.co.uk",
                                  "globex.dev", "initech.fr", "umbrella-health.org"])
        return f"{first}{self.rng.choice(['.', '_', ''])}{last}@{domain}"

    def phone(self, region: str, style: str) -> str:
        """A valid number of ``region``: ``e164``, ``intl`` or ``national`` formatting."""
        fmt = {"e164": phonenumbers.PhoneNumberFormat.E164,
               "intl": phonenumbers.PhoneNumberFormat.INTERNATIONAL,
               "national": phonenumbers.PhoneNumberFormat.NATIONAL}[style]
        example = phonenumbers.example_number_for_type(region, phonenumbers.PhoneNumberType.MOBILE)
        assert example is not None, region
        national = str(example.national_number)
        while True:
            digits = national[:3] + self.chars(string.digits, len(national) - 3)
            candidate = phonenumbers.parse(digits, region)
            if phonenumbers.is_valid_number(candidate):
                return phonenumbers.format_number(candidate, fmt)

    def card(self, prefix: str, length: int, sep: str = " ") -> str:
        digits = [int(d) for d in prefix] + [self.rng.randint(0, 9) for _ in range(length - len(prefix) - 1)]
        digits.append(luhn_check_digit(digits))
        number = "".join(map(str, digits))
        groups = [number[i:i + 4] for i in range(0, len(number), 4)] if length == 16 else [
            number[:4], number[4:10], number[10:]]
        return sep.join(groups)

    def iban(self, country: str, grouped: bool = True) -> str:
        upper = string.ascii_uppercase
        bban = {"DE": lambda: self.chars(string.digits, 18),
                "GB": lambda: self.chars(upper, 4) + self.chars(string.digits, 14),
                "FR": lambda: self.chars(string.digits, 10) + self.chars(string.digits, 11) + "47",
                "NL": lambda: self.chars(upper, 4) + self.chars(string.digits, 10),
                "ES": lambda: self.chars(string.digits, 20)}[country]()
        iban = country + iban_check_digits(country, bban) + bban
        return " ".join(iban[i:i + 4] for i in range(0, len(iban), 4)) if grouped else iban

    def ssn(self) -> str:
        area = self.rng.choice([n for n in range(1, 900) if n != 666])
        return f"{area:03d}-{self.rng.randint(1, 99):02d}-{self.rng.randint(1, 9999):04d}"

    def bitcoin_address(self) -> str:
        payload = b"\x00" + self.rng.randbytes(20)
        checksum = hashlib.sha256(hashlib.sha256(payload).digest()).digest()[:4]
        return base58(payload + checksum)

    # Look-alikes for traps -------------------------------------------------------
    def hexdigest(self, n: int = 40) -> str:
        return self.chars(HEX, n)

    def uuid(self) -> str:
        h = self.chars(HEX, 32)
        return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:]}"

    def luhn_id(self, length: int, valid: bool) -> str:
        digits = [self.rng.randint(1, 9)] + [self.rng.randint(0, 9) for _ in range(length - 2)]
        check = luhn_check_digit(digits)
        digits.append(check if valid else (check + 1) % 10)
        return "".join(map(str, digits))


def luhn_check_digit(digits: list[int]) -> int:
    total = 0
    for i, d in enumerate(reversed(digits)):
        doubled = d * 2 if i % 2 == 0 else d
        total += doubled - 9 if doubled > 9 else doubled
    return (10 - total % 10) % 10


def iban_check_digits(country: str, bban: str) -> str:
    rearranged = bban + country + "00"
    numeric = "".join(str(int(c, 36)) for c in rearranged)
    return f"{98 - int(numeric) % 97:02d}"


def base58(data: bytes) -> str:
    alphabet = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
    n = int.from_bytes(data, "big")
    out = ""
    while n:
        n, r = divmod(n, 58)
        out = alphabet[r] + out
    return "1" * (len(data) - len(data.lstrip(b"\x00"))) + out
