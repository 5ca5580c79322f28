"""Writes the labelled corpus: ``positives.jsonl`` and ``negatives.jsonl`` beside this file.

Run ``python3 -m tests.policy.corpus.build_corpus`` after changing a template;
commit the script together with its output. Each JSONL line is one message as a
coding agent (Claude Code, Cursor, Codex) sends it to a provider::

    {"id": ..., "text": ..., "labels": [{"kind", "start", "end"}], "trap": bool, "note": ...}

Templates mark each sensitive value as ``⟦kind|value⟧``; :func:`render` drops
the marks and records the value's offsets, so labels are exact by construction.
Positives carry one or more labels. Negatives carry none: ``trap`` ones are the
look-alikes scanners are known to flag (hashes, UUIDs, placeholders, ...), the
rest is ordinary traffic. Label kinds are the scanner's kind names, plus
``anthropic_key``, which no detector of detect-secrets 1.5 knows.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from tests.policy.corpus.carriers import Carriers
from tests.policy.corpus.fakes import ALNUM, Fakes
from tests.policy.corpus.traps import negatives

HERE = Path(__file__).resolve().parent

MARK = re.compile(r"⟦([a-z0-9_]+)\|(.*?)⟧", re.DOTALL)


def render(marked: str) -> tuple[str, list[dict[str, Any]]]:
    """``marked`` without its marks, and a label per mark with the value's offsets."""
    out: list[str] = []
    labels: list[dict[str, Any]] = []
    cursor = length = 0
    for match in MARK.finditer(marked):
        out.append(marked[cursor:match.start()])
        length += match.start() - cursor
        value = match.group(2)
        labels.append({"kind": match.group(1), "start": length, "end": length + len(value)})
        out.append(value)
        length += len(value)
        cursor = match.end()
    out.append(marked[cursor:])
    return "".join(out), labels


def m(kind: str, value: str) -> str:
    return f"⟦{kind}|{value}⟧"


def pem(f: Fakes, header: str, n_bytes: int = 610) -> str:
    return "\n".join([f"-----BEGIN {header}-----", *f.pem_body(n_bytes), f"-----END {header}-----"])


