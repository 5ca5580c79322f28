"""Negatives: look-alikes that trip secret and PII scanners (traps), and plain traffic.

Each trap is one sample so that a regression names its trap. Notes say what
the look-alike is and, where one library is known to flag it anyway, which.
"""

from __future__ import annotations

from tests.policy.corpus.fakes import HEX, Fakes

Negative = tuple[str, str, str, bool, str]
"""(name, syntax, text, trap, note)"""


def negatives(f: Fakes) -> list[Negative]:
    out: list[Negative] = []

    def trap(name: str, syntax: str, text: str, note: str) -> None:
        out.append((name, syntax, text, True, note))

    for i in range(10):
        h = f.hexdigest()
        trap("git_hash", ["shell", "prose", "diff"][i % 3], [
            f"$ git log --oneline -3\n{h[:7]} Fix flaky retry test\n{f.hexdigest()[:7]} Bump deps\n"
            f"$ git show {h} --stat",
            f"The regression came in with {h}; reverting {h[:12]} fixes it.",
            f"commit {h}\nMerge: {f.hexdigest()[:7]} {f.hexdigest()[:7]}\n\n    Merge branch 'main'",
        ][i % 3], "git commit hashes, full and short")
    for i in range(10):
        u = f.uuid()
        trap("uuid", ["log", "json", "sql", "py", "shell"][i % 5], [
            f"2025-11-18T10:42:07Z INFO job {u} finished in 812 ms",
            f'{{"request_id": "{u}", "trace_id": "{f.uuid()}", "status": 200}}',
            f"SELECT * FROM orders WHERE id = '{u}';",
            f'TENANT_ID = "{u}"',
            f"$ kubectl logs job/migrate-{u[:8]} | grep {u}",
        ][i % 5], "UUIDs as ids")
    for i in range(10):
        a, b = f.rng.randint(1, 223), f.rng.randint(0, 255)
        trap("ip_log", "log", [
            f'{a}.{b}.{f.rng.randint(0, 255)}.{f.rng.randint(1, 254)} - - [18/Nov/2025:10:42:07 +0000] '
            f'"GET /api/v1/items HTTP/1.1" 200 512 "-" "curl/8.5.0"',
            f"2025-11-18T10:42:07Z WARN upstream 10.{b}.{a}.{f.rng.randint(1, 254)}:8080 timed out",
            f"Nov 18 10:42:07 web-1 sshd[{f.digits(5)}]: Connection closed by 192.168.{b}.{a} port 51812",
            f"listen tcp 0.0.0.0:8080: bind: address already in use (peer 172.16.{b}.{a})",
            f"2025-11-18 10:42:07 client {a}.{b}.7.19 rate-limited after 120 req/min",
        ][i % 5], "IP addresses in access, app and sshd logs")
    for url in ["postgres://app@db.acme.internal:5432/orders", "postgresql://localhost/dev",
                "mongodb://mongo-0.mongo:27017,mongo-1.mongo:27017/?replicaSet=rs0",
                "redis://cache.acme.internal:6379/0", "mysql://root@127.0.0.1:3306/test",
                "DATABASE_URL=postgres://${DB_USER}:${DB_PASSWORD}@${DB_HOST}:5432/app",
                "amqp://guest@rabbitmq:5672/", "jdbc:postgresql://db:5432/app?user=reporting"]:
        trap("db_url_no_password", "env", url if "=" in url[:14] else f"DATABASE_URL={url}",
             "connection string without a password" + (" (templated)" if "${" in url else ""))
    png = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
    for i in range(8):
        blob = f.chars("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/", 64 + 8 * i)
        trap("base64_fixture", ["js", "py", "json", "prose"][i % 4], [
            f'const PIXEL = "data:image/png;base64,{png}";',
            f'FIXTURE = "{blob}="  # base64 of a recorded protobuf response',
            f'{{"thumbnail": "data:image/jpeg;base64,{blob}", "width": 64}}',
            f"The test feeds `{blob[:48]}` into decode() and expects 36 bytes.",
        ][i % 4], "base64 test fixtures and data URIs"
            + (" (quoted random base64: Base64HighEntropyString flags it)" if i % 4 in (1, 2) else ""))
    for i in range(8):
        d = f.hexdigest(64)
        trap("sha256", ["docker", "shell", "yaml", "prose"][i % 4], [
            f"FROM python:3.11-slim@sha256:{d}",
            f"$ sha256sum dist/meterline-0.1.0.tar.gz\n{d}  dist/meterline-0.1.0.tar.gz",
            f'image:\n  repository: ghcr.io/acme/api\n  digest: "sha256:{d}"',
            f"Checksum mismatch: expected {d}, got {f.hexdigest(64)}.",
        ][i % 4], "sha256 digests")
    for i in range(8):
        integrity = f.chars("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/", 86) + "=="
        trap("lockfile_integrity", "json" if i % 2 else "yaml", [
            f'"node_modules/lodash": {{\n  "version": "4.17.21",\n  "resolved": '
            f'"https://registry.npmjs.org/lodash/-/lodash-4.17.21.tgz",\n'
            f'  "integrity": "sha512-{integrity}"\n}}',
            f'"@babel/core@^7.23.0":\n  version "7.23.2"\n  resolved "https://registry.yarnpkg.com/@babel/core/-/'
            f'core-7.23.2.tgz#{f.hexdigest()}"\n  integrity sha512-{integrity}',
        ][1 - i % 2], "lockfile integrity hashes")
    placeholders = [
        ("env", "OPENAI_API_KEY=YOUR_API_KEY"), ("env", "STRIPE_SECRET_KEY=sk_test_xxxxxxxxxxxxxxxxxxxxxxxx"),
        ("shell", "$ export GITHUB_TOKEN=<token>"), ("yaml", 'auth:\n  password: "<your-password>"'),
        ("py", 'API_KEY = "{api_key}"'), ("env", "DB_PASSWORD=${DB_PASSWORD}"),
        ("yaml", "password: {{ .Values.postgres.password }}"), ("json", '{"apiKey": "xxxx"}'),
        ("py", 'SECRET_KEY = os.environ["SECRET_KEY"]'), ("js", "const apiKey = process.env.API_KEY;"),
        ("env", "AWS_SECRET_ACCESS_KEY=REPLACE_ME"), ("py", "password = getpass.getpass('Password: ')"),
        ("yaml", 'slack_webhook: "https://hooks.slack.com/services/XXX/YYY/ZZZ"'),
        ("shell", '$ curl -H "Authorization: Bearer $TOKEN" https://api.acme.internal/v2/me'),
        ("py", 'password = "********"'), ("env", "SECRET_ROTATION_DAYS=30"),
    ]
    for syntax, text in placeholders:
        trap("placeholder", syntax, text, "example placeholder, env reference or masked value" + (
            " (KeywordDetector flags 'xxxx': no default detect-secrets filter knows placeholders)"
            if "xxxx\"" in text else ""))
    for text in ["Upgraded from 1.2.3 to 2.14.0-rc.1, still broken.",
                 "Python 3.11.7 (main, May  9 2026) [GCC 12.2.0] on linux",
                 "Microsoft Windows [Version 10.0.19045.3693]",
                 "node v20.11.1, npm 10.2.4, pnpm 8.15.4",
                 "kernel 6.8.0-48-generic #48~22.04.1-Ubuntu",
                 "chromium 120.0.6099.224 fails the e2e suite"]:
        trap("version", "prose", text, "version strings")
    for i in range(6):
        ms = f.rng.randint(1_700_000_000_000, 1_760_000_000_000)
        trap("timestamp", ["log", "json", "prose"][i % 3], [
            f"2025-11-18T10:42:07.{f.digits(3)}+01:00 INFO flushed 512 rows at epoch {ms // 1000}",
            f'{{"created_at_ms": {ms}, "updated_at": "2025-11-18 10:42:07"}}',
            f"The cursor {ms}000 (ns) is older than the retention window.",
        ][i % 3], "timestamps: ISO, epoch s, ms and ns")
    for i in range(8):
        valid = i >= 6
        ident = f.luhn_id(16, valid=valid)
        trap("numeric_id", ["log", "json", "sql", "prose"][i % 4], [
            f"INFO order {ident} shipped, tracking 1Z999AA10123456784",
            f'{{"order_id": {ident}, "items": 3}}',
            f"DELETE FROM carts WHERE session = {ident};",
            f"Ticket #{ident} was closed without a reply.",
        ][i % 4], "16-digit order id" + (" that passes Luhn: CreditCardRecognizer flags it (library limit)"
                                         if valid and ident[0] in "3456" else " failing Luhn" if not valid
                                         else " passing Luhn, prefix no card range"))
    for i, text in enumerate(['"react": "^18.2.0",\n"lodash": "~4.17.21",\n"typescript": ">=5.3 <6"',
                              "requires-python = \">=3.11\"\ndependencies = [\"pydantic>=2.7,<3\"]",
                              "Bump golang.org/x/net from 0.17.0 to 0.23.0",
                              "image: bitnami/postgresql:16.2.0-debian-12-r6",
                              "go 1.22\nrequire github.com/stretchr/testify v1.9.0"]):
        trap("semver", "json" if i == 0 else "prose", text, "semver ranges and pinned versions")
    for i in range(6):
        rs = f.chars("bcdfghjklmnpqrstvwxz2456789", 10)
        pod = f"{rs}-{f.chars('bcdfghjklmnpqrstvwxz2456789', 5)}"
        trap("k8s_name", "shell", [
            f"$ kubectl get pods\nNAME                      READY   STATUS\napi-{pod}   1/1     Running",
            f"$ kubectl describe replicaset api-{rs} | head -3",
            f"pod/payments-worker-{pod} condition met",
        ][i % 3], "Kubernetes resource names")
    for i in range(5):
        ident = f.chars("abcdefghijklmnopqrstuvwxyz", 1)
        trap("minified_js", "js_min", (
            f'!function(e,t){{"object"==typeof exports&&"undefined"!=typeof module?module.exports=t():'
            f'"function"==typeof define&&define.amd?define(t):(e=e||self).{ident}=t()}}(this,function(){{'
            f'"use strict";var e="{f.chars(HEX, 8)}",t=function(n){{return n.replace(/[^a-z0-9]/gi,"")}};'
            f'return{{v:"3.{i}.1",h:e,k:t}}}});'), "minified JavaScript")
    code = [
        ("py", "def login(username: str, password: str) -> Session:\n"
               "    return auth.check(username, password)"),
        ("py", "if password != confirm_password:\n    raise ValidationError('passwords differ')"),
        ("py", "password = request.form['password']"), ("js", "const secret = await vault.read(path);"),
        ("py", "self.api_key = api_key or settings.api_key"),
        ("sql", "ALTER TABLE users ADD COLUMN password_hash TEXT NOT NULL;"),
        ("py", "PASSWORD_MIN_LENGTH = 12"), ("env", "PASSWORD_RESET_URL=https://app.acme.example/reset"),
    ]
    for syntax, text in code:
        trap("password_code", syntax, text, "code naming passwords or keys without a value")
    for i in range(5):
        trap("email_like", ["shell", "json", "prose", "shell", "py"][i], [
            "$ git clone git@github.com:acme/platform.git",
            '"@types/node": "20.11.5",\n"@acme/ui@workspace:*": "link:../ui"',
            "Pin lodash@4.17.21 and react-dom@18.2.0 in the lockfile.",
            "$ ssh deploy@10.0.3.17 'systemctl restart api'",
            "@dataclass(frozen=True)\nclass Config:\n    retries: int = 3",
        ][i], "e-mail look-alikes: git SSH remote, scoped packages, pkg@version, ssh user@ip, decorator"
            + (" (git@github.com is a well-formed address: EmailRecognizer flags it)" if i == 0 else ""))
    for i, text in enumerate(["Order 123-45-6789 is the sample SSN from the docs.",
                              "Part number 415-22-0718 is out of stock at the Berlin warehouse.",
                              "Invoice DE00 1234 5678 9012 3456 78 failed validation (bad checksum).",
                              "Build 2025-11-18.3 passed; see run 8841-1193.",
                              "Call the on-call rota extension 4411 or page via PagerDuty."]):
        trap("pii_like", "prose", text, "SSN, IBAN and phone look-alikes"
             + (" (part number in SSN format: UsSsnRecognizer flags it, library limit)" if i == 1 else ""))
    trap("aws_docs_example", "py", 'aws_access_key_id = "AKIAIOSFODNN7EXAMPLE"  # from the AWS docs',
         "AWS documentation example key id: AWSKeyDetector flags it (it cannot tell an example)")
    sha = f.hexdigest()
    for syntax, text in [
        ("json", f'{{"sha": "{sha}", "url": "https://api.github.com/repos/acme/api/commits/{sha}"}}'),
        ("py", f'EXPECTED_MD5 = "{f.hexdigest(32)}"  # checksum of tests/fixtures/report.pdf'),
        ("json", f'{{"request_id": "{f.hexdigest(32)}", "status": "ok"}}'),
        ("yaml", f'build:\n  commit: "{f.hexdigest()}"\n  cache_key: "{f.hexdigest(16)}"'),
    ]:
        trap("quoted_hex", syntax, text, "quoted hex digests and ids: HexHighEntropyString flags them")
    for name, syntax, text in PLAIN:
        out.append((name, syntax, text, False, "ordinary traffic"))
    return out


