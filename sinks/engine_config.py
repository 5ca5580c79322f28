"""The embedded engine's own configuration: no ClickHouse *source* can be reached from it.

chdb runs ClickHouse in-process as clickhouse-local, whose one user
(``default``) holds every grant, reads any absolute path with ``file()`` and
fetches any URL with ``url()``. The store therefore starts chdb with a
configuration file of its own (``config-file`` engine option), written next to
the data path on every ``connect``:

- ``users.xml`` defines ``default`` as ``GRANT ALL ON *.*`` then
  ``REVOKE SOURCES ON *.*``. ``SOURCES`` is ClickHouse's privilege group for
  every external reader and writer (FILE, URL, REMOTE, MONGO, REDIS, MYSQL,
  POSTGRES, SQLITE, ODBC, JDBC, HDFS, S3, HIVE, AZURE, KAFKA, NATS,
  RABBITMQ ...), so ``file``, ``url``, ``s3``, ``gcs``, ``remote``,
  ``remoteSecure``, ``mysql``, ``postgresql``, ``sqlite``, ``mongodb``,
  ``redis``, ``hdfs``, ``jdbc``, ``odbc``, ``azureBlobStorage``, ``iceberg``,
  ``deltaLake``, ``hudi``, ``arrowFlight`` and every ``*Cluster`` variant are
  refused by the engine's access check, for ``SELECT`` and ``DESCRIBE`` alike,
  and for the writer too (it only inserts through ``INFILE``, which is the
  client side of clickhouse-local and needs no source grant).
- ``user_files_path`` and ``user_scripts_path`` are empty directories the store
  owns: ``executable()`` and executable UDFs find no program to run.
- ``remote_url_allow_hosts`` is present and empty: no host is allowed.

What this does *not* cover on chdb is enforced elsewhere: the read-only client
(``client.connect(reader=...)``, ``readonly=1``, ``allow_python_table_function=0``)
and the parser gate (``sql_guard``) for the scalar ``file()`` function and
``INTO OUTFILE``, which clickhouse-local does not check against grants.
"""

from __future__ import annotations

from pathlib import Path

_USERS_XML = """<clickhouse>
  <profiles><default/></profiles>
  <users>
    <default>
      <no_password/>
      <networks><ip>::1</ip><ip>127.0.0.1</ip></networks>
      <profile>default</profile>
      <quota>default</quota>
      <grants>
        <query>GRANT ALL ON *.*</query>
        <query>REVOKE SOURCES ON *.*</query>
      </grants>
    </default>
  </users>
  <quotas><default/></quotas>
</clickhouse>
"""

_CONFIG_XML = """<clickhouse>
  <user_files_path>{user_files}/</user_files_path>
  <user_scripts_path>{user_scripts}/</user_scripts_path>
  <remote_url_allow_hosts></remote_url_allow_hosts>
  <user_directories><users_xml><path>{users}</path></users_xml></user_directories>
</clickhouse>
"""


def engine_config_dir(data_path: Path) -> Path:
    """Beside the data path, never inside it (ClickHouse owns what is inside)."""
    return data_path.with_name(data_path.name + "-engine")


def write_engine_config(data_path: Path) -> Path:
    """Write the engine's ``config.xml`` and ``users.xml``; the path of ``config.xml``.

    Rewritten only when the content differs, so a second client in the same
    process (same engine, same options) finds the same files.
    """
    folder = engine_config_dir(data_path.resolve())
    user_files, user_scripts = folder / "user_files", folder / "user_scripts"
    for directory in (folder, user_files, user_scripts):
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    users = folder / "users.xml"
    config = folder / "config.xml"
    _write_if_changed(users, _USERS_XML)
    _write_if_changed(config, _CONFIG_XML.format(user_files=user_files, user_scripts=user_scripts,
                                                 users=users))
    return config


def _write_if_changed(path: Path, text: str) -> None:
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")
        path.chmod(0o600)