def snippets(f: Fakes) -> list[tuple[str, str, str]]:
    """``(kind, syntax, marked snippet)``: the lines a developer pastes, one sensitive value or more."""
    s: list[tuple[str, str, str]] = []
    for i in range(12):
        prefix = "ASIA" if i % 4 == 3 else "AKIA"
        key = m("aws_access_key", f.aws_key_id(prefix))
        s.append(("aws_access_key", *[
            ("env", f"AWS_ACCESS_KEY_ID={key}\nAWS_DEFAULT_REGION=eu-west-1"),
            ("py", f'session = boto3.Session(aws_access_key_id="{key}", region_name="us-east-1")'),
            ("ini", f"[default]\naws_access_key_id = {key}\nregion = eu-central-1"),
            ("log", f"botocore.exceptions.ClientError: InvalidClientTokenId for access key {key}"),
            ("shell", f"$ export AWS_ACCESS_KEY_ID={key}\n$ aws s3 ls s3://acme-build-artifacts/"),
            ("json", f'{{\n  "accessKeyId": "{key}",\n  "region": "us-west-2"\n}}'),
        ][i % 6]))
    for i in range(8):
        secret = m("aws_secret_key", f.aws_secret())
        s.append(("aws_secret_key", *[
            ("py", f'AWS_SECRET = "{secret}"  # aws secret key for the uploader'),
            ("py", f"client = boto3.client('s3', aws_secret_access_key='{secret}')"),
            ("ini", f"[prod]\naws_access_key_id = {m('aws_access_key', f.aws_key_id())}\n"
                    f"aws_secret_access_key = {secret}"),
            ("env", f"AWS_ACCESS_KEY_ID={m('aws_access_key', f.aws_key_id())}\n"
                    f"AWS_SECRET_ACCESS_KEY={secret}"),
        ][i % 4]))
    headers = ["RSA PRIVATE KEY", "OPENSSH PRIVATE KEY", "EC PRIVATE KEY", "PRIVATE KEY"]
    for i in range(8):
        header = headers[i % 4]
        if i == 7:
            key = pem(f, "PRIVATE KEY").replace("\n", "\\n")
            s.append(("private_key", "json", '{\n  "type": "service_account",\n'
                      '  "project_id": "acme-ml-prod",\n'
                      f'  "private_key": "{m("private_key", key)}\\n",\n'
                      '  "token_uri": "https://oauth2.googleapis.com/token"\n}'))
        else:
            s.append(("private_key", "pem" if i % 2 else "shell",
                      ("$ cat ~/.ssh/id_deploy\n" if i % 2 == 0 else "") + m("private_key", pem(f, header))))
    for i in range(12):
        token = f.github_pat() if i % 3 == 0 and i else f.github_token(["ghp", "gho", "ghs"][i % 3])
        t = m("github_token", token)
        s.append(("github_token", *[
            ("env", f"GITHUB_TOKEN={t}"),
            ("shell", f'$ curl -H "Authorization: token {t}" https://api.github.com/user/repos'),
            ("yaml", f"jobs:\n  release:\n    env:\n      GH_TOKEN: {t}"),
            ("shell", f"$ git remote set-url origin https://x-access-token:{t}@github.com/acme/api.git"),
        ][i % 4]))
    for i in range(4):
        s.append(("gitlab_token", "shell" if i % 2 else "env",
                  f"$ glab auth login --token {m('gitlab_token', f.gitlab_token())}" if i % 2 else
                  f"GITLAB_TOKEN={m('gitlab_token', f.gitlab_token())}\nCI_SERVER_HOST=gitlab.acme.internal"))
    for i in range(8):
        t = m("slack_token", f.slack_token(["xoxb", "xoxp", "xoxb", "xoxa"][i % 4]))
        s.append(("slack_token", *[
            ("py", f'slack = WebClient(token="{t}")'),
            ("env", f"SLACK_BOT_TOKEN={t}\nSLACK_CHANNEL=#deploys"),
            ("log", f"slack_sdk.errors.SlackApiError: invalid_auth (token={t})"),
            ("yaml", f"slack:\n  token: {t}\n  channel: alerts-prod"),
        ][i % 4]))
    for i in range(4):
        w = m("slack_webhook", f.slack_webhook())
        s.append(("slack_webhook", "shell" if i % 2 else "yaml",
                  f"$ curl -X POST -d '{{\"text\":\"deploy done\"}}' {w}" if i % 2 else
                  "alertmanager:\n  receivers:\n    - name: team\n      slack_configs:\n"
                  f"        - api_url: {w}"))
    for i in range(6):
        k = m("stripe_key", f.stripe_key("rk_live_" if i == 5 else "sk_live_", long=i % 2 == 1))
        s.append(("stripe_key", *[
            ("env", f"STRIPE_SECRET_KEY={k}\nSTRIPE_WEBHOOK_PATH=/hooks/stripe"),
            ("js", f"const stripe = require('stripe')('{k}');"),
            ("py", f"stripe.api_key = '{k}'"),
        ][i % 3]))
    for i in range(4):
        k = m("openai_key", f.openai_key(project=i % 2 == 0))
        s.append(("openai_key", "shell" if i % 2 else "py",
                  f"$ export OPENAI_API_KEY={k}" if i % 2 else f'client = OpenAI(api_key="{k}")'))
    for i in range(3):
        k = m("anthropic_key", f.anthropic_key())
        s.append(("anthropic_key", *[("env", f"ANTHROPIC_API_KEY={k}"),
                                     ("shell", f"$ claude config set apiKey {k}"),
                                     ("py", f'client = anthropic.Anthropic(api_key="{k}")')][i]))
    for _ in range(3):
        s.append(("sendgrid_key", "env", f"SENDGRID_API_KEY={m('sendgrid_key', f.sendgrid_key())}"))
        s.append(("npm_token", "ini", f"//registry.npmjs.org/:_authToken={m('npm_token', f.npm_token())}\n"
                  "@acme:registry=https://npm.acme.internal/"))
        s.append(("twilio_key", "py", f"client = Client('{m('twilio_key', f.twilio_key())}', auth_token)"))
    for _ in range(2):
        s.append(("pypi_token", "ini", f"[pypi]\n  username = __token__\n  password = "
                  f"{m('pypi_token', f.pypi_token())}"))
        s.append(("mailchimp_key", "py", f"mailchimp.set_config({{'api_key': "
                  f"'{m('mailchimp_key', f.mailchimp_key())}', 'server': 'us6'}})"))
        s.append(("telegram_token", "env", f"TELEGRAM_BOT_TOKEN={m('telegram_token', f.telegram_token())}"))
        s.append(("discord_token", "js", f"client.login('{m('discord_token', f.discord_token())}');"))
        account_key = m("azure_storage_key", "AccountKey=" + f.azure_account_key())
        s.append(("azure_storage_key", "env", "AZURE_STORAGE_CONNECTION_STRING="
                  f"DefaultEndpointsProtocol=https;AccountName=acmeprodlogs;{account_key};EndpointSuffix=core.windows.net"))
    for _ in range(2):
        s.append(("artifactory_token", "env",
                  f"ARTIFACTORY_API_KEY={m('artifactory_token', f.artifactory_key())}"))
        s.append(("square_oauth", "env", f"SQUARE_APPLICATION_SECRET={m('square_oauth', f.square_secret())}"))
        s.append(("ibm_cloud_iam_key", "py",
                  f'IBM_CLOUD_API_KEY = "{m("ibm_cloud_iam_key", f.ibm_iam_key())}"'))
        s.append(("cloudant_key", "py", f'cloudant_password = "{m("cloudant_key", f.hexdigest(64))}"'))
        s.append(("softlayer_key", "ini",
                  f"[softlayer]\nsoftlayer_api_key = {m('softlayer_key', f.hexdigest(64))}"))
        s.append(("ibm_cos_hmac", "json", f'{{"cos_hmac_keys": {{"secret_access_key": '
                  f'"{m("ibm_cos_hmac", f.hexdigest(48))}"}}}}'))
    for i in range(8):
        j = m("jwt", f.jwt())
        s.append(("jwt", *[
            ("shell", f'$ curl -H "Authorization: Bearer {j}" https://api.acme.internal/v2/orders'),
            ("log", f"DEBUG auth: verifying bearer {j} for route /v2/orders"),
            ("json", f'{{\n  "access_token": "{j}",\n  "token_type": "Bearer",\n  "expires_in": 3600\n}}'),
            ("py", f'headers = {{"Authorization": "Bearer {j}"}}'),
        ][i % 4]))
    schemes = ["postgres", "postgresql", "mysql", "mongodb+srv", "redis", "amqp", "https", "mssql"]
    for i in range(10):
        pw = m("basic_auth_url", f.chars(ALNUM, 12 + i))
        scheme = schemes[i % len(schemes)]
        user = "" if scheme == "redis" else f"svc_{['orders', 'billing', 'etl', 'search'][i % 4]}"
        url = f"{scheme}://{user}:{pw}@db-{i}.acme.internal:5432/app"
        s.append(("basic_auth_url", *[("env", f"DATABASE_URL={url}"),
                                      ("py", f'engine = create_engine("{url}", pool_size=10)'),
                                      ("log", f"ERROR could not connect to {url}: connection timed out"),
                                      ("yaml", f"spring:\n  datasource:\n    url: {url}")][i % 4]))
    for i in range(14):
        p = m("keyword_password", f.password())
        s.append(("keyword_password", *[
            ("py", f'DB_PASSWORD = "{p}"'),
            ("py", f"conn = psycopg2.connect(host='db', user='etl', password='{p}')"),
            ("js", f'const config = {{ user: "admin", password: "{p}" }};'),
            ("yaml", f'redis:\n  host: cache.acme.internal\n  password: "{p}"'),
            ("json", f'{{\n  "username": "ci-bot",\n  "client_secret": "{p}"\n}}'),
            ("env", f"DB_USER=app\nDB_PASSWORD={p}"),
            ("yaml", f"smtp:\n  user: mailer\n  password: {p}"),
        ][i % 7]))
    return s


