"""Real Redis servers for tests: a standalone ``redis-server`` and a 3-master cluster.

Both run as subprocesses on free loopback ports, keep every file they write in a
temporary directory, and are stopped (and the directory removed) by ``stop()``.
Nothing here fakes Redis; if ``redis-server`` or ``redis-cli`` is missing the
helpers raise ``RedisServerError`` so the test session fails loudly instead of
skipping.

Usage outside pytest::

    server = RedisServer.start()
    try:
        ...  # server.url == "redis://127.0.0.1:<port>/0"
    finally:
        server.stop()

Secured servers, for the security tests: ``RedisServer.start("--requirepass",
pw)`` (pass ``password=`` to ``cli()`` or set ``server.password``), and
``RedisServer.start_tls(make_tls_files(dir))``: TLS only (``--port 0``), with a
CA, server and client certificate made by the ``openssl`` CLI;
``auth_clients=True`` makes it require the client certificate.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import ssl
import time
from dataclasses import dataclass, field

__all__ = [
    "PostgresServer",
    "PostgresServerError",
    "RedisCluster",
    "RedisServer",
    "RedisServerError",
    "TlsFiles",
    "free_port",
    "make_tls_files",
    "redis_binary",
]

_HOST = "127.0.0.1"


class RedisServerError(RuntimeError):
    """A test Redis server could not be found, started or made ready."""


def redis_binary(name: str = "redis-server") -> str:
    """Return the path of ``redis-server`` / ``redis-cli``, or raise ``RedisServerError``."""
    path = shutil.which(name) or (f"/usr/bin/{name}" if os.path.exists(f"/usr/bin/{name}") else None)
    if path is None:
        raise RedisServerError(
            f"{name} is not installed or not on PATH; the tests need a real Redis "
            f"(install redis-server >= 6, e.g. `apt-get install redis-server`)"
        )
    return path


def free_port() -> int:
    """Return a TCP port on the loopback interface that is free right now.

    Cluster nodes also listen on ``port + 10000`` (the bus port), so only ports
    whose bus port is free too are returned.
    """
    for _ in range(200):
        with socket.socket() as s:
            s.bind((_HOST, 0))
            port = s.getsockname()[1]
        if port + 10000 > 65535:
            continue
        with socket.socket() as s:
            try:
                s.bind((_HOST, port + 10000))
            except OSError:
                continue
        return port
    raise RedisServerError("could not find a free loopback port for redis-server")


def _cli(
    port: int,
    *args: str,
    timeout: float = 10.0,
    prefix: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
) -> str:
    out = subprocess.run(
        [redis_binary("redis-cli"), "-h", _HOST, "-p", str(port), *prefix, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    return out.stdout.strip()


@dataclass(frozen=True)
class TlsFiles:
    """PEM files for a TLS test server: a CA, a server certificate and a client certificate."""

    directory: str
    ca_cert: str
    server_cert: str
    server_key: str
    client_cert: str
    client_key: str
    client_key_encrypted: str | None = None
    """The client key encrypted with ``key_passphrase`` (when one was asked for)."""


def _openssl(*args: str, cwd: str) -> None:
    out = subprocess.run(["openssl", *args], capture_output=True, text=True, cwd=cwd, timeout=30)
    if out.returncode != 0:
        raise RedisServerError(f"openssl {' '.join(args[:2])} failed:\n{out.stderr}")


def make_tls_files(directory: str, *, key_passphrase: str | None = None) -> TlsFiles:
    """Make a throwaway CA and a server and client certificate it signs, with the ``openssl`` CLI.

    The server certificate is valid for ``localhost`` and ``127.0.0.1``; keys
    are P-256 (fast to make). With ``key_passphrase``, the client key is also
    written encrypted (``client-encrypted.key``).
    """
    if shutil.which("openssl") is None:
        raise RedisServerError("the openssl CLI is needed to make test certificates")
    os.makedirs(directory, exist_ok=True)
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    _openssl("req", "-x509", "-new", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
             "-subj", "/CN=migration-kit test CA", cwd=directory)  # fmt: skip
    exts = {
        "server": "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n",
        "client": "extendedKeyUsage=clientAuth\n",
    }
    for who, ext in exts.items():
        with open(os.path.join(directory, f"{who}.ext"), "w") as fh:
            fh.write(ext)
        _openssl("req", "-new", *ec, "-keyout", f"{who}.key", "-out", f"{who}.csr", "-subj", f"/CN={who}", cwd=directory)
        _openssl("x509", "-req", "-in", f"{who}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                 "-out", f"{who}.crt", "-days", "2", "-extfile", f"{who}.ext", cwd=directory)  # fmt: skip
    encrypted = None
    if key_passphrase is not None:
        _openssl("pkey", "-in", "client.key", "-aes256", "-passout", f"pass:{key_passphrase}",
                 "-out", "client-encrypted.key", cwd=directory)  # fmt: skip
        encrypted = os.path.join(directory, "client-encrypted.key")
    def path(name: str) -> str:
        return os.path.join(directory, name)

    return TlsFiles(
        directory=directory,
        ca_cert=path("ca.crt"),
        server_cert=path("server.crt"),
        server_key=path("server.key"),
        client_cert=path("client.crt"),
        client_key=path("client.key"),
        client_key_encrypted=encrypted,
    )


def _wait_tls(proc: subprocess.Popen, port: int, workdir: str, tls: TlsFiles, timeout: float = 10.0) -> None:
    """Wait until a TLS-only server completes a handshake (with the client certificate) and answers."""
    ctx = ssl.create_default_context(cafile=tls.ca_cert)
    ctx.load_cert_chain(tls.client_cert, tls.client_key)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        try:
            with socket.create_connection((_HOST, port), timeout=0.5) as raw:
                with ctx.wrap_socket(raw, server_hostname="localhost") as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(64).startswith((b"+PONG", b"-NOAUTH")):
                        return
        except OSError:
            pass
        time.sleep(0.02)
    log_path = os.path.join(workdir, f"redis-{port}.log")
    log = open(log_path, errors="replace").read()[-2000:] if os.path.exists(log_path) else ""
    _terminate(proc)
    raise RedisServerError(f"TLS redis-server on port {port} did not answer within {timeout}s:\n{log}")


def _spawn(port: int, workdir: str, *extra: str, tls_only: bool = False) -> subprocess.Popen:
    log = open(os.path.join(workdir, f"redis-{port}.log"), "wb")  # noqa: SIM115 - closed with the process
    listen = ("--port", "0", "--tls-port", str(port)) if tls_only else ("--port", str(port))
    args = [
        redis_binary("redis-server"),
        *listen,
        "--bind", _HOST,
        "--daemonize", "no",
        "--save", "",
        "--appendonly", "no",
        "--dir", workdir,
        "--protected-mode", "no",
        *extra,
    ]  # fmt: skip
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=workdir)
    proc._log = log  # type: ignore[attr-defined]
    return proc


def _wait_ping(proc: subprocess.Popen, port: int, workdir: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        try:
            with socket.create_connection((_HOST, port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                # A server started with --requirepass answers NOAUTH: it is up.
                if s.recv(64).startswith((b"+PONG", b"-NOAUTH")):
                    return
        except OSError:
            pass
        time.sleep(0.02)
    log_path = os.path.join(workdir, f"redis-{port}.log")
    log = open(log_path, errors="replace").read()[-2000:] if os.path.exists(log_path) else ""
    _terminate(proc)
    raise RedisServerError(f"redis-server on port {port} did not answer PING within {timeout}s:\n{log}")


def _terminate(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
    log = getattr(proc, "_log", None)
    if log is not None:
        log.close()


@dataclass
class RedisServer:
    """A standalone ``redis-server`` subprocess (no persistence) on a loopback port."""

    port: int
    process: subprocess.Popen
    workdir: str
    host: str = _HOST
    tls: TlsFiles | None = None
    """The certificates of a server started with ``start_tls`` (it then speaks TLS only)."""
    password: str | None = field(default=None, repr=False)
    """The password ``cli()`` authenticates with (for a ``--requirepass`` server)."""

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/0`` (``rediss://`` for a TLS server)."""
        return f"{'rediss' if self.tls else 'redis'}://{self.host}:{self.port}/0"

    @classmethod
    def start_tls(cls, tls: TlsFiles, *extra_args: str, auth_clients: bool = False) -> RedisServer:
        """Start a TLS-only server (``--port 0 --tls-port N``); ``auth_clients`` requires a client certificate."""
        workdir = tempfile.mkdtemp(prefix="redis-tls-test-")
        port = free_port()
        proc = _spawn(
            port,
            workdir,
            "--tls-cert-file", tls.server_cert,
            "--tls-key-file", tls.server_key,
            "--tls-ca-cert-file", tls.ca_cert,
            "--tls-auth-clients", "yes" if auth_clients else "no",
            *extra_args,
            tls_only=True,
        )  # fmt: skip
        try:
            _wait_tls(proc, port, workdir, tls)
        except BaseException:
            shutil.rmtree(workdir, ignore_errors=True)
            raise
        return cls(port=port, process=proc, workdir=workdir, tls=tls)

    args: tuple[str, ...] = ()
    """The extra arguments it was started with (``restart`` uses them again)."""

    @classmethod
    def start(cls, *extra_args: str, port: int | None = None) -> RedisServer:
        """Start a server on a free port (or ``port``) and wait until it answers PING."""
        workdir = tempfile.mkdtemp(prefix="redis-test-")
        port = port or free_port()
        proc = _spawn(port, workdir, *extra_args)
        try:
            _wait_ping(proc, port, workdir)
        except BaseException:
            shutil.rmtree(workdir, ignore_errors=True)
            raise
        return cls(port=port, process=proc, workdir=workdir, args=tuple(extra_args))

    def kill(self) -> None:
        """SIGKILL the server (its directory, and an AOF in it, stay for ``restart``)."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)
        log = getattr(self.process, "_log", None)
        if log is not None:
            log.close()

    def restart(self) -> None:
        """Start it again on the same port and directory (with AOF on, it reloads its data)."""
        self.kill()
        self.process = _spawn(self.port, self.workdir, *self.args)
        _wait_ping(self.process, self.port, self.workdir)

    def cli(self, *args: str) -> str:
        """Run ``redis-cli`` against this server and return its stdout."""
        if self.tls is None and self.password is None:
            return _cli(self.port, *args)
        prefix: tuple[str, ...] = ()
        if self.tls is not None:
            t = self.tls
            prefix = ("--tls", "--cacert", t.ca_cert, "--cert", t.client_cert, "--key", t.client_key)
        env = None
        if self.password is not None:
            env = {**os.environ, "REDISCLI_AUTH": self.password}  # not -a: keeps it off the process list
        return _cli(self.port, *args, prefix=prefix, env=env)

    def stop(self) -> None:
        """Stop the server and delete its temporary directory."""
        _terminate(self.process)
        shutil.rmtree(self.workdir, ignore_errors=True)


@dataclass
class RedisCluster:
    """A Redis Cluster of three masters (no replicas) on loopback ports."""

    ports: list[int]
    processes: list[subprocess.Popen] = field(repr=False)
    workdir: str
    host: str = _HOST

    @property
    def url(self) -> str:
        """URL of the first node; cluster clients discover the others."""
        return f"redis://{self.host}:{self.ports[0]}/0"

    @classmethod
    def start(cls, masters: int = 3, timeout: float = 30.0) -> RedisCluster:
        """Start ``masters`` cluster-enabled nodes, join them and wait for ``cluster_state:ok``."""
        workdir = tempfile.mkdtemp(prefix="redis-cluster-test-")
        ports: list[int] = []
        procs: list[subprocess.Popen] = []
        try:
            for _ in range(masters):
                port = free_port()
                while port in ports:
                    port = free_port()
                node_dir = os.path.join(workdir, str(port))
                os.mkdir(node_dir)
                proc = _spawn(
                    port,
                    node_dir,
                    "--cluster-enabled", "yes",
                    "--cluster-config-file", os.path.join(node_dir, "nodes.conf"),
                    "--cluster-node-timeout", "5000",
                )  # fmt: skip
                ports.append(port)
                procs.append(proc)
                _wait_ping(proc, port, node_dir)
            out = subprocess.run(
                [
                    redis_binary("redis-cli"),
                    "--cluster", "create",
                    *[f"{_HOST}:{p}" for p in ports],
                    "--cluster-replicas", "0",
                    "--cluster-yes",
                ],  # fmt: skip
                capture_output=True,
                text=True,
                timeout=timeout,
            )
            if out.returncode != 0:
                raise RedisServerError(f"redis-cli --cluster create failed:\n{out.stdout}\n{out.stderr}")
            deadline = time.monotonic() + timeout
            while True:
                states = [_cli(p, "CLUSTER", "INFO") for p in ports]
                if all("cluster_state:ok" in s for s in states):
                    break
                if time.monotonic() > deadline:
                    raise RedisServerError(f"cluster did not reach cluster_state:ok: {states}")
                time.sleep(0.05)
        except BaseException:
            for proc in procs:
                _terminate(proc)
            shutil.rmtree(workdir, ignore_errors=True)
            raise
        return cls(ports=ports, processes=procs, workdir=workdir)

    def flushall(self) -> None:
        """Delete every key on every master."""
        for port in self.ports:
            _cli(port, "FLUSHALL")

    def stop(self) -> None:
        """Stop every node and delete the temporary directory."""
        for proc in self.processes:
            _terminate(proc)
        shutil.rmtree(self.workdir, ignore_errors=True)


# -- PostgreSQL ------------------------------------------------------------------------------------


class PostgresServerError(RuntimeError):
    """A test PostgreSQL server could not be found, started or made ready."""


def postgres_bindir() -> str:
    """The newest ``/usr/lib/postgresql/<version>/bin`` holding ``initdb`` and ``pg_ctl``, or raise."""
    import glob

    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0)
    if not found:
        raise PostgresServerError(
            "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb); the tests need a real server: "
            "`apt-get install postgresql` (make test does it)"
        )
    return os.path.dirname(found[-1])


@dataclass
class PostgresServer:
    """A PostgreSQL server (``initdb`` + ``pg_ctl``) in a temporary directory, on a loopback port.

    PostgreSQL refuses to run as root, so under root it runs as the ``postgres``
    system user (created with ``useradd`` when missing); otherwise as the
    current user. Authentication is ``trust`` on loopback only.
    """

    port: int
    workdir: str
    user: str | None  # the OS user the server runs as (None: the current one)
    bindir: str
    host: str = _HOST

    @property
    def datadir(self) -> str:
        return os.path.join(self.workdir, "data")

    def url(self, database: str = "postgres") -> str:
        """A SQLAlchemy URL (psycopg 3) for ``database``."""
        return f"postgresql+psycopg://postgres@{self.host}:{self.port}/{database}"

    @staticmethod
    def _as(user: str | None, cmd: list[str], timeout: float = 60.0) -> subprocess.CompletedProcess:
        import shlex

        full = cmd if user is None else ["su", user, "-s", "/bin/sh", "-c", shlex.join(cmd)]
        return subprocess.run(full, capture_output=True, text=True, timeout=timeout)

    @classmethod
    def start(cls, timeout: float = 60.0) -> PostgresServer:
        """initdb a fresh cluster, start it with ``pg_ctl -w`` (it waits until the server accepts connections)."""
        import pwd

        bindir = postgres_bindir()
        user: str | None = None
        if os.geteuid() == 0:
            user = "postgres"
            try:
                pwd.getpwnam(user)
            except KeyError:
                made = subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/bin/sh", user], capture_output=True, text=True, timeout=30)
                if made.returncode != 0:
                    try:  # another test worker (pytest -n) may have created it in the meantime
                        pwd.getpwnam(user)
                    except KeyError:
                        raise PostgresServerError(f"useradd {user} failed: {made.stderr.strip()}") from None
        workdir = tempfile.mkdtemp(prefix="mk-postgres-")
        if user is not None:
            entry = pwd.getpwnam(user)
            os.chown(workdir, entry.pw_uid, entry.pw_gid)
            os.chmod(workdir, 0o700)
        port = free_port()
        server = cls(port, workdir, user, bindir)
        init = cls._as(user, [f"{bindir}/initdb", "-D", server.datadir, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync"])
        if init.returncode != 0:
            shutil.rmtree(workdir, ignore_errors=True)
            raise PostgresServerError(f"initdb failed:\n{init.stdout[-1500:]}\n{init.stderr[-1500:]}")
        options = f"-p {port} -k {workdir} -c listen_addresses={_HOST} -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        log = os.path.join(workdir, "postgres.log")
        started = cls._as(user, [f"{bindir}/pg_ctl", "-D", server.datadir, "-l", log, "-o", options, "-w", "-t", str(int(timeout)), "start"], timeout + 10)
        if started.returncode != 0:
            text = open(log, errors="replace").read()[-2000:] if os.path.exists(log) else ""
            server.stop()
            raise PostgresServerError(f"pg_ctl start failed on port {port}:\n{started.stderr[-1000:]}\n{text}")
        ready = subprocess.run([f"{bindir}/pg_isready", "-h", _HOST, "-p", str(port), "-t", str(int(timeout))], capture_output=True, text=True, timeout=timeout + 10)
        if ready.returncode != 0:
            server.stop()
            raise PostgresServerError(f"PostgreSQL on port {port} is not ready: {ready.stdout.strip()}")
        return server

    def create_database(self, name: str) -> str:
        """Create an empty database; returns its URL."""
        import psycopg

        with psycopg.connect(host=self.host, port=self.port, user="postgres", dbname="postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        """Stop the server (fast shutdown, waiting for it) and remove its directory."""
        if os.path.exists(os.path.join(self.datadir, "postmaster.pid")):
            self._as(self.user, [f"{self.bindir}/pg_ctl", "-D", self.datadir, "-m", "fast", "-w", "stop"])
        shutil.rmtree(self.workdir, ignore_errors=True)