PLAIN: list[tuple[str, str, str]] = [
    ("traceback", "log", "Traceback (most recent call last):\n  File \"/app/worker.py\", line 88, in run\n"
     "    batch = queue.get(timeout=5)\nqueue.Empty"),
    ("java_trace", "log", "java.lang.NullPointerException: Cannot invoke \"Order.total()\"\n"
     "\tat com.acme.billing.Invoice.render(Invoice.java:214)\n\tat com.acme.billing.Job.run(Job.java:57)"),
    ("dockerfile", "docker", "FROM node:20-alpine AS build\nWORKDIR /src\nCOPY . .\n"
     "RUN npm ci && npm run build"),
    ("sql_report", "sql", "SELECT team, sum(cost_usd) FROM events WHERE day >= today() - 30 GROUP BY team;"),
    ("terraform", "prose", 'resource "aws_s3_bucket" "logs" {\n  bucket = "acme-logs-prod"\n'
     '  force_destroy = false\n}'),
    ("makefile", "prose", "test:\n\tpytest -q tests/\nlint:\n\truff check ."),
    ("react", "js", "export function Button({ label }) {\n"
     "  return <button className=\"btn\">{label}</button>;\n}"),
    ("go", "prose", "func (s *Server) Close() error {\n\treturn s.listener.Close()\n}"),
    ("question", "prose", "How do I make pytest show the slowest ten tests?"),
    ("rust", "prose", "fn main() {\n    let v: Vec<u32> = (0..10).collect();\n    println!(\"{:?}\", v);\n}"),
    ("ci_log", "log", "Run actions/setup-python@v5\nSuccessfully set up CPython (3.11.7)\n"
     "##[group]Installing deps"),
    ("k8s_yaml", "yaml", "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: api\n"
     "spec:\n  replicas: 3"),
    ("css", "prose", ".card { border-radius: 8px; box-shadow: 0 1px 2px rgba(0,0,0,.1); color: #1f2937; }"),
    ("gitignore", "prose", "node_modules/\n.env\n*.pem\ndist/\n__pycache__/"),
    ("pytest_out", "shell", "$ pytest -q\n........F..\n"
     "FAILED tests/test_api.py::test_retry - AssertionError"),
    ("review", "prose", "Looks good, but please rename `fetchAll` to `fetch_all` and add a docstring."),
    ("nginx", "prose", "server {\n  listen 443 ssl;\n  server_name api.acme.example;\n"
     "  location / { proxy_pass http://api:8080; }\n}"),
    ("csv_metrics", "csv", "day,requests,p99_ms\n2025-11-17,18231,412\n2025-11-18,19104,388"),
    ("helm_cmd", "shell", "$ helm upgrade --install api ./chart -f values.prod.yaml --atomic"),
    ("pip_freeze", "shell", "$ pip freeze | head -3\nanyio==4.3.0\ncertifi==2024.2.2\nhttpx==0.27.0"),
]