def pii_snippets(f: Fakes) -> list[tuple[str, str, str]]:
    s: list[tuple[str, str, str]] = []
    for i in range(16):
        e = m("email", f.email())
        s.append(("email", *[
            ("diff", f"commit {f.hexdigest()}\nAuthor: Jane Doe <{e}>\n"
                     "Date:   Tue Nov 18 10:42:07 2025 +0100"),
            ("sql", f"INSERT INTO customers (name, email) VALUES ('Omar Haddad', '{e}');"),
            ("log", f"WARN  billing: invoice 8812 bounced for {e}, retrying in 300s"),
            ("prose", f"The user {e} reports the export button does nothing on Safari."),
            ("json", f'{{"id": 4471, "email": "{e}", "plan": "team"}}'),
            ("py", f'ADMINS = [("Ops", "{e}")]'),
            ("csv", f"id,name,email,signup\n17,Li Wei,{e},2025-03-02"),
            ("yaml", f"maintainers:\n  - name: Priya Raman\n    email: {e}"),
        ][i % 8]))
    phones = [("US", "intl"), ("US", "national"), ("GB", "intl"), ("DE", "intl"), ("FR", "intl"),
              ("US", "e164"), ("IN", "intl"), ("DE", "national"), ("GB", "national"), ("CA", "intl")]
    for i, (region, style) in enumerate(phones):
        p = m("phone", f.phone(region, style))
        s.append(("phone", *[("sql", f"UPDATE users SET phone = '{p}' WHERE id = 981;"),
                             ("json", f'{{"name": "Marek Novak", "phone": "{p}"}}'),
                             ("prose", f"Customer called from {p} about the failed refund."),
                             ("csv", f"id,name,phone\n42,Sofia Rossi,{p}")][i % 4]))
    cards = [("4", 16, " "), ("51", 16, "-"), ("4", 16, ""), ("55", 16, " "), ("37", 15, " "),
             ("4", 16, "-"), ("6011", 16, " "), ("52", 16, ""), ("34", 15, ""), ("4", 16, " ")]
    for i, (prefix, length, sep) in enumerate(cards):
        c = m("credit_card", f.card(prefix, length, sep))
        s.append(("credit_card", *[("log", f"ERROR payment declined card={c} amount=129.00 EUR"),
                                   ("json", f'{{"card_number": "{c}", "exp": "09/28", "holder": "E ROSSI"}}'),
                                   ("prose", f"Test with my own card {c} still fails at the 3DS step."),
                                   ("py", f'charge(card="{c}", cvc=None)')][i % 4]))
    for i, country in enumerate(["DE", "GB", "FR", "NL", "ES", "DE", "GB", "NL"]):
        b = m("iban", f.iban(country, grouped=i % 2 == 0))
        s.append(("iban", *[("prose", f"Please wire the refund to {b}, account holder Kwame Mensah."),
                            ("json", f'{{"payout": {{"iban": "{b}", "bic": "DEUTDEFF"}}}}'),
                            ("sql", f"SELECT * FROM payouts WHERE iban = '{b}';"),
                            ("csv", f"vendor,iban\nInitech,{b}")][i % 4]))
    for i in range(8):
        n = m("us_ssn", f.ssn())
        s.append(("us_ssn", *[("csv", f"employee_id,name,ssn\n1029,Tomas Novak,{n}"),
                              ("json", f'{{"applicant": "E. Rossi", "ssn": "{n}"}}'),
                              ("prose", f"The W-2 import fails for SSN {n}, see attached row."),
                              ("sql", f"INSERT INTO tax_forms (ssn, year) VALUES ('{n}', 2024);")][i % 4]))
    for _ in range(3):
        s.append(("crypto_wallet", "prose",
                  f"Refunds in BTC go to {m('crypto_wallet', f.bitcoin_address())}."))
    return s


def mixed(f: Fakes) -> list[tuple[str, str, str]]:
    """Whole files with several values, as pasted: a .env and a customer export."""
    out = []
    for _ in range(4):
        out.append(("mixed", "env",
                    f"# .env.production\nNODE_ENV=production\nDATABASE_URL=postgres://app:"
                    f"{m('basic_auth_url', 'Pg' + f.chars('abcdefghjkmnpqrstuvwxyz23456789', 14))}"
                    f"@db.acme.internal:5432/shop\nSTRIPE_SECRET_KEY={m('stripe_key', f.stripe_key())}\n"
                    f"SLACK_BOT_TOKEN={m('slack_token', f.slack_token())}\n"
                    f"SUPPORT_EMAIL={m('email', f.email())}\nLOG_LEVEL=info"))
    return out


def build(seed: int = 20251123) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    f = Fakes(seed)
    carriers = Carriers(f.rng)
    positives = []
    for n, (kind, syntax, marked) in enumerate([*snippets(f), *pii_snippets(f), *mixed(f)]):
        text, labels = render(carriers.wrap(syntax, marked))
        positives.append({"id": f"pos-{n:03d}-{kind}", "text": text, "labels": labels, "trap": False,
                          "note": f"{kind} in {syntax}"})
    negs = [{"id": f"neg-{n:03d}-{name}", "text": carriers.wrap(syntax, body), "labels": [], "trap": trap,
             "note": note} for n, (name, syntax, body, trap, note) in enumerate(negatives(f))]
    return positives, negs


def main() -> None:
    positives, negs = build()
    for name, rows in (("positives.jsonl", positives), ("negatives.jsonl", negs)):
        with (HERE / name).open("w") as out:
            for row in rows:
                out.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(f"{len(positives)} positives ({sum(len(p['labels']) for p in positives)} labels), "
          f"{len(negs)} negatives ({sum(n['trap'] for n in negs)} traps)")


if __name__ == "__main__":
    main()
